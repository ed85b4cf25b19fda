// The commit planner: keep/open/close by merge-join, rebind detection by the
// kernel's clash rules, per-rule judging of bind results, and the rule diff.
#include <gtest/gtest.h>

#include <algorithm>

#include "schema/broker_wire.h"
#include "tests/rule_util.h"
#include "worker/commit_plan.h"

namespace sluice {
namespace {

/// A TCP rule on `listen` (or dual-stack "*") for ports first..last to `to`.
Rule rule(const char* listen, uint16_t first, uint16_t last, uint16_t to, bool weak = false) {
  Rule r = test::make_rule(listen, first, last, to);
  r.weak = weak;
  return r;
}

/// A HOST-only table set.
TableSet host(std::vector<Rule> rules) {
  return test::host_table(std::move(rules));
}

/// The sorted keys a table set needs (what would be installed after it).
std::vector<ListenerKey> installed(const TableSet& t) {
  std::vector<ListenerKey> out;
  for (const PlannedKey& k : planned_keys(t)) out.push_back(k.key);
  return out;
}

/// The ports of planned keys, sorted.
std::vector<uint16_t> ports(const std::vector<PlannedKey>& keys) {
  std::vector<uint16_t> out;
  for (const auto& k : keys) out.push_back(k.key.port);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CommitPlan, KeepsOpensAndClosesByKey) {
  auto old = installed(host({rule("127.0.0.1", 80, 82, 80)}));
  CommitPlan plan = plan_commit(old, host({rule("127.0.0.1", 81, 84, 9000)}));
  EXPECT_EQ(plan.keep.size(), 2u);  // 81, 82 stay, even though their mapping changed
  EXPECT_EQ(ports(plan.open), (std::vector<uint16_t>{83, 84}));
  ASSERT_EQ(plan.close.size(), 1u);
  EXPECT_EQ(old[plan.close[0]].port, 80);
  EXPECT_TRUE(plan.rebind.empty());
  // The kept sockets move to the new rule (index 0 of the new table).
  for (const auto& k : plan.keep) EXPECT_EQ(k.origin, (KeyOrigin{Pif::kHost, 0}));
}

TEST(CommitPlan, IdenticalTablesKeepEverything) {
  TableSet t = host({rule("*", 1000, 1099, 1000), rule("192.0.2.1", 22, 22, 22)});
  CommitPlan plan = plan_commit(installed(t), t);
  EXPECT_EQ(plan.keep.size(), 101u);
  EXPECT_TRUE(plan.open.empty());
  EXPECT_TRUE(plan.close.empty());
}

TEST(CommitPlan, WildcardGivingWayToSpecificIsARebind) {
  auto old = installed(host({rule("0.0.0.0", 80, 80, 80)}));
  CommitPlan plan = plan_commit(old, host({rule("127.0.0.1", 80, 80, 80)}));
  EXPECT_TRUE(plan.open.empty());
  ASSERT_EQ(plan.rebind.size(), 1u);
  ASSERT_EQ(plan.clashing.size(), 1u);
  EXPECT_EQ(plan.close.size(), 1u);
}

TEST(CommitPlan, DifferentFamiliesDoNotClash) {
  auto old = installed(host({rule("0.0.0.0", 80, 80, 80)}));
  CommitPlan plan = plan_commit(old, host({rule("::1", 80, 80, 80)}));
  EXPECT_EQ(plan.open.size(), 1u);
  EXPECT_TRUE(plan.rebind.empty());
  EXPECT_TRUE(plan.clashing.empty());
}

TEST(CommitPlan, DualStackClashesWithBothFamilies) {
  auto old = installed(host({rule("*", 80, 80, 80)}));
  CommitPlan v4 = plan_commit(old, host({rule("10.0.0.1", 80, 80, 80)}));
  EXPECT_EQ(v4.rebind.size(), 1u);
  CommitPlan v6 = plan_commit(old, host({rule("::1", 80, 80, 80)}));
  EXPECT_EQ(v6.rebind.size(), 1u);
  CommitPlan other_port = plan_commit(old, host({rule("10.0.0.1", 81, 81, 80)}));
  EXPECT_TRUE(other_port.rebind.empty());
}

TEST(CommitPlan, KernelClashRules) {
  auto key = [](const char* addr, uint16_t port, const char* ifname = "") {
    ListenerKey k;
    if (std::string(addr) == "*") {
      k.dual_stack = true;
    } else {
      parse_addr(addr, &k.addr);
    }
    k.port = port;
    std::snprintf(k.ifname.data(), k.ifname.size(), "%s", ifname);
    return k;
  };
  EXPECT_TRUE(kernel_clash(key("0.0.0.0", 1), key("127.0.0.1", 1)));
  EXPECT_TRUE(kernel_clash(key("127.0.0.1", 1), key("127.0.0.1", 1)));
  EXPECT_FALSE(kernel_clash(key("127.0.0.1", 1), key("127.0.0.2", 1)));
  EXPECT_TRUE(kernel_clash(key("::", 1), key("::1", 1)));
  EXPECT_FALSE(kernel_clash(key("::", 1), key("0.0.0.0", 1)));  // V6ONLY listeners
  EXPECT_TRUE(kernel_clash(key("*", 1), key("0.0.0.0", 1)));
  EXPECT_FALSE(kernel_clash(key("0.0.0.0", 1, "eth0"), key("0.0.0.0", 1, "eth1")));
  EXPECT_TRUE(kernel_clash(key("0.0.0.0", 1, "eth0"), key("0.0.0.0", 1)));
  ListenerKey udp = key("0.0.0.0", 1);
  udp.proto = Proto::kUdp;
  EXPECT_FALSE(kernel_clash(udp, key("0.0.0.0", 1)));
}

TEST(CommitPlan, LargeTablesPlanInLinearPasses) {
  // 10,000 ports kept, 10,000 opened, 10,000 closed: exercised for size, and
  // to show the plan does not degrade into a scan per port.
  auto old = installed(host({rule("127.0.0.1", 10000, 29999, 10000)}));
  CommitPlan plan = plan_commit(old, host({rule("127.0.0.1", 20000, 39999, 20000)}));
  EXPECT_EQ(plan.keep.size(), 10000u);
  EXPECT_EQ(plan.open.size(), 10000u);
  EXPECT_EQ(plan.close.size(), 10000u);
}

TEST(JudgeRules, StrictRuleFailsOnAnyPort) {
  TableSet next = host({rule("127.0.0.1", 80, 82, 80)});
  auto keys = planned_keys(next);
  std::vector<int32_t> status = {wire::kStatusOk, EADDRINUSE, wire::kStatusOk};
  std::vector<std::string> reasons(3);
  std::vector<std::string> warnings;
  auto failures = judge_rules(next, keys, status, reasons, BindContext{}, &warnings);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].port, 81);
  EXPECT_EQ(failures[0].kind, control::FailureKind::kBindFailed);
  EXPECT_EQ(failures[0].text, "TCP [127.0.0.1]:80-82 => 80-82");
  EXPECT_NE(failures[0].message.find("HOST rule 0 (TCP [127.0.0.1]:80-82 => 80-82), port 81: "
                                     "bind failed: EADDRINUSE"),
            std::string::npos)
      << failures[0].message;
  EXPECT_TRUE(warnings.empty());
}

TEST(JudgeRules, WeakRuleFailsOnlyWhenNoPortBinds) {
  TableSet next = host({rule("127.0.0.1", 80, 81, 80, /*weak=*/true)});
  auto keys = planned_keys(next);
  std::vector<std::string> reasons(2);
  std::vector<std::string> warnings;
  std::vector<int32_t> one_ok = {wire::kStatusOk, EADDRINUSE};
  EXPECT_TRUE(judge_rules(next, keys, one_ok, reasons, BindContext{}, &warnings).empty());
  EXPECT_EQ(warnings.size(), 1u);
  std::vector<int32_t> none_ok = {EACCES, EADDRINUSE};
  EXPECT_EQ(judge_rules(next, keys, none_ok, reasons, BindContext{}, nullptr).size(), 2u);
}

TEST(JudgeRules, PolicyDenialCarriesItsReason) {
  TableSet next = host({rule("127.0.0.1", 80, 80, 80)});
  auto keys = planned_keys(next);
  std::vector<int32_t> status = {wire::kStatusPolicyDenied};
  std::vector<std::string> reasons = {"port 80 is below net.ipv4.ip_unprivileged_port_start"};
  auto failures = judge_rules(next, keys, status, reasons, BindContext{}, nullptr);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].kind, control::FailureKind::kPolicyDenied);
  EXPECT_NE(failures[0].message.find("ip_unprivileged_port_start"), std::string::npos);
}

TEST(RuleDiff, IsAMultisetDifferenceInTableOrder) {
  TableSet a = host({rule("*", 80, 80, 80), rule("*", 81, 81, 81), rule("*", 80, 80, 80)});
  TableSet b = host({rule("*", 80, 80, 80)});
  EXPECT_EQ(rule_diff(a, b),
            (std::vector<std::string>{"HOST TCP [*]:81 => 81", "HOST TCP [*]:80 => 80"}));
  EXPECT_TRUE(rule_diff(b, a).empty());
}

TEST(BindAdvice, SaysWhatToDo) {
  EXPECT_NE(bind_errno_advice(EADDRINUSE, 8080, {}).find("ss -ltnup"), std::string::npos);
  EXPECT_NE(bind_errno_advice(EACCES, 80, {false, 1024}).find("CAP_NET_BIND_SERVICE"),
            std::string::npos);
  EXPECT_EQ(bind_errno_advice(EIO, 80, {}), "");
}

}  // namespace
}  // namespace sluice
