// The real sluiced binary, under its seccomp filter, with the fake worker of
// fake_worker.cc in place of sluice-worker (copied next to it, which is where
// sluiced looks). Covers start-up, the ready line, listeners opened through
// the filter, policy denials, errno replies, SIGTERM shutdown, the worker's
// exit code, and a violation. The real sluiced+worker pair is tested by the
// integration tests.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/check.h"
#include "base/unique_fd.h"
#include "tests/broker/free_ports.h"

namespace sluice {
namespace {

namespace fs = std::filesystem;

/// Limit: how long any wait in these tests may take (start-up takes ~10 ms).
constexpr auto kTimeout = std::chrono::seconds(10);

/// Returns the whole content of `path` ("" when missing).
std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
uint16_t free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(sin);
  CHECK(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), len) == 0);
  CHECK(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  return ntohs(sin.sin_port);
}

class SluicedProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sluiced-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::copy_file(SLUICED_BIN, dir_ / "sluiced");
    fs::copy_file(FAKE_WORKER_BIN, dir_ / "sluice-worker");
    control_ = (dir_ / "control.sock").string();
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    fs::remove_all(dir_);
  }

  /// Starts sluiced with `args`, stderr (and stdout) into log().
  void start(std::vector<std::string> args) {
    args.insert(args.begin(), {(dir_ / "sluiced").string(), "-c", control_});
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::string log = (dir_ / "stderr.log").string();
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd < 0 || ::dup2(fd, 1) < 0 || ::dup2(fd, 2) < 0) ::_exit(126);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }

  std::string log() const { return slurp(dir_ / "stderr.log"); }

  /// Waits until the log contains `needle`; fails the test after kTimeout.
  bool wait_for_log(const std::string& needle) {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (log().find(needle) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "no \"" << needle << "\" in the log:\n" << log();
    return false;
  }

  /// Waits for sluiced to exit; returns its exit status (-1 on a timeout or
  /// a death by signal, which the log then explains).
  int wait_exit() {
    auto deadline = std::chrono::steady_clock::now() + kTimeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        if (WIFEXITED(status)) return WEXITSTATUS(status);
        ADD_FAILURE() << "sluiced died by signal " << WTERMSIG(status) << "\n" << log();
        return -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "sluiced did not exit\n" << log();
    return -1;
  }

  /// Returns the value of `key` in /proc/<sluiced>/status.
  std::string proc_status(const std::string& key) {
    std::istringstream in(slurp("/proc/" + std::to_string(pid_) + "/status"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(key + ":", 0) == 0) {
        size_t v = line.find_first_not_of(" \t", key.size() + 1);
        return v == std::string::npos ? "" : line.substr(v);
      }
    }
    return "";
  }

  fs::path dir_;
  std::string control_;
  pid_t pid_ = -1;
};

TEST_F(SluicedProcessTest, ServesTheWorkerUnderItsFilterAndStopsOnSigterm) {
  const uint16_t port = free_port();
  const std::string open = "open-tcp4:" + std::to_string(port);
  start({"-t", "check-env", "-t", open, "-t", open, "--audit-log", (dir_ / "audit").string()});
  ASSERT_TRUE(wait_for_log("fake-worker: env ok"));
  EXPECT_NE(log().find("fake-worker: fd 8 is the audit log, read-only"), std::string::npos)
      << log();
  ASSERT_TRUE(wait_for_log("list the rules with: sluicectl " + control_));
  ASSERT_TRUE(wait_for_log("fake-worker: waiting"));
  // The first request succeeds; the second finds the port taken (EADDRINUSE).
  EXPECT_NE(log().find(open.substr(10) + " status 0 fds 1"), std::string::npos) << log();
  EXPECT_NE(log().find(open.substr(10) + " status " + std::to_string(EADDRINUSE) + " fds 0"),
            std::string::npos)
      << log();
  EXPECT_NE(log().find("fake-worker: hello flags=1"), std::string::npos) << log();

  struct stat st;
  ASSERT_EQ(::lstat(control_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
#if !defined(SLUICE_SANITIZE)
  EXPECT_EQ(proc_status("Seccomp"), "2");
#endif
  EXPECT_EQ(proc_status("NoNewPrivs"), "1");
  EXPECT_EQ(proc_status("CapEff"), "0000000000000400");  // root: only CAP_NET_BIND_SERVICE
  EXPECT_EQ(proc_status("CapPrm"), "0000000000000400");
  EXPECT_EQ(proc_status("CapBnd"), "0000000000000000");

  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
  EXPECT_NE(log().find("SIGTERM received"), std::string::npos) << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "control socket left behind";
  EXPECT_EQ(slurp(dir_ / "audit"), "fake-worker audit line\n");
}

TEST_F(SluicedProcessTest, WithoutAnAuditLogTheWorkersFd8IsDevNull) {
  // With stderr as the audit sink there is no file whose last line a run
  // could link to: the worker gets /dev/null there and says so in its start
  // record (tail "none").
  start({"-t", "check-env"});
  ASSERT_TRUE(wait_for_log("fake-worker: waiting"));
  EXPECT_NE(log().find("fake-worker: env ok"), std::string::npos) << log();
  EXPECT_NE(log().find("fake-worker: fd 8 is /dev/null"), std::string::npos) << log();
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
}

TEST_F(SluicedProcessTest, PassesTheDefaultRuleSet) {
  start({});
  ASSERT_TRUE(wait_for_log("fake-worker: argv -t 127.0.0.1/8080:8000\n"));
  EXPECT_NE(log().find("using the default rule set -t 127.0.0.1/8080:8000"), std::string::npos);
  ASSERT_EQ(::kill(pid_, SIGINT), 0);
  EXPECT_EQ(wait_exit(), 0);
}

TEST_F(SluicedProcessTest, PolicyDenialUnderTheFilter) {
  const std::string policy = (dir_ / "policy").string();
  std::ofstream(policy) << "# test\nbind deny tcp * 127.0.0.1\nbind allow * * *\n";
  const uint16_t port = free_port();
  start({"--policy", policy, "-t", "open-tcp4:" + std::to_string(port)});
  ASSERT_TRUE(wait_for_log("fake-worker: waiting"));
  EXPECT_NE(log().find("status 65536 fds 0"), std::string::npos) << log();
  EXPECT_NE(log().find("denied by " + policy + " line 2 (bind deny tcp * 127.0.0.1)"),
            std::string::npos)
      << log();
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
}

// Security review item 6, under the broker's filter, with a worker that asks
// for what it wants (as a compromised one would, skipping its own check):
// the port the initial rules declared opens; another privileged port is
// refused, and the log says how to allow it.
TEST_F(SluicedProcessTest, PrivilegedPortOutsideTheInitialRulesIsRefusedUnderTheFilter) {
  if (slurp("/proc/sys/net/ipv4/ip_unprivileged_port_start") != "1024\n") {
    GTEST_SKIP() << "net.ipv4.ip_unprivileged_port_start is not the default 1024 here";
  }
  auto [declared, other] = free_privileged_ports();
  if (declared == 0) GTEST_SKIP() << "privileged ports cannot be bound here";
  const std::string d = std::to_string(declared), o = std::to_string(other);
  start({"-t", "grant-tcp4:" + d, "-t", "open-tcp4:" + d, "-t", "open-tcp4:" + o});
  ASSERT_TRUE(wait_for_log("fake-worker: waiting"));
  const std::string text = log();
  EXPECT_NE(text.find("fake-worker: declared 1 initial port(s)"), std::string::npos) << text;
  EXPECT_NE(text.find("sluiced: info: bind policy: the default (no --policy): ports 1024-65535 on "
                      "any address, and below 1024 only the privileged ports of the initial "
                      "rules: tcp 127.0.0.1 port " +
                      d + ";"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("open 127.0.0.1:" + d + " status 0 fds 1"), std::string::npos) << text;
  EXPECT_NE(text.find("open 127.0.0.1:" + o + " status 65536 fds 0"), std::string::npos) << text;
  EXPECT_NE(text.find("sluiced's initial rules do not name tcp 127.0.0.1 port " + o),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("start sluiced with --policy FILE holding `bind allow tcp " + o + " 127.0.0.1`"),
      std::string::npos)
      << text;
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
}

TEST_F(SluicedProcessTest, ReproducesTheWorkersExitStatus) {
  start({"-q", "-t", "exit:3"});
  EXPECT_EQ(wait_exit(), 3);
  EXPECT_NE(log().find("worker exited with status 3"), std::string::npos) << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "control socket left behind";
}

TEST_F(SluicedProcessTest, ViolationKillsTheWorkerAndExitsNonzero) {
  start({"-t", "violate"});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("does not permit: malformed OpenListeners: entry 0: port 0"),
            std::string::npos)
      << log();
  EXPECT_NE(log().find("killed by signal 9"), std::string::npos) << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "control socket left behind";
}

TEST_F(SluicedProcessTest, OpenSocketsWithoutATargetNamespaceIsAViolation) {
  // Fresh sockets on sluiced's side serve only SPLICE rules, which exist only
  // with --netns: a worker asking without one is compromised.
  start({"-t", "open-sockets"});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("does not permit: malformed OpenSockets: OpenSockets, but sluiced has no "
                       "target namespace"),
            std::string::npos)
      << log();
  EXPECT_NE(log().find("killed by signal 9"), std::string::npos) << log();
}

TEST_F(SluicedProcessTest, PeerQueryWithALingeringTcpSocketIsAViolationWithoutAHang) {
  // Security review item 9, under the broker's seccomp filter: the socket's
  // kind is checked first (SO_DOMAIN, SO_TYPE) and its close does not linger
  // (SO_LINGER 0), so sluiced kills the worker and exits at once instead of
  // waiting 30 s in close() with SIGTERM blocked.
  start({"-t", "peer-query-tcp"});
  ASSERT_TRUE(wait_for_log("fake-worker: sending a PeerQuery with a lingering TCP socket"));
  auto sent = std::chrono::steady_clock::now();
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - sent, std::chrono::seconds(5));
  EXPECT_NE(log().find("does not permit: PeerQuery with a socket of family 2 and type 1, not the "
                       "UNIX stream socket of a control client"),
            std::string::npos)
      << log();
  EXPECT_NE(log().find("killed by signal 9"), std::string::npos) << log();
}

TEST_F(SluicedProcessTest, WaitsForAWorkerThatIsSlowToReadItsReplies) {
  // The worker fills the channel both ways, then reads nothing for 6 s:
  // longer than the 5 s after which sluiced used to give up, stop the worker
  // and exit 1. A slow worker is not a broken one: sluiced waits for room,
  // and every reply arrives once the worker reads again.
  start({"-t", "stall:100000:6000"});
  ASSERT_TRUE(wait_for_log("fake-worker: stalling with"));
  ASSERT_TRUE(wait_for_log("fake-worker: stall answered"));
  const std::string text = log();
  const size_t at = text.find("fake-worker: stalling with ");
  ASSERT_NE(at, std::string::npos);
  const size_t sent = std::stoul(text.substr(at + 27));
  EXPECT_GT(sent, 0u);
  EXPECT_NE(text.find("stall answered " + std::to_string(sent) + " of " + std::to_string(sent)),
            std::string::npos)
      << text;
  ASSERT_TRUE(wait_for_log("fake-worker: waiting"));
  EXPECT_EQ(::waitpid(pid_, nullptr, WNOHANG), 0) << "sluiced exited\n" << log();
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
  EXPECT_EQ(log().find("sending a reply to the worker"), std::string::npos) << log();
}

TEST_F(SluicedProcessTest, ReportsAWorkerThatCannotBeExecuted) {
  fs::remove(dir_ / "sluice-worker");
  {
    std::ofstream garbage(dir_ / "sluice-worker");
    garbage << "not an executable\n";
  }
  fs::permissions(dir_ / "sluice-worker", fs::perms::owner_all);
  start({});
  EXPECT_EQ(wait_exit(), 127);
  EXPECT_NE(log().find("cannot start the worker " + (dir_ / "sluice-worker").string() +
                       ": execve: ENOEXEC"),
            std::string::npos)
      << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "control socket left behind";
}

TEST_F(SluicedProcessTest, ReportsAMissingWorker) {
  fs::remove(dir_ / "sluice-worker");
  start({});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("sluice-worker not found: " + (dir_ / "sluice-worker").string() + " nor " +
                       (dir_ / "../libexec/sluice/sluice-worker").string()),
            std::string::npos)
      << log();
  EXPECT_NE(log().find("install it next to sluiced or with `cmake --install`"), std::string::npos)
      << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "control socket left behind";
}

TEST_F(SluicedProcessTest, RefusesAControlSocketDirectoryOthersCanWrite) {
  // Security review item 7: anyone who can write to the directory could
  // replace the socket; sluiced stops with one line saying what to change.
  const fs::path shared = dir_ / "shared";
  fs::create_directory(shared);
  fs::permissions(shared, fs::perms::all);
  control_ = (shared / "control.sock").string();
  start({});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find(shared.string() +
                       ", the control socket's directory, is writable by other users (mode "
                       "0777), who could replace the socket; run chmod go-w (or chmod +t) on "
                       "it, or pass another -c PATH\n"),
            std::string::npos)
      << log();
  EXPECT_NE(::access(control_.c_str(), F_OK), 0) << "a socket was created there";
}

TEST_F(SluicedProcessTest, RefusesAnAuditLogThatIsASymlinkOrADevice) {
  // Security review item 8: --audit-log followed symlinks and took FIFOs and
  // devices. sluiced now exits 1 with one line, before it starts a worker.
  const fs::path target = dir_ / "elsewhere";
  fs::create_symlink(target, dir_ / "audit.link");
  start({"--audit-log", (dir_ / "audit.link").string()});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("audit log " + (dir_ / "audit.link").string() +
                       " is a symbolic link, which sluiced does not follow; give the path of "
                       "the file itself to --audit-log\n"),
            std::string::npos)
      << log();
  EXPECT_FALSE(fs::exists(target)) << "the symlink was followed";
  EXPECT_EQ(log().find("fake-worker"), std::string::npos) << "a worker was started\n" << log();

  fs::rename(dir_ / "stderr.log", dir_ / "first.log");
  start({"--audit-log", "/dev/null"});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("audit log /dev/null is a character device; --audit-log needs a regular "
                       "file"),
            std::string::npos)
      << log();
}

TEST_F(SluicedProcessTest, RefusesASecondBrokerOnTheSameSocket) {
  start({});
  ASSERT_TRUE(wait_for_log("list the rules with"));
  pid_t first = pid_;
  std::string first_log = (dir_ / "stderr.log").string();
  fs::rename(first_log, dir_ / "first.log");
  start({});
  EXPECT_EQ(wait_exit(), 1);
  EXPECT_NE(log().find("another sluiced is listening on " + control_), std::string::npos) << log();
  pid_ = first;
  ASSERT_EQ(::kill(pid_, SIGTERM), 0);
  EXPECT_EQ(wait_exit(), 0);
}

}  // namespace
}  // namespace sluice
