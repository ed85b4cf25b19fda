// sluicectl --stats against the real daemon: per-rule TCP and UDP counters
// that match the traffic sent, counters that survive a commit keeping their
// rule, and the text and JSON forms.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>

#include "tests/ctl/json_check.h"
#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"

namespace sluice::test {
namespace {

/// A UDP echo server on 127.0.0.1:`port` until `stop` is set (bounded by a
/// 100 ms receive timeout per wait).
std::thread udp_echo(uint16_t port, std::atomic<bool>& stop) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd, reinterpret_cast<struct sockaddr*>(&a), sizeof(a)), 0);
  struct timeval tv = {0, 100000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return std::thread([fd, &stop] {
    char buf[2048];
    while (!stop) {
      struct sockaddr_storage from;
      socklen_t len = sizeof(from);
      ssize_t n =
          recvfrom(fd, buf, sizeof(buf), 0, reinterpret_cast<struct sockaddr*>(&from), &len);
      if (n > 0)
        sendto(fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
    close(fd);
  });
}

/// Sends `count` datagrams of `size` bytes to 127.0.0.1:`port` from one
/// socket and returns how many answers came back (1 s timeout each).
int udp_round_trips(uint16_t port, int count, size_t size) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct timeval tv = {1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string payload(size, 'u');
  int answered = 0;
  for (int i = 0; i < count; ++i) {
    sendto(fd.get(), payload.data(), payload.size(), 0, reinterpret_cast<struct sockaddr*>(&a),
           sizeof(a));
    char buf[2048];
    if (recv(fd.get(), buf, sizeof(buf), 0) == static_cast<ssize_t>(size)) ++answered;
  }
  return answered;
}

/// Finds the rule whose text contains `needle` in a --stats --json document.
const JsonValue* rule_with(const JsonValue& doc, const std::string& needle) {
  const JsonValue* rules = doc.get("rules");
  if (rules == nullptr) return nullptr;
  for (const JsonValue& r : rules->array) {
    if (r.get("text") != nullptr && r.get("text")->string.find(needle) != std::string::npos) {
      return &r;
    }
  }
  return nullptr;
}

/// Runs sluicectl --stats --json and parses it.
std::optional<JsonValue> stats_json(Daemon& d) {
  RunResult r = d.ctl({"--stats", "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  return parse_json(r.out);
}

TEST(Stats, CountersFollowTheTrafficAndSurviveCommitsThatKeepTheRule) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::atomic<bool> stop{false};
  std::thread echo = udp_echo(5353, stop);
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
    UniqueFd c = connect_tcp("127.0.0.1", 18081);
    ASSERT_TRUE(c.valid());
    char b;
    EXPECT_EQ(recv(c.get(), &b, 1, 0), -1);
  }
  // Five UDP round trips of 100 bytes from one client: one flow.
  EXPECT_EQ(udp_round_trips(15353, 5, 100), 5);

  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  const JsonValue* tcp = rule_with(*doc, ":18080");
  ASSERT_NE(tcp, nullptr);
  EXPECT_EQ(tcp->get("proto")->string, "TCP");
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
  EXPECT_EQ(udp->get("proto")->string, "UDP");
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
  stop = true;
  echo.join();
}

}  // namespace
}  // namespace sluice::test
