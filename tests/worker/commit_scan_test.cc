// Auto-scan through the real commit engine (engine_fixture.h): the scanner
// reads this test's own network namespace, where the targets the test binds
// are the servers "inside", and the fake broker opens the listeners. A scan
// rule listens while its target port is bound and stops when it is not; a
// scan change is not a commit (no generation, digest, audit line or history
// entry, no lost compare-and-swap); it waits for a commit in progress; a
// scan port that fails to bind fails nothing and is tried again; other weak
// rules' failed ports are left alone; --stats shows the ports listening now.
//
// Scans run once a second (kScanIntervalNs): every wait here is bounded by
// run_until (at most 2000 turns of at most 10 ms), far beyond the 1 to 2 s a
// scan takes, and each failure message says how long it waited.
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "base/log.h"
#include "tests/worker/engine_fixture.h"
#include "worker/port_scan.h"

namespace sluice::testing {
namespace {

using State = CommitEngine::State;
using Clock = std::chrono::steady_clock;

/// Returns an auto-scan rule `proto` 127.0.0.1:first-last -> loopback:to.
Rule scan_rule(Proto proto, uint16_t first, uint16_t last, uint16_t to) {
  Rule r = make_rule(proto, addr_v4(127, 0, 0, 1), first, last, to);
  r.scan = true;
  return r;
}

/// Returns a UDP socket bound on 127.0.0.1:port: a UDP server "inside".
UniqueFd udp_target(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)), 0) << port;
  return fd;
}

/// Milliseconds since `start`, for failure messages.
long long ms_since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

class CommitScanTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    if (HasFatalFailure()) return;
    auto opened = PortScanner::open_own();
    ASSERT_TRUE(opened.ok()) << opened.error().message;
    scanner.emplace(std::move(*opened));
    engine->set_scanner(&*scanner);
  }
  void TearDown() override {
    if (engine) engine->set_scanner(nullptr);
  }

  /// Runs until the engine holds `n` listeners; true when it did in time.
  bool until_listeners(size_t n) {
    return run_until([&] { return engine->listener_count() == n; });
  }

  /// How many keys for `port` the broker was asked for so far.
  size_t asked_for(uint16_t port) const {
    size_t n = 0;
    for (const wire::ListenerSpec& spec : fake.asked()) n += spec.port == port;
    return n;
  }

  /// The active ports of rule `rule` of the HOST table in the stats, or
  /// nullopt when it reports none (not a scan rule).
  std::optional<std::vector<control::PortRange>> active_of(size_t rule) const {
    control::Stats st = engine->stats(0);
    return rule < st.rules.size() ? st.rules[rule].scan_active : std::nullopt;
  }

  std::optional<PortScanner> scanner;
};

TEST_F(CommitScanTest, AScanRuleListensOnlyWhileItsTargetIsBound) {
  control::CommitResult c = commit(host_tables({scan_rule(Proto::kTcp, 20010, 20019, 21010)}));
  ASSERT_TRUE(c.applied);
  EXPECT_EQ(c.opened, 0u) << "nothing is bound inside yet";
  const uint64_t generation = engine->generation();
  const Sha256Digest digest = engine->digest();

  const auto start = Clock::now();
  UniqueFd target = tcp_target(21012);  // a server starts "inside"
  ASSERT_TRUE(until_listeners(1)) << "no listener after " << ms_since(start) << " ms";
  EXPECT_TRUE(forwards(20012, target.get()));
  EXPECT_TRUE(refused(20013));
  EXPECT_EQ(active_of(0), (std::vector<control::PortRange>{{20012, 20012}}));

  // A scan change is not a commit.
  EXPECT_EQ(engine->generation(), generation);
  EXPECT_EQ(engine->digest(), digest);
  EXPECT_EQ(engine->history(10).entries.size(), 1u);
  EXPECT_EQ(audit_lines().size(), 1u);

  const auto stop = Clock::now();
  target.reset();  // the server stops
  ASSERT_TRUE(until_listeners(0)) << "still listening after " << ms_since(stop) << " ms";
  EXPECT_TRUE(refused(20012));
  EXPECT_EQ(active_of(0), std::vector<control::PortRange>{});
  EXPECT_EQ(engine->generation(), generation);
  EXPECT_EQ(audit_lines().size(), 1u);
}

TEST_F(CommitScanTest, ACommitListensAtOnceOnThePortsBoundNow) {
  UniqueFd target = tcp_target(21015);
  control::CommitResult c =
      commit(host_tables({tcp_rule(20001, 21001), scan_rule(Proto::kTcp, 20010, 20019, 21010)}));
  ASSERT_TRUE(c.applied);
  EXPECT_EQ(c.opened, 2u) << "the plain rule's port and the scan rule's bound one";
  EXPECT_TRUE(forwards(20015, target.get()));
  // Rules without auto-scan report no scan ports at all.
  EXPECT_EQ(active_of(0), std::nullopt);
  EXPECT_EQ(active_of(1), (std::vector<control::PortRange>{{20015, 20015}}));
}

TEST_F(CommitScanTest, AScanChangeLosesNoClientsCompareAndSwap) {
  const TableSet tables = host_tables({scan_rule(Proto::kTcp, 20010, 20019, 21010)});
  ASSERT_TRUE(commit(tables).applied);
  const uint64_t read = engine->generation();  // what a client read
  UniqueFd target = tcp_target(21011);
  ASSERT_TRUE(until_listeners(1));
  // The client commits on what it read before the scan change.
  TableSet next = tables;
  next.of(Pif::kHost).rules.push_back(tcp_rule(20001, 21001));
  auto s = submit(next, false, read);
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied) << (s->result.failures.empty() ? ""
                                                                : s->result.failures[0].message);
  EXPECT_EQ(s->result.generation, read + 1);
  EXPECT_EQ(s->result.kept, 1u) << "the scanned port's listener is kept";
  EXPECT_EQ(s->result.opened, 1u);
}

TEST_F(CommitScanTest, UdpScanRulesFollowUdpServersAndTcpListeners) {
  ASSERT_TRUE(commit(host_tables({scan_rule(Proto::kUdp, 20020, 20029, 21020)})).applied);
  const auto start = Clock::now();
  UniqueFd udp_server = udp_target(21021);
  UniqueFd tcp_server = tcp_target(21022);  // pasta's rule: a TCP listener's port counts for UDP
  ASSERT_TRUE(until_listeners(2)) << "after " << ms_since(start) << " ms";
  EXPECT_EQ(active_of(0), (std::vector<control::PortRange>{{20021, 20022}}));
  udp_server.reset();
  ASSERT_TRUE(until_listeners(1));
  EXPECT_EQ(active_of(0), (std::vector<control::PortRange>{{20022, 20022}}));
}

TEST_F(CommitScanTest, AScanWaitsForTheCommitInProgress) {
  const TableSet tables = host_tables({scan_rule(Proto::kTcp, 20010, 20019, 21010)});
  ASSERT_TRUE(commit(tables).applied);
  fake.hold_after(fake.open_replies());  // the next commit waits for the broker
  TableSet next = tables;
  next.of(Pif::kHost).rules.push_back(tcp_rule(20001, 21001));
  auto s = submit(next);
  ASSERT_TRUE(run_until([&] { return fake.waiting() == 1; }));
  const size_t requests = fake.open_requests();
  UniqueFd target = tcp_target(21013);
  // More than one scan interval passes while the commit waits: the scan job
  // queues behind it, and asks the broker nothing meanwhile.
  const auto until = Clock::now() + std::chrono::milliseconds(1500);
  run_until([&] { return Clock::now() >= until; }, 400);
  EXPECT_EQ(engine->state(), State::kAcquiring);
  EXPECT_EQ(fake.open_requests(), requests);
  EXPECT_EQ(asked_for(20013), 0u);
  fake.release();
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  ASSERT_TRUE(until_listeners(2));
  EXPECT_EQ(engine->generation(), 2u);
  EXPECT_TRUE(forwards(20013, target.get()));
}

TEST_F(CommitScanTest, AScanPortThatFailsToBindFailsNothingAndIsTriedAgain) {
  fake.fail_port(20031, EADDRINUSE);
  control::CommitResult c =
      commit(host_tables({tcp_rule(20001, 21001), scan_rule(Proto::kTcp, 20030, 20039, 21030)}));
  ASSERT_TRUE(c.applied);
  const auto start = Clock::now();
  UniqueFd target = tcp_target(21031);
  ASSERT_TRUE(run_until([&] { return asked_for(20031) >= 2; }))
      << "asked " << asked_for(20031) << " times in " << ms_since(start) << " ms";
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_EQ(engine->generation(), 1u);
  EXPECT_EQ(engine->history(10).entries.size(), 1u);
  EXPECT_EQ(active_of(1), std::vector<control::PortRange>{});
  // A commit with a scan port that cannot be bound is applied too.
  auto s = submit(host_tables({scan_rule(Proto::kTcp, 20030, 20039, 21030)}));
  ASSERT_TRUE(run_until([&] { return s->done; }));
  EXPECT_TRUE(s->result.applied);
  EXPECT_TRUE(s->result.failures.empty());
}

TEST_F(CommitScanTest, TheSameFailingScanPortIsLoggedOnceAMinuteNotAtEveryScan) {
  // The engine logs to a memfd for this test, then to stderr again.
  UniqueFd log(memfd_create("scan-log", MFD_CLOEXEC));
  ASSERT_TRUE(log.valid());
  log_init("worker", log.get(), LogLevel::kInfo);
  fake.fail_port(20031, EADDRINUSE);
  ASSERT_TRUE(commit(host_tables({scan_rule(Proto::kTcp, 20030, 20039, 21030)})).applied);
  UniqueFd target = tcp_target(21031);
  const auto start = Clock::now();
  const bool retried = run_until([&] { return asked_for(20031) >= 4; });
  log_init("sluice", 2, LogLevel::kInfo);  // the defaults
  ASSERT_TRUE(retried) << "asked " << asked_for(20031) << " times in " << ms_since(start) << " ms";
  std::string text(1 << 16, '\0');
  ssize_t n = pread(log.get(), text.data(), text.size(), 0);
  ASSERT_GE(n, 0);
  text.resize(static_cast<size_t>(n));
  size_t lines = 0;
  for (size_t at = 0; (at = text.find("port 20031: bind failed", at)) != std::string::npos; ++at) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << asked_for(20031) << " tries logged as:\n" << text;
  EXPECT_NE(text.find("(auto-scan: tried again at the next scan)"), std::string::npos) << text;
}

TEST_F(CommitScanTest, OtherWeakRulesFailedPortsAreNotRetriedByScans) {
  fake.fail_port(20041, EADDRINUSE);
  Rule weak = make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), 20040, 20042, 21040);
  weak.weak = true;
  ASSERT_TRUE(commit(host_tables({weak, scan_rule(Proto::kTcp, 20050, 20059, 21050)})).applied);
  EXPECT_EQ(asked_for(20041), 1u);
  UniqueFd first = tcp_target(21051);
  ASSERT_TRUE(until_listeners(3));
  UniqueFd second = tcp_target(21052);
  ASSERT_TRUE(until_listeners(4));
  EXPECT_EQ(asked_for(20041), 1u) << "a scan asked for a port of another rule";
  EXPECT_EQ(asked_for(20040), 1u);
}

TEST_F(CommitScanTest, ACommitThatDropsTheScanRuleClosesItsListeners) {
  UniqueFd target = tcp_target(21016);
  ASSERT_TRUE(commit(host_tables({scan_rule(Proto::kTcp, 20010, 20019, 21010)})).applied);
  ASSERT_EQ(engine->listener_count(), 1u);
  control::CommitResult c = commit(host_tables({tcp_rule(20001, 21001)}));
  EXPECT_TRUE(c.applied);
  EXPECT_EQ(c.closed, 1u);
  EXPECT_TRUE(refused(20016));
  // No scan rule left: scans stop, and nothing comes back.
  UniqueFd other = tcp_target(21017);
  const auto until = Clock::now() + std::chrono::milliseconds(1500);
  run_until([&] { return Clock::now() >= until; }, 400);
  EXPECT_EQ(engine->listener_count(), 1u);
  EXPECT_TRUE(refused(20017));
}

}  // namespace
}  // namespace sluice::testing
