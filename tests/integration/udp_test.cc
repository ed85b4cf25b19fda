// UDP forwarding end to end: the real sluiced and worker in the test's own
// network namespace (lo with 127.0.0.0/8 and ::1), real UDP targets, real
// clients. Replies must come back from the address each client sent to,
// through specific, wildcard and dual-stack listeners; flows expire when
// idle, the flow limit drops new clients and recovers, a kept port keeps
// delivering through commits, a removed rule stops forwarding, and a target
// where nothing listens is logged and counted.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/stats_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

constexpr uint16_t kTarget = 19000;
constexpr uint16_t kTarget2 = 19001;
constexpr uint16_t kPort = 19053;
constexpr uint16_t kPort2 = 19054;

using Clock = std::chrono::steady_clock;

/// Milliseconds since `start`.
long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

/// A UDP rule listening on `listen`:`port`, to loopback port `to`.
Rule udp_rule(uint16_t port, uint16_t to, const char* listen = "127.0.0.1") {
  Rule r;
  r.proto = Proto::kUdp;
  EXPECT_TRUE(parse_addr(listen, &r.listen));
  r.first = r.last = port;
  r.to = to;
  return r;
}

/// Commits `rules` as the HOST table on top of `*generation`, which it
/// advances; returns the result.
control::CommitResult commit(ControlConnection& c, std::vector<Rule> rules, uint64_t* generation,
                             bool end_removed_flows = false) {
  control::CommitRequest req;
  req.tables.of(Pif::kHost).rules = std::move(rules);
  req.expected_generation = *generation;
  req.end_removed_flows = end_removed_flows;
  req.comment = "udp_test";
  control::CommitResult result = commit_request(c, req);
  if (result.applied) *generation = result.generation;
  return result;
}

/// Counts the lines of `log` that contain `needle`.
size_t count_lines(const std::string& log, const std::string& needle) {
  size_t n = 0;
  for (size_t at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
  return n;
}

TEST(Udp, HundredSourcePortsGetRepliesFromTheAddressTheySentTo) {
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"-u", "0.0.0.0/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult listing = d.ctl();
  EXPECT_NE(listing.out.find("UDP [0.0.0.0]:19053 => 19000"), std::string::npos) << listing.out;

  // 100 clients, each on its own source port, alternately sending to
  // 127.0.0.1 and 127.0.0.2: both are on lo, both reach the 0.0.0.0 socket.
  constexpr int kClients = 100;
  std::vector<UniqueFd> clients;
  std::set<uint16_t> client_ports, flow_ports;
  std::vector<uint16_t> flow_port_of(kClients);
  int retries = 0;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(bind_udp("127.0.0.1"));
    client_ports.insert(local_port(clients.back().get()));
    std::string dst = i % 2 == 0 ? "127.0.0.1" : "127.0.0.2";
    Datagram reply =
        request(clients.back().get(), dst, kPort, "c" + std::to_string(i), 2000, 3, &retries);
    ASSERT_TRUE(reply.ok) << "client " << i << ": errno " << reply.err << "\n" << d.log();
    EXPECT_EQ(reply.from_addr, dst) << "client " << i;
    EXPECT_EQ(reply.from_port, kPort) << "client " << i;
    EchoReply echo = parse_echo(reply.payload);
    EXPECT_EQ(echo.tag, "t");
    EXPECT_EQ(echo.payload, "c" + std::to_string(i));
    flow_port_of[static_cast<size_t>(i)] = echo.source_port;
    flow_ports.insert(echo.source_port);
  }
  EXPECT_EQ(client_ports.size(), static_cast<size_t>(kClients));
  EXPECT_EQ(flow_ports.size(), static_cast<size_t>(kClients)) << "one flow per client";
  EXPECT_EQ(retries, 0);
  // A second round takes the same flows (the target sees the same ports).
  for (int i = 0; i < kClients; ++i) {
    std::string dst = i % 2 == 0 ? "127.0.0.1" : "127.0.0.2";
    Datagram reply =
        request(clients[static_cast<size_t>(i)].get(), dst, kPort, "again" + std::to_string(i));
    ASSERT_TRUE(reply.ok) << "client " << i;
    EXPECT_EQ(reply.from_addr, dst);
    EXPECT_EQ(parse_echo(reply.payload).source_port, flow_port_of[static_cast<size_t>(i)]);
  }
  // One client, one source port, two local addresses: two flows, each
  // answered from its own address.
  UniqueFd both = bind_udp("127.0.0.1");
  Datagram r1 = request(both.get(), "127.0.0.1", kPort, "via1");
  Datagram r2 = request(both.get(), "127.0.0.2", kPort, "via2");
  ASSERT_TRUE(r1.ok && r2.ok);
  EXPECT_EQ(r1.from_addr, "127.0.0.1");
  EXPECT_EQ(r2.from_addr, "127.0.0.2");
  EXPECT_NE(parse_echo(r1.payload).source_port, parse_echo(r2.payload).source_port);
}

TEST(Udp, Ipv6Listener) {
  UdpEcho target("::1", kTarget, "t6");
  Daemon d;
  d.start({"-u", "::1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  for (int i = 0; i < 10; ++i) {
    UniqueFd c = bind_udp("::1");
    Datagram reply = request(c.get(), "::1", kPort, "six" + std::to_string(i));
    ASSERT_TRUE(reply.ok) << d.log();
    EXPECT_EQ(reply.from_addr, "::1");
    EXPECT_EQ(reply.from_port, kPort);
    EXPECT_EQ(parse_echo(reply.payload).tag, "t6");
  }
}

TEST(Udp, DualStackListenerAnswersBothFamiliesFromTheRightAddress) {
  // No listen address: one [::] socket with V6ONLY=0. IPv4 clients reach the
  // IPv4 loopback target, IPv6 clients the IPv6 one (the default target is
  // loopback of the client's family).
  UdpEcho target4("127.0.0.1", kTarget, "v4");
  UdpEcho target6("::1", kTarget, "v6");
  Daemon d;
  d.start({"-u", std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_NE(d.ctl().out.find("UDP [*]:19053 => 19000"), std::string::npos);
  struct Case {
    const char* bind;
    const char* dst;
    const char* tag;
  };
  for (const Case& c : {Case{"127.0.0.1", "127.0.0.1", "v4"}, Case{"127.0.0.1", "127.0.0.2", "v4"},
                        Case{"::1", "::1", "v6"}}) {
    for (int i = 0; i < 5; ++i) {
      UniqueFd fd = bind_udp(c.bind);
      Datagram reply =
          request(fd.get(), c.dst, kPort, std::string(c.dst) + "#" + std::to_string(i));
      ASSERT_TRUE(reply.ok) << c.dst << "\n" << d.log();
      EXPECT_EQ(reply.from_addr, c.dst);
      EXPECT_EQ(reply.from_port, kPort);
      EXPECT_EQ(parse_echo(reply.payload).tag, c.tag);
    }
  }
}

TEST(Udp, FlowsExpireOnlyAfterTheIdleTimeout) {
  // One flow at most, and 1 s of idleness ends it: client B gets in only once
  // client A has been quiet for a second, never while A is active.
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"--udp-flows", "1", "--udp-idle-timeout", "1", "-u",
           "127.0.0.1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd a = bind_udp("127.0.0.1");
  UniqueFd b = bind_udp("127.0.0.1");
  uint16_t a_flow = 0;
  // When A's flow last carried a datagram (its answer came): its idle time
  // counts from there, not from the end of B's last try below.
  Clock::time_point quiet;
  // A talks every ~300 ms for 2.4 s, more than twice the timeout.
  for (int i = 0; i < 8; ++i) {
    Datagram ra = request(a.get(), "127.0.0.1", kPort, "a" + std::to_string(i));
    ASSERT_TRUE(ra.ok) << i << "\n" << d.log();
    quiet = Clock::now();
    uint16_t port = parse_echo(ra.payload).source_port;
    if (i == 0) a_flow = port;
    EXPECT_EQ(port, a_flow) << "A's flow must live while A is active";
    Datagram rb = request(b.get(), "127.0.0.1", kPort, "b" + std::to_string(i), 300, 1);
    EXPECT_FALSE(rb.ok) << "B got in at round " << i << " while A's flow was active";
  }
  // A goes quiet; B retries every 200 ms (bounded: 5 s).
  Datagram rb;
  for (int i = 0; i < 25 && !rb.ok; ++i) {
    rb = request(b.get(), "127.0.0.1", kPort, "late" + std::to_string(i), 200, 1);
  }
  ASSERT_TRUE(rb.ok) << d.log();
  EXPECT_GE(ms_since(quiet), 900) << "A's flow expired before its idle timeout";
  EXPECT_NE(d.log().find("UDP flow limit of 1 reached"), std::string::npos) << d.log();
}

TEST(Udp, ATargetWhereNothingListensIsLoggedAndCountedInStats) {
  // Nothing listens on kTarget: the datagram is answered with an ICMP port
  // unreachable, which the flow's socket reports as ECONNREFUSED.
  Daemon d;
  d.start({"-u", "127.0.0.1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd client = bind_udp("127.0.0.1");
  ASSERT_TRUE(send_udp(client.get(), "127.0.0.1", kPort, "anyone there?"));
  EXPECT_TRUE(wait_for_log(d,
                           "UDP [127.0.0.1]:19053 => 19000: datagrams to port 19000 of the target "
                           "are answered with an error: ECONNREFUSED"))
      << d.log();
  EXPECT_NE(d.log().find("nothing listens there: start the server, or correct the rule's target"),
            std::string::npos)
      << d.log();
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  const JsonValue* rule = rule_with(*doc, ":19053");
  ASSERT_NE(rule, nullptr);
  ASSERT_NE(rule->get("targetErrors"), nullptr);
  EXPECT_EQ(rule->get("targetErrors")->integer(), 1);
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("; 1 target error (port closed or unreachable)"), std::string::npos)
      << text.out;
  RunResult prom = d.ctl({"--stats", "--prometheus"});
  EXPECT_NE(prom.out.find("sluice_rule_udp_target_errors_total{"), std::string::npos) << prom.out;
}

TEST(Udp, FlowLimitDropsNewClientsWithARateLimitedLogAndRecovers) {
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"--udp-flows", "4", "--udp-idle-timeout", "2", "-u",
           "127.0.0.1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 8; ++i) clients.push_back(bind_udp("127.0.0.1"));
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(request(clients[static_cast<size_t>(i)].get(), "127.0.0.1", kPort, "in").ok)
        << d.log();
  }
  // The table is full: 50 datagrams of 4 new clients are all dropped...
  auto flood = Clock::now();
  for (int round = 0; round < 50; ++round) {
    ASSERT_TRUE(send_udp(clients[4 + static_cast<size_t>(round % 4)].get(), "127.0.0.1", kPort,
                         "x" + std::to_string(round)));
  }
  for (int i = 4; i < 8; ++i) {
    EXPECT_FALSE(recv_udp(clients[static_cast<size_t>(i)].get(), 300).ok) << "client " << i;
  }
  // ...and logged about once a second, not once per datagram.
  std::string log = d.log();
  size_t lines = count_lines(log, "UDP flow limit of 4 reached");
  EXPECT_GE(lines, 1u) << log;
  EXPECT_LE(lines, static_cast<size_t>(ms_since(flood) / 1000 + 2)) << log;
  // Once the first four are idle for 2 s, the new clients get flows.
  for (int i = 4; i < 8; ++i) {
    Datagram r;
    for (int attempt = 0; attempt < 30 && !r.ok; ++attempt) {
      r = request(clients[static_cast<size_t>(i)].get(), "127.0.0.1", kPort,
                  "retry" + std::to_string(attempt), 200, 1);
    }
    EXPECT_TRUE(r.ok) << "client " << i << " never got a flow\n" << d.log();
  }
}

TEST(Udp, KeptPortDeliversThrough50Commits) {
  // Four clients in lock step (one datagram outstanding each, so no buffer
  // can overflow) talk through a kept port while 50 commits add and remove
  // other UDP ports. Every datagram must be answered on its first try.
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"-u", "127.0.0.1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0}, answered{0}, retries{0}, lost{0}, wrong_source{0};
  std::thread prober([&] {
    std::vector<UniqueFd> clients;
    for (int i = 0; i < 4; ++i) clients.push_back(bind_udp("127.0.0.1"));
    auto start = Clock::now();
    for (int seq = 0; seq < 200000 && !stop && ms_since(start) < 60000; ++seq) {
      int r = 0;
      Datagram reply = request(clients[static_cast<size_t>(seq % 4)].get(), "127.0.0.1", kPort,
                               "s" + std::to_string(seq), 2000, 3, &r);
      ++sent;
      retries += r;
      if (!reply.ok) {
        ++lost;
        continue;
      }
      ++answered;
      if (reply.from_addr != "127.0.0.1" || reply.from_port != kPort) ++wrong_source;
    }
  });
  control::ServerHello hello;
  auto control = connect_control(d, &hello);
  ASSERT_TRUE(control.has_value());
  EXPECT_TRUE(hello.caps.udp);
  ControlConnection& c = *control;
  uint64_t gen = 1;
  for (int i = 0; i < 50; ++i) {
    std::vector<Rule> rules = {udp_rule(kPort, kTarget)};
    if (i % 2 == 0) rules.push_back(udp_rule(static_cast<uint16_t>(kPort2 + i % 4), kTarget));
    control::CommitResult r = commit(c, rules, &gen);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
    EXPECT_GE(r.kept, 1u);
    // Let traffic flow between commits (bounded wait for progress).
    int before = answered;
    for (int w = 0; w < 200 && answered < before + 5; ++w) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  stop = true;
  prober.join();
  EXPECT_GE(sent, 250);
  EXPECT_EQ(answered, sent);
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(retries, 0) << "datagrams needed a retry across commits of a kept port";
  EXPECT_EQ(wrong_source, 0);
}

TEST(Udp, RemovedRuleStopsForwarding) {
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  std::string t = ":" + std::to_string(kTarget);
  d.start({"-u", "127.0.0.1/" + std::to_string(kPort) + t, "-u",
           "127.0.0.1/" + std::to_string(kPort2) + t});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd kept = bind_udp("127.0.0.1");
  UniqueFd removed = bind_udp("127.0.0.1");
  ASSERT_TRUE(request(kept.get(), "127.0.0.1", kPort, "k").ok) << d.log();
  ASSERT_TRUE(request(removed.get(), "127.0.0.1", kPort2, "r").ok) << d.log();

  control::ServerHello hello;
  auto control = connect_control(d, &hello);
  ASSERT_TRUE(control.has_value());
  EXPECT_TRUE(hello.caps.udp);
  ControlConnection& c = *control;
  uint64_t gen = 1;
  control::CommitResult r = commit(c, {udp_rule(kPort, kTarget)}, &gen);
  ASSERT_TRUE(r.applied);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.closed, 1u);
  // The removed port is closed: no reply, and nothing reaches the target.
  Datagram gone = request(removed.get(), "127.0.0.1", kPort2, "r2", 500, 2);
  EXPECT_FALSE(gone.ok);
  EXPECT_EQ(target.received(), 2u);
  uint64_t received = target.received();
  // The kept port still forwards, on its old flow.
  Datagram still = request(kept.get(), "127.0.0.1", kPort, "k2");
  ASSERT_TRUE(still.ok);
  EXPECT_EQ(target.received(), received + 1) << "the removed port's datagrams reached the target";
}

TEST(Udp, RebindFromTheWildcardToOneAddress) {
  // 0.0.0.0:P giving way to 127.0.0.1:P clashes in the kernel: the new socket
  // shares the port until the old one is drained and closed (its flows end).
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"-u", "0.0.0.0/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd client = bind_udp("127.0.0.1");
  Datagram before = request(client.get(), "127.0.0.2", kPort, "before");
  ASSERT_TRUE(before.ok) << d.log();
  EXPECT_EQ(before.from_addr, "127.0.0.2");
  control::ServerHello hello;
  auto control = connect_control(d, &hello);
  ASSERT_TRUE(control.has_value());
  EXPECT_TRUE(hello.caps.udp);
  ControlConnection& c = *control;
  uint64_t gen = 1;
  control::CommitResult r = commit(c, {udp_rule(kPort, kTarget)}, &gen);
  ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
  EXPECT_EQ(r.rebound, 1u);
  Datagram after = request(client.get(), "127.0.0.1", kPort, "after");
  ASSERT_TRUE(after.ok) << d.log();
  EXPECT_EQ(after.from_addr, "127.0.0.1");
  uint64_t received = target.received();
  EXPECT_FALSE(request(client.get(), "127.0.0.2", kPort, "gone", 300, 1).ok);
  EXPECT_EQ(target.received(), received);
}

TEST(Udp, ARebindKeepsTheFlowsOfTheAddressesItsSuccessorServes) {
  // 0.0.0.0:P and the dual-stack *:P take turns on the port, a rebind each
  // time. The client's flow moves to the socket that takes the port: the
  // target sees the same source port throughout (no new flow), and the
  // replies keep coming from the address the client sent to.
  UdpEcho target("127.0.0.1", kTarget, "t");
  Daemon d;
  d.start({"-u", "0.0.0.0/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd client = bind_udp("127.0.0.1");
  Datagram first = request(client.get(), "127.0.0.1", kPort, "first");
  ASSERT_TRUE(first.ok) << d.log();
  const EchoReply echo = parse_echo(first.payload);
  ASSERT_EQ(echo.tag, "t");
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  uint64_t gen = 1;
  Rule wide = udp_rule(kPort, kTarget, "::");
  wide.dual_stack = true;
  for (int i = 0; i < 6; ++i) {
    control::CommitResult r =
        commit(*control, {i % 2 == 0 ? wide : udp_rule(kPort, kTarget, "0.0.0.0")}, &gen);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message);
    EXPECT_EQ(r.rebound, 1u);
    const std::string tag = "after-" + std::to_string(i);
    Datagram after = request(client.get(), "127.0.0.1", kPort, tag);
    ASSERT_TRUE(after.ok) << tag << "\n" << d.log();
    EXPECT_EQ(after.from_addr, "127.0.0.1");
    EXPECT_EQ(parse_echo(after.payload).source_port, echo.source_port)
        << tag << ": the client's datagrams reached the target from a new flow socket";
  }
}

TEST(Udp, FlowsOutliveCommitsUnlessEndRemovedFlows) {
  UdpEcho one("127.0.0.1", kTarget, "one");
  UdpEcho two("127.0.0.1", kTarget2, "two");
  Daemon d;
  d.start({"-u", "127.0.0.1/" + std::to_string(kPort) + ":" + std::to_string(kTarget)});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd a = bind_udp("127.0.0.1");
  UniqueFd b = bind_udp("127.0.0.1");
  ASSERT_EQ(parse_echo(request(a.get(), "127.0.0.1", kPort, "a1").payload).tag, "one");
  control::ServerHello hello;
  auto control = connect_control(d, &hello);
  ASSERT_TRUE(control.has_value());
  EXPECT_TRUE(hello.caps.udp);
  ControlConnection& c = *control;
  uint64_t gen = 1;
  // The port stays, its target changes: A's flow keeps going to the old
  // target; a new client B goes to the new one.
  ASSERT_TRUE(commit(c, {udp_rule(kPort, kTarget2)}, &gen).applied);
  EXPECT_EQ(parse_echo(request(a.get(), "127.0.0.1", kPort, "a2").payload).tag, "one");
  EXPECT_EQ(parse_echo(request(b.get(), "127.0.0.1", kPort, "b1").payload).tag, "two");
  // Back to the first target with endRemovedFlows: the flows of the removed
  // rule (B's) end, A's rule is back and its flow lives on.
  ASSERT_TRUE(commit(c, {udp_rule(kPort, kTarget)}, &gen, true).applied);
  EXPECT_EQ(parse_echo(request(b.get(), "127.0.0.1", kPort, "b2").payload).tag, "one");
  EXPECT_EQ(parse_echo(request(a.get(), "127.0.0.1", kPort, "a3").payload).tag, "one");
  EXPECT_NE(d.log().find("ended 1 UDP flow of removed rules"), std::string::npos) << d.log();
}

}  // namespace
}  // namespace sluice::test
