// The TCP fairness limits against the real daemon (issue 15, item 5): one
// rule flooded with idle connections leaves room for the others and resumes
// when a slot frees; one source is held to --max-connections-per-source
// while another is served; --idle-timeout resets an idle connection and
// spares an active one; --stats shows the limits and what they did; and the
// log names the limit that paused a rule (its fair share, the per-rule cap,
// the global limit) and what to raise.
// Every wait is bounded; no check depends on the machine being fast.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/daemon.h"
#include "tests/integration/stats_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

/// Connects from `source` (an IPv4 literal of this host) to 127.0.0.1:`port`
/// with 10 s send/receive timeouts; empty on failure.
UniqueFd connect_from(const std::string& source, uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct timeval tv = {10, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  struct sockaddr_storage local;
  socklen_t local_len = make_addr(source, 0, &local);
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&local), local_len) != 0) return {};
  struct sockaddr_storage remote;
  socklen_t remote_len = make_addr("127.0.0.1", port, &remote);
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&remote), remote_len) != 0) return {};
  return fd;
}

/// Sends `token` from `client`, checks that `server` gets it and that the
/// answer comes back: the connection is forwarded both ways.
void expect_exchange(int client, int server, const std::string& token) {
  ASSERT_EQ(send(client, token.data(), token.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(token.size()));
  std::string got(token.size(), '\0');
  ASSERT_EQ(recv(server, got.data(), got.size(), MSG_WAITALL), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, token);
  ASSERT_EQ(send(server, "ok", 2, MSG_NOSIGNAL), 2);
  char ok[2];
  ASSERT_EQ(recv(client, ok, 2, MSG_WAITALL), 2);
}

/// Reads from `fd` until EOF or an error (bounded by its receive timeout and
/// a count); returns 0 on EOF or the errno of the failed recv.
int read_until_end(int fd) {
  char buf[4096];
  for (int i = 0; i < 10000; ++i) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0) return 0;
    if (n < 0) return errno;
  }
  return -1;
}

TEST(Limits, OneRuleFloodedWithIdleConnectionsLeavesRoomForAnotherRule) {
  // The reproduction: --max-connections 16, 16 idle connections to
  // one rule. Two TCP rules: each may always use 8; past that a rule leaves
  // a quarter (4) free, so the flooded rule stops at 12.
  UniqueFd target_a = listen_tcp("127.0.0.1", 18000);
  UniqueFd target_b = listen_tcp("127.0.0.1", 18001);
  Daemon d;
  d.start(
      {"--max-connections", "16", "-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18001"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::vector<UniqueFd> clients;
  for (int i = 0; i < 16; ++i) {
    clients.push_back(connect_tcp("127.0.0.1", 18080));
    ASSERT_TRUE(clients.back().valid()) << i;
  }
  std::vector<UniqueFd> served;
  for (int i = 0; i < 12; ++i) {
    served.push_back(accept_one(target_a.get(), 10000));
    ASSERT_TRUE(served.back().valid()) << "only " << i << " of the rule's 12 arrived\n" << d.log();
  }
  EXPECT_FALSE(accept_one(target_a.get(), 500).valid()) << "the flooded rule took a 13th slot";

  // A client of the other rule is answered.
  UniqueFd other = connect_tcp("127.0.0.1", 18081);
  ASSERT_TRUE(other.valid());
  UniqueFd other_server = accept_one(target_b.get(), 10000);
  ASSERT_TRUE(other_server.valid()) << "the other rule was starved\n" << d.log();
  expect_exchange(other.get(), other_server.get(), "not starved");

  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("connectionShare")->integer(), 8);
  EXPECT_EQ(doc->get("connectionReserve")->integer(), 4);
  const JsonValue* a = rule_with(*doc, ":18080");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->get("active")->integer(), 12);
  EXPECT_GE(a->get("pausedAtRuleLimit")->integer(), 1);
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("TCP limits: fair share 8 per rule, 4 kept for the others"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("x at the rule limit"), std::string::npos) << text.out;
  // The log says which limit paused the rule, and what to raise.
  EXPECT_TRUE(wait_for_log(d,
                           "port 18080 paused at its fair share of sluiced --max-connections: the "
                           "rule holds 12, its share is 8 (16 shared among 2 TCP rules), and past "
                           "its share it may only take a slot while 4 stay free for the other "
                           "rules"))
      << d.log();
  EXPECT_NE(d.log().find("raise --max-connections to give every rule more"), std::string::npos);

  // The other rule's client leaves, and one of the flooded rule's
  // connections ends (a reset, which ends both sides at once): more than the
  // reserve is free again, so the paused listener resumes and a client
  // waiting in the queue is forwarded. (With the other client still there,
  // 11 + 1 in use would leave only the reserve free: the listener stays
  // paused, as it should.)
  other.reset();
  other_server.reset();
  struct linger lg = {1, 0};
  setsockopt(clients[0].get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  clients[0].reset();
  UniqueFd resumed = accept_one(target_a.get(), 10000);
  ASSERT_TRUE(resumed.valid()) << "the paused listener did not resume\n" << d.log();
}

TEST(Limits, PerRuleCapAndGlobalLimitEachLogWhichLimitPausedAndWhatToRaise) {
  // --max-connections 3 and --max-connections-per-rule 2: the third client of
  // rule A waits at the per-rule cap; one client of rule B fills the global
  // limit, and its second waits at that.
  UniqueFd target_a = listen_tcp("127.0.0.1", 18000);
  UniqueFd target_b = listen_tcp("127.0.0.1", 18001);
  Daemon d;
  d.start({"--max-connections", "3", "--max-connections-per-rule", "2", "-t",
           "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18001"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::vector<UniqueFd> clients, served;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(connect_tcp("127.0.0.1", 18080));
    ASSERT_TRUE(clients.back().valid()) << i;
  }
  for (int i = 0; i < 2; ++i) {
    served.push_back(accept_one(target_a.get(), 10000));
    ASSERT_TRUE(served.back().valid()) << i << "\n" << d.log();
  }
  EXPECT_FALSE(accept_one(target_a.get(), 500).valid()) << "rule A took a third connection";
  EXPECT_TRUE(wait_for_log(d,
                           "port 18080 paused at the per-rule cap, sluiced "
                           "--max-connections-per-rule 2 (the rule holds 2 connections)"))
      << d.log();
  EXPECT_NE(d.log().find("raise --max-connections-per-rule if the rule needs more"),
            std::string::npos);

  clients.push_back(connect_tcp("127.0.0.1", 18081));
  ASSERT_TRUE(clients.back().valid());
  served.push_back(accept_one(target_b.get(), 10000));
  ASSERT_TRUE(served.back().valid()) << d.log();
  clients.push_back(connect_tcp("127.0.0.1", 18081));
  ASSERT_TRUE(clients.back().valid());
  EXPECT_FALSE(accept_one(target_b.get(), 500).valid()) << "past the global limit";
  EXPECT_TRUE(wait_for_log(d,
                           "port 18081 paused: all 3 connections of sluiced --max-connections are "
                           "in use, across all 2 TCP rules"))
      << d.log();
  EXPECT_NE(d.log().find("if this load is expected, raise --max-connections"), std::string::npos);
  EXPECT_EQ(d.log().find("per-rule limit 0"), std::string::npos) << d.log();
}

TEST(Limits, PerSourceLimitRefusesTheNextFromOneSourceAndServesAnother) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"--max-connections-per-source", "2", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd c1 = connect_from("127.0.0.1", 18080);
  UniqueFd s1 = accept_one(target.get());
  UniqueFd c2 = connect_from("127.0.0.1", 18080);
  UniqueFd s2 = accept_one(target.get());
  ASSERT_TRUE(c1.valid() && s1.valid() && c2.valid() && s2.valid()) << d.log();
  // The third from 127.0.0.1: accepted by the kernel, reset by the worker.
  const ConnectionEnd c3 = connect_then_end("127.0.0.1", "127.0.0.1", 18080);
  EXPECT_TRUE(c3.connected) << std::strerror(c3.err);
  EXPECT_EQ(c3.err, ECONNRESET) << d.log();
  EXPECT_FALSE(accept_one(target.get(), 200).valid()) << "the third reached the target";
  // Another source is served.
  UniqueFd other = connect_from("127.0.0.2", 18080);
  ASSERT_TRUE(other.valid());
  UniqueFd other_server = accept_one(target.get(), 10000);
  ASSERT_TRUE(other_server.valid()) << d.log();
  expect_exchange(other.get(), other_server.get(), "another source");
  expect_exchange(c1.get(), s1.get(), "the first two go on");

  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("connectionLimitPerSource")->integer(), 2);
  EXPECT_EQ(doc->get("sourcesActive")->integer(), 2);
  const JsonValue* rule = rule_with(*doc, ":18080");
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->get("refusedBySource")->integer(), 1);
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("2 per source (2 sources now)"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("1 reset at the source limit"), std::string::npos) << text.out;
  EXPECT_NE(d.log().find("--max-connections-per-source"), std::string::npos) << d.log();

  // One of its connections ends: the source may connect again (the worker
  // sees the end a moment later, so a few attempts, bounded).
  c1.reset();
  s1.reset();
  bool again = false;
  for (int i = 0; i < 50 && !again; ++i) {
    UniqueFd c = connect_from("127.0.0.1", 18080);
    UniqueFd s = accept_one(target.get(), 200);
    again = c.valid() && s.valid();
  }
  EXPECT_TRUE(again) << d.log();
}

TEST(Limits, IdleConnectionIsResetAfterTheIdleTimeoutAndAnActiveOneIsNot) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"--idle-timeout", "2", "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  UniqueFd idle = connect_tcp("127.0.0.1", 18080, 20000);
  UniqueFd idle_server = accept_one(target.get());
  UniqueFd active = connect_tcp("127.0.0.1", 18080);
  UniqueFd active_server = accept_one(target.get());
  ASSERT_TRUE(idle.valid() && idle_server.valid() && active.valid() && active_server.valid());
  for (int fd : {idle_server.get(), active_server.get()}) {
    struct timeval tv = {20, 0};  // bounds every read below
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  expect_exchange(idle.get(), idle_server.get(), "then nothing");
  const auto last_byte = std::chrono::steady_clock::now();
  // The active one exchanges a few bytes every 200 ms for 2.5 timeouts,
  // while the test notes when the idle one is first seen ended.
  std::optional<std::chrono::steady_clock::time_point> ended_at;
  for (int i = 0; i < 25; ++i) {
    expect_exchange(active.get(), active_server.get(), "ping " + std::to_string(i));
    if (HasFatalFailure()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    struct pollfd p = {idle.get(), POLLIN, 0};
    if (!ended_at && poll(&p, 1, 0) == 1) ended_at = std::chrono::steady_clock::now();
  }
  // The idle one was reset, both sides (a wait bounded by the 20 s receive
  // timeout when it was not seen yet) ...
  EXPECT_EQ(read_until_end(idle.get()), ECONNRESET) << d.log();
  EXPECT_EQ(read_until_end(idle_server.get()), ECONNRESET);
  // ... and never early. 1.5 s, not 2: the test took its time after the
  // worker moved the last byte. (No upper bound: a busy machine may be late.)
  if (ended_at) {
    EXPECT_GE(*ended_at - last_byte, std::chrono::milliseconds(1500));
  }
  expect_exchange(active.get(), active_server.get(), "still here");

  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("idleTimeoutSeconds")->integer(), 2);
  const JsonValue* rule = rule_with(*doc, ":18080");
  ASSERT_NE(rule, nullptr);
  EXPECT_EQ(rule->get("closedIdle")->integer(), 1);
  EXPECT_EQ(rule->get("active")->integer(), 1);
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("idle timeout 2 s"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("1 closed idle"), std::string::npos) << text.out;
}

TEST(Limits, DefaultsShowInStats) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("idleTimeoutSeconds")->integer(), 0);
  EXPECT_EQ(doc->get("connectionLimitPerRule")->integer(), 0);
  EXPECT_EQ(doc->get("connectionLimitPerSource")->integer(), 1024);
  EXPECT_EQ(doc->get("connectionShare")->integer(), 4096);  // one rule: the whole limit
  EXPECT_EQ(doc->get("connectionReserve")->integer(), 0);
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("TCP limits: fair share 4096 per rule; no per-rule cap; 1024 per source "
                          "(0 sources now); idle timeout off\n"),
            std::string::npos)
      << text.out;
}

}  // namespace
}  // namespace sluice::test
