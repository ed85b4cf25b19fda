// The commit planner: keep/open/close by merge-join, rebind detection by the
// kernel's clash rules, per-rule judging of bind results, and the rule diff.
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <utility>
#include <vector>

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
  std::vector<control::Failure> warnings;
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
  std::vector<control::Failure> warnings;
  std::vector<int32_t> one_ok = {wire::kStatusOk, EADDRINUSE};
  EXPECT_TRUE(judge_rules(next, keys, one_ok, reasons, BindContext{}, &warnings).empty());
  EXPECT_EQ(warnings.size(), 1u);
  std::vector<int32_t> none_ok = {EACCES, EADDRINUSE};
  EXPECT_EQ(judge_rules(next, keys, none_ok, reasons, BindContext{}, nullptr).size(), 2u);
}

TEST(JudgeRules, ALinkLocalAddressWithoutInterfaceIsToldToNameOne) {
  TableSet next = host({rule("fe80::1", 22, 22, 22)});
  auto keys = planned_keys(next);
  std::vector<int32_t> status = {EINVAL};
  std::vector<std::string> reasons(1);
  auto failures = judge_rules(next, keys, status, reasons, BindContext{}, nullptr);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].message.find("bind failed: EINVAL (Invalid argument); a link-local "
                                     "address needs its interface: write [fe80::1]%IFNAME/22"),
            std::string::npos)
      << failures[0].message;
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

TEST(JudgeRules, ARebindInUseSaysTheRuleMovesAndWhereTheReasonIs) {
  // Two rules; the second's key is a rebind (keys from first_rebind on).
  TableSet next = host({rule("127.0.0.1", 80, 80, 80), rule("0.0.0.0", 81, 81, 81)});
  auto keys = planned_keys(next);
  ASSERT_EQ(keys.size(), 2u);
  std::vector<int32_t> status = {EADDRINUSE, EADDRINUSE};
  std::vector<std::string> reasons(2);
  BindContext ctx;
  ctx.first_rebind = 1;
  auto failures = judge_rules(next, keys, status, reasons, ctx, nullptr);
  ASSERT_EQ(failures.size(), 2u);  // in rule order; the keys are in address order
  const size_t moved = keys[1].origin.rule;
  const control::Failure& plain = failures[1 - moved];
  const control::Failure& rebind = failures[moved];
  EXPECT_NE(plain.message.find("another socket already listens on port"), std::string::npos)
      << plain.message;
  EXPECT_NE(rebind.message.find("the rule moves to another address of port"), std::string::npos)
      << rebind.message;
  EXPECT_NE(rebind.message.find("sluiced's log names the address"), std::string::npos);
  EXPECT_NE(rebind.message.find("or move the rule in two changes (remove it, then add it"),
            std::string::npos)
      << rebind.message;
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
  EXPECT_NE(bind_errno_advice(ETIMEDOUT, 8080, {true, 1024}).find("kill -CONT"), std::string::npos);
  EXPECT_EQ(bind_errno_advice(EIO, 80, {}), "");
}

/// An auto-scan rule on 127.0.0.1 for ports first..last to `to`.
Rule scan(uint16_t first, uint16_t last, uint16_t to, bool weak = false) {
  Rule r = rule("127.0.0.1", first, last, to, weak);
  r.scan = true;
  return r;
}

TEST(CommitPlan, AScanRuleNeedsTheListenPortsWhoseTargetsAreBound) {
  PifPorts bound;
  bound.of(Pif::kHost).tcp.set(9001);  // the target of listen port 81
  bound.of(Pif::kHost)
      .tcp.set(82);  // the same number as listen port 82, whose target is 9002: not it
  bound.of(Pif::kHost).udp.set(9003);    // another protocol
  bound.of(Pif::kSplice).tcp.set(9000);  // bound on the other side: not for a HOST rule
  TableSet t = host({scan(80, 83, 9000), rule("127.0.0.1", 22, 22, 22)});
  EXPECT_EQ(ports(planned_keys(t, &bound)), (std::vector<uint16_t>{22, 81}));
  // Without the bound ports, a scan rule needs nothing.
  EXPECT_EQ(ports(planned_keys(t)), (std::vector<uint16_t>{22}));
  CommitPlan plan = plan_commit({}, t, &bound);
  EXPECT_EQ(ports(plan.open), (std::vector<uint16_t>{22, 81}));
}

TEST(CommitPlan, AScanPlanTouchesOnlyTheScanRulesSockets) {
  // In force: port 22 of a plain rule, 81 of the scan rule; port 23 of the
  // weak rule failed to bind earlier, so it is not in force.
  TableSet t = host({scan(80, 83, 80), rule("127.0.0.1", 22, 23, 22, true)});
  PifPorts before;
  before.of(Pif::kHost).tcp.set(81);
  std::vector<PlannedKey> in_force;
  for (const PlannedKey& k : planned_keys(t, &before)) {
    if (k.key.port != 23) in_force.push_back(k);
  }
  std::vector<ListenerKey> keys;
  std::vector<KeyOrigin> origins;
  for (const PlannedKey& k : in_force) {
    keys.push_back(k.key);
    origins.push_back(k.origin);
  }
  PifPorts now;
  now.of(Pif::kHost).tcp.set(82);
  now.of(Pif::kHost).tcp.set(23);  // bound inside, but port 23 is not a scan rule's
  CommitPlan plan = plan_scan(keys, origins, t, now);
  EXPECT_EQ(ports(plan.open), (std::vector<uint16_t>{82})) << "the weak rule's 23 is not retried";
  ASSERT_EQ(plan.close.size(), 1u);
  EXPECT_EQ(keys[plan.close[0]].port, 81);
  ASSERT_EQ(plan.keep.size(), 1u);
  EXPECT_EQ(keys[plan.keep[0].installed].port, 22);
  EXPECT_EQ(plan.keep[0].origin, (KeyOrigin{Pif::kHost, 1}));
  EXPECT_TRUE(plan.rebind.empty());
}

TEST(CommitPlan, ASpliceScanRuleFollowsSluicedsSideAndAHostOneTheNamespace) {
  Rule splice = scan(5432, 5433, 5432);
  splice.listen = Addr{};
  splice.dual_stack = true;
  splice.ifname = "lo";
  TableSet t = host({scan(8080, 8081, 8080)});
  t.of(Pif::kSplice).rules = {splice};
  PifPorts bound;
  bound.of(Pif::kHost).tcp.set(8081);    // bound inside the target namespace
  bound.of(Pif::kHost).tcp.set(5432);    // inside too: not what a SPLICE rule follows
  bound.of(Pif::kSplice).tcp.set(5433);  // bound on sluiced's side
  bound.of(Pif::kSplice).tcp.set(8080);  // sluiced's side too: not what a HOST rule follows
  std::vector<PlannedKey> keys = planned_keys(t, &bound);
  ASSERT_EQ(keys.size(), 2u);
  std::vector<std::pair<Pif, uint16_t>> got;
  for (const PlannedKey& k : keys) got.push_back({k.key.pif, k.key.port});
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<std::pair<Pif, uint16_t>>{{Pif::kHost, 8081}, {Pif::kSplice, 5433}}));
}

TEST(JudgeRules, AScanRuleNeverFailsItsPortsAreWarnings) {
  TableSet t = host({scan(80, 81, 80)});  // strict, not weak
  PifPorts bound;
  bound.of(Pif::kHost).tcp.set(80);
  bound.of(Pif::kHost).tcp.set(81);
  std::vector<PlannedKey> keys = planned_keys(t, &bound);
  std::vector<int32_t> status = {EADDRINUSE, EADDRINUSE};
  std::vector<std::string> reasons = {"", ""};
  std::vector<control::Failure> warnings;
  auto failures = judge_rules(t, keys, status, reasons, BindContext{}, &warnings);
  EXPECT_TRUE(failures.empty());
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].message.find("auto-scan: tried again at the next scan"), std::string::npos)
      << warnings[0].message;
}

}  // namespace
}  // namespace sluice
