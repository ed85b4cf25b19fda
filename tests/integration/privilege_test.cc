// The privilege split, checked on the running processes: the worker's
// sandbox, the broker's capabilities, what links what, low ports with and
// without CAP_NET_BIND_SERVICE, the default bind policy's privileged ports
// (only the initial rules'), and how the processes end together.
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// Parses a hex capability mask from /proc/PID/status.
uint64_t cap_mask(pid_t pid, const char* field) {
  return std::strtoull(proc_status_field(pid, field).c_str(), nullptr, 16);
}

constexpr uint64_t kCapNetBindService = 1ULL << 10;

/// net.ipv4.ip_unprivileged_port_start of the test's network namespace
/// (1024 unless someone lowered it), or 1024 when it cannot be read.
unsigned unprivileged_port_start() {
  std::ifstream in("/proc/sys/net/ipv4/ip_unprivileged_port_start");
  unsigned v = 1024;
  in >> v;
  return v;
}

/// Expects `bytes` of a stream to pass from the target behind `target` to a
/// client of 127.0.0.1:`port`, intact.
void expect_transfer(int target, uint16_t port, const Daemon& d) {
  std::thread server([&] {
    UniqueFd conn = accept_one(target);
    if (conn.valid()) send_stream(conn.get(), 7, 100000);
  });
  UniqueFd client = connect_tcp("127.0.0.1", port);
  size_t n = 0;
  Sha256Digest got = client.valid() ? receive_all(client.get(), &n) : Sha256Digest{};
  server.join();
  EXPECT_EQ(n, 100000u) << d.log();
  EXPECT_EQ(got, stream_digest(7, 100000));
}

TEST(Privilege, WorkerIsSandboxed) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  EXPECT_EQ(proc_status_field(worker, "Seccomp"), "2");
  EXPECT_EQ(proc_status_field(worker, "NoNewPrivs"), "1");
  EXPECT_EQ(proc_status_field(worker, "CapEff"), "0000000000000000");
  EXPECT_EQ(proc_status_field(worker, "CapPrm"), "0000000000000000");
  EXPECT_EQ(proc_status_field(worker, "CapBnd"), "0000000000000000");
  EXPECT_EQ(proc_status_field(worker, "CapAmb"), "0000000000000000");
  if (real_root_run()) {
    // Started by real root, the worker runs as nobody (real, effective, saved, fs).
    EXPECT_EQ(proc_status_field(worker, "Uid"), "65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status_field(worker, "Gid"), "65534\t65534\t65534\t65534");
  }
  // Its own namespaces: user, mount, IPC, UTS differ from the broker's.
  for (const char* ns : {"user", "mnt", "ipc", "uts"}) {
    char a[128] = {}, b[128] = {};
    std::string pa = "/proc/" + std::to_string(worker) + "/ns/" + ns;
    std::string pb = "/proc/" + std::to_string(d.pid()) + "/ns/" + ns;
    ASSERT_GT(readlink(pa.c_str(), a, sizeof(a) - 1), 0) << pa;
    ASSERT_GT(readlink(pb.c_str(), b, sizeof(b) - 1), 0) << pb;
    EXPECT_STRNE(a, b) << ns;
  }
}

/// Forks a process that becomes uid/gid 65534 (nobody, what other services
/// run as) and tries kill(`pid`, 0). Returns the errno it saw, 0 when the
/// signal would have been delivered, or -1 when the child could not switch.
int errno_of_a_nobody_signalling(pid_t pid) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  const pid_t child = fork();
  if (child == 0) {
    int result = -1;
    if (setgroups(0, nullptr) == 0 && setresgid(65534, 65534, 65534) == 0 &&
        setresuid(65534, 65534, 65534) == 0) {
      result = kill(pid, 0) == 0 ? 0 : errno;
    }
    ssize_t ignored = write(fds[1], &result, sizeof(result));
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  int result = -1;
  if (child < 0 || read(fds[0], &result, sizeof(result)) != static_cast<ssize_t>(sizeof(result))) {
    result = -1;
  }
  close(fds[0]);
  if (child > 0) waitpid(child, nullptr, 0);
  return result;
}

TEST(Privilege, WorkerRunsAsItsOwnUserThatNoOtherProcessShares) {
  if (!real_root_run()) {
    // Not real root: the worker keeps sluiced's user, and asking for another
    // one is one line that says so.
    Daemon d;
    d.start({"--worker-user", "64123:64124", "-t", "127.0.0.1/18080:18000"});
    EXPECT_EQ(d.wait_exit(), 1) << d.log();
    EXPECT_NE(d.log().find("--worker-user 64123:64124: sluiced is not real root"),
              std::string::npos)
        << d.log();
    return;
  }
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  d.start({"--worker-user", "64123:64124", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  EXPECT_EQ(proc_status_field(worker, "Uid"), "64123\t64123\t64123\t64123");
  EXPECT_EQ(proc_status_field(worker, "Gid"), "64124\t64124\t64124\t64124");
  EXPECT_EQ(proc_status_field(worker, "Groups"), "");
  EXPECT_NE(d.log().find("the worker runs as uid 64123, gid 64124"), std::string::npos) << d.log();
  expect_transfer(target.get(), 18080, d);
  // Another service's uid cannot signal it (nor, by the same rule, trace it
  // or change its limits).
  EXPECT_EQ(errno_of_a_nobody_signalling(worker), EPERM);

  // The fallback, without --worker-user and without a user "sluice" on this
  // machine: nobody, which any nobody process can signal. That is what the
  // warning says.
  if (getpwnam("sluice") == nullptr) {
    Daemon fallback;
    fallback.start({"-t", "127.0.0.1/18081:18000"});
    ASSERT_TRUE(fallback.wait_ready()) << fallback.log();
    EXPECT_NE(fallback.log().find("warning: the worker runs as uid 65534, gid 65534 (nobody, "
                                  "shared with other processes"),
              std::string::npos)
        << fallback.log();
    EXPECT_EQ(errno_of_a_nobody_signalling(fallback.worker_pid()), 0);
  }
}

TEST(Privilege, AWorkerUserThatIsRootOrUnknownIsRefused) {
  for (const char* spec : {"0", "root", "no-such-user-here"}) {
    Daemon d;
    d.start({"--worker-user", spec, "-t", "127.0.0.1/18080:18000"});
    EXPECT_EQ(d.wait_exit(), 1) << spec << "\n" << d.log();
    EXPECT_NE(d.log().find(std::string("--worker-user ") + spec), std::string::npos) << d.log();
  }
}

TEST(Privilege, BrokerKeepsAtMostNetBindService) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(cap_mask(d.pid(), "CapEff") & ~kCapNetBindService, 0u);
  EXPECT_EQ(cap_mask(d.pid(), "CapPrm") & ~kCapNetBindService, 0u);
  EXPECT_EQ(cap_mask(d.pid(), "CapBnd") & ~kCapNetBindService, 0u);
  EXPECT_EQ(cap_mask(d.pid(), "CapAmb"), 0u);
  // In the test's namespace it started with every capability, so it kept this one.
  EXPECT_EQ(cap_mask(d.pid(), "CapEff"), kCapNetBindService);
}

/// The capability numbers of the names the shipped units may use; a name
/// outside it fails the test that reads the unit (add it here).
int capability_number(const std::string& name) {
  static const std::pair<const char*, int> kNames[] = {
      {"CAP_SETGID", 6},     {"CAP_SETUID", 7},  {"CAP_SETPCAP", 8}, {"CAP_NET_BIND_SERVICE", 10},
      {"CAP_SYS_ADMIN", 21}, {"CAP_SETFCAP", 31}};
  for (const auto& [n, number] : kNames) {
    if (name == n) return number;
  }
  return -1;
}

TEST(Privilege, UnderTheShippedUnitsBoundingSetNothingKeepsMoreThanItNeeds) {
  // The unit's CapabilityBoundingSet= is what sluiced starts with under
  // systemd: it must let sluiced and its launcher clear their bounding sets
  // (which needs CAP_SETPCAP), as they do when started as root by hand.
  if (!real_root_run()) GTEST_SKIP() << "the system unit runs sluiced as real root";
  std::ifstream unit(std::string(SLUICE_SOURCE_DIR) + "/scripts/dist/sluiced.service.in");
  ASSERT_TRUE(unit.good());
  std::string line, caps;
  while (std::getline(unit, line)) {
    if (line.rfind("CapabilityBoundingSet=", 0) == 0) caps = line.substr(line.find('=') + 1);
  }
  ASSERT_FALSE(caps.empty()) << "the unit sets no CapabilityBoundingSet=";
  uint64_t bounding = 0;
  std::istringstream words(caps);
  for (std::string name; words >> name;) {
    const int number = capability_number(name);
    ASSERT_GE(number, 0) << "unknown capability " << name << " in the unit";
    bounding |= 1ULL << number;
  }
  Daemon d;
  d.set_child_setup([bounding] {
    for (int cap = 0; cap < 64; ++cap) {
      if ((bounding & (1ULL << cap)) == 0) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
    }
  });
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(cap_mask(d.pid(), "CapBnd") & ~kCapNetBindService, 0u);
  const pid_t launcher = d.launcher_pid();
  ASSERT_GT(launcher, 0);
  EXPECT_EQ(cap_mask(launcher, "CapBnd"), (1ULL << 7) | (1ULL << 6));  // CAP_SETUID, CAP_SETGID
  EXPECT_EQ(cap_mask(d.worker_pid(), "CapBnd"), 0u);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(), 0) << d.log();
}

TEST(Privilege, BrokerLinksNoCapnProto) {
  // The libraries are linked statically (SLUICE_STATIC_DEPS), so look at the
  // code itself: no Cap'n Proto or kj symbol may be in the broker, whether
  // linked statically or dynamically.
  RunResult broker = run_command({"/usr/bin/nm", "-C", bin("sluiced")});
  ASSERT_EQ(broker.status, 0) << broker.err;
  RunResult broker_dyn = run_command({"/usr/bin/ldd", bin("sluiced")});
  for (const std::string& text : {broker.out, broker_dyn.out}) {
    EXPECT_EQ(text.find("capnp::"), std::string::npos);
    EXPECT_EQ(text.find("kj::"), std::string::npos);
    EXPECT_EQ(text.find("libcapnp"), std::string::npos);
  }
  // The same check on the worker finds Cap'n Proto, so the check can fail.
  RunResult worker = run_command({"/usr/bin/nm", "-C", bin("sluice-worker")});
  EXPECT_NE(worker.out.find("capnp::"), std::string::npos);
}

TEST(Privilege, LowPortRefusedWithoutTheCapability) {
  Daemon d;
  d.start({"-t", "127.0.0.1/80:18000"}, /*drop_bind_cap=*/true);
  int status = d.wait_exit();
  EXPECT_NE(status, 0);
  EXPECT_NE(status, -1) << "sluiced did not exit";
  std::string log = d.log();
  EXPECT_NE(log.find("port 80"), std::string::npos) << log;
  EXPECT_NE(log.find("CAP_NET_BIND_SERVICE"), std::string::npos) << log;
  EXPECT_NE(log.find("ip_unprivileged_port_start"), std::string::npos) << log;
}

TEST(Privilege, LowPortWorksWithTheCapability) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/80:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::thread server([&] {
    UniqueFd conn = accept_one(target.get());
    if (conn.valid()) send_stream(conn.get(), 5, 100000);
  });
  UniqueFd client = connect_tcp("127.0.0.1", 80);
  ASSERT_TRUE(client.valid());
  size_t n = 0;
  Sha256Digest got = receive_all(client.get(), &n);
  server.join();
  EXPECT_EQ(n, 100000u);
  EXPECT_EQ(got, stream_digest(5, 100000));
}

// Security review item 6. The namespace runs of this test both give sluiced
// CAP_NET_BIND_SERVICE (in its own user namespace, or as real root), which
// used to let any commit, and so a compromised worker, take any privileged
// port. Without `bind` lines, only the initial rules' privileged ports open,
// for sluiced's whole life, and a refusal says how to allow another.
TEST(Privilege, DefaultPolicyOpensOnlyTheInitialRulesPrivilegedPorts) {
  if (unprivileged_port_start() <= 80) GTEST_SKIP() << "port 80 is not privileged here";
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/80:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::string low = std::to_string(unprivileged_port_start());
  EXPECT_NE(d.log().find("sluiced: info: bind policy: the default (no --policy): ports " + low +
                         "-65535 on any address, and below " + low +
                         " only the privileged ports of the initial rules: tcp 127.0.0.1 port "
                         "80; for other privileged ports, give --policy FILE with `bind` "
                         "lines\n"),
            std::string::npos)
      << d.log();
  expect_transfer(target.get(), 80, d);

  // Another privileged port, and the same port on another address: refused,
  // saying how to allow it. Nothing changes, and port 80 keeps forwarding.
  for (const std::string& spec :
       {std::string("127.0.0.1/22:18000"), std::string("127.0.0.2/80:18000")}) {
    RunResult r = d.ctl({"-A", "-t", spec});
    EXPECT_NE(r.status, 0) << spec << "\n" << r.out << r.err;
    const std::string port = spec.find("/22") != std::string::npos ? "22" : "80";
    const std::string addr =
        spec.find("127.0.0.2") != std::string::npos ? "127.0.0.2" : "127.0.0.1";
    EXPECT_NE(r.err.find("policy-denied"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("sluiced's initial rules do not name tcp " + addr + " port " + port),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("start sluiced with --policy FILE holding `bind allow tcp " + port + " " +
                         addr + "`"),
              std::string::npos)
        << r.err;
  }
  EXPECT_FALSE(listening(22));
  // The initial rules' port stays theirs: it may close and open again.
  RunResult moved = d.ctl({"-t", "127.0.0.1/18080:18000"});
  ASSERT_EQ(moved.status, 0) << moved.err;
  EXPECT_FALSE(listening(80));
  RunResult back = d.ctl({"-t", "127.0.0.1/80:18000"});
  ASSERT_EQ(back.status, 0) << back.err;
  expect_transfer(target.get(), 80, d);
}

// What the refusal above advises: a `bind allow` line in --policy makes the
// privileged port available at run time.
TEST(Privilege, ABindLineAllowsAnotherPrivilegedPortAtRunTime) {
  if (unprivileged_port_start() <= 22) GTEST_SKIP() << "port 22 is not privileged here";
  PolicyFileFixture policy(
      "bind allow tcp 22,80 127.0.0.1\n"
      "bind allow tcp,udp 1024-65535 *\n");
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/80:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_NE(d.log().find("bind policy: " + policy.path() + ", 2 `bind` lines"), std::string::npos)
      << d.log();
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/22:18000"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  expect_transfer(target.get(), 22, d);
  RunResult other = d.ctl({"-A", "-t", "127.0.0.1/23:18000"});
  EXPECT_NE(other.status, 0);
  EXPECT_NE(other.err.find("no `bind` line matches tcp 127.0.0.1 port 23"), std::string::npos)
      << other.err;
}

TEST(Privilege, SigtermShutsDownCleanly) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  d.signal(SIGTERM);
  // Well within the broker's 3 s stop timeout: closing the channel stops the
  // worker at once, also when it runs as another uid and cannot be signalled.
  EXPECT_EQ(d.wait_exit(2000), 0) << d.log();
  EXPECT_EQ(d.log().find("EPERM"), std::string::npos) << d.log();
  struct stat st;
  EXPECT_NE(stat(d.socket_path().c_str(), &st), 0) << "the control socket file was left behind";
  // The worker is gone too (reaped by the broker).
  EXPECT_NE(kill(worker, 0), 0);
}

TEST(Privilege, BrokerExitsWhenTheWorkerDiesWithRestartsOff) {
  Daemon d;
  d.start({"--worker-restarts", "0/1", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(kill(worker, SIGKILL), 0);
  int status = d.wait_exit();
  EXPECT_NE(status, -1) << "sluiced did not exit after its worker died";
  EXPECT_EQ(status, 128 + SIGKILL) << d.log();  // the worker's end, reproduced
}

TEST(Privilege, BindFailureNamesRulePortAndErrno) {
  UniqueFd squatter = listen_tcp("127.0.0.1", 18081);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080-18082:18000-18002"});
  int status = d.wait_exit();
  EXPECT_NE(status, 0);
  EXPECT_NE(status, -1);
  std::string log = d.log();
  EXPECT_NE(log.find("HOST rule 0 (TCP [127.0.0.1]:18080-18082 => 18000-18002), port 18081"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("EADDRINUSE"), std::string::npos) << log;
}

TEST(Privilege, BadSpecIsAClearError) {
  Daemon d;
  d.start({"-t", "80-70"});
  int status = d.wait_exit();
  EXPECT_NE(status, 0);
  EXPECT_NE(status, -1);
  std::string log = d.log();
  EXPECT_NE(log.find("80-70"), std::string::npos) << log;
  EXPECT_NE(log.find("position"), std::string::npos) << log;
}

TEST(Privilege, SluiceWorkerRunByHandSaysToRunSluiced) {
  // No channel to sluiced on fd 3: one line that says what to run, exit 2.
  RunResult bare = run_command({bin("sluice-worker"), "-t", "8080"});
  EXPECT_EQ(bare.status, 2) << bare.err;
  EXPECT_NE(bare.err.find("sluice-worker is started by sluiced"), std::string::npos) << bare.err;
  EXPECT_NE(bare.err.find("run sluiced instead"), std::string::npos) << bare.err;
  RunResult help = run_command({bin("sluice-worker"), "--help"});
  EXPECT_EQ(help.status, 0) << help.err;
  EXPECT_NE(help.err.find("run sluiced instead"), std::string::npos) << help.err;
  RunResult version = run_command({bin("sluice-worker"), "--version"});
  EXPECT_EQ(version.status, 0) << version.err;
  EXPECT_EQ(version.out.rfind("sluice-worker ", 0), 0u) << version.out;
}

TEST(Privilege, AControlSocketBelowAnotherUsersDirectoryIsRefused) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: only one uid is mapped here";
  // BASE/nobody is uid 65534's, BASE/nobody/ok root's: 65534 could rename ok
  // away and put a socket of its own in its place, which root's sluicectl
  // would then talk to. sluiced refuses to start there.
  char tmpl[] = "/tmp/sluice-ctl-owner-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string base = tmpl;
  const std::string theirs = base + "/nobody", ok = theirs + "/ok", sock = ok + "/c.sock";
  ASSERT_EQ(::mkdir(theirs.c_str(), 0755), 0);
  ASSERT_EQ(::chown(theirs.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::mkdir(ok.c_str(), 0755), 0);
  RunResult r = run_command({bin("sluiced"), "-c", sock, "-t", "127.0.0.1/18080:18000"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find(theirs + ", a directory on the way to " + ok +
                       " (the control socket's directory), belongs to uid 65534 (mode 0755)"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("pass another -c PATH"), std::string::npos) << r.err;
  EXPECT_NE(::access(sock.c_str(), F_OK), 0) << "a socket was created there";
  ::rmdir(ok.c_str());
  ::rmdir(theirs.c_str());
  ::rmdir(base.c_str());
}

}  // namespace
}  // namespace sluice::test
