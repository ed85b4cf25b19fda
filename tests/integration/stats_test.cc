// sluicectl --stats against the real daemon: per-rule TCP and UDP counters
// that match the traffic sent, counters that survive a commit keeping their
// rule, connections and flows that outlive their rule, and the text and
// JSON forms.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "tests/integration/daemon.h"
#include "tests/integration/stats_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

TEST(Stats, CountersFollowTheTrafficAndSurviveCommitsThatKeepTheRule) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UdpEcho echo("127.0.0.1", 5353, "dns");
  Daemon d;
  // 18081 forwards to a port nobody listens on: its connections fail.
  d.start(
      {"-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18001", "-u", "127.0.0.1/15353:5353"});
  ASSERT_TRUE(d.wait_ready()) << d.log();

  // Three TCP connections, 1000 bytes up and 10 down each.
  for (int i = 0; i < 3; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", 18080);
    ASSERT_TRUE(c.valid());
    UniqueFd s = accept_one(target.get());
    ASSERT_TRUE(s.valid());
    std::string up(1000, 'x');
    ASSERT_EQ(send(c.get(), up.data(), up.size(), MSG_NOSIGNAL), 1000);
    char buf[1000];
    ASSERT_EQ(recv(s.get(), buf, sizeof(buf), MSG_WAITALL), 1000);
    ASSERT_EQ(send(s.get(), "0123456789", 10, MSG_NOSIGNAL), 10);
    ASSERT_EQ(recv(c.get(), buf, 10, MSG_WAITALL), 10);
  }
  // Two refused.
  for (int i = 0; i < 2; ++i) {
    const ConnectionEnd end = connect_then_end("127.0.0.1", "127.0.0.1", 18081);
    ASSERT_TRUE(end.connected) << std::strerror(end.err);
    EXPECT_EQ(end.err, ECONNRESET);
  }
  // Five UDP round trips of 100 bytes from one client socket: one flow. One
  // attempt each, so the counts below are exact.
  UniqueFd udp_client = bind_udp("127.0.0.1");
  for (int i = 0; i < 5; ++i) {
    Datagram reply = request(udp_client.get(), "127.0.0.1", 15353, std::string(100, 'u'), 2000, 1);
    EXPECT_TRUE(reply.ok) << "round trip " << i;
  }

  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  const JsonValue* tcp = rule_with(*doc, ":18080");
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(tcp->get("proto")->string, "tcp");  // as in the listing's JSON
  EXPECT_EQ(tcp->get("accepted")->integer(), 3);
  EXPECT_EQ(tcp->get("failed")->integer(), 0);
  EXPECT_EQ(tcp->get("bytesToTarget")->integer(), 3000);
  EXPECT_EQ(tcp->get("bytesToClient")->integer(), 30);
  const JsonValue* refused = rule_with(*doc, ":18081");
  ASSERT_NE(refused, nullptr);
  EXPECT_EQ(refused->get("accepted")->integer(), 2);
  EXPECT_EQ(refused->get("failed")->integer(), 2);
  const JsonValue* udp = rule_with(*doc, ":15353");
  ASSERT_NE(udp, nullptr);
  EXPECT_EQ(udp->get("proto")->string, "udp");
  EXPECT_EQ(udp->get("flowsCreated")->integer(), 1);
  EXPECT_EQ(udp->get("flowsActive")->integer(), 1);
  EXPECT_EQ(udp->get("datagramsToTarget")->integer(), 5);
  EXPECT_EQ(udp->get("datagramsToClient")->integer(), 5);
  EXPECT_EQ(udp->get("bytesToTarget")->integer(), 500);
  EXPECT_EQ(doc->get("flowsActive")->integer(), 1);
  EXPECT_EQ(doc->get("listeners")->integer(), 3);
  EXPECT_GT(doc->get("connectionLimit")->integer(), 0);

  // A commit that keeps the rules keeps their counters; a new rule starts at 0.
  RunResult add = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  ASSERT_EQ(add.status, 0) << add.err;
  doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(rule_with(*doc, ":18080")->get("accepted")->integer(), 3);
  EXPECT_EQ(rule_with(*doc, ":15353")->get("datagramsToTarget")->integer(), 5);
  EXPECT_EQ(rule_with(*doc, ":18082")->get("accepted")->integer(), 0);

  RunResult text = d.ctl({"--stats"});
  EXPECT_EQ(text.status, 0) << text.err;
  // (How many are active depends on whether the worker has seen the closes yet.)
  EXPECT_NE(text.out.find("    TCP [127.0.0.1]:18080 => 18000\n        connections 3 accepted, "),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find(" active, 0 failed; 2.9 KiB to target, 30 B to client\n"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("flows 1 active, 1 created; datagrams 5 to target, 5 to client, "
                          "0 dropped"),
            std::string::npos)
      << text.out;
}

// A connection and a flow that outlive their rule (a commit gave it a new
// target: a new rule) count in the totals and in no rule's; they once went
// unaccounted, the rules' counts adding up to less than the totals. --stats
// now says how many are under rules no longer in force.
TEST(Stats, ConnectionsAndFlowsOfAChangedRuleShowAsOfOldRules) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UdpEcho echo("127.0.0.1", 5353, "dns");
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-u", "127.0.0.1/15353:5353"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd c = connect_tcp("127.0.0.1", 18080);
  ASSERT_TRUE(c.valid());
  UniqueFd s = accept_one(target.get());
  ASSERT_TRUE(s.valid()) << d.log();
  UniqueFd udp_client = bind_udp("127.0.0.1");
  ASSERT_TRUE(request(udp_client.get(), "127.0.0.1", 15353, "before", 2000, 1).ok) << d.log();
  RunResult same = d.ctl({"--stats"});
  EXPECT_EQ(same.out.find("no longer in force"), std::string::npos) << same.out;

  ASSERT_EQ(d.ctl({"-t", "127.0.0.1/18080:18001", "-u", "127.0.0.1/15353:5354"}).status, 0);
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("TCP connections 1 of "), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("): 1 TCP connection, 1 UDP flow\n"), std::string::npos) << stats.out;
  RunResult json = d.ctl({"--stats", "--json"});
  EXPECT_NE(json.out.find("\"connectionsOfOldRules\":1,\"flowsOfOldRules\":1"), std::string::npos)
      << json.out;
  // The connection still works, under the rule it started with.
  ASSERT_EQ(send(c.get(), "x", 1, MSG_NOSIGNAL), 1);
  char byte = 0;
  EXPECT_EQ(recv(s.get(), &byte, 1, MSG_WAITALL), 1);
}

TEST(Stats, ShowTheLimitsSluicedWasStartedWith) {
  Daemon d;
  d.start({"--max-connections", "100", "--udp-flows", "50", "--pipe-size", "131072",
           "--connect-timeout", "7", "--udp-idle-timeout", "60", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("connectionLimit")->integer(), 100);
  EXPECT_EQ(doc->get("flowLimit")->integer(), 50);
  EXPECT_EQ(doc->get("pipeSize")->integer(), 131072);
  EXPECT_EQ(doc->get("connectTimeoutSeconds")->integer(), 7);
  EXPECT_EQ(doc->get("udpIdleTimeoutSeconds")->integer(), 60);
  RunResult text = d.ctl({"--stats"});
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_NE(text.out.find("TCP connections 0 of 100; UDP flows 0 of 50\n"
                          "pipes 128.0 KiB; connect timeout 7 s; UDP idle timeout 60 s\n"),
            std::string::npos)
      << text.out;
}

}  // namespace
}  // namespace sluice::test
