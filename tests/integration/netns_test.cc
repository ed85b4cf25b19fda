// The target namespace end to end: sluiced --netns joins a container-like
// namespace (its own user namespace, owned by the test's user, with servers on
// its loopback), so HOST rules listen here and connect in there. The default
// target is the namespace's loopback, so `-t 8080` publishes the container's
// port 8080 instead of being refused as a loop. Bad --netns input is one
// clear line and exit 1.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <grp.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/restart_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/rule_util.h"

namespace sluice::test {
namespace {

TEST(TargetNamespace, HostRulesForwardIntoTheNamespaceByDefault) {
  Container box({"tcp", "8080", "udp", "5353"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  // -t 8080: port 8080 here to port 8080 of the container; no loop, since
  // the target is the namespace's loopback.
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "8080", "-u", "18053:5353"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(8080, "hello v4"), "hello v4") << d.log();
  EXPECT_EQ(tcp_echo(8080, "hello v6", true), "hello v6") << d.log();
  UniqueFd u = bind_udp("127.0.0.1");
  Datagram reply = request(u.get(), "127.0.0.1", 18053, "ping");
  ASSERT_TRUE(reply.ok) << d.log() << d.ctl({"--stats"}).out;
  EXPECT_EQ(reply.payload, "5353|ping");
  // Nothing listens on 8080 on this side except sluice: the echo came from inside.
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [*]:8080 => 8080"), std::string::npos) << list.out;
}

// A network namespace of sluiced's own user namespace (`ip netns add`,
// `unshare -n`: what root uses most) has no user namespace to join: the
// worker launcher joins it before it gives up its capabilities. Given as a
// path and in pasta's PID form, TCP and UDP reach the servers inside, also
// after the worker was replaced (the launcher's workers are born inside).
TEST(TargetNamespace, ANetworkNamespaceOfSluicedsOwnUserNamespaceIsServed) {
  Container box({"netonly", "tcp", "8080", "udp", "5353"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  for (const std::string& netns : {box.netns(), std::to_string(box.pid())}) {
    Daemon d;
    d.start({"--netns", netns, "-t", "8080", "-u", "18053:5353"});
    ASSERT_TRUE(d.wait_ready()) << netns << "\n" << d.log();
    EXPECT_EQ(tcp_echo(8080, "hello v4"), "hello v4") << d.log();
    UniqueFd u = bind_udp("127.0.0.1");
    Datagram reply = request(u.get(), "127.0.0.1", 18053, "ping");
    ASSERT_TRUE(reply.ok) << d.log();
    EXPECT_EQ(reply.payload, "5353|ping");
    // A worker started later comes from the launcher too.
    const pid_t first = d.worker_pid();
    ASSERT_GT(first, 0) << d.log();
    ASSERT_EQ(kill(first, SIGKILL), 0);
    std::string echoed;
    // Bounded: 100 tries of 100 ms while the next worker starts (its back-off is under 5 s).
    for (int i = 0; i < 100 && (d.worker_pid() == first || echoed != "again"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      echoed = tcp_echo(8080, "again");
    }
    EXPECT_EQ(echoed, "again") << d.log();
    EXPECT_NE(d.worker_pid(), first) << d.log();
  }
}

TEST(TargetNamespace, RulesAddedAtRunTimeAndExplicitTargetsReachTheNamespace) {
  Container box({"tcp", "8080", "tcp", "9090"});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  // pasta's form: the PID as the last argument (its user namespace is joined).
  d.start({"-t", "none", std::to_string(box.pid())});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult add = d.ctl({"-A", "-t", "18080:8080", "-t", "127.0.0.1/18090:127.0.0.1/9090"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  EXPECT_EQ(tcp_echo(18080, "runtime"), "runtime") << d.log();
  EXPECT_EQ(tcp_echo(18090, "explicit"), "explicit") << d.log();
  // A range into the namespace.
  RunResult range = d.ctl({"-A", "-t", "18100-18101:8080-8081"});
  ASSERT_EQ(range.status, 0) << range.out << range.err;
  EXPECT_EQ(tcp_echo(18100, "range"), "range");
}

TEST(TargetNamespace, Ipv6TargetsInterfacesAndUdpRangesReachTheNamespace) {
  Container box({"tcp", "8080", "udp", "5353", "udp", "5354"});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t",
           "::1/18095:[::1]/8080",                     // IPv6, an explicit in-namespace address
           "-t", "127.0.0.1%lo/18096:8080",            // bound to an interface on this side
           "-u", "127.0.0.1/18053-18054:5353-5354"});  // a UDP range
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(18095, "six", true), "six") << d.log();
  EXPECT_EQ(tcp_echo(18096, "lo"), "lo") << d.log();
  UniqueFd u = bind_udp("127.0.0.1");
  for (uint16_t i = 0; i < 2; ++i) {
    Datagram reply = request(u.get(), "127.0.0.1", static_cast<uint16_t>(18053 + i), "range");
    ASSERT_TRUE(reply.ok) << d.log();
    EXPECT_EQ(reply.payload, std::to_string(5353 + i) + "|range");
  }
}

TEST(TargetNamespace, CommitsIntoTheNamespaceStayAtomic) {
  Container box({"tcp", "8080"});
  ASSERT_GT(box.pid(), 0);
  UniqueFd taken = listen_tcp("127.0.0.1", 18091);  // a bind error on this side
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "127.0.0.1/18080:8080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult bad = d.ctl({"-A", "-t", "127.0.0.1/18090:8080", "-t", "127.0.0.1/18091:8080"});
  EXPECT_NE(bad.status, 0);
  EXPECT_NE((bad.out + bad.err).find("18091"), std::string::npos) << bad.out << bad.err;
  EXPECT_NE((bad.out + bad.err).find("EADDRINUSE"), std::string::npos) << bad.out << bad.err;
  EXPECT_FALSE(listening(18090)) << "rolled back";
  EXPECT_EQ(tcp_echo(18080, "still"), "still") << d.log();
}

TEST(TargetNamespace, KeptPortIntoTheNamespaceRefusesNothingAcross200Commits) {
  Container box({"tcp", "8080", "tcp", "8081"});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "127.0.0.1/18080:8080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // An established connection into the namespace echoes across every commit.
  UniqueFd established = connect_tcp("127.0.0.1", 18080, 5000);
  ASSERT_TRUE(established.valid()) << d.log();
  struct timeval tv = {5, 0};
  setsockopt(established.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  KeptPortProber prober(18080, KeptPortProber::Target::kEcho);
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  uint64_t gen = get_state(*control).generation;
  int echoes = 0;
  for (int i = 0; i < 200; ++i) {
    control::CommitRequest req;
    req.tables = host_table({make_rule("127.0.0.1", 18080, 18080, 8080),
                             make_rule("127.0.0.1", static_cast<uint16_t>(18090 + i % 2),
                                       static_cast<uint16_t>(18090 + i % 2), 8081)});
    req.expected_generation = gen;
    control::CommitResult r = commit_request(*control, req);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
    gen = r.generation;
    char b = static_cast<char>(i);
    if (send(established.get(), &b, 1, MSG_NOSIGNAL) == 1 &&
        recv(established.get(), &b, 1, 0) == 1 && b == static_cast<char>(i)) {
      ++echoes;
    }
    prober.await_probe();  // interleave: a probe through the kept port between commits
  }
  prober.stop();
  EXPECT_EQ(echoes, 200);
  EXPECT_GE(prober.ok(), 200);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
}

TEST(TargetNamespace, AllLeavesOutTheHostSidesEphemeralPortsNotTheNamespaces) {
  // HOST rules listen on sluiced's side, so `all` leaves out that side's
  // ephemeral range, as pasta's does, whatever the namespace's range is.
  Container box({});
  ASSERT_GT(box.pid(), 0);
  ASSERT_EQ(box.command("ports 40000 40009"), "ok");
  unsigned first = 0, last = 0;
  FILE* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(std::fscanf(f, "%u %u", &first, &last), 2);
  std::fclose(f);
  ASSERT_TRUE(first <= 39990 && last >= 60999) << "this test expects the kernel's default range";
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "none"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // Of 39990-40019 and 61000-61009, the host side's range leaves the latter.
  RunResult add = d.ctl({"-A", "-t", "all,~1-39989,~40020-60999,~61010-65535"});
  ASSERT_EQ(add.status, 0) << add.err << d.log();
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [*]:61000-61009 => 61000-61009"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("39990"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("40010"), std::string::npos) << list.out;
}

TEST(TargetNamespace, ContainerThatStopsLeavesSluicedServingWhatItCan) {
  auto box = std::make_unique<Container>(std::vector<std::string>{"tcp", "8080"});
  ASSERT_GT(box->pid(), 0);
  Daemon d;
  d.start({"--netns", box->netns(), "--userns", box->userns(), "-t", "127.0.0.1/18080:8080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(18080, "before"), "before");
  box.reset();  // the container stops: its servers are gone
  // A new connection is refused inside the namespace, and its client reset:
  // clear, at once, and nothing else changes.
  EXPECT_EQ(tcp_echo(18080, "after"), "");
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err << d.log();
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("1 failed"), std::string::npos) << stats.out;
  EXPECT_NE(d.log().find("ECONNREFUSED"), std::string::npos) << d.log();
  EXPECT_EQ(d.wait_exit(200), -1) << "sluiced must keep running\n" << d.log();
}

TEST(TargetNamespace, AContainerThatStopsIsReportedAtOnce) {
  // --netns by PID, as Podman's pasta command line gives it: when that
  // process exits, sluiced says so at once (pasta would exit here), and
  // serves on.
  auto box = std::make_unique<Container>(std::vector<std::string>{"tcp", "8080"});
  ASSERT_GT(box->pid(), 0);
  const std::string pid = std::to_string(box->pid());
  Daemon d;
  d.start({"--netns", pid, "-t", "127.0.0.1/18080:8080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(18080, "before"), "before");
  EXPECT_EQ(d.log().find("has exited"), std::string::npos) << d.log();
  box.reset();  // the container stops
  ASSERT_TRUE(wait_for_log(d, "the process --netns " + pid + " named has exited")) << d.log();
  EXPECT_NE(d.log().find("start sluiced again with its new PID"), std::string::npos) << d.log();
  EXPECT_EQ(count_of(d.log(), "has exited: the container stopped"), 1u) << d.log();
  // --stats says so too, in the worker's answer (sluiced's TargetExited
  // comes between two replies: bounded, 10 s), and so does a worker that
  // replaces this one.
  for (int round = 0; round < 2; ++round) {
    RunResult stats;
    for (int i = 0; i < 100; ++i) {
      stats = d.ctl({"--stats"});
      if (stats.out.find("has exited") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    EXPECT_NE(stats.out.find("target namespace: the process sluiced --netns named has exited"),
              std::string::npos)
        << "round " << round << "\n"
        << stats.out << stats.err;
    RunResult json = d.ctl({"--stats", "--json"});
    EXPECT_NE(json.out.find("\"targetExited\":true"), std::string::npos) << json.out;
    if (round == 0) {
      const pid_t worker = d.worker_pid();
      ASSERT_GT(worker, 0);
      ASSERT_EQ(::kill(worker, SIGKILL), 0);
      std::string why;
      ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
    }
  }
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err << d.log();
  EXPECT_EQ(d.wait_exit(200), -1) << "sluiced must keep running\n" << d.log();
}

TEST(TargetNamespace, BadNamespaceArgumentsAreOneClearLine) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--netns", "/nonexistent/ns"}, "cannot open it"},
      {{"--netns", "4194000"}, "no process has this PID"},
      {{"--netns", "/proc/self/ns/user"}, "not a network namespace file"},
      {{"--userns", "/proc/self/ns/user"}, "--userns needs a target namespace"},
      // sluiced's own namespace: HOST rules would connect back into sluiced.
      {{"--netns", "/proc/self/ns/net"}, "this is sluiced's own network namespace"},
      {{"--netns", std::to_string(::getpid())}, "this is sluiced's own network namespace"},
  };
  for (const Case& c : cases) {
    Daemon d;
    d.start(c.args);
    const int status = d.wait_exit();
    EXPECT_TRUE(status == 1 || status == 2) << status << d.log();
    EXPECT_NE(d.log().find(c.says), std::string::npos) << d.log();
  }
}

TEST(TargetNamespace, AnotherUsersProcessSaysWhoseItIsAndWhatToGive) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: sluiced runs as another uid";
  Daemon d;
  const std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
  ASSERT_EQ(chown(dir.c_str(), 65534, 65534), 0);
  d.set_child_setup([] {
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0) {
      _exit(126);
    }
  });
  // This test's own process: root's, not nobody's.
  const std::string pid = std::to_string(getpid());
  d.start({"--netns", pid, "-t", "18080:8080"});
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("--netns " + pid + ": process " + pid +
                         " belongs to uid 0, and sluiced (uid 65534) may not open its namespaces"),
            std::string::npos)
      << d.log();
  EXPECT_NE(d.log().find("give the PID of a container this user started"), std::string::npos)
      << d.log();
}

}  // namespace
}  // namespace sluice::test
