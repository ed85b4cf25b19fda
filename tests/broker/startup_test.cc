// sluiced's start-up pieces that run before the loop: option parsing and the
// worker's argv, the control socket (stale / live / non-socket, its
// directory, its mode), the audit log, the capability read-back checks, fd
// placement, and a log that never blocks.
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/log.h"
#include "broker/control_socket.h"
#include "broker/isolation.h"
#include "broker/options.h"
#include "broker/worker_launch.h"

namespace sluice {
namespace {

/// Parses `args` (without argv[0]).
Result<ParsedOptions> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "sluiced");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return parse_broker_options(static_cast<int>(args.size()), argv.data());
}

/// Expects `args` to be a usage error mentioning `needle`.
void expect_usage_error(std::vector<std::string> args, const char* needle) {
  auto r = parse(std::move(args));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(needle), std::string::npos) << r.error().message;
}

// --- options ---

TEST(Options, RuleOptionsPassThroughInOrder) {
  auto r = parse({"-c", "/tmp/x.sock", "-u", "53", "-t", "8080:80", "--debug", "-U", "1-2", "-T",
                  "none", "--policy", "/etc/p", "--audit-log", "/var/log/a"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->action, OptionsAction::kRun);
  const BrokerOptions& o = r->options;
  EXPECT_EQ(o.control_path, "/tmp/x.sock");
  EXPECT_EQ(o.policy_path, "/etc/p");
  EXPECT_EQ(o.audit_log_path, "/var/log/a");
  EXPECT_TRUE(o.debug);
  bool used_default = true;
  EXPECT_EQ(worker_argv(o, &used_default),
            (std::vector<std::string>{"sluice-worker", "-d", "--policy-source", "/etc/p", "-u",
                                      "53", "-t", "8080:80", "-U", "1-2", "-T", "none"}));
  EXPECT_FALSE(used_default);
}

TEST(Options, PastasLongNamesOfTheRuleOptionsAreTheShortOnes) {
  auto r = parse({"--tcp-ports", "8080:80", "--udp-ports=53", "--tcp-ns", "none", "--udp-ns=1-2"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-t", "8080:80", "-u", "53", "-T", "none",
                                      "-U", "1-2"}));
  EXPECT_FALSE(used_default);
}

TEST(Options, SpecsAreNotParsed) {
  // Anything goes through unchanged, even what looks like an option.
  auto r = parse({"-t", "-q", "-t", "  weird spec "});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-t", "-q", "-t", "  weird spec "}));
}

TEST(Options, DefaultRuleSetWhenNoRuleOption) {
  auto r = parse({"-q"});
  ASSERT_TRUE(r.ok());
  bool used_default = false;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-q", "-t", "127.0.0.1/8080:8000"}));
  EXPECT_TRUE(used_default);
}

TEST(Options, TNoneIsPassedNotDefaulted) {
  auto r = parse({"-t", "none"});
  ASSERT_TRUE(r.ok());
  bool used_default = true;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-t", "none"}));
  EXPECT_FALSE(used_default);
}

TEST(Options, UdpLimitsGoToTheWorkerBeforeTheRules) {
  auto r = parse({"-u", "53", "--udp-idle-timeout", "5", "--udp-flows", "10", "-q"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->options.udp_flows, 10u);
  EXPECT_EQ(r->options.udp_idle_timeout_s, 5u);
  bool used_default = true;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-q", "--udp-flows", "10",
                                      "--udp-idle-timeout", "5", "-u", "53"}));
  // Unset limits are left to the worker's defaults.
  r = parse({"-u", "53"});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-u", "53"}));
  // The extremes of the ranges.
  r = parse({"--udp-flows", "1048576", "--udp-idle-timeout", "86400"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->options.udp_flows, 1048576u);
  EXPECT_EQ(parse({"--udp-flows=1", "--udp-idle-timeout=1"})->options.udp_idle_timeout_s, 1u);
}

TEST(Options, UdpLimitErrors) {
  expect_usage_error({"--udp-flows", "0"}, "--udp-flows needs a number from 1 to 1048576");
  expect_usage_error({"--udp-flows", "1048577"}, "from 1 to 1048576");
  expect_usage_error({"--udp-flows", "-5"}, "from 1 to 1048576, not \"-5\"");
  expect_usage_error({"--udp-flows", "12x"}, "not \"12x\"");
  expect_usage_error({"--udp-flows", "99999999999"}, "from 1 to 1048576");
  expect_usage_error({"--udp-idle-timeout", "0"},
                     "--udp-idle-timeout needs a number from 1 to 86400");
  expect_usage_error({"--udp-idle-timeout", "86401"}, "from 1 to 86400");
  expect_usage_error({"--udp-idle-timeout", ""}, "--udp-idle-timeout needs a number");
  expect_usage_error({"--udp-idle-timeout"}, "--udp-idle-timeout needs an argument");
  expect_usage_error({"--udp-flows", "3", "--udp-flows", "4"}, "--udp-flows given twice");
}

TEST(Options, TcpLimitsGoToTheWorker) {
  auto r =
      parse({"--max-connections", "2", "--connect-timeout=3", "--pipe-size", "131072", "-t", "80"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  EXPECT_EQ(
      worker_argv(r->options, &used_default),
      (std::vector<std::string>{"sluice-worker", "--max-connections", "2", "--connect-timeout", "3",
                                "--pipe-size", "131072", "-t", "80"}));
  r = parse({"--max-connections", "262144", "--connect-timeout", "600", "--pipe-size", "1048576"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->options.max_connections, 262144u);
  EXPECT_EQ(r->options.pipe_size, 1048576u);
}

TEST(Options, TcpLimitErrors) {
  expect_usage_error({"--max-connections", "0"},
                     "--max-connections needs a number from 1 to 262144");
  expect_usage_error({"--max-connections", "262145"}, "from 1 to 262144");
  expect_usage_error({"--connect-timeout", "601"},
                     "--connect-timeout needs a number from 1 to 600");
  expect_usage_error({"--pipe-size", "4095"}, "--pipe-size needs at least 4096 bytes (one page)");
  expect_usage_error({"--pipe-size", "1048577"}, "--pipe-size needs a number from 4096 to 1048576");
  expect_usage_error({"--connect-timeout", "1", "--connect-timeout", "2"},
                     "--connect-timeout given twice");
}

TEST(Options, DataThreadsAutoIsOnePerCpuSluicedMayRunOnAtMostSixteen) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const uint32_t want = std::min<uint32_t>(static_cast<uint32_t>(CPU_COUNT(&set)), 16);
  auto r = parse({"--data-threads", "auto"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->options.data_threads, want);
  if (want > 1) {
    bool used_default = true;
    const std::vector<std::string> argv = worker_argv(r->options, &used_default);
    EXPECT_NE(std::find(argv.begin(), argv.end(), std::to_string(want)), argv.end());
  }
  r = parse({"--data-threads", "3"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->options.data_threads, 3u);
  expect_usage_error({"--data-threads", "17"},
                     "--data-threads needs a number from 1 to 16, or auto (one per CPU sluiced "
                     "may run on), not \"17\"");
  expect_usage_error({"--data-threads", "0"}, "from 1 to 16, or auto");
  expect_usage_error({"--data-threads", "Auto"}, "not \"Auto\"");
  expect_usage_error({"--data-threads", "auto", "--data-threads", "2"},
                     "--data-threads given twice");
  expect_usage_error({"--data-threads", "2", "--data-threads", "auto"},
                     "--data-threads given twice");
}

TEST(Options, FairnessLimitsTakeZeroForOffAndGoToTheWorker) {
  auto r = parse({"--max-connections-per-rule", "8", "--max-connections-per-source", "0",
                  "--idle-timeout", "30", "-t", "80"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "--max-connections-per-rule", "8",
                                      "--max-connections-per-source", "0", "--idle-timeout", "30",
                                      "-t", "80"}));
  // Not given: the worker's defaults (nothing on its command line).
  r = parse({"-t", "80"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(worker_argv(r->options, &used_default),
            (std::vector<std::string>{"sluice-worker", "-t", "80"}));
  expect_usage_error({"--idle-timeout", "604801"},
                     "--idle-timeout needs a number from 0 (off) to 604800");
  expect_usage_error({"--max-connections-per-source", "-1"},
                     "--max-connections-per-source needs a number from 0 (off) to 262144");
  expect_usage_error({"--max-connections-per-rule", "1", "--max-connections-per-rule", "2"},
                     "--max-connections-per-rule given twice");
  expect_usage_error({"--idle-timeout"}, "--idle-timeout needs an argument");
}

TEST(Options, TheWorkerParsesWhatTheBrokerSends) {
  // The broker's side of schema/worker_args.h: every option sluiced carries
  // to the worker comes back from the worker's own parser unchanged.
  auto r = parse({"-q", "--policy", "/etc/p", "--udp-flows", "7", "--udp-idle-timeout", "9",
                  "--max-connections", "11", "--connect-timeout", "13", "--pipe-size", "65536",
                  "-U", "1-2", "-t", "-d"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  const WorkerArgs sent = worker_args(r->options, &used_default);
  EXPECT_FALSE(used_default);
  auto received = parse_worker_args(worker_argv(r->options, &used_default));
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_EQ(*received, sent);
  EXPECT_TRUE(received->quiet);
  EXPECT_EQ(received->policy_source, "/etc/p");
  EXPECT_EQ(received->udp_flows, 7u);
  EXPECT_EQ(received->udp_idle_timeout_s, 9u);
  EXPECT_EQ(received->max_connections, 11u);
  EXPECT_EQ(received->connect_timeout_s, 13u);
  EXPECT_EQ(received->pipe_size, 65536u);
  EXPECT_EQ(received->rules, (std::vector<WorkerRuleArg>{{'U', "1-2"}, {'t', "-d"}}));
  // Without rule options, the default rule set arrives.
  r = parse({});
  ASSERT_TRUE(r.ok());
  received = parse_worker_args(worker_argv(r->options, &used_default));
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_EQ(received->rules, (std::vector<WorkerRuleArg>{{kDefaultRuleOption, kDefaultRuleSpec}}));
}

TEST(Options, HelpAndVersion) {
  EXPECT_EQ(parse({"-h"})->action, OptionsAction::kHelp);
  EXPECT_EQ(parse({"--help"})->action, OptionsAction::kHelp);
  EXPECT_EQ(parse({"--version"})->action, OptionsAction::kVersion);
}

TEST(Options, UsageErrors) {
  expect_usage_error({"--bogus"}, "unknown option --bogus");
  expect_usage_error({"-x"}, "unknown option -x");
  expect_usage_error({"-t"}, "-t needs an argument");
  expect_usage_error({"--policy"}, "--policy needs an argument");
  expect_usage_error({"extra"}, "unexpected argument \"extra\"");
  expect_usage_error({"-c", "a", "-c", "b"}, "given twice");
  expect_usage_error({"-c", ""}, "non-empty");
  expect_usage_error({"-d", "-q"}, "exclude each other");
  expect_usage_error({"--debug=1"}, "takes no argument");
  expect_usage_error({"--log-connections", "-q"}, "which -q leaves out");
}

TEST(Options, LogConnectionsGoesToTheWorker) {
  auto r = parse({"--log-connections", "-t", "8080"});
  ASSERT_TRUE(r.ok()) << r.error().message;
  bool used_default = true;
  auto received = parse_worker_args(worker_argv(r->options, &used_default));
  ASSERT_TRUE(received.ok()) << received.error().message;
  EXPECT_TRUE(received->log_connections);
  r = parse({"-t", "8080"});
  ASSERT_TRUE(r.ok());
  received = parse_worker_args(worker_argv(r->options, &used_default));
  ASSERT_TRUE(received.ok());
  EXPECT_FALSE(received->log_connections);
}

// --- control socket ---

class ControlSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-ctl-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/control.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  std::string dir_, path_;
};

TEST_F(ControlSocketTest, CreatesListeningSocketWithMode0660) {
  auto s = create_control_socket(path_);
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct stat st;
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  int listening = 0;
  socklen_t len = sizeof(listening);
  ASSERT_EQ(::getsockopt(s->listen_fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len), 0);
  EXPECT_EQ(listening, 1);
  EXPECT_NE(::fcntl(s->listen_fd.get(), F_GETFL) & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(s->listen_fd.get(), F_GETFD) & FD_CLOEXEC, 0);

  // A second broker on the same path is refused while this one listens.
  auto second = create_control_socket(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_NE(second.error().message.find("another sluiced is listening on " + path_),
            std::string::npos)
      << second.error().message;

  remove_control_socket(*s);
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
}

TEST_F(ControlSocketTest, ReplacesStaleSocket) {
  {
    auto s = create_control_socket(path_);
    ASSERT_TRUE(s.ok());
  }  // closed without removing the file: stale
  ASSERT_EQ(::access(path_.c_str(), F_OK), 0);
  auto s = create_control_socket(path_);
  ASSERT_TRUE(s.ok()) << s.error().message;
  remove_control_socket(*s);
}

TEST_F(ControlSocketTest, RefusesNonSocketFile) {
  int fd = ::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ::close(fd);
  auto s = create_control_socket(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("is not a socket"), std::string::npos);
}

TEST_F(ControlSocketTest, RemoveLeavesASuccessorsSocketAlone) {
  auto s = create_control_socket(path_);
  ASSERT_TRUE(s.ok());
  ::unlink(path_.c_str());
  auto other = create_control_socket(path_);  // a new file at the same path
  ASSERT_TRUE(other.ok()) << other.error().message;
  remove_control_socket(*s);
  EXPECT_EQ(::access(path_.c_str(), F_OK), 0);
  remove_control_socket(*other);
  EXPECT_NE(::access(path_.c_str(), F_OK), 0);
}

TEST_F(ControlSocketTest, RejectsTooLongAndMissingDirectory) {
  auto longer = create_control_socket(dir_ + "/" + std::string(120, 'x'));
  ASSERT_FALSE(longer.ok());
  EXPECT_NE(longer.error().message.find("pass a shorter -c PATH"), std::string::npos);
  auto missing = create_control_socket(dir_ + "/nodir/control.sock");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("ENOENT"), std::string::npos);
}

// Security review item 7: with -c PATH in a directory others can write, a
// symlink swapped in between bind() and a chmod by path made a root sluiced
// chmod any file to 0660. The socket is now born 0660 (umask around bind), no
// chmod follows, and such a directory is refused.

TEST_F(ControlSocketTest, DirectoryWritableByOthersIsRefused) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  auto s = create_control_socket(path_);
  ASSERT_FALSE(s.ok()) << "a world-writable directory was accepted";
  EXPECT_EQ(s.error().message, dir_ +
                                   ", the control socket's directory, is writable by other "
                                   "users (mode 0777), who could replace the socket; run chmod "
                                   "go-w (or chmod +t) on it, or pass another -c PATH");
  EXPECT_NE(::access(path_.c_str(), F_OK), 0) << "nothing may be created there";
  ASSERT_EQ(::chmod(dir_.c_str(), 0770), 0);  // group-writable: the same
  EXPECT_FALSE(create_control_socket(path_).ok());
}

TEST_F(ControlSocketTest, ADirectoryTheUserMayNotWriteSaysSoAndWhatToDo) {
  // root's directory, mode 0755: it passes the ownership checks, but an
  // ordinary user may not create the socket in it.
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(p[0]);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(77);  // one uid mapped (the user-namespace run): nothing to switch to
    }
    auto s = create_control_socket(path_);
    const std::string said = s.ok() ? "created" : s.error().message;
    ssize_t ignored = ::write(p[1], said.data(), said.size());
    (void)ignored;
    ::_exit(0);
  }
  ::close(p[1]);
  std::string said;
  char buf[1024];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof(buf))) > 0;)
    said.append(buf, static_cast<size_t>(n));
  ::close(p[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) GTEST_SKIP() << "needs a second uid";
  EXPECT_NE(said.find("cannot bind the control socket " + path_ + ": EACCES"), std::string::npos)
      << said;
  EXPECT_NE(said.find("(uid 65534) may not create files in " + dir_ + "/: give -c PATH"),
            std::string::npos)
      << said;
}

TEST_F(ControlSocketTest, StickyDirectoryWritableByOthersIsAccepted) {
  // Like /tmp: others may add files, but not remove or rename ours.
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  auto s = create_control_socket(path_);
  ASSERT_TRUE(s.ok()) << s.error().message;
  struct stat st;
  ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  remove_control_socket(*s);
}

TEST(ControlDir, OnlyRootOrSluicedsUserMayOwnIt) {
  EXPECT_TRUE(check_control_dir("/run/sluice", 0, 040755, 0).ok());
  EXPECT_TRUE(check_control_dir("/run/user/1000/sluice", 1000, 040700, 1000).ok());
  EXPECT_TRUE(check_control_dir("/run", 0, 040755, 1000).ok());  // root's directory
  auto other = check_control_dir("/home/eve", 1001, 040755, 0);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().message,
            "/home/eve, the control socket's directory, belongs to uid 1001 (mode 0755), who "
            "could replace the socket; use a directory of root or of uid 0 (such as "
            "/run/sluice), or pass another -c PATH");
  EXPECT_FALSE(check_control_dir("/tmp/eve", 1001, 041777, 1000).ok());  // sticky, but hers
}

TEST(ControlDir, WritableByOthersOnlyWhenSticky) {
  EXPECT_FALSE(check_control_dir("/d", 0, 040777, 0).ok());
  EXPECT_FALSE(check_control_dir("/d", 0, 040775, 0).ok());
  EXPECT_FALSE(check_control_dir("/d", 0, 040757, 0).ok());
  EXPECT_TRUE(check_control_dir("/tmp", 0, 041777, 0).ok());
  EXPECT_TRUE(check_control_dir("/d", 0, 041775, 0).ok());
  EXPECT_TRUE(check_control_dir("/d", 0, 040750, 0).ok());
}

TEST(ControlDir, AnOwnerOutsideTheUserNamespaceIsToldApartFromAMappedOne) {
  // The initial namespace maps every uid: 65534 is nobody, a real user.
  EXPECT_FALSE(owner_is_unmapped(65534, "         0          0 4294967295\n", 65534));
  // `unshare -Ur` by uid 1000: only 0 is mapped; 65534 stands for any
  // user outside (root's / and /tmp read so).
  EXPECT_TRUE(owner_is_unmapped(65534, "         0       1000          1\n", 65534));
  // A range that covers 65534 maps it.
  EXPECT_FALSE(owner_is_unmapped(65534, "0 1000 1\n1 100000 65536\n", 65534));
  // Only the overflow uid can stand for an unmapped owner.
  EXPECT_FALSE(owner_is_unmapped(1001, "0 1000 1\n", 65534));
  EXPECT_TRUE(check_control_dir("/", 65534, 040755, 0, kControlRole, "/x", true).ok());
  // Its mode is still checked.
  EXPECT_FALSE(check_control_dir("/", 65534, 040777, 0, kControlRole, "/x", true).ok());
}

/// A tree of real directories under /tmp for the checks of the directories
/// on the way to the socket; needs root (it chowns to other uids).
class ControlDirTree : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: the directories belong to other uids";
    char tmpl[] = "/tmp/sluice-ctl-tree-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    base_ = tmpl;
  }
  void TearDown() override {
    if (!base_.empty()) std::filesystem::remove_all(base_);
  }
  /// Makes directory `rel` under the base with `mode`, owned by `uid`.
  void dir(const std::string& rel, mode_t mode, uid_t uid = 0) {
    const std::string path = base_ + "/" + rel;
    ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
    ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;  // not narrowed by the umask
    ASSERT_EQ(::chown(path.c_str(), uid, uid), 0) << path;
  }
  /// Makes symlink `rel` under the base to `target`, owned by `uid`.
  void link(const std::string& rel, const std::string& target, uid_t uid = 0) {
    const std::string path = base_ + "/" + rel;
    ASSERT_EQ(::symlink(target.c_str(), path.c_str()), 0) << path;
    ASSERT_EQ(::lchown(path.c_str(), uid, uid), 0) << path;
  }
  /// Creates (and removes again) a control socket in directory `rel`;
  /// returns "" when that worked, else the error.
  std::string create_in(const std::string& rel) {
    auto s = create_control_socket(base_ + "/" + rel + "/c.sock");
    if (!s.ok()) return s.error().message;
    remove_control_socket(*s);
    return "";
  }
  std::string base_;
};

TEST_F(ControlDirTree, ADirectoryAboveOfAnotherUserIsRefusedWithItsOwnerAndMode) {
  // The attack: uid 65534 owns `theirs`, root owns `theirs/ok`; 65534 could
  // rename ok away and make an ok of its own, socket included.
  ASSERT_NO_FATAL_FAILURE(dir("theirs", 0755, 65534));
  ASSERT_NO_FATAL_FAILURE(dir("theirs/ok", 0755));
  EXPECT_EQ(create_in("theirs/ok"),
            base_ + "/theirs, a directory on the way to " + base_ +
                "/theirs/ok (the control socket's directory), belongs to uid 65534 (mode 0755), "
                "who could rename what lies below it and put their own directory and socket in "
                "its place; every directory on the way to the control socket must belong to "
                "root or to uid 0: pass another -c PATH (such as one in /run/sluice), or chown " +
                base_ + "/theirs");
  EXPECT_NE(::access((base_ + "/theirs/ok/c.sock").c_str(), F_OK), 0) << "created there";
  // Deeper below it, the same.
  ASSERT_NO_FATAL_FAILURE(dir("theirs/ok/deeper", 0755));
  EXPECT_NE(create_in("theirs/ok/deeper").find(base_ + "/theirs, a directory on the way to"),
            std::string::npos);
  // The pesto socket is made by the same code, and says so.
  auto pesto = create_control_socket(base_ + "/theirs/ok/p.sock", kPestoRole);
  ASSERT_FALSE(pesto.ok());
  EXPECT_NE(pesto.error().message.find("(the pesto socket's directory), belongs to uid 65534"),
            std::string::npos)
      << pesto.error().message;
  EXPECT_NE(pesto.error().message.find("pass another --pesto-socket PATH"), std::string::npos);
}

TEST_F(ControlDirTree, ADirectoryAboveWritableByOthersIsRefusedUnlessSticky) {
  ASSERT_NO_FATAL_FAILURE(dir("shared", 0775));
  ASSERT_NO_FATAL_FAILURE(dir("shared/ok", 0755));
  EXPECT_EQ(create_in("shared/ok"),
            base_ + "/shared, a directory on the way to " + base_ +
                "/shared/ok (the control socket's directory), is writable by other users (mode "
                "0775), who could rename what lies below it and put their own directory and "
                "socket in its place; run chmod go-w (or chmod +t) on it, or pass another -c "
                "PATH");
  // Sticky, like /tmp: only an entry's owner (root here) may rename it.
  ASSERT_NO_FATAL_FAILURE(dir("sticky", 01777));
  ASSERT_NO_FATAL_FAILURE(dir("sticky/ok", 0755));
  EXPECT_EQ(create_in("sticky/ok"), "");
}

TEST_F(ControlDirTree, DirectoriesOfSluicedsOwnUserPass) {
  // A rootless sluiced in its $XDG_RUNTIME_DIR or a test's mkdtemp
  // directory: its own directories, with root's above them.
  ASSERT_NO_FATAL_FAILURE(dir("user", 0700, 1000));
  ASSERT_NO_FATAL_FAILURE(dir("user/sluice", 0700, 1000));
  UniqueFd fd(::open((base_ + "/user/sluice").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  auto as_owner = check_control_dir_chain(fd.get(), base_ + "/user/sluice", 1000);
  EXPECT_TRUE(as_owner.ok()) << as_owner.error().message;
  // For root, uid 1000 is another user.
  auto as_root = check_control_dir_chain(fd.get(), base_ + "/user/sluice", 0);
  ASSERT_FALSE(as_root.ok());
  EXPECT_NE(as_root.error().message.find(base_ + "/user/sluice, the control socket's directory, "
                                                 "belongs to uid 1000 (mode 0700)"),
            std::string::npos)
      << as_root.error().message;
}

TEST_F(ControlDirTree, SymlinksAreResolvedAndTheirDirectoriesAndOwnersChecked) {
  ASSERT_NO_FATAL_FAILURE(dir("good", 0755));
  ASSERT_NO_FATAL_FAILURE(dir("theirs", 0755, 65534));
  ASSERT_NO_FATAL_FAILURE(dir("theirs/ok", 0755));
  // Root's link to root's directory: fine.
  ASSERT_NO_FATAL_FAILURE(link("to-good", base_ + "/good"));
  EXPECT_EQ(create_in("to-good"), "");
  // Root's link into the other user's tree: the real path is checked.
  ASSERT_NO_FATAL_FAILURE(link("to-theirs", base_ + "/theirs/ok"));
  const std::string real = create_in("to-theirs");
  EXPECT_NE(real.find(base_ + "/theirs, a directory on the way to " + base_ +
                      "/to-theirs (real "
                      "path " +
                      base_ +
                      "/theirs/ok) (the control socket's directory), "
                      "belongs to uid 65534"),
            std::string::npos)
      << real;
  // A link in the other user's directory, to root's: they could point it
  // elsewhere.
  ASSERT_NO_FATAL_FAILURE(link("theirs/link", base_ + "/good"));
  const std::string via = create_in("theirs/link");
  EXPECT_NE(via.find(base_ + "/theirs, a directory on the way to " + base_ + "/theirs/link"),
            std::string::npos)
      << via;
  // The other user's link in a sticky directory: its owner may replace it.
  ASSERT_NO_FATAL_FAILURE(dir("sticky", 01777));
  ASSERT_NO_FATAL_FAILURE(link("sticky/link", base_ + "/good", 65534));
  EXPECT_EQ(create_in("sticky/link"),
            base_ + "/sticky/link, a symbolic link on the way to " + base_ +
                "/sticky/link (real "
                "path " +
                base_ +
                "/good) (the control socket's directory), belongs to uid "
                "65534, who could point it elsewhere; pass another -c PATH (such as one in "
                "/run/sluice), or give the real path");
}

/// In a child: loads a filter that fails every chmod with EPERM, sets the
/// umask to `umask_value`, and creates the control socket at `path`. Exits 0
/// when that worked, 1 when it failed (the message on stderr), 2 when the
/// filter could not be loaded.
[[noreturn]] void create_without_chmod(const std::string& path, mode_t umask_value) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) ::_exit(2);
  for (const char* name : {"chmod", "fchmod", "fchmodat"}) {
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), seccomp_syscall_resolve_name(name), 0) != 0) {
      ::_exit(2);
    }
  }
  if (seccomp_load(ctx) != 0) ::_exit(2);
  ::umask(umask_value);
  auto s = create_control_socket(path);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.error().message.c_str());
    ::_exit(1);
  }
  s->listen_fd.release();  // the file stays for the parent to check
  ::_exit(0);
}

TEST_F(ControlSocketTest, SocketIsBornWithItsModeWithoutAnyChmod) {
  // Whatever the process umask, the socket is 0660 straight from bind(): a
  // chmod by path after it is what a swapped-in symlink would redirect.
  for (mode_t umask_value : {mode_t{0}, mode_t{022}, mode_t{077}}) {
    SCOPED_TRACE(umask_value);
    ::unlink(path_.c_str());
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) create_without_chmod(path_, umask_value);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0) << "the control socket needed a chmod (or failed)";
    struct stat st;
    ASSERT_EQ(::lstat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0660u);
  }
}

// --- the audit log (--audit-log FILE) ---
//
// Security review item 8: the file was opened following symlinks, and a FIFO
// or a device was taken as the log (a FIFO without a reader hung sluiced in
// open). Now: O_NOFOLLOW|O_NONBLOCK, then only a regular file of sluiced's
// user, with one name and no group or other write bit.

class AuditLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluice-audit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  /// Returns `name` inside the test directory.
  std::string at(const char* name) const { return dir_ + "/" + name; }

  /// Runs open_audit_log(`path`) in a child that a hang cannot outlive
  /// (SIGALRM after 5 s), and expects it to be refused with an error that
  /// contains `needle`.
  void expect_refused(const std::string& path, const std::string& needle) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::alarm(5);
      auto fd = open_audit_log(path);
      if (fd.ok()) ::_exit(10);
      std::fprintf(stderr, "%s\n", fd.error().message.c_str());
      ::_exit(fd.error().message.find(needle) != std::string::npos &&
                      fd.error().message.find('\n') == std::string::npos
                  ? 0
                  : 11);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_FALSE(WIFSIGNALED(status))
        << path << ": open_audit_log hung (signal " << WTERMSIG(status) << ")";
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_NE(WEXITSTATUS(status), 10) << path << " was accepted as the audit log";
    EXPECT_EQ(WEXITSTATUS(status), 0) << path << ": the error does not say \"" << needle << "\"";
  }

  std::string dir_;
};

TEST_F(AuditLogTest, CreatesAnAppendOnlyBlockingFileOfMode0600) {
  auto fd = open_audit_log(at("audit.log"));
  ASSERT_TRUE(fd.ok()) << fd.error().message;
  struct stat st;
  ASSERT_EQ(::fstat(fd->get(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0077, 0u);
  const int flags = ::fcntl(fd->get(), F_GETFL);
  EXPECT_NE(flags & O_APPEND, 0);
  EXPECT_EQ(flags & O_NONBLOCK, 0) << "the sink blocks as it always did";
  EXPECT_EQ(flags & O_ACCMODE, O_WRONLY);
  EXPECT_NE(::fcntl(fd->get(), F_GETFD) & FD_CLOEXEC, 0);
  // An existing log is opened again and appended to.
  ASSERT_EQ(::write(fd->get(), "a\n", 2), 2);
  auto again = open_audit_log(at("audit.log"));
  ASSERT_TRUE(again.ok()) << again.error().message;
  ASSERT_EQ(::write(again->get(), "b\n", 2), 2);
  ASSERT_EQ(::fstat(again->get(), &st), 0);
  EXPECT_EQ(st.st_size, 4);
}

TEST_F(AuditLogTest, SymlinkIsRefusedAndNotFollowed) {
  const std::string target = at("target");
  ASSERT_EQ(::symlink(target.c_str(), at("dangling").c_str()), 0);
  expect_refused(at("dangling"), "is a symbolic link, which sluiced does not follow");
  EXPECT_NE(::access(target.c_str(), F_OK), 0) << "the symlink's target was created";
  UniqueFd existing(::open(target.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(existing.valid());
  ASSERT_EQ(::symlink(target.c_str(), at("link").c_str()), 0);
  expect_refused(at("link"), "is a symbolic link");
}

TEST_F(AuditLogTest, FifoIsRefusedWithOrWithoutAReader) {
  ASSERT_EQ(::mkfifo(at("fifo").c_str(), 0600), 0);
  expect_refused(at("fifo"), "--audit-log needs a regular file");  // no reader: ENXIO at once
  UniqueFd reader(::open(at("fifo").c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  ASSERT_TRUE(reader.valid());
  expect_refused(at("fifo"), "is a FIFO; --audit-log needs a regular file");
}

TEST_F(AuditLogTest, DeviceIsRefused) {
  expect_refused("/dev/null", "/dev/null is a character device; --audit-log needs a regular file");
}

TEST_F(AuditLogTest, FileWritableByOthersIsRefused) {
  for (mode_t mode : {mode_t{0620}, mode_t{0602}, mode_t{0666}}) {
    const std::string path = at("shared.log");
    ::unlink(path.c_str());
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
    ASSERT_EQ(::fchmod(fd.get(), mode), 0);
    expect_refused(path, "is writable by other users");
  }
}

TEST_F(AuditLogTest, FileWithASecondNameIsRefused) {
  UniqueFd fd(::open(at("one").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::link(at("one").c_str(), at("two").c_str()), 0);
  expect_refused(at("one"), "has 2 names (hard links)");
}

TEST_F(AuditLogTest, AnotherUsersFileIsRefused) {
  UniqueFd fd(::open(at("theirs").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd.valid());
  if (::fchown(fd.get(), 65534, 65534) != 0) GTEST_SKIP() << "cannot chown here (not root)";
  expect_refused(at("theirs"), "belongs to uid 65534, not to uid");
}

// Security review item 3: the worker links its run to the log's
// last line through a read-only descriptor of the very same file.

TEST_F(AuditLogTest, TheTailDescriptorIsTheSameFileReadOnly) {
  auto sink = open_audit_log(at("audit.log"));
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  ASSERT_EQ(::write(sink->get(), "line\n", 5), 5);
  auto tail = open_audit_tail(at("audit.log"), *sink);
  ASSERT_TRUE(tail.ok()) << tail.error().message;
  const int flags = ::fcntl(tail->get(), F_GETFL);
  EXPECT_EQ(flags & O_ACCMODE, O_RDONLY);
  EXPECT_NE(::fcntl(tail->get(), F_GETFD) & FD_CLOEXEC, 0);
  char buf[8] = {};
  EXPECT_EQ(::pread(tail->get(), buf, sizeof(buf), 0), 5);
  EXPECT_EQ(std::string(buf), "line\n");
  EXPECT_EQ(::write(tail->get(), "x", 1), -1);  // it cannot write
}

TEST_F(AuditLogTest, ATailDescriptorOfAReplacedFileIsRefused) {
  auto sink = open_audit_log(at("audit.log"));
  ASSERT_TRUE(sink.ok()) << sink.error().message;
  // Between the two opens, the name comes to mean another file.
  ASSERT_EQ(::rename(at("audit.log").c_str(), at("old.log").c_str()), 0);
  UniqueFd other(::open(at("audit.log").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(other.valid());
  auto tail = open_audit_tail(at("audit.log"), *sink);
  ASSERT_FALSE(tail.ok());
  EXPECT_NE(tail.error().message.find("was replaced by another file while sluiced opened it"),
            std::string::npos)
      << tail.error().message;
  // A symlink in its place is not followed either.
  ASSERT_EQ(::unlink(at("audit.log").c_str()), 0);
  ASSERT_EQ(::symlink(at("old.log").c_str(), at("audit.log").c_str()), 0);
  tail = open_audit_tail(at("audit.log"), *sink);
  ASSERT_FALSE(tail.ok());
  EXPECT_NE(tail.error().message.find("cannot open audit log"), std::string::npos);
}

/// Opens `path` as the audit log, makes it write-only for its owner, and
/// returns 0 when open_audit_tail() refuses it with EACCES and what to do;
/// 1 to 3 when a step fails.
int refuses_a_write_only_log(const std::string& path) {
  auto sink = open_audit_log(path);
  if (!sink.ok() || ::fchmod(sink->get(), 0200) != 0) return 1;
  auto tail = open_audit_tail(path, *sink);
  if (tail.ok()) return 2;
  std::fprintf(stderr, "%s\n", tail.error().message.c_str());
  const std::string& m = tail.error().message;
  return m.find("for reading: EACCES") != std::string::npos &&
                 m.find("(chmod u+r)") != std::string::npos
             ? 0
             : 3;
}

TEST_F(AuditLogTest, AFileSluicedCannotReadIsRefusedWithWhatToDo) {
  if (::geteuid() != 0) {
    EXPECT_EQ(refuses_a_write_only_log(at("audit.log")), 0);
    return;
  }
  // Root reads any file: the check runs as another user, in a child, on a
  // file of its own in the world-writable /tmp.
  const std::string path = "/tmp/sluice-audit-unreadable-" + std::to_string(::getpid());
  ::unlink(path.c_str());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setgid(65534) != 0 || ::setuid(65534) != 0) {
      ::_exit(10);
    }
    ::_exit(refuses_a_write_only_log(path));
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ::unlink(path.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 10) GTEST_SKIP() << "cannot become uid 65534 here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: open, 2: accepted, 3: the message";
}

// --- capability read-back ---

constexpr const char* kStatusTemplate =
    "Name:\tsluiced\nCapInh:\t0000000000000000\nCapPrm:\t%s\nCapEff:\t%s\n"
    "CapBnd:\t%s\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";

std::string status_with(const char* prm, const char* eff, const char* bnd) {
  char buf[512];
  std::snprintf(buf, sizeof(buf), kStatusTemplate, prm, eff, bnd);
  return buf;
}

TEST(Capabilities, ParsesStatus) {
  auto caps =
      parse_cap_status(status_with("0000000000000400", "0000000000000400", "000001ffffffffff"));
  ASSERT_TRUE(caps.ok()) << caps.error().message;
  EXPECT_EQ(caps->prm, 0x400u);
  EXPECT_EQ(caps->eff, 0x400u);
  EXPECT_EQ(caps->bnd, 0x1ffffffffffu);
  EXPECT_EQ(caps->amb, 0u);
  EXPECT_FALSE(parse_cap_status("CapEff:\t0\n").ok());  // the other sets missing
  EXPECT_FALSE(parse_cap_status(status_with("xyz", "0", "0")).ok());
}

TEST(Capabilities, OnlyNetBindServiceMayRemain) {
  CapSets caps;
  caps.eff = caps.prm = kBindCapMask;
  EXPECT_TRUE(check_caps_dropped(caps, true).ok());
  caps.bnd = 0x1ffffffffffULL;  // a full bounding set: fine when it could not be cleared
  EXPECT_TRUE(check_caps_dropped(caps, false).ok());
  auto r = check_caps_dropped(caps, true);  // ...but not when it should have been
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("CapBnd"), std::string::npos);
  caps.bnd = 0;
  caps.prm |= 1ULL << 21;  // CAP_SYS_ADMIN left behind
  r = check_caps_dropped(caps, false);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("CapPrm"), std::string::npos);
  caps.prm = kBindCapMask;
  caps.amb = 1;
  EXPECT_FALSE(check_caps_dropped(caps, false).ok());
}

// --- fd placement ---

TEST(PlaceFds, SwapsCollidingFdsIntoTheirTargets) {
  // Two fds placed onto each other's numbers: the naive dup2 order would
  // overwrite one of them.
  int a_target = 0, b_target = 0;
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd b(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  a_target = b.get();
  b_target = a.get();
  FdPlacement placements[] = {{&a, a_target}, {&b, b_target}};
  auto r = place_fds(placements);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(a.get(), a_target);
  EXPECT_EQ(b.get(), b_target);
  int type = 0;
  socklen_t len = sizeof(type);
  EXPECT_EQ(::getsockopt(b.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);  // b is the socket
  EXPECT_NE(::getsockopt(a.get(), SOL_SOCKET, SO_TYPE, &type, &len), 0);  // a is /dev/null
  EXPECT_NE(::fcntl(a.get(), F_GETFD) & FD_CLOEXEC, 0);
}

// --- unblock_log: stage 1's log that never blocks (security review item 15) ---

/// Runs `body` in a child whose fds 1 and 2 are `sink`, and returns its exit
/// status, or -1 when it did not exit within 10 s (it blocked: killed).
int in_child_writing_to(int sink, const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::dup2(sink, 1) != 1 || ::dup2(sink, 2) != 2) ::_exit(90);
    ::_exit(body());
  }
  for (int i = 0; i < 1000; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid)
      return WIFEXITED(status) ? WEXITSTATUS(status) : -2;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  return -1;
}

/// In the child: logs 2,000 lines of 100 bytes to fd 2 (far more than a
/// pipe or a small socket buffer holds, which nobody reads). Returns 0 when
/// it finished and counted dropped lines, 1 when nothing was dropped.
int log_a_lot() {
  log_init("flood", 2, LogLevel::kInfo);
  const std::string text(90, 'x');
  for (int i = 0; i < 2000; ++i) LOG_INFO("%s", text.c_str());
  return log_dropped_total() > 0 ? 0 : 1;
}

TEST(UnblockLog, APipeGetsANewNonBlockingDescriptionAndTheSharedOneStaysBlocking) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);  // blocking, as a shell makes it
  UniqueFd reader(p[0]), writer(p[1]);
  int status = in_child_writing_to(writer.get(), [] {
    auto done = unblock_log();
    if (!done || done->find("pipe or terminal") == std::string::npos) return 10;
    if ((::fcntl(2, F_GETFL) & O_NONBLOCK) == 0) return 11;
    // fd 1 shares the description the shell made: it stays blocking.
    if ((::fcntl(1, F_GETFL) & O_NONBLOCK) != 0) return 12;
    return log_a_lot();
  });
  EXPECT_EQ(status, 0) << "10: not reopened, 11: blocking, 12: the shared description changed, "
                          "1: nothing dropped, -1: the child blocked";
  EXPECT_EQ(::fcntl(writer.get(), F_GETFL) & O_NONBLOCK, 0);
}

TEST(UnblockLog, ASocketIsWrittenWithoutWaitingAndLeftBlocking) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd reader(sv[0]), writer(sv[1]);
  const int small = 4096;
  ASSERT_EQ(::setsockopt(writer.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  int status = in_child_writing_to(writer.get(), [] {
    auto done = unblock_log();
    if (!done || done->find("socket") == std::string::npos) return 10;
    if ((::fcntl(2, F_GETFL) & O_NONBLOCK) != 0) return 12;  // the description is shared
    return log_a_lot();
  });
  EXPECT_EQ(status, 0) << "10: not seen as a socket, 12: O_NONBLOCK set on a shared "
                          "description, 1: nothing dropped, -1: the child blocked";
}

TEST(UnblockLog, AFileIsLeftAsItIs) {
  char path[] = "/tmp/sluice-unblock-log-XXXXXX";
  UniqueFd file(::mkstemp(path));
  ASSERT_TRUE(file.valid());
  ::unlink(path);
  const int before = ::fcntl(file.get(), F_GETFL);
  int status = in_child_writing_to(file.get(), [] {
    auto done = unblock_log();
    return done && done->find("file") != std::string::npos ? 0 : 10;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(::fcntl(file.get(), F_GETFL), before);
}

}  // namespace
}  // namespace sluice
