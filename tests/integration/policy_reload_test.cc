// Policy reload end to end: SIGHUP makes sluiced's policy reader re-read the
// --policy file; the new bind and control lines apply to the next commit and
// the next client, the rules in force keep forwarding and are reported when
// they no longer pass, a broken file keeps the old policy, and the reader
// itself holds nothing. Every wait is bounded (wait_for_log: 10 s).
#include <dirent.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTargetPort = 18000;

/// A rule from 127.0.0.1:`port` to the target.
std::string rule(uint16_t port) {
  return "127.0.0.1/" + std::to_string(port) + ":" + std::to_string(kTargetPort);
}

/// Sends SIGHUP and waits until both sluiced and the worker say the policy
/// is in force (`reloads`: the how-many-th reload this is).
void reload(Daemon& d, int reloads) {
  d.signal(SIGHUP);
  size_t seen = 0;
  for (int i = 0; i < 200 && seen < static_cast<size_t>(reloads); ++i) {
    const std::string log = d.log();
    seen = 0;
    for (size_t pos = log.find("in force for the next commit:"); pos != std::string::npos;
         pos = log.find("in force for the next commit:", pos + 1)) {
      ++seen;
    }
    if (seen < static_cast<size_t>(reloads)) usleep(50 * 1000);
  }
  ASSERT_GE(seen, static_cast<size_t>(reloads)) << d.log();
}

/// What most tests here start from: a policy file, the target listener, and
/// sluiced started with --policy on that file and one rule, 18080 to the
/// target. The members are destroyed in reverse order: sluiced stops first.
struct PolicyReload : ::testing::Test {
  /// Writes `text` as the policy file, listens on the target port and starts
  /// sluiced with --policy and rule(18080). Fails the test (a fatal failure,
  /// so callers wrap it in ASSERT_NO_FATAL_FAILURE) when sluiced does not
  /// come up.
  void start_with_policy(const std::string& text) {
    policy.rewrite(text);
    target = listen_tcp("127.0.0.1", kTargetPort);
    d.start({"--policy", policy.path(), "-t", rule(18080)});
    ASSERT_TRUE(d.wait_ready()) << d.log();
  }

  PolicyFileFixture policy{""};  // empty until start_with_policy writes it
  UniqueFd target;
  Daemon d;
};

TEST_F(PolicyReload, TighteningKeepsTheRuleInForceAndReportsIt) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18082 127.0.0.1\n"));

  policy.rewrite("# 18080 is retired\nbind allow tcp 18081 127.0.0.1\n");
  reload(d, 1);
  // The next commit of a port the new policy denies fails, naming it.
  RunResult commit = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(commit.status, 1) << commit.err;
  EXPECT_NE(commit.err.find("policy-denied"), std::string::npos) << commit.err;
  EXPECT_NE(commit.err.find("denied by " + policy.path() + ": no `bind` line matches"),
            std::string::npos)
      << commit.err;
  // The rule in force keeps forwarding, and is reported as no longer passing.
  expect_forwarding(target.get(), 18080, d);
  RunResult stats = d.ctl({"--stats"});
  ASSERT_EQ(stats.status, 0) << stats.err;
  EXPECT_NE(stats.out.find("policy: reloaded 1 time; 1 rule in force no longer passes"),
            std::string::npos)
      << stats.out;
  EXPECT_NE(stats.out.find("port 18080: in force, but the reloaded bind policy"), std::string::npos)
      << stats.out;
  RunResult json = d.ctl({"--stats", "--json"});
  ASSERT_EQ(json.status, 0) << json.err;
  EXPECT_NE(json.out.find("\"policyReloads\":1"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"policyFailures\":[{"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"port\":18080"), std::string::npos) << json.out;
  EXPECT_NE(d.log().find("policy reload: HOST rule 0"), std::string::npos) << d.log();
  // A commit that drops the rule clears the report.
  RunResult drop = d.ctl({"-t", rule(18081)});
  EXPECT_EQ(drop.status, 0) << drop.err;
  stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("every rule in force passes it"), std::string::npos) << stats.out;
}

// A commit that changes a rule on a port the reloaded bind policy denies is
// judged as a new rule, though its socket is kept; one that keeps the rule
// as it is passes. The change was once applied, and the tables it made were
// then refused when a restarted worker resumed them.
TEST_F(PolicyReload, AChangedRuleOnAPortTheReloadDeniesIsJudgedAsANewOne) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18082 127.0.0.1\n"));
  policy.rewrite("bind allow tcp 18081-18082 127.0.0.1\n");
  reload(d, 1);
  const std::string denial = "denied by " + policy.path() + ": no `bind` line matches";
  RunResult retarget = d.ctl({"-t", "127.0.0.1/18080:18001"});
  EXPECT_EQ(retarget.status, 1) << retarget.err;
  EXPECT_NE(retarget.err.find("policy-denied"), std::string::npos) << retarget.err;
  EXPECT_NE(retarget.err.find(denial), std::string::npos) << retarget.err;
  EXPECT_NE(retarget.err.find("18080"), std::string::npos) << retarget.err;
  RunResult widen = d.ctl({"-t", "127.0.0.1/18080-18081:18000-18001"});
  EXPECT_EQ(widen.status, 1) << widen.err;
  EXPECT_NE(widen.err.find(denial), std::string::npos) << widen.err;
  // Nothing changed, and a commit that keeps the rule as it is passes.
  expect_forwarding(target.get(), 18080, d);
  RunResult keep = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(keep.status, 0) << keep.err;
  expect_forwarding(target.get(), 18081, d);
  expect_forwarding(target.get(), 18080, d);
}

TEST_F(PolicyReload, LooseningAllowsADeniedCommit) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080 127.0.0.1\n"));
  RunResult denied = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(denied.status, 1) << denied.err;

  policy.rewrite("bind allow tcp 18080-18081 127.0.0.1\n");
  reload(d, 1);
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18081, d);
  expect_forwarding(target.get(), 18080, d);
}

TEST_F(PolicyReload, BrokenFileKeepsTheOldPolicy) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));

  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\nbind allow tcp 0 *\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: ")) << d.log();
  EXPECT_NE(d.log().find(policy.path() + " line 2: bad port \"0\""), std::string::npos) << d.log();
  EXPECT_NE(d.log().find("the policy loaded before stays in force"), std::string::npos);
  // The old policy decides: 18081 is allowed, 18082 is not.
  RunResult denied = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(denied.status, 1) << denied.err;
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);

  // Fixed, it loads.
  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\n");
  reload(d, 1);
  RunResult now = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(now.status, 0) << now.err;
}

TEST_F(PolicyReload, AFifoInPlaceOfTheFileFailsTheReloadAndTheNextReloadWorks) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));

  // A FIFO renamed over the file: nobody ever writes to it.
  const std::string fifo = policy.path() + ".fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0) << std::strerror(errno);
  ASSERT_EQ(::rename(fifo.c_str(), policy.path().c_str()), 0) << std::strerror(errno);
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: ")) << d.log();
  EXPECT_NE(
      d.log().find("policy file " + policy.path() + " is a FIFO (named pipe), not a regular file"),
      std::string::npos)
      << d.log();
  EXPECT_NE(d.log().find("give --policy a regular file"), std::string::npos) << d.log();
  // The old policy still decides.
  RunResult denied = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(denied.status, 1) << denied.err;

  // A regular file in its place loads on the next SIGHUP: the reader is free.
  policy.rewrite("bind allow tcp 18080-18082 127.0.0.1\n");
  reload(d, 1);
  RunResult allowed = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);
}

TEST_F(PolicyReload, ControlLinesApplyToTheNextClient) {
  // By name: the reader resolves it, sluiced gets the number.
  const struct passwd* me = ::getpwuid(::getuid());
  const std::string who = me != nullptr ? me->pw_name : std::to_string(::getuid());
  ASSERT_NO_FATAL_FAILURE(start_with_policy("control read uid=" + who + "\n"));
  RunResult refused = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(refused.status, 3) << refused.err;

  policy.rewrite("control commit uid=" + who + "\n");
  reload(d, 1);
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;

  policy.rewrite("control read uid=" + who + "\n");
  reload(d, 2);
  refused = d.ctl({"-A", "-t", rule(18082)});
  EXPECT_EQ(refused.status, 3) << refused.err;
  EXPECT_NE(refused.err.find(policy.path() +
                             " line 1 (control read uid=" + std::to_string(::getuid()) + ")"),
            std::string::npos)
      << refused.err;
  expect_forwarding(target.get(), 18081, d);
}

TEST_F(PolicyReload, WithoutPolicyThereIsNothingToReload) {
  target = listen_tcp("127.0.0.1", kTargetPort);
  d.start({"-t", rule(18080)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "SIGHUP: nothing to reload")) << d.log();
  expect_forwarding(target.get(), 18080, d);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

/// The pid of the child of `parent` whose comm is `comm`, or -1.
pid_t child_with_comm(pid_t parent, const std::string& comm) {
  std::ifstream children("/proc/" + std::to_string(parent) + "/task/" + std::to_string(parent) +
                         "/children");
  pid_t child;
  while (children >> child) {
    std::ifstream in("/proc/" + std::to_string(child) + "/comm");
    std::string name;
    std::getline(in, name);
    if (name == comm) return child;
  }
  return -1;
}

TEST_F(PolicyReload, TheReaderHoldsNothing) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080 127.0.0.1\n"));
  const pid_t outer = child_with_comm(d.pid(), "sluiced-policy");
  ASSERT_GT(outer, 0) << d.log();
  // The reader works in a PID namespace of its own, as its first process: a
  // child of the reader sluiced forked, which only waits for it.
  const pid_t reader = child_with_comm(outer, "sluiced-policy");
  ASSERT_GT(reader, 0) << d.log();
  const std::string nspid = proc_status_field(reader, "NSpid");  // "OUTER ... 1"
  EXPECT_EQ(nspid.substr(nspid.find_last_of(" \t") + 1), "1") << nspid;
  for (pid_t p : {outer, reader}) {
    EXPECT_EQ(proc_status_field(p, "CapEff"), "0000000000000000") << p;
    EXPECT_EQ(proc_status_field(p, "CapBnd"), "0000000000000000") << p;
    EXPECT_EQ(proc_status_field(p, "NoNewPrivs"), "1") << p;
  }
  EXPECT_EQ(proc_status_field(reader, "CapEff"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "CapPrm"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "CapBnd"), "0000000000000000");
  EXPECT_EQ(proc_status_field(reader, "NoNewPrivs"), "1");
  // Its channel and the standard fds, nothing of sluiced's.
  DIR* dir = ::opendir(("/proc/" + std::to_string(reader) + "/fd").c_str());
  ASSERT_NE(dir, nullptr);
  for (struct dirent* e = ::readdir(dir); e != nullptr; e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    EXPECT_LE(std::stoi(e->d_name), 3) << "fd " << e->d_name << " is open in the reader";
  }
  ::closedir(dir);
  // Its root is read-only (its own mount namespace).
  std::ifstream mounts("/proc/" + std::to_string(reader) + "/mountinfo");
  std::string line;
  bool root_ro = false;
  while (std::getline(mounts, line)) {
    std::istringstream f(line);
    std::string id, parent, dev, root, point, opts;
    f >> id >> parent >> dev >> root >> point >> opts;
    if (point == "/") root_ro = opts.rfind("ro", 0) == 0;
  }
  EXPECT_TRUE(root_ro) << slurp("/proc/" + std::to_string(reader) + "/mountinfo");
  // The reader that works is under its seccomp filter (mode 2); the one
  // that only waits for it is not.
  EXPECT_EQ(proc_status_field(reader, "Seccomp"), "2");
  EXPECT_EQ(proc_status_field(outer, "Seccomp"), "0");
  // It still reads and answers.
  reload(d, 1);
}

TEST_F(PolicyReload, AReaderThatDiedFailsTheReloadAndNothingElse) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));
  const pid_t reader = child_with_comm(d.pid(), "sluiced-policy");
  ASSERT_GT(reader, 0) << d.log();
  const pid_t child = child_with_comm(reader, "sluiced-policy");  // in its PID namespace
  ASSERT_EQ(::kill(reader, SIGKILL), 0);  // its child dies with it (PDEATHSIG)
  // Bounded wait until the child is gone too (or a zombie): otherwise it
  // could still answer the reload below.
  for (int i = 0; i < 200 && child > 0; ++i) {
    const std::string state = proc_status_field(child, "State");
    if (state.empty() || state[0] == 'Z') break;
    usleep(50 * 1000);
  }
  // sluiced says so at once, not only at the next SIGHUP.
  ASSERT_TRUE(wait_for_log(d, "the policy reader exited")) << d.log();
  EXPECT_NE(d.log().find("a SIGHUP can no longer reload"), std::string::npos) << d.log();
  policy.rewrite("bind allow tcp 18080 127.0.0.1\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: the policy reader is gone")) << d.log();
  // The old policy stays, and sluiced serves on.
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST_F(PolicyReload, AWorkerStartedAfterAReloadJudgesByTheReloadedPolicy) {
  // `target` lines are the worker's alone to enforce (sluiced never sees a
  // target), so a worker that replaced a dead one after a reload must have
  // been given the reloaded text, not the one sluiced started with.
  const std::string bind = "bind allow tcp 18080-18081 127.0.0.1\n";
  ASSERT_NO_FATAL_FAILURE(start_with_policy(bind + "target allow tcp 127.0.0.0/8 18000-18010\n"));
  policy.rewrite(bind +
                 "target deny tcp 127.0.0.1 18001\ntarget allow tcp 127.0.0.0/8 18000-18010\n");
  reload(d, 1);

  const pid_t first = d.worker_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(kill(first, SIGKILL), 0);
  pid_t next = -1;
  for (int i = 0; i < 400 && (next <= 0 || next == first); ++i) {
    usleep(25 * 1000);
    next = d.worker_pid();
  }
  ASSERT_TRUE(next > 0 && next != first) << "no new worker\n" << d.log();
  ASSERT_TRUE(d.wait_ready()) << d.log();
  expect_forwarding(target.get(), 18080, d);

  RunResult denied = d.ctl({"-A", "-t", "127.0.0.1/18081:18001"});
  EXPECT_EQ(denied.status, 1) << denied.out << denied.err << d.log();
  EXPECT_NE(denied.err.find("which the target policy does not allow"), std::string::npos)
      << denied.err;
  EXPECT_NE(denied.err.find("target deny tcp 127.0.0.1 18001"), std::string::npos) << denied.err;
}

/// Binds and listens on an AF_UNIX stream socket at `path`; empty on failure.
UniqueFd listen_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  if (!fd.valid() || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd.get(), 8) != 0) {
    return UniqueFd();
  }
  return fd;
}

/// What the fake systemd-userdb service answers to one varlink request: the
/// user "vl-user" (uid 4300) and the group "vl-group" (gid 4301), and "no
/// such record" to everything else (other names, GetMemberships).
std::string userdb_answer(const std::string& request) {
  if (request.find("GetUserRecord") != std::string::npos &&
      request.find("\"vl-user\"") != std::string::npos) {
    return R"({"parameters":{"record":{"userName":"vl-user","uid":4300,"gid":4300,)"
           R"("disposition":"regular","service":"io.sluice.Test"},"incomplete":false}})";
  }
  if (request.find("GetGroupRecord") != std::string::npos &&
      request.find("\"vl-group\"") != std::string::npos) {
    return R"({"parameters":{"record":{"groupName":"vl-group","gid":4301,)"
           R"("disposition":"regular","service":"io.sluice.Test"},"incomplete":false}})";
  }
  return R"({"error":"io.systemd.UserDatabase.NoRecordFound","parameters":{}})";
}

/// User databases of the test's own for the policy reader to ask. The test
/// runs in a mount namespace of its own, in which /etc/nsswitch.conf reads
/// `files sluicetest systemd`:
///  - sluicetest, the module of nss_test_module.cc (found through
///    LD_LIBRARY_PATH, which sluiced and its reader inherit), asks a
///    "daemon" thread here over AF_UNIX, as sss, nslcd and nscd clients do;
///    it answers with the id 4242;
///  - systemd, the system's real libnss_systemd, asks the varlink services
///    in /run/systemd/userdb/ (a tmpfs over /run here), where the same
///    thread serves io.sluice.Test (userdb_answer).
struct ReaderFilter : PolicyReload {
  void SetUp() override {
    ASSERT_EQ(::unshare(CLONE_NEWNS), 0) << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
        << std::strerror(errno);
    char tmpl[] = "/tmp/sluice-nss-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir = tmpl;
    std::ofstream(dir + "/nsswitch.conf")
        << "passwd: files sluicetest systemd\ngroup: files sluicetest systemd\n";
    ASSERT_EQ(
        ::mount((dir + "/nsswitch.conf").c_str(), "/etc/nsswitch.conf", nullptr, MS_BIND, nullptr),
        0)
        << std::strerror(errno);
    ASSERT_EQ(::mount("tmpfs", "/run", "tmpfs", 0, "mode=0755"), 0) << std::strerror(errno);
    ASSERT_EQ(::mkdir("/run/systemd", 0755), 0);
    ASSERT_EQ(::mkdir("/run/systemd/userdb", 0755), 0);
    ASSERT_EQ(::setenv("LD_LIBRARY_PATH", SLUICE_NSS_MODULE_DIR, 1), 0);
    ASSERT_EQ(::setenv("SLUICE_TEST_NSS_SOCKET", (dir + "/nss.sock").c_str(), 1), 0);
    module_daemon = listen_unix(dir + "/nss.sock");
    userdb = listen_unix("/run/systemd/userdb/io.sluice.Test");
    ASSERT_TRUE(module_daemon.valid() && userdb.valid()) << std::strerror(errno);
    daemon = std::thread([this] { serve(); });
  }

  void TearDown() override {
    stop = true;
    if (daemon.joinable()) daemon.join();
    // For the next test run in this process (ctest runs one per process).
    ::umount2("/run", MNT_DETACH);
    ::umount2("/etc/nsswitch.conf", MNT_DETACH);
    std::remove((dir + "/nss.sock").c_str());
    std::remove((dir + "/nsswitch.conf").c_str());
    ::rmdir(dir.c_str());
  }

  /// Both daemons, until the test ends (every wait is a slice of 100 ms, so
  /// `stop` is always seen).
  void serve() {
    while (!stop) {
      pollfd p[2] = {{module_daemon.get(), POLLIN, 0}, {userdb.get(), POLLIN, 0}};
      if (::poll(p, 2, 100) < 1) continue;
      if (p[0].revents & POLLIN) answer_module();
      if (p[1].revents & POLLIN) answer_userdb();
    }
  }

  /// One request of the sluicetest module: a name in, "4242" out.
  void answer_module() {
    UniqueFd conn(::accept4(module_daemon.get(), nullptr, nullptr, SOCK_CLOEXEC));
    char name[64] = {};
    if (!conn.valid() || ::recv(conn.get(), name, sizeof(name) - 1, 0) <= 0) return;
    ::send(conn.get(), "4242", 4, MSG_NOSIGNAL);
    ++asked;
  }

  /// One varlink connection of libnss_systemd: NUL-terminated JSON requests,
  /// each answered in turn, until the client closes or is silent for 1 s
  /// (at most 16 requests).
  void answer_userdb() {
    UniqueFd conn(::accept4(userdb.get(), nullptr, nullptr, SOCK_CLOEXEC));
    std::string pending;
    for (int i = 0; conn.valid() && i < 16; ++i) {
      size_t end;
      while ((end = pending.find('\0')) == std::string::npos) {
        pollfd p = {conn.get(), POLLIN, 0};
        char buf[4096];
        const ssize_t n = ::poll(&p, 1, 1000) == 1 ? ::recv(conn.get(), buf, sizeof(buf), 0) : 0;
        if (n <= 0) return;
        pending.append(buf, static_cast<size_t>(n));
      }
      const std::string answer = userdb_answer(pending.substr(0, end)) + '\0';
      pending.erase(0, end + 1);
      ::send(conn.get(), answer.data(), answer.size(), MSG_NOSIGNAL);
      ++userdb_asked;
    }
  }

  std::string dir;
  UniqueFd module_daemon, userdb;
  std::thread daemon;
  std::atomic<bool> stop{false};
  std::atomic<int> asked{0}, userdb_asked{0};
};

TEST_F(ReaderFilter, NamesFromSystemdUserdbResolveUnderTheFilter) {
  // The real libnss_systemd, as on a host that runs systemd: its varlink
  // client (directory listing, non-blocking AF_UNIX socket, ppoll).
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));
  policy.rewrite(
      "bind allow tcp 18080-18081 127.0.0.1\ncontrol read uid=vl-user gid=vl-group\n"
      "control commit uid=0\n");
  reload(d, 1);
  EXPECT_GE(userdb_asked.load(), 2) << "libnss_systemd never asked the service\n" << d.log();
  EXPECT_NE(d.log().find("policy " + policy.path() + " reloaded"), std::string::npos) << d.log();
  EXPECT_EQ(d.log().find("stopped by its seccomp filter"), std::string::npos) << d.log();
}

TEST_F(ReaderFilter, NamesFromAUserDatabaseDaemonResolveUnderTheFilter) {
  // As sss, nslcd and nscd clients do: an AF_UNIX socket to a daemon.
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));
  policy.rewrite(
      "bind allow tcp 18080-18081 127.0.0.1\ncontrol read uid=sluice-nss-unix "
      "gid=sluice-nss-unix\ncontrol commit uid=0\n");
  reload(d, 1);
  EXPECT_GE(asked.load(), 2) << "the module never asked its daemon\n" << d.log();
  EXPECT_NE(d.log().find("policy " + policy.path() + " reloaded"), std::string::npos) << d.log();
  EXPECT_EQ(d.log().find("stopped by its seccomp filter"), std::string::npos) << d.log();
}

TEST_F(ReaderFilter, AUserDatabaseThatGoesToTheNetworkStopsTheReaderSayingWhy) {
  ASSERT_NO_FATAL_FAILURE(start_with_policy("bind allow tcp 18080-18081 127.0.0.1\n"));
  policy.rewrite("bind allow tcp 18080-18081 127.0.0.1\ncontrol read uid=sluice-nss-inet\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "policy reload failed: the policy reader is gone")) << d.log();
  // Why, and what to do, is said before sluiced sees the reader go.
  const std::string log = d.log();
  const size_t why = log.find("the policy reader was stopped by its seccomp filter");
  ASSERT_NE(why, std::string::npos) << log;
  EXPECT_LT(why, log.find("policy reload failed")) << log;
  EXPECT_NE(log.find("as numbers (uid=1000, gid=27"), std::string::npos) << log;
  // The policy in force stays, forwarding goes on, and the next reload
  // fails at once, saying why.
  RunResult allowed = d.ctl({"-A", "-t", rule(18081)});
  EXPECT_EQ(allowed.status, 0) << allowed.err;
  expect_forwarding(target.get(), 18080, d);
  policy.rewrite("bind allow tcp 18080-18081 127.0.0.1\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "restart sluiced to reload", 2)) << d.log();
}

}  // namespace
}  // namespace sluice::test
