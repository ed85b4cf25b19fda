// The one rule check end to end, through the real daemon: the default target
// has one meaning whatever its spelling on the wire (a raw Cap'n Proto client
// cannot slip loopback past the target policy as ::ffff:0.0.0.0), container
// publish forms are not mistaken for loops, certain loops are still refused
// by sluicectl and, on their own, by the server, and a loop that only shows
// at run time (a target that is one of the host's own addresses) is reset
// and counted instead of multiplying.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "tests/integration/container.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

/// The initial rule of these tests, so that sluiced does not fall back to
/// its default table.
const std::vector<std::string> kInitial = {"-t", "127.0.0.1/18070:18000"};

/// Sends `request` on a raw session and returns the one response, or
/// nothing (with a test failure) when none arrived.
std::optional<control::Response> raw_call(int fd, control::Request request) {
  std::string frame = control::encode_request(request);
  if (send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(frame.size())) {
    ADD_FAILURE() << "send: " << errno;
    return std::nullopt;
  }
  auto responses = read_responses(fd, 1);
  if (responses.size() != 1) {
    ADD_FAILURE() << "no response";
    return std::nullopt;
  }
  return responses[0];
}

/// Commits the HOST table `rules` over a raw session, exactly as given (no
/// client-side check, no normalisation), on top of the generation in force.
/// Returns the result, or nothing (with a test failure) on a protocol error.
std::optional<control::CommitResult> raw_commit(const Daemon& d, std::vector<Rule> rules) {
  UniqueFd fd = raw_session(d);
  if (!fd.valid()) {
    ADD_FAILURE() << "no session\n" << d.log();
    return std::nullopt;
  }
  auto state = raw_call(fd.get(), control::Request{2, control::GetState{}});
  const auto* st = state ? std::get_if<control::State>(&state->body) : nullptr;
  if (st == nullptr) {
    ADD_FAILURE() << "getState answered with something else";
    return std::nullopt;
  }
  control::CommitRequest commit;
  commit.tables = st->tables;
  for (Rule& r : rules) commit.tables.of(Pif::kHost).rules.push_back(std::move(r));
  commit.expected_generation = st->generation;
  commit.comment = "rule_check_test";
  auto reply = raw_call(fd.get(), control::Request{3, commit});
  const auto* result = reply ? std::get_if<control::CommitResult>(&reply->body) : nullptr;
  if (result == nullptr) {
    ADD_FAILURE() << "commit answered with something else";
    return std::nullopt;
  }
  return *result;
}

/// A TCP rule on 0.0.0.0:`port` to `to` at `target`.
Rule wildcard_rule(uint16_t port, uint16_t to, const Addr& target) {
  Rule r;
  r.listen = addr_v4(0, 0, 0, 0);
  r.first = r.last = port;
  r.to = to;
  r.target = target;
  return r;
}

TEST(RuleCheck, V4MappedUnspecifiedTargetMeetsTheTargetPolicyAsTheDefaultTarget) {
  PolicyFileFixture policy("target deny tcp 127.0.0.0/8,::1 *\ntarget allow tcp * *\n");
  Daemon d;
  d.start({"--policy", policy.path(), "-t", "127.0.0.1/18070:192.0.2.1/18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // The default target, and the same target spelt ::ffff:0.0.0.0: both go
  // to loopback, and both are refused for it.
  for (const Addr& target : {Addr{}, addr_v4(0, 0, 0, 0)}) {
    auto result = raw_commit(d, {wildcard_rule(18085, 18000, target)});
    ASSERT_TRUE(result.has_value());
    EXPECT_FALSE(result->applied);
    ASSERT_EQ(result->failures.size(), 1u);
    EXPECT_EQ(result->failures[0].kind, control::FailureKind::kPolicyDenied);
    EXPECT_EQ(result->failures[0].text, "TCP [0.0.0.0]:18085 => 18000");
    EXPECT_NE(result->failures[0].message.find("127.0.0.1 port 18000"), std::string::npos)
        << result->failures[0].message;
    EXPECT_FALSE(listening(18085));
  }
  // Forwarding goes on.
  EXPECT_TRUE(listening(18070)) << d.log();
}

TEST(RuleCheck, V4MappedUnspecifiedTargetIsListedAndServedAsTheDefaultTarget) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start(kInitial);
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto result = raw_commit(d, {wildcard_rule(18085, 18000, addr_v4(0, 0, 0, 0))});
  ASSERT_TRUE(result.has_value());
  ASSERT_TRUE(result->applied) << (result->failures.empty() ? "" : result->failures[0].message);
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [0.0.0.0]:18085 => 18000"), std::string::npos) << list.out;
  UniqueFd client = connect_tcp("127.0.0.1", 18085, 5000);
  ASSERT_TRUE(client.valid());
  EXPECT_TRUE(accept_one(target.get(), 5000).valid()) << d.log();
}

TEST(RuleCheck, ContainerPublishFormsAreAccepted) {
  Daemon d;
  d.start(kInitial);
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // podman -p 8080:8080 with a bridge address, IPv4 and IPv6.
  RunResult v4 = d.ctl({"-A", "-t", "0.0.0.0/18080:10.88.0.5/18080"});
  EXPECT_EQ(v4.status, 0) << v4.out << v4.err;
  RunResult v6 = d.ctl({"-A", "-t", "::/18081:[fd00::5]/18081"});
  EXPECT_EQ(v6.status, 0) << v6.out << v6.err;
  RunResult list = d.ctl();
  EXPECT_NE(list.out.find("TCP [0.0.0.0]:18080 => 10.88.0.5:18080"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("TCP [::]:18081 => fd00::5:18081"), std::string::npos) << list.out;
  EXPECT_TRUE(listening(18080));
  // The server accepts them on its own too.
  Addr bridge;
  ASSERT_TRUE(parse_addr("10.88.0.6", &bridge));
  auto result = raw_commit(d, {wildcard_rule(18082, 18082, bridge)});
  ASSERT_TRUE(result.has_value());
  EXPECT_TRUE(result->applied) << (result->failures.empty() ? "" : result->failures[0].message);
}

TEST(RuleCheck, CertainLoopsAreRefusedByTheClientAndByTheServer) {
  Daemon d;
  d.start(kInitial);
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const std::vector<std::vector<std::string>> loops = {
      {"-A", "-t", "18090"},                  // every address, to the same port of loopback
      {"-A", "-t", "127.0.0.1/18090:18090"},  // explicit, the same
      {"-A", "-t", "127.0.0.1/18090:127.0.0.2/18091", "-t",
       "127.0.0.2/18091:127.0.0.1/18090"},  // two rules that feed each other
  };
  for (const auto& args : loops) {
    RunResult r = d.ctl(args);
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_NE((r.out + r.err).find("come back into sluice"), std::string::npos) << r.out << r.err;
    EXPECT_NE(r.err.find("nothing was sent"), std::string::npos) << r.err;
  }
  // The server refuses the same on its own: 18090 on every address to
  // loopback 18090.
  auto result = raw_commit(d, {wildcard_rule(18090, 18090, Addr{})});
  ASSERT_TRUE(result.has_value());
  EXPECT_FALSE(result->applied);
  ASSERT_EQ(result->failures.size(), 1u);
  EXPECT_NE(result->failures[0].message.find("come back into sluice"), std::string::npos);
  EXPECT_FALSE(listening(18090));
}

/// Finds the --stats --json entry of the rule whose text is `text`.
const JsonValue* rule_stats(const JsonValue& doc, const std::string& text) {
  const JsonValue* rules = doc.get("rules");
  if (rules == nullptr) return nullptr;
  for (const JsonValue& r : rules->array) {
    if (r.get("text") != nullptr && r.get("text")->string == text) return &r;
  }
  return nullptr;
}

/// Polls `sluicectl --stats --json` (at most 100 times, 50 ms apart) until
/// the rule listed as `text` counts a loop: a dropped datagram shows a
/// little after it was sent. Leaves the last document in `*doc` and returns
/// the rule in it, or nullptr (a test failure) when it never showed.
const JsonValue* wait_for_loop(Daemon& d, std::optional<JsonValue>* doc, const std::string& text) {
  const JsonValue* rule = nullptr;
  for (int i = 0; i < 100; ++i) {
    RunResult stats = d.ctl({"--stats", "--json"});
    *doc = parse_json(stats.out);
    if (stats.status != 0 || !doc->has_value()) {
      ADD_FAILURE() << "sluicectl --stats --json: " << stats.err << stats.out;
      return nullptr;
    }
    rule = rule_stats(**doc, text);
    if (rule == nullptr) {
      ADD_FAILURE() << "no rule " << text << " in " << stats.out;
      return nullptr;
    }
    if (rule->get("loops")->integer() > 0) return rule;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return rule;
}

TEST(RuleCheck, RunTimeLoopThroughAWildcardListenerIsResetAndCounted) {
  // 192.0.2.1 is one of this namespace's own addresses, so the publish form
  // -t 0.0.0.0/18080:192.0.2.1/18080 sends its connections back to itself.
  // Nothing at commit time can know that; the forwarder sees it.
  RunResult ip = run_command({"/sbin/ip", "addr", "replace", "192.0.2.1/32", "dev", "lo"});
  ASSERT_EQ(ip.status, 0) << ip.err;
  Daemon d;
  d.start({"-t", "0.0.0.0/18080:192.0.2.1/18080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  // The client's connection ends (the loop was reset) instead of hanging.
  const ConnectionEnd end = connect_then_end("127.0.0.1", "127.0.0.1", 18080);
  ASSERT_TRUE(end.connected) << std::strerror(end.err) << "\n" << d.log();
  EXPECT_EQ(end.bytes, 0u) << "the looping connection delivered data";
  EXPECT_NE(end.err, EAGAIN) << "the looping connection was not ended within 10 s";
  // Counted once, and not multiplied: one client connection, one loop.
  RunResult stats = d.ctl({"--stats", "--json"});
  ASSERT_EQ(stats.status, 0) << stats.err;
  auto doc = parse_json(stats.out);
  ASSERT_TRUE(doc.has_value()) << stats.out;
  const JsonValue* rule = rule_stats(*doc, "TCP [0.0.0.0]:18080 => 192.0.2.1:18080");
  ASSERT_NE(rule, nullptr) << stats.out;
  EXPECT_EQ(rule->get("loops")->integer(), 1) << stats.out;
  EXPECT_EQ(rule->get("accepted")->integer(), 1) << stats.out;
  EXPECT_NE(d.log().find("forwarding loop reset"), std::string::npos) << d.log();
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("1 reset as forwarding loops"), std::string::npos) << text.out;
  // The listener still serves.
  EXPECT_TRUE(listening(18080));
}

TEST(RuleCheck, RunTimeUdpLoopThroughAWildcardListenerIsDroppedAndCounted) {
  RunResult ip = run_command({"/sbin/ip", "addr", "replace", "192.0.2.1/32", "dev", "lo"});
  ASSERT_EQ(ip.status, 0) << ip.err;
  Daemon d;
  d.start({"-u", "0.0.0.0/18080:192.0.2.1/18080"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd client = bind_udp("127.0.0.1");
  ASSERT_TRUE(send_udp(client.get(), "127.0.0.1", 18080, "once"));
  // The datagram goes out once and comes back once: it is dropped there,
  // not sent round again (without the guard it would circle until the flow
  // limit, one new flow per round). Wait (bounded) for the drop to show.
  std::optional<JsonValue> doc;
  const JsonValue* rule = wait_for_loop(d, &doc, "UDP [0.0.0.0]:18080 => 192.0.2.1:18080");
  ASSERT_NE(rule, nullptr) << d.log();
  EXPECT_EQ(rule->get("loops")->integer(), 1) << d.log();
  EXPECT_EQ(rule->get("flowsCreated")->integer(), 1) << d.log();
  EXPECT_NE(d.log().find("forwarding loop: UDP [0.0.0.0]:18080"), std::string::npos) << d.log();
  // The client got nothing back.
  EXPECT_FALSE(recv_udp(client.get(), 200).ok);
}

TEST(RuleCheck, ALoopThroughARouteBackFromTheTargetNamespaceIsResetAndDropped) {
  // --netns with a veth into the container: 198.51.100.1 is this side's end,
  // so the publish forms -t/-u 0.0.0.0/18081:198.51.100.1/18081 send what
  // they forward from inside the namespace back to their own listeners here.
  // Connections arrive on the veth, not on lo; the guard must still see them.
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  const std::string linked = link_to(box, "sl", "198.51.100.1/24", "198.51.100.5/24");
  ASSERT_EQ(linked, "");
  Daemon d;
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t",
           "0.0.0.0/18081:198.51.100.1/18081", "-u", "0.0.0.0/18081:198.51.100.1/18081"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const ConnectionEnd end = connect_then_end("127.0.0.1", "127.0.0.1", 18081);
  ASSERT_TRUE(end.connected) << std::strerror(end.err) << "\n" << d.log();
  EXPECT_EQ(end.bytes, 0u) << "the looping connection delivered data";
  EXPECT_NE(end.err, EAGAIN) << "the looping connection was not ended within 10 s";
  UniqueFd client = bind_udp("127.0.0.1");
  ASSERT_TRUE(send_udp(client.get(), "127.0.0.1", 18081, "once"));
  // Without the guard one connection becomes hundreds (until the per-source
  // limit) and one datagram fills the flow table. Wait (bounded) for the
  // UDP drop to show.
  std::optional<JsonValue> doc;
  const JsonValue* udp = wait_for_loop(d, &doc, "UDP [0.0.0.0]:18081 => 198.51.100.1:18081");
  ASSERT_NE(udp, nullptr) << d.log();
  const JsonValue* tcp = rule_stats(*doc, "TCP [0.0.0.0]:18081 => 198.51.100.1:18081");
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(tcp->get("loops")->integer(), 1) << d.log();
  EXPECT_EQ(tcp->get("accepted")->integer(), 1) << d.log();
  EXPECT_EQ(udp->get("loops")->integer(), 1) << d.log();
  EXPECT_EQ(udp->get("flowsCreated")->integer(), 1) << d.log();
  EXPECT_TRUE(listening(18081));
}

}  // namespace
}  // namespace sluice::test
