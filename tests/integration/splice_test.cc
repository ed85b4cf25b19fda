// SPLICE rules (-T/-U) end to end: sluiced --netns listens inside a
// container stand-in's namespace (its namespace helper opens the sockets
// there) and connects to this side's loopback (through sockets sluiced makes
// here). A client inside the namespace (NsClient, a forked child that joined
// it) talks to 127.0.0.1 and ::1 there; the servers are echo servers on this
// side. HOST and SPLICE rules share one table set and one commit.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/host_echo.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/pesto_util.h"
#include "tests/integration/restart_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/rule_util.h"

namespace sluice::test {
namespace {

/// Starts `d` on `box`'s namespaces with `args`; fails the test when it does
/// not come up.
void start_on(Daemon& d, const Container& box, std::vector<std::string> args) {
  std::vector<std::string> all = {"--netns", box.netns(), "--userns", box.userns()};
  all.insert(all.end(), args.begin(), args.end());
  d.start(all);
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// A SPLICE rule for a commit: TCP or UDP, [*]%lo:first-last => to.
Rule splice_rule(Proto proto, uint16_t first, uint16_t last, uint16_t to) {
  Rule r = make_rule("*", first, last, to);
  r.proto = proto;
  r.ifname = "lo";
  return r;
}

/// What the tests of a HOST and a SPLICE rule together share: a container
/// with a TCP server on its port 8080, a client inside it, an echo server on
/// port 19000 on this side, and sluiced with -t 127.0.0.1/18080:8080 and
/// -T 29000:19000.
struct HostAndSplice {
  Container box{std::vector<std::string>{"tcp", "8080"}};
  NsClient inside{box.pid()};
  HostEcho tcp{19000};
  Daemon d;

  /// Starts sluiced; fails the test when the container, the client inside
  /// or sluiced does not come up.
  void start() {
    ASSERT_GT(box.pid(), 0) << "the container did not start";
    ASSERT_TRUE(inside.ok());
    start_on(d, box, {"-t", "127.0.0.1/18080:8080", "-T", "29000:19000"});
  }
};

TEST(Splice, TcpAndUdpFromInsideReachThisSideOverIpv4AndIpv6) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  HostEcho tcp(19000);
  UdpEcho udp4("127.0.0.1", 19053, "v4"), udp6("::1", 19053, "v6");
  Daemon d;
  start_on(d, box, {"-t", "none", "-T", "29000:19000", "-U", "29053:19053"});
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29000, "tcp over v4"), "tcp over v4") << d.log();
  EXPECT_EQ(inside.tcp_echo("::1", 29000, "tcp over v6"), "tcp over v6") << d.log();
  // The UDP echo says which of its sockets answered: the family is kept.
  EchoReply v4 = parse_echo(inside.udp_request("127.0.0.1", 29053, "udp over v4"));
  EXPECT_EQ(v4.tag, "v4") << d.log();
  EXPECT_EQ(v4.payload, "udp over v4");
  EchoReply v6 = parse_echo(inside.udp_request("::1", 29053, "udp over v6"));
  EXPECT_EQ(v6.tag, "v6") << d.log();
  EXPECT_EQ(v6.payload, "udp over v6");
  // Nothing listens on 29000 on this side: the listener is inside.
  EXPECT_FALSE(listening(29000));
  // sluicectl lists both tables; the hello lists both pifs.
  RunResult list = d.ctl();
  EXPECT_EQ(list.status, 0) << list.err;
  EXPECT_NE(list.out.find("HOST\n    (no rules)"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("SPLICE\n    TCP [*]%lo:29000 => 19000\n    UDP [*]%lo:29053 => 19053"),
            std::string::npos)
      << list.out;
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("TCP [*]%lo:29000 => 19000"), std::string::npos) << stats.out;
}

TEST(Splice, ListenersAreOnTheLoopbackDeviceWhateverItIsNamedInside) {
  // The namespace belongs to its owner, who may rename its loopback device
  // and give the name `lo` to an interface that reaches other hosts. A
  // SPLICE listener bound to the name would then serve that interface, not
  // the namespace's own processes; it is bound to the loopback device's
  // index (1 in every namespace) instead.
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  const std::string pid = std::to_string(box.pid());
  RunResult renamed = run_command(
      {"/usr/bin/nsenter", "-t", pid, "-U", "-n", "--preserve-credentials", "/bin/sh", "-c",
       "ip link set lo down && ip link set lo name lo2 && ip link set lo2 up && "
       "ip link add lo type veth peer name lopeer"});
  if (renamed.status != 0) GTEST_SKIP() << "cannot rename lo or add a veth: " << renamed.err;
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  HostEcho tcp(19000);
  Daemon d;
  start_on(d, box, {"-t", "none", "-T", "29000:19000"});
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29000, "still loopback"), "still loopback") << d.log();
  EXPECT_EQ(inside.tcp_echo("::1", 29000, "still loopback"), "still loopback") << d.log();
}

TEST(Splice, ManyConnectionsAtOnceWaitForHostSocketsAndAllGoThrough) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  // More clients than one pool holds, at once: some find it empty and wait
  // for the refill instead of failing.
  std::vector<std::unique_ptr<NsClient>> clients;
  for (int i = 0; i < 48; ++i) {
    clients.push_back(std::make_unique<NsClient>(box.pid()));
    ASSERT_TRUE(clients.back()->ok());
  }
  HostEcho tcp(19000);
  Daemon d;
  start_on(d, box, {"-d", "-t", "none", "-T", "29000:19000"});
  ASSERT_EQ(clients[0]->tcp_echo("127.0.0.1", 29000, "first"), "first") << d.log();
  for (auto& c : clients) ASSERT_TRUE(c->start_prober(29000));
  for (int round = 0; round < 5; ++round) {
    for (auto& c : clients) c->await_probe();
  }
  int ok = 0, refused = 0, reset = 0;
  for (auto& c : clients) {
    int o = 0, f = 0, r = 0;
    ASSERT_EQ(std::sscanf(c->stop_prober().c_str(), "%d %d %d", &o, &f, &r), 3);
    ok += o;
    refused += f;
    reset += r;
  }
  EXPECT_GE(ok, 48 * 5);
  EXPECT_EQ(refused, 0) << d.log();
  EXPECT_EQ(reset, 0) << d.ctl({"--stats"}).out;
  // Whether a burst found the pool empty depends on timing; say when it did.
  if (d.log().find("waits for sluiced's refill") != std::string::npos) {
    std::cout << "some connections waited for a refill of host-side sockets\n";
  }
}

// New UDP flows of a SPLICE rule take host-side sockets from a pool sluiced
// refills. A burst of new clients larger than the pool once lost the
// datagrams of those that found it empty (a DNS client behind -U makes a new
// flow for every query). The listener now reads no more than the pool can
// serve, and waits for the refill.
TEST(Splice, ABurstOfNewUdpClientsLargerThanThePoolIsServedWhole) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  UdpEcho udp4("127.0.0.1", 19053, "v4");
  Daemon d;
  start_on(d, box, {"-t", "none", "-U", "29053:19053"});
  ASSERT_NE(inside.udp_request("127.0.0.1", 29053, "first"), "") << d.log();
  // The worker stopped, the burst queues whole in its listener.
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGSTOP), 0);
  ASSERT_TRUE(wait_for_state(worker, 'T'));
  const bool sent = inside.udp_burst("127.0.0.1", 29053, 100);
  ASSERT_EQ(::kill(worker, SIGCONT), 0);
  ASSERT_TRUE(sent);
  EXPECT_EQ(inside.udp_burst_replies(15000), 100u) << d.ctl({"--stats"}).out << d.log();
}

TEST(Splice, HostAndSpliceRulesCommitTogetherAndABindErrorInsideRollsBackBoth) {
  HostAndSplice s;
  ASSERT_NO_FATAL_FAILURE(s.start());
  auto& [box, inside, tcp, d] = s;
  // One commit, both tables.
  RunResult both = d.ctl({"-A", "-t", "127.0.0.1/18081:8080", "-T", "29001:19000"});
  ASSERT_EQ(both.status, 0) << both.out << both.err << d.log();
  EXPECT_EQ(tcp_echo(18081, "host rule"), "host rule") << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29001, "splice rule"), "splice rule") << d.log();
  // A port taken inside the namespace: the SPLICE bind fails there, and the
  // HOST rule of the same commit is rolled back with it.
  ASSERT_TRUE(inside.hold_tcp("127.0.0.1", 29002));
  RunResult bad = d.ctl({"-A", "-t", "127.0.0.1/18082:8080", "-T", "29002:19000"});
  EXPECT_NE(bad.status, 0);
  const std::string said = bad.out + bad.err;
  EXPECT_NE(said.find("SPLICE rule 2 (TCP [*]%lo:29002 => 19000)"), std::string::npos) << said;
  EXPECT_NE(said.find("port 29002"), std::string::npos) << said;
  EXPECT_NE(said.find("EADDRINUSE"), std::string::npos) << said;
  EXPECT_NE(said.find("inside the target namespace"), std::string::npos) << said;
  EXPECT_FALSE(listening(18082)) << "the HOST rule of the failed commit was rolled back";
  RunResult list = d.ctl();
  EXPECT_EQ(list.out.find("18082"), std::string::npos) << list.out;
  EXPECT_EQ(list.out.find("29002"), std::string::npos) << list.out;
  // What was in force before still is.
  EXPECT_EQ(tcp_echo(18080, "kept host"), "kept host") << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29000, "kept splice"), "kept splice") << d.log();
  EXPECT_EQ(inside.tcp_echo("::1", 29001, "kept splice v6"), "kept splice v6") << d.log();
  // A HOST and a SPLICE rule that would send each other's connections back.
  RunResult loop = d.ctl({"-A", "-t", "127.0.0.1/18083:29003", "-T", "29003:18083"});
  EXPECT_NE(loop.status, 0);
  EXPECT_NE((loop.out + loop.err).find("would circle between them"), std::string::npos)
      << loop.out << loop.err;
}

TEST(Splice, KeptSplicePortRefusesNothingAcross60Commits) {
  HostAndSplice s;
  ASSERT_NO_FATAL_FAILURE(s.start());
  auto& [box, inside, tcp, d] = s;
  ASSERT_TRUE(inside.start_prober(29000));
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  uint64_t gen = get_state(*control).generation;
  for (int i = 0; i < 60; ++i) {
    control::CommitRequest req;
    // The kept SPLICE and HOST rules, and one of each that comes and goes.
    req.tables = host_table({make_rule("127.0.0.1", 18080, 18080, 8080),
                             make_rule("127.0.0.1", static_cast<uint16_t>(18090 + i % 2),
                                       static_cast<uint16_t>(18090 + i % 2), 8080)});
    req.tables.of(Pif::kSplice).rules = {
        splice_rule(Proto::kTcp, 29000, 29000, 19000),
        splice_rule(Proto::kTcp, static_cast<uint16_t>(29010 + i % 2),
                    static_cast<uint16_t>(29010 + i % 2), 19000)};
    req.expected_generation = gen;
    control::CommitResult r = commit_request(*control, req);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
    gen = r.generation;
    inside.await_probe();  // interleave: a probe through the kept port between commits
  }
  int ok = 0, refused = -1, reset = -1;
  ASSERT_EQ(std::sscanf(inside.stop_prober().c_str(), "%d %d %d", &ok, &refused, &reset), 3);
  EXPECT_GE(ok, 60);
  EXPECT_EQ(refused, 0);
  EXPECT_EQ(reset, 0);
  EXPECT_TRUE(inside.listening(29011));
  EXPECT_FALSE(inside.listening(29010));
}

TEST(Splice, ARebindInsideSharesNoPortWithAnotherProgramThere) {
  // A SPLICE rule moving 127.0.0.1 -> *%lo -> 127.0.0.2 on one port, each a
  // rebind inside the namespace. sluiced reads the namespace's socket tables
  // (through its helper there) before it shares a port: the first move
  // shares with sluice's own listener; the second would join another
  // program's SO_REUSEPORT listener on 127.0.0.2, and fails instead.
  HostAndSplice s;
  ASSERT_NO_FATAL_FAILURE(s.start());
  auto& [box, inside, tcp, d] = s;
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  auto splice_at = [](const char* listen) {
    Rule r = make_rule(listen, 29020, 29020, 19000);
    if (std::string(listen) == "*") r.ifname = "lo";
    TableSet t = host_table({make_rule("127.0.0.1", 18080, 18080, 8080)});
    t.of(Pif::kSplice).rules = {splice_rule(Proto::kTcp, 29000, 29000, 19000), r};
    return t;
  };
  control::CommitRequest req;
  req.tables = splice_at("127.0.0.1");
  req.expected_generation = get_state(*control).generation;
  control::CommitResult r = commit_request(*control, req);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
  req.tables = splice_at("*");
  req.expected_generation = r.generation;
  r = commit_request(*control, req);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
  EXPECT_EQ(r.rebound, 1u);
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29020, "moved"), "moved") << d.log();
  // Another program inside, of sluiced's user, with SO_REUSEPORT: the
  // kernel lets it bind beside sluice's *%lo.
  ASSERT_TRUE(inside.hold_tcp_shared("127.0.0.2", 29020));
  req.tables = splice_at("127.0.0.2");
  req.expected_generation = r.generation;
  control::CommitResult refused = commit_request(*control, req);
  EXPECT_FALSE(refused.applied) << d.log();
  ASSERT_EQ(refused.failures.size(), 1u) << d.log();
  EXPECT_EQ(refused.failures[0].port, 29020);
  EXPECT_EQ(refused.failures[0].err, EADDRINUSE) << refused.failures[0].message;
  EXPECT_NE(d.log().find("another program's socket holds it at 127.0.0.2:29020"), std::string::npos)
      << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29020, "still"), "still") << d.log();
}

TEST(Splice, LowPortsInsideANamespaceTheUserOwnsWork) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  HostEcho tcp(19000);
  Daemon d;
  if (real_root_run()) {
    // Real root joins the network namespace alone (ARCHITECTURE.md, "Which
    // namespaces are joined"): its helper holds no capability in the
    // container's user namespace, so without CAP_NET_BIND_SERVICE a low port
    // inside is refused, saying so.
    d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "none", "-T", "29080:19000"},
            /*drop_bind_cap=*/true);
    ASSERT_TRUE(d.wait_ready()) << d.log();
    RunResult low = d.ctl({"-A", "-T", "80:19000"});
    EXPECT_NE(low.status, 0);
    EXPECT_NE((low.out + low.err).find("CAP_NET_BIND_SERVICE"), std::string::npos)
        << low.out << low.err;
    EXPECT_FALSE(inside.listening(80));
    return;
  }
  // Without CAP_NET_BIND_SERVICE on this side: the helper holds it in the
  // container's user namespace, which the test's user owns.
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "none", "-T", "80:19000"},
          /*drop_bind_cap=*/true);
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 80, "port 80 inside"), "port 80 inside") << d.log();
  // This side's low ports still need the capability, and say so.
  RunResult host = d.ctl({"-A", "-t", "127.0.0.1/81:19000"});
  EXPECT_NE(host.status, 0);
  EXPECT_NE((host.out + host.err).find("CAP_NET_BIND_SERVICE"), std::string::npos)
      << host.out << host.err;
}

TEST(Splice, WithoutATargetNamespaceTheyAreRefusedSayingGiveNetns) {
  Daemon d;
  d.start({"-T", "29000"});
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("start sluiced with --netns"), std::string::npos) << d.log();
  Daemon running;
  running.start({"-t", "none"});
  ASSERT_TRUE(running.wait_ready()) << running.log();
  RunResult add = running.ctl({"-A", "-T", "29000"});
  EXPECT_NE(add.status, 0);
  EXPECT_NE((add.out + add.err).find("--netns"), std::string::npos) << add.out << add.err;
}

TEST(Splice, TheHelpersDeathEndsSluicedWithAClearError) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  start_on(d, box, {"-t", "none", "-T", "29000:19000"});
  const pid_t helper = d.helper_pid();
  ASSERT_GT(helper, 0) << d.log();
  ASSERT_EQ(kill(helper, SIGKILL), 0);
  EXPECT_EQ(d.wait_exit(), 1) << d.log();
  EXPECT_NE(d.log().find("the namespace helper is gone"), std::string::npos) << d.log();
}

TEST(Splice, AStoppedHelperFailsSpliceListenersWithEtimedoutAndForwardingGoesOn) {
  HostAndSplice s;
  ASSERT_NO_FATAL_FAILURE(s.start());
  auto& [box, inside, tcp, d] = s;
  const pid_t helper = d.helper_pid();
  ASSERT_GT(helper, 0) << d.log();
  ASSERT_EQ(kill(helper, SIGSTOP), 0);
  // A commit that needs a listener inside waits for the helper, at most
  // kHelperAnswerTimeoutMs, then fails naming rule, port and errno, and
  // rolls back the HOST rule that came with it.
  RunResult stalled =
      d.ctl({"--timeout", "60", "-A", "-t", "127.0.0.1/18081:8080", "-T", "29001:19000"});
  EXPECT_NE(stalled.status, 0);
  std::string said = stalled.out + stalled.err;
  EXPECT_NE(said.find("SPLICE rule 1 (TCP [*]%lo:29001 => 19000)"), std::string::npos) << said;
  EXPECT_NE(said.find("port 29001"), std::string::npos) << said;
  EXPECT_NE(said.find("ETIMEDOUT"), std::string::npos) << said;
  EXPECT_NE(said.find("kill -CONT"), std::string::npos) << said;
  EXPECT_NE(d.log().find("kill -CONT " + std::to_string(helper)), std::string::npos) << d.log();
  EXPECT_FALSE(listening(18081)) << "the HOST rule of the failed commit was rolled back";
  // sluiced serves on: what is in force forwards, a HOST commit applies, and
  // a second SPLICE listener fails at once (the helper is not asked again).
  EXPECT_EQ(tcp_echo(18080, "kept host"), "kept host") << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29000, "kept splice"), "kept splice") << d.log();
  RunResult host = d.ctl({"-A", "-t", "127.0.0.1/18082:8080"});
  EXPECT_EQ(host.status, 0) << host.out << host.err << d.log();
  EXPECT_EQ(tcp_echo(18082, "new host"), "new host") << d.log();
  RunResult again = d.ctl({"-A", "-T", "29002:19000"});
  EXPECT_NE(again.status, 0);
  EXPECT_NE((again.out + again.err).find("ETIMEDOUT"), std::string::npos) << again.out << again.err;
  EXPECT_NE(d.log().find("still has not answered"), std::string::npos) << d.log();
  // Continued, the helper's late answer is drained and SPLICE works again.
  ASSERT_EQ(kill(helper, SIGCONT), 0);
  ASSERT_TRUE(wait_for_log(d, "the namespace helper answered")) << d.log();
  // The late answer's socket is closed (the helper closes its own copy once
  // sent, which may come a moment after sluiced's log line).
  bool closed = false;
  for (int i = 0; i < 100 && !(closed = !inside.listening(29001)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(closed) << "the late answer's socket is still open";
  RunResult later = d.ctl({"-A", "-T", "29001:19000"});
  ASSERT_EQ(later.status, 0) << later.out << later.err << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 29001, "after"), "after") << d.log();
  EXPECT_EQ(d.helper_pid(), helper);
}

TEST(Splice, PestoHelloOffersSpliceAndTheRealPestoAddsATRule) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  HostEcho tcp(8080);
  Daemon d;
  start_with_pesto(d, {"--netns", box.netns(), "--userns", box.userns(), "-t", "none"});
  {
    RawPesto raw(d.pesto_path());
    ASSERT_TRUE(raw.valid());
    ASSERT_TRUE(raw.read_hello()) << raw.failure();
    ASSERT_EQ(raw.tables().size(), 2u);
    EXPECT_EQ(raw.tables()[0].pif, Pif::kHost);
    EXPECT_EQ(raw.tables()[1].pif, Pif::kSplice);
    const uint32_t caps = raw.tables()[1].caps;
    EXPECT_EQ(caps & (pesto::kCapTcp | pesto::kCapUdp | pesto::kCapIfName),
              pesto::kCapTcp | pesto::kCapUdp | pesto::kCapIfName);
    // The server's caps, SCAN included: auto on -T/-U follows sluiced's side.
    EXPECT_EQ(caps, raw.tables()[0].caps);
    EXPECT_NE(caps & pesto::kCapScan, 0u);
  }
  SKIP_WITHOUT_REAL_PESTO();
  RunResult add = run_pesto({"-A", "-T", "8080"}, d.pesto_path());
  ASSERT_EQ(add.status, 0) << add.err << d.log();
  pesto_tables(d.pesto_path());  // served only once the update is in force
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("SPLICE\n    TCP [*]%lo:8080 => 8080"), std::string::npos)
      << list.out << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 8080, "via pesto"), "via pesto") << d.log();
  RunResult shown = run_pesto({}, d.pesto_path());
  EXPECT_NE(shown.out.find("TCP [*]%lo:8080  =>  8080"), std::string::npos) << shown.out;
}

}  // namespace
}  // namespace sluice::test
