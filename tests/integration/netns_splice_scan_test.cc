// Auto-scan of SPLICE rules end to end (-T auto, -U auto): sluiced --netns
// joins a container stand-in (container.h), and the real worker listens
// inside the namespace (through the namespace helper) on a port while
// something is bound on that port on sluiced's side (this test's own
// network namespace), and stops when nothing is. HOST and SPLICE auto
// together never make each other's ports appear (sluice's own listeners
// are left out of each side's scan: no ping-pong), and a kept SPLICE port
// refuses and resets nothing while SPLICE scans come and go.
//
// Scans run about once a second. Every wait is bounded (15 s for what takes
// about one scan) and reports the time it measured, so that no test passes
// or fails by the machine's speed.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/host_echo.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/scan_wait.h"
#include "tests/integration/udp_util.h"
#include "tests/json_check.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Starts `d` on `box`'s namespaces with `rules`; fails the test when it does
/// not come up.
void start_on(Daemon& d, const Container& box, const std::vector<std::string>& rules) {
  std::vector<std::string> args = {"--netns", box.netns(), "--userns", box.userns()};
  args.insert(args.end(), rules.begin(), rules.end());
  d.start(args);
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// The ports the scan rules of `pif` and `proto` listen on now, from
/// `sluicectl --stats --json` (scanActive runs, expanded); empty when there
/// are none or the output cannot be read.
std::vector<int> active_ports(Daemon& d, const std::string& pif, const std::string& proto) {
  std::vector<int> out;
  auto stats = parse_json(d.ctl({"--stats", "--json"}).out);
  if (!stats.has_value() || stats->get("rules") == nullptr) return out;
  for (const JsonValue& r : stats->get("rules")->array) {
    const JsonValue* runs = r.get("scanActive");
    if (runs == nullptr || runs->is_null() || r.get("pif")->string != pif ||
        r.get("proto")->string != proto) {
      continue;
    }
    for (const JsonValue& run : runs->array) {
      for (int64_t p = run.get("first")->integer(); p <= run.get("last")->integer(); ++p) {
        out.push_back(static_cast<int>(p));
      }
    }
  }
  return out;
}

/// True when `ports` holds `port`.
bool has(const std::vector<int>& ports, int port) {
  for (int p : ports) {
    if (p == port) return true;
  }
  return false;
}

TEST(SpliceScan, ATcpServerOnSluicedsSideIsReachableInsideAndGoesAway) {
  Container box({});
  ASSERT_GT(box.pid(), 0) << "the container did not start";
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  Daemon d;
  start_on(d, box, {"-t", "none", "-T", "auto"});  // pasta's -T auto: every non-ephemeral port
  EXPECT_FALSE(inside.listening(19100));
  RunResult idle = d.ctl({"--stats"});
  EXPECT_NE(idle.out.find("auto-scan: listening on no port now: none of its ports is bound on "
                          "sluiced's side"),
            std::string::npos)
      << idle.out;

  std::optional<HostEcho> server(std::in_place, 19100);
  long long up = wait_ms([&] { return inside.tcp_echo("127.0.0.1", 19100, "out") == "out"; });
  ASSERT_GE(up, 0) << "not reachable inside within 15 s\n" << d.log();
  EXPECT_EQ(inside.tcp_echo("::1", 19100, "over v6"), "over v6") << d.log();
  EXPECT_TRUE(has(active_ports(d, "SPLICE", "tcp"), 19100)) << d.ctl({"--stats"}).out;
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("auto-scan: listening on 19100\n"), std::string::npos) << stats.out;

  server.reset();
  long long down = wait_ms([&] { return !inside.listening(19100); });
  ASSERT_GE(down, 0) << "port 19100 still accepts inside 15 s after the server closed\n" << d.log();
  EXPECT_TRUE(wait_for_log(d, "auto-scan: stopped listening on TCP 19100")) << d.log();
  EXPECT_FALSE(has(active_ports(d, "SPLICE", "tcp"), 19100));
  std::cout << "published inside after " << up << " ms, withdrawn after " << down << " ms\n";
}

TEST(SpliceScan, AUdpServerOnSluicedsSideIsReachableInsideAndGoesAway) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  Daemon d;
  start_on(d, box, {"-t", "none", "-U", "19150-19160,auto"});
  std::optional<UdpEcho> server(std::in_place, "127.0.0.1", 19153, "host");
  long long up = wait_ms(
      [&] { return parse_echo(inside.udp_request("127.0.0.1", 19153, "ping")).payload == "ping"; });
  ASSERT_GE(up, 0) << "no UDP reply inside within 15 s\n" << d.log() << d.ctl({"--stats"}).out;
  EXPECT_TRUE(has(active_ports(d, "SPLICE", "udp"), 19153)) << d.ctl({"--stats"}).out;
  server.reset();
  long long down = wait_ms([&] { return !has(active_ports(d, "SPLICE", "udp"), 19153); });
  ASSERT_GE(down, 0) << "UDP 19153 still listened on 15 s after the server closed\n" << d.log();
  EXPECT_TRUE(wait_for_log(d, "auto-scan: stopped listening on UDP 19153")) << d.log();
  std::cout << "published inside after " << up << " ms, withdrawn after " << down << " ms\n";
}

TEST(SpliceScan, HostAndSpliceAutoTogetherNeverFollowEachOther) {
  // A server inside at 8090 and one on this side at 19200, every table on
  // auto for both protocols. Each server must appear on the other side only:
  // HOST listens here on 8090, SPLICE inside on 19200. Were sluice's own
  // listeners not left out of the scans, the SPLICE listener at 19200 would
  // make -t/-u auto listen on 19200 here, and the HOST listener at 8090 would
  // make -T/-U auto listen on 8090 inside (each bind fails against the real
  // server and is retried every scan, or succeeds and loops connections).
  Container box({"tcp", "8090"});
  ASSERT_GT(box.pid(), 0);
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  HostEcho here(19200);
  Daemon d;
  start_on(d, box, {"-t", "auto", "-u", "auto", "-T", "auto", "-U", "auto"});
  long long up = wait_ms([&] {
    return has(active_ports(d, "HOST", "tcp"), 8090) &&
           has(active_ports(d, "SPLICE", "tcp"), 19200);
  });
  ASSERT_GE(up, 0) << "the two servers were not published within 15 s\n"
                   << d.ctl({"--stats"}).out << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 19200, "out"), "out") << d.log();
  // Bounded observation: six scans, every 500 ms, of what each table listens on.
  constexpr int kRounds = 12;
  int rounds = 0, crossed = 0;
  std::string seen;
  const auto until = Clock::now() + std::chrono::seconds(30);
  for (; rounds < kRounds && Clock::now() < until; ++rounds) {
    const std::vector<int> host_tcp = active_ports(d, "HOST", "tcp");
    const std::vector<int> host_udp = active_ports(d, "HOST", "udp");
    const std::vector<int> splice_tcp = active_ports(d, "SPLICE", "tcp");
    const std::vector<int> splice_udp = active_ports(d, "SPLICE", "udp");
    // HOST follows the namespace (8090; UDP 8090 by pasta's TCP rule),
    // SPLICE follows this side (19200, UDP 19200 likewise); nothing else.
    const bool ok = host_tcp == std::vector<int>{8090} && splice_tcp == std::vector<int>{19200} &&
                    !has(host_udp, 19200) && !has(splice_udp, 8090);
    if (!ok) {
      ++crossed;
      seen = d.ctl({"--stats"}).out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  EXPECT_EQ(rounds, kRounds);
  EXPECT_EQ(crossed, 0) << "a table followed the other's listeners:\n" << seen << d.log();
  EXPECT_EQ(d.log().find("tried again at the next scan"), std::string::npos) << d.log();
  EXPECT_EQ(inside.tcp_echo("127.0.0.1", 19200, "still"), "still");
  std::cout << "published after " << up << " ms; " << rounds << " observations, " << crossed
            << " crossed\n";
}

TEST(SpliceScan, AKeptSplicePortRefusesAndResetsNothingWhileScansComeAndGo) {
  Container box({});
  ASSERT_GT(box.pid(), 0);
  NsClient prober(box.pid());
  NsClient inside(box.pid());
  ASSERT_TRUE(prober.ok() && inside.ok());
  HostEcho kept(19000);
  Daemon d;
  start_on(d, box, {"-t", "none", "-T", "29000:19000", "-T", "19300-19339,auto"});
  ASSERT_EQ(inside.tcp_echo("127.0.0.1", 29000, "kept"), "kept") << d.log();
  ASSERT_TRUE(prober.start_prober(29000));
  // Each change starts a server on the next port here and stops the one
  // before, so each scan change opens one listener inside and closes another.
  constexpr int kChanges = 8;
  const auto overall = Clock::now() + std::chrono::seconds(120);
  int changes = 0;
  long long slowest = 0;
  std::unique_ptr<HostEcho> previous;
  for (int i = 0; i < kChanges && Clock::now() < overall; ++i) {
    const uint16_t port = static_cast<uint16_t>(19300 + i);
    auto current = std::make_unique<HostEcho>(port);
    previous.reset();
    long long took = wait_ms([&] {
      const std::vector<int> active = active_ports(d, "SPLICE", "tcp");
      return active == std::vector<int>{port};
    });
    ASSERT_GE(took, 0) << "scan change " << i << " not seen within 15 s\n"
                       << d.ctl({"--stats"}).out << d.log();
    EXPECT_EQ(inside.tcp_echo("127.0.0.1", port, "scan"), "scan") << d.log();
    slowest = std::max(slowest, took);
    prober.await_probe();
    previous = std::move(current);
    ++changes;
  }
  int ok = 0, refused = 0, reset = 0;
  ASSERT_EQ(std::sscanf(prober.stop_prober().c_str(), "%d %d %d", &ok, &refused, &reset), 3);
  EXPECT_EQ(changes, kChanges);
  EXPECT_GE(ok, kChanges);
  EXPECT_EQ(refused, 0) << d.log();
  EXPECT_EQ(reset, 0) << d.log();
  std::cout << changes << " scan changes (slowest " << slowest << " ms), " << ok
            << " probes of the kept port\n";
  // Scans are not commits: the generation of the initial rules stays.
  auto v = parse_json(d.ctl({"--json"}).out);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->get("generation")->integer(), 1);
}

}  // namespace
}  // namespace sluice::test
