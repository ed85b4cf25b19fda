// Auto-scan end to end: sluiced --netns joins a container stand-in
// (container.h) whose servers the test starts and stops at run time, and the
// real worker publishes a scan rule's port on this side while something is
// bound on it inside, and stops when nothing is. A kept port of an ordinary
// rule refuses and resets nothing while scans come and go; a scan change is
// no commit (the generation stays, a client's compare-and-swap still holds);
// sluice's own connections and flows inside never make a port listen; more
// ports inside than descriptors open what fits; a reload that allows a
// denied scan port opens it; a server on one address other than loopback
// is explained; and auto without a target
// namespace is one clear line that says what to do.
//
// Scans run about once a second. Every wait is bounded (15 s for what takes
// about one scan, 2 s in the worst case) and reports the time it measured, so
// that no test passes or fails by the machine's speed.
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/scan_wait.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

/// True when a TCP connect to 127.0.0.1:`port` is refused: nothing listens
/// on this side. Loopback answers a connect at once.
bool tcp_refused(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) != 0 &&
         errno == ECONNREFUSED;
}

/// True when a UDP socket can be bound on 127.0.0.1:`port` (without
/// SO_REUSEADDR): no listener of sluice holds the port on this side.
bool udp_free(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) == 0;
}

/// Starts sluiced in `box`'s namespaces with `rules` and waits until it serves.
void start_in(Daemon& d, const Container& box, const std::vector<std::string>& rules) {
  std::vector<std::string> args = {"--netns", box.netns(), "--userns", box.userns()};
  args.insert(args.end(), rules.begin(), rules.end());
  d.start(args);
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

TEST(TargetNamespaceScan, ATcpServerStartedInsideIsPublishedAndWithdrawn) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  start_in(d, box, {"-t", "auto"});  // pasta's -t auto: every non-ephemeral port, scanned
  EXPECT_TRUE(tcp_refused(8081));
  RunResult idle = d.ctl({"--stats"});
  EXPECT_NE(idle.out.find("auto-scan: listening on no port now: none of its ports is bound in the "
                          "target namespace"),
            std::string::npos)
      << idle.out;

  ASSERT_EQ(box.command("tcp 8081"), "ok");
  long long up = wait_ms([] { return tcp_echo(8081, "inside") == "inside"; });
  ASSERT_GE(up, 0) << "not reachable within 15 s\n" << d.log();
  EXPECT_LE(up, 15000) << "reachable after " << up << " ms";
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("auto-scan: listening on 8081\n"), std::string::npos)
      << "after " << up << " ms:\n"
      << stats.out;

  ASSERT_EQ(box.command("close tcp 8081"), "ok");
  long long down = wait_ms([] { return tcp_refused(8081); });
  ASSERT_GE(down, 0) << "port 8081 still accepts 15 s after the server closed\n" << d.log();
  // The worker logs after it closed the listener, and its log reaches the
  // test through a pipe: wait for the line rather than race it.
  EXPECT_TRUE(wait_for_log(d, "auto-scan: stopped listening on TCP 8081")) << d.log();
  EXPECT_NE(d.log().find("auto-scan: now listening on TCP 8081"), std::string::npos) << d.log();
  std::cout << "published after " << up << " ms, withdrawn after " << down << " ms\n";
}

TEST(TargetNamespaceScan, AUdpServerStartedInsideIsPublishedAndWithdrawn) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  start_in(d, box, {"-u", "auto"});
  EXPECT_TRUE(udp_free(5353));
  ASSERT_EQ(box.command("udp 5353"), "ok");
  UniqueFd client = bind_udp("127.0.0.1");
  long long up = wait_ms([&] {
    Datagram reply = request(client.get(), "127.0.0.1", 5353, "ping", 200, 1);
    return reply.ok && reply.payload == "5353|ping";
  });
  ASSERT_GE(up, 0) << "no UDP reply within 15 s\n" << d.log() << d.ctl({"--stats"}).out;
  ASSERT_EQ(box.command("close udp 5353"), "ok");
  long long down = wait_ms([] { return udp_free(5353); });
  ASSERT_GE(down, 0) << "UDP port 5353 still held 15 s after the server closed\n" << d.log();
  std::cout << "published after " << up << " ms, withdrawn after " << down << " ms\n";
}

TEST(TargetNamespaceScan, AKeptPortRefusesAndResetsNothingWhileScansComeAndGo) {
  Container box({"tcp", "8080"});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  start_in(d, box, {"-t", "127.0.0.1/18080:8080", "-t", "127.0.0.1/18100-18139,auto"});
  KeptPortProber prober(18080, KeptPortProber::Target::kEcho, 100);
  // 22 scan changes: each starts a server on the next port inside and stops
  // the one before, so each change opens one listener and closes another.
  constexpr int kChanges = 22;
  const auto overall = Clock::now() + std::chrono::seconds(90);
  int changes = 0;
  long long slowest = 0;
  for (int i = 0; i < kChanges && Clock::now() < overall; ++i) {
    const uint16_t port = static_cast<uint16_t>(18100 + i);
    ASSERT_EQ(box.command("tcp " + std::to_string(port)), "ok");
    if (i > 0) {
      ASSERT_EQ(box.command("close tcp " + std::to_string(port - 1)), "ok");
    }
    long long took = wait_ms([&] {
      return !tcp_refused(port) && (i == 0 || tcp_refused(static_cast<uint16_t>(port - 1)));
    });
    ASSERT_GE(took, 0) << "scan change " << i << " not seen within 15 s\n" << d.log();
    slowest = std::max(slowest, took);
    ++changes;
  }
  prober.stop();
  EXPECT_EQ(changes, kChanges);
  EXPECT_GE(prober.ok(), kChanges);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
  std::cout << changes << " scan changes (slowest " << slowest << " ms), " << prober.ok()
            << " probes of the kept port, " << prober.slow() << " without an answer in 10 s\n";
  // Scans are not commits: the generation of the initial rules stays.
  auto v = parse_json(d.ctl({"--json"}).out);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->get("generation")->integer(), 1);
}

TEST(TargetNamespaceScan, AScanChangeIsNoCommitAndAClientsGenerationStillHolds) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  start_in(d, box, {"-t", "127.0.0.1/18200-18209,auto"});
  RunResult before = d.ctl({"--json"});
  auto state_before = parse_json(before.out);
  ASSERT_TRUE(state_before.has_value()) << before.out;
  EXPECT_NE(before.out.find("\"SCAN\""), std::string::npos) << "the hello offers auto-scan";
  // A client reads the state before the scan change...
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  control::State read = get_state(*control);

  ASSERT_EQ(box.command("tcp 18201"), "ok");
  long long up = wait_ms([] { return !tcp_refused(18201); });
  ASSERT_GE(up, 0) << d.log();
  RunResult after = d.ctl({"--json"});
  auto state_after = parse_json(after.out);
  ASSERT_TRUE(state_after.has_value()) << after.out;
  EXPECT_EQ(state_after->get("generation")->integer(), state_before->get("generation")->integer());
  EXPECT_EQ(state_after->get("digest")->string, state_before->get("digest")->string);
  auto history = parse_json(d.ctl({"--history", "--json"}).out);
  ASSERT_TRUE(history.has_value());
  EXPECT_EQ(history->array.size(), 1u) << "only the initial rules are a commit";
  auto stats = parse_json(d.ctl({"--stats", "--json"}).out);
  ASSERT_TRUE(stats.has_value());
  const JsonValue& runs = *stats->get("rules")->array.at(0).get("scanActive");
  ASSERT_EQ(runs.array.size(), 1u);
  EXPECT_EQ(runs.array[0].get("first")->integer(), 18201);
  EXPECT_EQ(runs.array[0].get("last")->integer(), 18201);

  // ...and commits on it afterwards: the scan change made it no stale.
  control::CommitRequest req;
  req.tables = read.tables;
  Rule extra;
  extra.listen = addr_v4(127, 0, 0, 1);
  extra.first = extra.last = extra.to = 18300;
  req.tables.of(Pif::kHost).rules.push_back(extra);
  req.expected_generation = read.generation;
  control::CommitResult r = commit_request(*control, req);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.generation, read.generation + 1);
  EXPECT_EQ(r.kept, 1u) << "the scanned port's listener stays";
  EXPECT_FALSE(tcp_refused(18201));
}

TEST(TargetNamespaceScan, SluicesOwnConnectionsAndFlowsInsideNeverMakeAPortListen) {
  Container box({"tcp", "8080", "udp", "5353"});
  ASSERT_GT(box.pid(), 0);
  // The worker's outgoing connections and flows inside take their local
  // ports from the container's ephemeral range: make it ten ports, and scan
  // exactly those.
  ASSERT_EQ(box.command("ports 40000 40009"), "ok");
  Daemon d;
  start_in(d, box,
           {"-t", "127.0.0.1/18080:8080", "-u", "127.0.0.1/18053:5353", "-t", "40000-40009,auto",
            "-u", "40000-40009,auto"});
  std::vector<UniqueFd> conns;
  for (int i = 0; i < 3; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", 18080, 2000);
    ASSERT_TRUE(c.valid()) << d.log();
    char b = 'x';
    ASSERT_EQ(send(c.get(), &b, 1, MSG_NOSIGNAL), 1);
    ASSERT_EQ(recv(c.get(), &b, 1, 0), 1) << d.log();
    conns.push_back(std::move(c));
  }
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 3; ++i) {  // three flows, each a connected socket inside
    clients.push_back(bind_udp("127.0.0.1"));
    Datagram reply = request(clients.back().get(), "127.0.0.1", 18053, "flow");
    ASSERT_TRUE(reply.ok) << d.log();
  }
  // Longer than two scans: a port that would flap has been seen by then.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  RunResult stats = d.ctl({"--stats"});
  size_t idle = 0;
  for (size_t at = 0;
       (at = stats.out.find("auto-scan: listening on no port now", at)) != std::string::npos;
       ++at) {
    ++idle;
  }
  EXPECT_EQ(idle, 2u) << stats.out;
  for (uint16_t port = 40000; port <= 40009; ++port) {
    EXPECT_TRUE(tcp_refused(port)) << port;
    EXPECT_TRUE(udp_free(port)) << port;
  }
  EXPECT_EQ(d.log().find("auto-scan: now listening"), std::string::npos) << d.log();
}

// A container that binds more ports than the worker's descriptor limit can
// hold listeners for: the scan once opened them all, the worker's table
// filled, and the control socket, TCP accepts and the state for restarts
// failed with EMFILE, retried every second. Now a scan opens what fits
// outside the reserve, says so, and the rest of sluice serves on.
TEST(TargetNamespaceScan, MorePortsInsideThanDescriptorsOpenWhatFitsAndServeOn) {
  Container box({"tcp", "8080"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  Daemon d;
  // Limit: 1600 descriptors, of which the worker keeps 1024 free and holds a
  // few dozen: about 540 listeners fit, fewer than the 700 ports below.
  d.set_child_setup([] {
    struct rlimit lim = {1600, 1600};
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(126);
  });
  ASSERT_NO_FATAL_FAILURE(start_in(d, box, {"-t", "8080", "-t", "20000-20999,auto"}));
  for (int port = 20000; port < 20700; ++port) {
    ASSERT_EQ(box.command("tcp " + std::to_string(port)), "ok") << port;
  }
  ASSERT_TRUE(wait_for_log(d, "ports bound on the side a scan rule follows get no listener"))
      << d.log();
  EXPECT_EQ(d.log().find("EMFILE"), std::string::npos) << d.log();
  RunResult stats = d.ctl({"--stats"});
  EXPECT_EQ(stats.status, 0) << stats.err << d.log();
  EXPECT_EQ(tcp_echo(8080, "static"), "static") << d.log();
  EXPECT_EQ(tcp_echo(20000, "scanned"), "scanned") << d.log();
}

// A scan port the bind policy denies is not retried by scans; a reload that
// allows it once had to wait for some other port to change inside. Now the
// reload makes the next scan plan again.
TEST(TargetNamespaceScan, AReloadThatAllowsADeniedScanPortOpensIt) {
  Container box({"tcp", "20001", "tcp", "20002"});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  PolicyFileFixture policy("bind deny tcp,udp 20001 *\nbind allow tcp,udp 1024-65535 *\n");
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_in(d, box, {"--policy", policy.path(), "-t", "20000-20010,auto"}));
  ASSERT_GE(wait_ms([] { return tcp_echo(20002, "allowed") == "allowed"; }), 0) << d.log();
  EXPECT_TRUE(tcp_refused(20001));
  EXPECT_NE(d.log().find("tried again once a policy reload or a commit changes something"),
            std::string::npos)
      << d.log();
  // --stats says which bound port does not listen here, and why.
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("auto-scan: bound there, not listening here: 20001 (refused by the bind "
                          "policy)"),
            std::string::npos)
      << text.out;
  auto failing = [&d]() -> std::vector<JsonValue> {
    RunResult json = d.ctl({"--stats", "--json"});
    auto doc = parse_json(json.out);
    if (!doc) return {};
    for (const JsonValue& r : doc->get("rules")->array) {
      if (r.get("scanActive") != nullptr && !r.get("scanActive")->is_null()) {
        return r.get("scanFailing")->array;
      }
    }
    return {};
  };
  std::vector<JsonValue> denied = failing();
  ASSERT_EQ(denied.size(), 1u) << d.ctl({"--stats", "--json"}).out;
  EXPECT_EQ(denied[0].get("port")->integer(), 20001);
  EXPECT_EQ(denied[0].get("kind")->string, "policy-denied");
  EXPECT_NE(d.ctl({"--stats", "--prometheus"}).out.find("sluice_rule_scan_failing_ports{"),
            std::string::npos);
  policy.rewrite("bind allow tcp,udp 1024-65535 *\n");
  d.signal(SIGHUP);
  long long up = wait_ms([] { return tcp_echo(20001, "now") == "now"; });
  EXPECT_GE(up, 0) << "20001 not published within 15 s of the reload\n" << d.log();
  EXPECT_TRUE(failing().empty()) << d.ctl({"--stats", "--json"}).out;
}

// A server inside bound to one address other than the loopback that sluice
// connects to: auto-scan publishes its port (any address counts, as in
// pasta), its connections are refused inside, and the warning once said
// "nothing listens there: start the server". It now says why, and what to do.
TEST(TargetNamespaceScan, AServerOnOneAddressOtherThanLoopbackIsExplained) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_in(d, box, {"-t", "20000-20010,auto"}));
  ASSERT_TRUE(inside.hold_tcp("127.0.0.2", 20005));
  ASSERT_GE(wait_ms([] { return listening(20005); }), 0) << d.log();
  EXPECT_EQ(tcp_echo(20005, "refused inside"), "");
  EXPECT_TRUE(wait_for_log(d, "listens on one address other than loopback")) << d.log();
  EXPECT_EQ(d.log().find("nothing listens there"), std::string::npos) << d.log();
}

TEST(TargetNamespaceScan, AutoWithoutATargetNamespaceSaysToStartSluicedWithNetns) {
  {
    Daemon d;
    d.start({"-t", "auto"});
    EXPECT_EQ(d.wait_exit(), 1) << d.log();
    const std::string log = d.log();
    EXPECT_NE(log.find("auto (auto-scan) needs a target namespace"), std::string::npos) << log;
    EXPECT_NE(log.find("start sluiced with --netns PATH|PID"), std::string::npos) << log;
  }
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult json = d.ctl({"--json"});
  EXPECT_EQ(json.out.find("\"SCAN\""), std::string::npos) << "no target namespace, no SCAN";
  RunResult r = d.ctl({"-A", "-t", "127.0.0.1/8000-8010,auto"});
  EXPECT_NE(r.status, 0);
  const std::string said = r.out + r.err;
  size_t lines = 0;
  for (size_t at = 0; (at = said.find("needs a target namespace", at)) != std::string::npos; ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << said;
  EXPECT_NE(said.find("--netns"), std::string::npos) << said;
}

}  // namespace
}  // namespace sluice::test
