// The TCP connection limits' accounting on its own (worker/conn_limits.h):
// the fair share and its reserve, the per-rule cap, the global limit, the
// per-source key (IPv4 by address, IPv6 by /64) and the per-source counts.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "worker/conn_limits.h"

namespace sluice {
namespace {

/// Runs the rules' admissions as a flood would: rule `flooder` takes slots
/// until refused, then each other rule (of `rules`) takes slots until
/// refused. Returns how many each rule got. Bounded by the global limit.
std::vector<size_t> flood(const ConnLimits& limits, size_t rules, size_t flooder) {
  std::vector<size_t> held(rules, 0);
  size_t in_use = 0;
  auto fill = [&](size_t r) {
    for (size_t i = 0; i <= limits.global; ++i) {
      if (admit_rule(limits, in_use, held[r], rules) != RuleAdmit::kOk) return;
      ++held[r];
      ++in_use;
    }
  };
  fill(flooder);
  for (size_t r = 0; r < rules; ++r) {
    if (r != flooder) fill(r);
  }
  return held;
}

TEST(FairShare, OneRuleAloneUsesTheWholeLimitAsBefore) {
  ConnLimits limits{16, 0, 0};
  EXPECT_EQ(fair_share(16, 1), 16u);
  EXPECT_EQ(share_reserve(16, 1), 0u);
  EXPECT_EQ(flood(limits, 1, 0), std::vector<size_t>{16});
  // No TCP rule at all (only UDP): nothing to divide.
  EXPECT_EQ(fair_share(16, 0), 16u);
  EXPECT_EQ(admit_rule(limits, 16, 16, 1), RuleAdmit::kGlobal);
}

TEST(FairShare, TheIssuesReproductionLeavesAQuarterToTheOtherRule) {
  // --max-connections 16, two rules, one flooded with idle connections.
  ConnLimits limits{16, 0, 0};
  EXPECT_EQ(fair_share(16, 2), 8u);
  EXPECT_EQ(share_reserve(16, 2), 4u);
  EXPECT_EQ(flood(limits, 2, 0), (std::vector<size_t>{12, 4}));
  EXPECT_EQ(admit_rule(limits, 12, 12, 2), RuleAdmit::kRule);
  EXPECT_EQ(admit_rule(limits, 12, 0, 2), RuleAdmit::kOk);
  EXPECT_EQ(admit_rule(limits, 16, 4, 2), RuleAdmit::kGlobal);
}

TEST(FairShare, NoSingleRuleTakesEverySlotWhateverTheNumbers) {
  for (size_t global : {1u, 2u, 3u, 4u, 7u, 16u, 100u, 4096u}) {
    for (size_t rules : {2u, 3u, 10u, 255u}) {
      std::vector<size_t> held = flood(ConnLimits{global, 0, 0}, rules, 0);
      size_t total = 0;
      for (size_t h : held) total += h;
      EXPECT_LE(total, global) << global << " " << rules;
      if (global >= 2) {
        EXPECT_LT(held[0], global) << global << " " << rules;
        EXPECT_GE(held[1], 1u) << "the second rule got nothing: " << global << " " << rules;
      }
      // The flooder gets at least its share, and at most all but the reserve.
      EXPECT_GE(held[0], std::min(global, fair_share(global, rules)));
      EXPECT_LE(held[0],
                std::max(fair_share(global, rules), global - share_reserve(global, rules)));
    }
  }
}

TEST(FairShare, ARuleWithinItsShareTakesAnyFreeSlot) {
  // Three rules of 16: share 5. Two rules past theirs may fill the rest,
  // but a rule under its share is never held back while a slot is free.
  ConnLimits limits{16, 0, 0};
  EXPECT_EQ(admit_rule(limits, 15, 4, 3), RuleAdmit::kOk);
  EXPECT_EQ(admit_rule(limits, 15, 5, 3), RuleAdmit::kRule);
  EXPECT_EQ(admit_rule(limits, 11, 5, 3), RuleAdmit::kOk);  // 5 free > reserve 4
}

TEST(RuleLimit, TheCapHoldsEvenForARuleAlone) {
  ConnLimits limits{16, 3, 0};
  EXPECT_EQ(flood(limits, 1, 0), std::vector<size_t>{3});
  EXPECT_EQ(flood(limits, 2, 0), (std::vector<size_t>{3, 3}));
  // The global limit comes first: its pause is everybody's.
  EXPECT_EQ(admit_rule(limits, 16, 3, 2), RuleAdmit::kGlobal);
}

/// A sockaddr_storage for the literal `addr` (IPv4 or IPv6).
struct sockaddr_storage peer(const std::string& addr) {
  struct sockaddr_storage ss = {};
  if (addr.find(':') == std::string::npos) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    EXPECT_EQ(inet_pton(AF_INET, addr.c_str(), &sin->sin_addr), 1);
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    EXPECT_EQ(inet_pton(AF_INET6, addr.c_str(), &sin6->sin6_addr), 1);
  }
  return ss;
}

TEST(SourceKey, IPv4ByAddressIPv6ByItsSlash64) {
  EXPECT_NE(source_key(peer("127.0.0.1")), source_key(peer("127.0.0.2")));
  // The same IPv4 client through a dual-stack socket (v4-mapped) is one source.
  EXPECT_EQ(source_key(peer("127.0.0.1")), source_key(peer("::ffff:127.0.0.1")));
  EXPECT_NE(source_key(peer("::ffff:127.0.0.1")), source_key(peer("::ffff:127.0.0.2")));
  // One /64, whatever interface identifier the host picks.
  EXPECT_EQ(source_key(peer("2001:db8:1:2::1")), source_key(peer("2001:db8:1:2:abcd:ef:1:2")));
  EXPECT_NE(source_key(peer("2001:db8:1:2::1")), source_key(peer("2001:db8:1:3::1")));
  Addr expected{};
  expected[0] = 0x20;
  expected[1] = 0x01;
  expected[2] = 0x0d;
  expected[3] = 0xb8;
  expected[5] = 0x01;
  expected[7] = 0x02;
  EXPECT_EQ(source_key(peer("2001:db8:1:2:ffff:ffff:ffff:ffff")), expected);
}

TEST(SourceCounts, RefusesTheNPlusFirstOfOneSourceOnly) {
  SourceCounts counts(1, 2);
  const Addr a = source_key(peer("127.0.0.1"));
  const Addr b = source_key(peer("127.0.0.2"));
  EXPECT_TRUE(counts.try_add(a, 2));
  EXPECT_TRUE(counts.try_add(a, 2));
  EXPECT_FALSE(counts.try_add(a, 2));
  EXPECT_EQ(counts.count(a), 2u);
  EXPECT_TRUE(counts.try_add(b, 2));
  EXPECT_EQ(counts.size(), 2u);
  counts.remove(a);
  EXPECT_TRUE(counts.try_add(a, 2));
  // Entries go when their count does: the table never outgrows the connections.
  counts.remove(b);
  EXPECT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts.count(b), 0u);
  // Limit 0: no limit.
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(counts.try_add(b, 0));
  EXPECT_EQ(counts.count(b), 100u);
}

TEST(SourceSlot, GivesItsPlaceBackOnceWhenResetMovedOrDestroyed) {
  SourceCounts counts(3, 4);
  const Addr a = source_key(peer("10.0.0.1"));
  {
    ASSERT_TRUE(counts.try_add(a, 0));
    SourceSlot slot(&counts, a);
    SourceSlot moved = std::move(slot);
    EXPECT_EQ(counts.count(a), 1u);
    slot.reset();  // empty after the move: a no-op
    EXPECT_EQ(counts.count(a), 1u);
    moved.reset();
    EXPECT_EQ(counts.count(a), 0u);
    moved.reset();  // once only
  }
  {
    ASSERT_TRUE(counts.try_add(a, 0));
    SourceSlot slot(&counts, a);
  }
  EXPECT_EQ(counts.size(), 0u);
}

}  // namespace
}  // namespace sluice
