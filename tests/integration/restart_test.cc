// Worker restarts end to end (docs/ARCHITECTURE.md "Worker restarts"): the
// worker is killed again and again while a client connects through a
// forwarded port in a loop. sluiced keeps the listeners, starts a new worker,
// and hands it the listeners and the last tables: nothing is refused, the
// generation and the tables stay, the audit chain goes on. A worker that
// keeps dying, or new workers that die at start, are given up on with a clear
// error, and a listener the tables no longer have is closed in sluiced too.
// A resume the reloaded policy refuses falls back to the initial rules
// without closing a port they share, or stops sluiced when they are refused
// too.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/restart_util.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// Returns whether 127.0.0.1:`port` can be bound and listened on now.
bool can_listen(uint16_t port) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return ::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) == 0 &&
         ::listen(fd.get(), 1) == 0;
}

/// A temporary directory for an audit log, removed with the object.
struct AuditDir {
  AuditDir() {
    char tmpl[] = "/tmp/sluice-restart-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~AuditDir() {
    std::remove((dir + "/audit.log").c_str());
    ::rmdir(dir.c_str());
  }
  std::string log() const { return dir + "/audit.log"; }
  std::string dir;
};

TEST(Restart, TwentyKillsRefuseNothing) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) UniqueFd c = accept_one(target.get(), 100);
  });
  AuditDir audit;
  Daemon d;
  d.start({"--audit-log", audit.log(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // One commit first, so that the generation to keep is not the first one.
  ASSERT_EQ(d.ctl({"-t", "127.0.0.1/18080:18000,18081:18000"}).status, 0) << d.log();
  const RunResult before = d.ctl({"--json"});
  ASSERT_EQ(before.status, 0);
  ASSERT_NE(before.out.find("\"generation\":2"), std::string::npos) << before.out;

  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  prober.await_probe();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(::kill(worker, SIGKILL), 0);
    // Bounded: the new worker is started and serves, then probes go on.
    std::string why;
    worker = wait_for_serving_worker(d, worker, static_cast<size_t>(i) + 2, &why);
    ASSERT_GT(worker, 0) << "kill " << i + 1 << ": " << why << "\n" << d.log();
    prober.await_probe();
  }
  prober.stop();
  stop = true;
  acceptor.join();

  EXPECT_EQ(prober.refused(), 0) << d.log();
  // A probe in flight through a worker as it is killed loses its connection
  // (established connections of a dead worker are lost): at most one a kill.
  EXPECT_LE(prober.reset(), 20);
  EXPECT_GE(prober.ok(), 20);
  EXPECT_EQ(::kill(d.pid(), 0), 0) << "sluiced died\n" << d.log();
  const RunResult after = d.ctl({"--json"});
  ASSERT_EQ(after.status, 0) << d.log();
  EXPECT_EQ(after.out, before.out);  // generation, digest and tables unchanged
  // Error lines are never rate-limited: one per death, saying what is lost.
  EXPECT_EQ(count_of(d.log(), "its established connections and UDP flows are lost"), 20u);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  const RunResult verified = run_command({bin("sluicectl"), "--verify-audit", audit.log()});
  EXPECT_EQ(verified.status, 0) << verified.out << verified.err;
  // 21 runs: the first worker's and one per restart, each linked to the last.
  EXPECT_NE(verified.out.find("in 21 runs"), std::string::npos) << verified.out;
}

TEST(Restart, AWorkerThatKeepsDyingIsGivenUpOn) {
  Daemon d;
  d.start({"--worker-restarts", "3/60", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  // Each worker is killed as soon as it exists, before it can serve.
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(::kill(worker, SIGKILL), 0);
    if (i == 2) break;
    worker = wait_for_new_worker(d, worker);
    ASSERT_GT(worker, 0) << "kill " << i + 1 << ": no new worker\n" << d.log();
  }
  EXPECT_EQ(d.wait_exit(15000), 1) << d.log();
  const std::string log = d.log();
  EXPECT_NE(log.find("sluiced gives up and stops"), std::string::npos) << log;
  EXPECT_NE(log.find("3 workers died within 60 s (--worker-restarts 3/60)"), std::string::npos)
      << log;
  EXPECT_NE(log.find("was killed by signal 9 (SIGKILL)"), std::string::npos) << log;
}

// A regression test: a reloaded policy that refuses both the tables in force
// and the initial rules makes every new worker exit at start. With the
// default --worker-restarts (30/60) and delays of up to 5 s, sluiced started
// one every 5 s for ever while the listeners queued connections nobody
// served. Now it gives up after kMaxFailedRestarts in a row, with one error
// that says why and what to do, and each death is logged once.
TEST(Restart, WorkersThatDieAtStartAreGivenUpOnWithOneClearError) {
  PolicyFileFixture policy("target allow * 127.0.0.1\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  policy.rewrite("target deny * 127.0.0.1 18000\ntarget allow * 127.0.0.1\n");
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "in force for the next commit:")) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  // Three workers start and exit 1 (about 100 ms of delays in all); the
  // bound is for a slow machine.
  EXPECT_EQ(d.wait_exit(15000), 1) << d.log();
  const std::string log = d.log();
  EXPECT_EQ(count_of(log, "sluiced: info: worker restart "), 3u) << log;
  EXPECT_EQ(count_of(log, "neither the resumed tables nor the initial rules pass"), 3u) << log;
  EXPECT_EQ(count_of(log,
                     "sluiced: error: the worker exited with status 1 before it served: 3 new "
                     "workers in a row died at start, so sluiced gives up and stops"),
            1u)
      << log;
  EXPECT_NE(log.find("fix the policy file or the rules, then start sluiced again"),
            std::string::npos)
      << log;
  // One line per death: the kill, then two workers that died at start.
  EXPECT_EQ(count_of(log, "killed by signal 9"), 1u) << log;
  EXPECT_EQ(count_of(log, "exited with status 1"), 3u) << log;
}

/// Writes `text` as the policy, sends SIGHUP and waits (bounded) until the
/// worker says the reload is in force.
void reload_policy(Daemon& d, PolicyFileFixture& policy, const std::string& text) {
  policy.rewrite(text);
  d.signal(SIGHUP);
  ASSERT_TRUE(wait_for_log(d, "in force for the next commit:")) << d.log();
}

// A reloaded bind policy that refuses a rule added at run time, not the
// initial rules: the new worker's resume is refused and it commits the
// initial rules instead, taking over the dead worker's listener of the port
// that is in both. It once shut that listener down with the refused resume
// (and sluiced's copy with it) and bound the port anew: connections to a
// port in every table were refused during the restart.
TEST(Restart, AResumeThePolicyRefusesFallsBackWithoutClosingAPortInEveryTable) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) UniqueFd c = accept_one(target.get(), 100);
  });
  PolicyFileFixture policy("bind allow tcp 18080-18081 127.0.0.1\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18081:18000"}).status, 0) << d.log();
  ASSERT_NO_FATAL_FAILURE(reload_policy(d, policy, "bind allow tcp 18080 127.0.0.1\n"));

  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  prober.await_probe();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  std::string why;
  ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
  prober.await_probe();
  prober.await_probe();
  prober.stop();
  stop = true;
  acceptor.join();

  EXPECT_EQ(prober.refused(), 0) << d.log();
  EXPECT_LE(prober.reset(), 1);  // a probe in flight through the killed worker
  EXPECT_NE(d.log().find("are refused; starting from the initial rules"), std::string::npos)
      << d.log();
  const RunResult list = d.ctl({});
  EXPECT_NE(list.out.find("18080"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("18081"), std::string::npos) << list.out;
  EXPECT_TRUE(can_listen(18081)) << "the refused rule's port still listens\n" << d.log();
}

// A reloaded bind policy that refuses the initial rules and the tables in
// force: every new worker exits 1 and sluiced gives up, as it does for
// `target` lines (WorkersThatDieAtStartAreGivenUpOnWithOneClearError). The
// first new worker once handed sluiced an empty table as it rolled its
// refused resume back; the next one resumed that and served nothing, and
// sluiced ran on, every port closed, looking healthy.
TEST(Restart, ResumeAndInitialRulesTheBindPolicyRefusesStopSluiced) {
  PolicyFileFixture policy("bind allow tcp 18080-18081 127.0.0.1\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18081:18000"}).status, 0) << d.log();
  ASSERT_NO_FATAL_FAILURE(reload_policy(d, policy, "bind allow tcp 18081 127.0.0.1\n"));
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  EXPECT_EQ(d.wait_exit(15000), 1) << d.log();
  const std::string log = d.log();
  EXPECT_EQ(count_of(log, "neither the resumed tables nor the initial rules pass"), 3u) << log;
  EXPECT_EQ(count_of(log, "ready: 0 listeners"), 0u) << log;
  EXPECT_EQ(count_of(log, "resumed after a worker restart: the tables of generation 0"), 0u) << log;
}

/// Returns `path`'s contents without its last line.
std::string without_last_line(const std::string& path) {
  std::string text = slurp(path);
  if (!text.empty()) text.pop_back();  // the last line's "\n"
  const size_t cut = text.rfind('\n');
  return cut == std::string::npos ? std::string() : text.substr(0, cut + 1);
}

// The record of the last commit cut from the log before a worker restart:
// the run after it links to the cut file's last line, so the chain holds,
// and the cut once passed as intact. The new run resumes the generation the
// cut commit made, which the verifier now checks against the log.
TEST(Restart, AnAppliedCommitCutFromTheLogBeforeARestartShows) {
  AuditDir audit;
  Daemon d;
  d.start({"--audit-log", audit.log(), "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18081:18000"}).status, 0) << d.log();
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18082:18000"}).status, 0) << d.log();
  // Whoever holds the file deletes the record of the last commit (generation 3).
  const std::string cut = without_last_line(audit.log());
  ASSERT_NE(cut.find("\"after\":2"), std::string::npos) << cut;
  std::ofstream(audit.log(), std::ios::trunc) << cut;
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  std::string why;
  ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18083:18000"}).status, 0) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
  const RunResult verified = run_command({bin("sluicectl"), "--verify-audit", audit.log()});
  EXPECT_EQ(verified.status, 1) << verified.out << verified.err;
  EXPECT_NE(verified.out.find("this run resumes the tables of generation 3, but the last applied "
                              "commit before it"),
            std::string::npos)
      << verified.out;
}

TEST(Restart, ARemovedRulesPortIsClosedInSluicedToo) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000,18081:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // sluiced holds its own copy of 18081 until the worker says it let go.
  ASSERT_EQ(d.ctl({"-t", "127.0.0.1/18080:18000"}).status, 0) << d.log();
  bool free_again = false;
  for (int i = 0; i < 200 && !free_again; ++i) {
    free_again = can_listen(18081);
    if (!free_again) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(free_again) << "port 18081 is still held after its rule was removed\n" << d.log();
  // And a restart hands over only what the tables have.
  const pid_t worker = d.worker_pid();
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  std::string why;
  ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
  EXPECT_NE(d.log().find("takes over 1 listener"), std::string::npos) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

/// Stops new connections on worker `worker`'s IPv4 TCP listener of `port`,
/// as TcpListener::stop_new_connections() does before a close (a minimum
/// TTL of 255), through a copy of it taken with pidfd_getfd. Returns false
/// when there is no such listener or the kernel refused.
bool stop_new_connections_of(pid_t worker, uint16_t port) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, worker, 0)));
  if (!pidfd.valid()) return false;
  for (int n = 0; n < 4096; ++n) {  // bounded: the worker's descriptors are far fewer
    UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), n, 0)));
    if (!fd.valid()) continue;
    int listening = 0;
    socklen_t len = sizeof(listening);
    struct sockaddr_in local = {};
    socklen_t local_len = sizeof(local);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening == 0 ||
        ::getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&local), &local_len) != 0 ||
        local.sin_family != AF_INET || ntohs(local.sin_port) != port) {
      continue;
    }
    const int floor = 255;
    return ::setsockopt(fd.get(), IPPROTO_IP, IP_MINTTL, &floor, sizeof(floor)) == 0;
  }
  return false;
}

TEST(Restart, AListenerTheDeadWorkerStoppedServesUnderTheNext) {
  // A worker stops a listener's new connections before it closes it (a
  // rebind's settle time, the release slices of a large commit); one that
  // dies in between leaves the stop on the copy sluiced hands the next one.
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_TRUE(stop_new_connections_of(worker, 18080)) << std::strerror(errno);
  // Stopped: the handshake gets no answer (not even a reset) within 300 ms.
  EXPECT_FALSE(connect_tcp("127.0.0.1", 18080, 300).valid());
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  std::string why;
  ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
  EXPECT_NE(d.log().find("takes over 1 listener"), std::string::npos) << d.log();
  // Within 5 s a dropped SYN would be sent twice more, and dropped again.
  UniqueFd client = connect_tcp("127.0.0.1", 18080, 5000);
  ASSERT_TRUE(client.valid()) << std::strerror(errno) << "\n" << d.log();
  EXPECT_TRUE(accept_one(target.get(), 5000).valid()) << d.log();
}

TEST(Restart, TheLauncherIsAChildOfSluiced) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_GT(d.launcher_pid(), 0);
  EXPECT_EQ(d.helper_pid(), -1);  // without --netns there is no namespace helper
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

/// Parses a hex capability mask from /proc/PID/status.
uint64_t cap_mask(pid_t pid, const char* field) {
  return std::strtoull(proc_status_field(pid, field).c_str(), nullptr, 16);
}

TEST(Restart, TheLauncherKeepsOnlyWhatAWorkersStartNeeds) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t launcher = d.launcher_pid();
  ASSERT_GT(launcher, 0);
  // Real root: CAP_SETUID (7) and CAP_SETGID (6), for the worker's switch to
  // its user. uid 0 of the user-namespace run: CAP_SETFCAP (31), for the
  // worker's map of uid 0. Nothing else in any set, the bounding set too.
  const uint64_t kept = real_root_run() ? (1ULL << 7) | (1ULL << 6) : 1ULL << 31;
  EXPECT_EQ(cap_mask(launcher, "CapEff"), kept);
  EXPECT_EQ(cap_mask(launcher, "CapPrm"), kept);
  EXPECT_EQ(cap_mask(launcher, "CapBnd"), kept);
  EXPECT_EQ(cap_mask(launcher, "CapInh"), 0u);
  EXPECT_EQ(cap_mask(launcher, "CapAmb"), 0u);
  EXPECT_EQ(proc_status_field(launcher, "NoNewPrivs"), "1");
  // A worker it starts after a kill sandboxes itself as the first did.
  const pid_t first = d.worker_pid();
  ASSERT_GT(first, 0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  const pid_t next = wait_for_new_worker(d, first);
  ASSERT_GT(next, 0) << d.log();
  ASSERT_TRUE(wait_for_log(d, "ready: 1 listener", 2)) << d.log();
  EXPECT_EQ(proc_status_field(next, "Seccomp"), "2");
  EXPECT_EQ(cap_mask(next, "CapEff"), 0u);
  EXPECT_EQ(cap_mask(next, "CapBnd"), 0u);
  if (real_root_run()) {
    EXPECT_EQ(proc_status_field(next, "Uid"), "65534\t65534\t65534\t65534");
  }
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

}  // namespace
}  // namespace sluice::test
