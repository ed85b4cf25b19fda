// sluicectl --stats --prometheus against the real daemon: the output passes
// a real parser of the text format (`promtool check metrics`, Debian's
// `prometheus` package, installed by scripts/deps), the strict reader of
// tests/prometheus_check.h too, and its counters move when traffic flows
// and commits are made.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/integration/daemon.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"
#include "tests/prometheus_check.h"

namespace sluice::test {
namespace {

/// Where Debian's prometheus package puts promtool.
constexpr const char* kPromtool = "/usr/bin/promtool";

/// Runs sluicectl --stats --prometheus and parses its output strictly; fails
/// the test (and returns nullopt) when either step fails.
std::optional<PromText> scrape(Daemon& d, std::string* raw = nullptr) {
  RunResult r = d.ctl({"--stats", "--prometheus"});
  EXPECT_EQ(r.status, 0) << r.err;
  if (raw != nullptr) *raw = r.out;
  std::string error;
  auto parsed = parse_prometheus(r.out, &error);
  EXPECT_TRUE(parsed.has_value()) << error << "\n" << r.out;
  return parsed;
}

/// The labels of the TCP rule `127.0.0.1/PORT:18000`.
std::map<std::string, std::string> tcp_rule(int port) {
  return {{"pif", "HOST"},
          {"proto", "tcp"},
          {"listen", "127.0.0.1"},
          {"ports", std::to_string(port)},
          {"target", "default:18000"}};
}

TEST(Prometheus, PromtoolAcceptsTheOutput) {
  if (access(kPromtool, X_OK) != 0) {
    GTEST_SKIP() << kPromtool
                 << " is absent: install Debian's `prometheus` package (scripts/deps does) to "
                    "check the output with Prometheus' own parser";
  }
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1%lo/18081-18083:18000-18002", "-u",
           "127.0.0.1/15353:5353", "-u", "15354:5353"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  std::string raw;
  ASSERT_TRUE(scrape(d, &raw).has_value());
  char path[] = "/tmp/sluice-prom-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, raw.data(), raw.size()), static_cast<ssize_t>(raw.size()));
  close(fd);
  // promtool reads the exposition on stdin; it exits non-zero on a parse
  // error and on every lint problem (names, help, units, counters).
  RunResult check =
      run_command({"/bin/sh", "-c", std::string(kPromtool) + " check metrics < " + path});
  unlink(path);
  EXPECT_EQ(check.status, 0) << "promtool:\n" << check.out << check.err << "\ninput:\n" << raw;
}

TEST(Prometheus, CountersMoveWithTrafficAndCommits) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  UdpEcho echo("127.0.0.1", 5353, "dns");
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000", "-u", "127.0.0.1/15353:5353"});
  ASSERT_TRUE(d.wait_ready()) << d.log();

  auto before = scrape(d);
  ASSERT_TRUE(before.has_value());
  EXPECT_EQ(before->value("sluice_rule_tcp_connections_accepted_total", tcp_rule(18080)), 0);
  EXPECT_EQ(
      before->value("sluice_rule_bytes_total", {{"ports", "18080"}, {"direction", "to_target"}}),
      0);
  EXPECT_EQ(before->value("sluice_listeners"), 2);
  const double generation = before->value("sluice_generation").value_or(-1);
  const double applied =
      before->value("sluice_commits_total", {{"outcome", "applied"}}).value_or(-1);

  // Two TCP connections of 100 bytes up and 10 down; three UDP round trips.
  for (int i = 0; i < 2; ++i) {
    UniqueFd c = connect_tcp("127.0.0.1", 18080);
    ASSERT_TRUE(c.valid());
    UniqueFd s = accept_one(target.get());
    ASSERT_TRUE(s.valid());
    std::string up(100, 'x');
    ASSERT_EQ(send(c.get(), up.data(), up.size(), MSG_NOSIGNAL), 100);
    char buf[100];
    ASSERT_EQ(recv(s.get(), buf, sizeof(buf), MSG_WAITALL), 100);
    ASSERT_EQ(send(s.get(), "0123456789", 10, MSG_NOSIGNAL), 10);
    ASSERT_EQ(recv(c.get(), buf, 10, MSG_WAITALL), 10);
  }
  UniqueFd udp_client = bind_udp("127.0.0.1");
  for (int i = 0; i < 3; ++i) {
    Datagram reply = request(udp_client.get(), "127.0.0.1", 15353, std::string(50, 'u'), 2000, 1);
    EXPECT_TRUE(reply.ok) << "round trip " << i;
  }
  // One commit applied, one dry run.
  ASSERT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18082:18000"}).status, 0);
  ASSERT_EQ(d.ctl({"--dry-run", "-A", "-t", "127.0.0.1/18083:18000"}).status, 0);

  auto after = scrape(d);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->value("sluice_rule_tcp_connections_accepted_total", tcp_rule(18080)), 2);
  EXPECT_EQ(
      after->value("sluice_rule_bytes_total", {{"ports", "18080"}, {"direction", "to_target"}}),
      200);
  EXPECT_EQ(
      after->value("sluice_rule_bytes_total", {{"ports", "18080"}, {"direction", "to_client"}}),
      20);
  EXPECT_EQ(after->value("sluice_rule_udp_flows_created_total", {{"ports", "15353"}}), 1);
  EXPECT_EQ(after->value("sluice_rule_udp_datagrams_total",
                         {{"ports", "15353"}, {"direction", "to_target"}}),
            3);
  EXPECT_EQ(after->value("sluice_rule_udp_datagrams_total",
                         {{"ports", "15353"}, {"direction", "to_client"}}),
            3);
  EXPECT_EQ(after->value("sluice_rule_tcp_connections_accepted_total", tcp_rule(18082)), 0);
  EXPECT_EQ(after->value("sluice_generation"), generation + 1);
  EXPECT_EQ(after->value("sluice_commits_total", {{"outcome", "applied"}}), applied + 1);
  EXPECT_GE(after->value("sluice_commits_total", {{"outcome", "dry_run"}}).value_or(0), 1);
  EXPECT_EQ(after->value("sluice_listeners"), 3);
  EXPECT_GT(after->value("sluice_tcp_connections_limit").value_or(0), 0);
}

TEST(Prometheus, RefusedWithJsonOrWithoutStats) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult json = d.ctl({"--stats", "--prometheus", "--json"});
  EXPECT_EQ(json.status, 2);
  EXPECT_NE(json.err.find("choose one"), std::string::npos) << json.err;
  RunResult alone = d.ctl({"--prometheus"});
  EXPECT_EQ(alone.status, 2);
  EXPECT_NE(alone.err.find("sluicectl --stats --prometheus"), std::string::npos) << alone.err;
}

}  // namespace
}  // namespace sluice::test
