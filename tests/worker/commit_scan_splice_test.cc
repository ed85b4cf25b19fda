// Auto-scan of both tables through the real commit engine (engine_fixture.h):
// SPLICE scan rules follow sluiced's side and HOST scan rules the target
// namespace. Here both scanners read this test's own network namespace and
// the fake broker opens HOST and SPLICE listeners in it too, which is the
// hardest case for a ping-pong: each table's listeners are in the very
// tables the other table's scan reads. sluice's own listeners must never
// count (port_scan.h, scan_view), so a listener one table opened never makes
// the other table listen.
//
// Scans run once a second (kScanIntervalNs): every wait is bounded by
// run_until (at most 2000 turns of at most 10 ms), and each failure message
// says how long it waited.
#include <gtest/gtest.h>

#include <chrono>
#include <iostream>
#include <optional>

#include "tests/worker/engine_fixture.h"
#include "worker/port_scan.h"

namespace sluice::testing {
namespace {

using Clock = std::chrono::steady_clock;

/// Milliseconds since `start`, for failure messages.
long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

/// Opens a scanner of this test's namespace; nothing when it cannot. Out of
/// line: g++ 12 misjudges the inlined destructor of the Result in SetUp
/// (-Wfree-nonheap-object).
[[gnu::noinline]] std::optional<PortScanner> open_scanner() {
  auto opened = PortScanner::open_own();
  if (!opened.ok()) return std::nullopt;
  return std::optional<PortScanner>(std::move(*opened));
}

/// The engine with SPLICE served and a scanner for each side, both on this
/// test's namespace.
class SpliceScanEngineTest : public EngineTest {
 protected:
  void SetUp() override {
    fake.set_splice(true, 1024);
    EngineTest::SetUp();
    if (HasFatalFailure()) return;
    target_side = open_scanner();
    host_side = open_scanner();
    ASSERT_TRUE(target_side && host_side) << "cannot open /proc/self/net";
    engine->set_scanner(&*target_side);
    engine->set_host_scanner(&*host_side);
  }
  void TearDown() override {
    if (engine) {
      engine->set_scanner(nullptr);
      engine->set_host_scanner(nullptr);
    }
  }

  /// How many keys of `pif` for `port` the broker was asked for so far.
  size_t asked_for(Pif pif, uint16_t port) const {
    size_t n = 0;
    for (const wire::ListenerSpec& spec : fake.asked()) {
      const bool splice = (spec.flags & wire::kListenerSplice) != 0;
      n += spec.port == port && splice == (pif == Pif::kSplice);
    }
    return n;
  }

  std::optional<PortScanner> target_side, host_side;
};

/// HOST: 127.0.0.1:first-last, auto, following first+offset.. inside.
Rule host_scan(uint16_t first, uint16_t last, uint16_t to) {
  Rule r = make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), first, last, to);
  r.scan = true;
  return r;
}

/// SPLICE: [*]%lo:first-last, auto, following to.. on sluiced's side.
Rule splice_scan(uint16_t first, uint16_t last, uint16_t to) {
  Rule r = make_rule(Proto::kTcp, Addr{}, first, last, to);
  r.dual_stack = true;
  r.ifname = "lo";
  r.scan = true;
  return r;
}

TEST_F(SpliceScanEngineTest, ASpliceScanRuleFollowsAServerAndStops) {
  TableSet t;
  t.of(Pif::kSplice).rules = {splice_scan(20110, 20119, 21110)};
  ASSERT_TRUE(commit(t).applied);
  const auto start = Clock::now();
  UniqueFd server = tcp_target(21113);
  ASSERT_TRUE(run_until([&] { return engine->listener_count() == 1; }))
      << "no SPLICE listener after " << ms_since(start) << " ms";
  EXPECT_EQ(asked_for(Pif::kSplice, 20113), 1u);
  control::Stats st = engine->stats(0);
  ASSERT_EQ(st.rules.size(), 1u);
  EXPECT_EQ(st.rules[0].scan_active, (std::vector<control::PortRange>{{20113, 20113}}));
  server.reset();
  ASSERT_TRUE(run_until([&] { return engine->listener_count() == 0; }))
      << "still listening " << ms_since(start) << " ms after the start";
}

TEST_F(SpliceScanEngineTest, NeitherTableFollowsTheOthersListeners) {
  // HOST listens on 20052 while 21052 is bound "inside"; SPLICE listens on
  // 21050-21059 while 20050-20059 is bound on "sluiced's side". One real
  // server at 21052: HOST opens 20052. Were sluice's own listeners counted,
  // SPLICE would follow that HOST listener and ask for 21052, whose bind
  // fails against the server and is retried every scan.
  TableSet t;
  t.of(Pif::kHost).rules = {host_scan(20050, 20059, 21050)};
  t.of(Pif::kSplice).rules = {splice_scan(21050, 21059, 20050)};
  ASSERT_TRUE(commit(t).applied);
  const auto start = Clock::now();
  UniqueFd server = tcp_target(21052);
  ASSERT_TRUE(run_until([&] { return engine->listener_count() == 1; }))
      << "no HOST listener after " << ms_since(start) << " ms";
  EXPECT_EQ(asked_for(Pif::kHost, 20052), 1u);
  // Bounded observation: about three scans (300 turns of at most 10 ms, at
  // least three seconds of the loop's own clock when idle).
  const auto watch = Clock::now();
  run_until([&] { return Clock::now() - watch > std::chrono::milliseconds(3500); }, 1000);
  EXPECT_EQ(asked_for(Pif::kSplice, 21052), 0u) << "SPLICE followed the HOST listener";
  EXPECT_EQ(engine->listener_count(), 1u);
  // And the other way round: a SPLICE listener (made for a server at 20055 on
  // "sluiced's side") never makes HOST follow it.
  UniqueFd other = tcp_target(20057);
  ASSERT_TRUE(run_until([&] { return engine->listener_count() == 2; }))
      << "no SPLICE listener after " << ms_since(watch) << " ms";
  EXPECT_EQ(asked_for(Pif::kSplice, 21057), 1u);
  const auto watch2 = Clock::now();
  run_until([&] { return Clock::now() - watch2 > std::chrono::milliseconds(3500); }, 1000);
  EXPECT_EQ(asked_for(Pif::kHost, 20057), 0u) << "HOST followed the SPLICE listener";
  EXPECT_EQ(engine->listener_count(), 2u);
  std::cout << "observed " << ms_since(watch) << " ms in all\n";
}

}  // namespace
}  // namespace sluice::testing
