// The one rule check: the order of its steps, the certain loops it refuses,
// the possible loops it leaves to the run-time guard, and the one definition
// of the default target that every check shares.
#include "policy/check_commit.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/rule_util.h"

namespace sluice {
namespace {

using test::make_rule;

/// A TCP rule (test::make_rule).
Rule rule(const char* listen, uint16_t first, uint16_t last, uint16_t to, const char* target = "") {
  return make_rule(listen, first, last, to, target);
}

/// A HOST-only table set.
TableSet host(std::vector<Rule> rules) {
  return test::host_table(std::move(rules));
}

/// The loops check_commit finds with a server that listens and connects in
/// one namespace.
std::vector<control::Failure> loops(const TableSet& t) {
  return find_certain_loops(t, CommitFacts{});
}

TEST(ForwardingLoops, IdentityMappingOnLoopbackLoops) {
  auto found = loops(host({rule("127.0.0.1", 8080, 8080, 8080)}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].rule, 0);
  EXPECT_EQ(found[0].port, 8080);
  EXPECT_EQ(found[0].text, "TCP [127.0.0.1]:8080 => 8080");
  EXPECT_NE(found[0].message.find("the rule itself"), std::string::npos) << found[0].message;
  EXPECT_EQ(loops(host({rule("*", 22, 80, 22)})).size(), 1u);
  // -t 8080: the default target on every address.
  EXPECT_EQ(loops(host({rule("0.0.0.0", 8080, 8080, 8080)})).size(), 1u);
  EXPECT_EQ(loops(host({rule("::", 8080, 8080, 8080)})).size(), 1u);
}

TEST(ForwardingLoops, TheAdviceKeepsTheListenAddressAndTargetAndNamesNetnsForTheSamePort) {
  /// The message of the one loop in `r`'s table.
  auto advice = [](const Rule& r) {
    auto found = loops(host({r}));
    return found.size() == 1 ? found[0].message : std::string("no single loop");
  };
  // A port forwarded to itself is what publishing a container looks like.
  std::string m = advice(rule("0.0.0.0", 8080, 8080, 8080));
  EXPECT_NE(m.find("start sluiced with --netns PID|PATH"), std::string::npos) << m;
  EXPECT_NE(m.find("(e.g. 0.0.0.0/8080:9080)"), std::string::npos) << m;
  m = advice(rule("*", 8000, 8010, 8000));
  EXPECT_NE(m.find("(e.g. 8000-8010:9000-9010)"), std::string::npos) << m;
  m = advice(rule("::1", 8080, 8080, 8080));
  EXPECT_NE(m.find("(e.g. [::1]/8080:9080)"), std::string::npos) << m;
  Rule on_if = rule("*", 65000, 65000, 65000);
  on_if.ifname = "lo";
  m = advice(on_if);
  EXPECT_NE(m.find("(e.g. *%lo/65000:64000)"), std::string::npos) << m;
  // -t all: thousands of best-effort ports, which no shift suits.
  Rule all = rule("*", 1, 32767, 1);
  all.weak = true;
  m = advice(all);
  EXPECT_NE(m.find("--netns"), std::string::npos) << m;
  EXPECT_EQ(m.find("e.g."), std::string::npos) << m;
  // Into another rule at an explicit address: the target stays, and --netns
  // is not the answer.
  auto found =
      loops(host({rule("0.0.0.0", 80, 80, 8080, "192.0.2.7"), rule("192.0.2.7", 8080, 8080, 81)}));
  ASSERT_EQ(found.size(), 1u);
  m = found[0].message;
  EXPECT_NE(m.find("(e.g. 0.0.0.0/80:192.0.2.7/1080) or give another target address"),
            std::string::npos)
      << m;
  EXPECT_EQ(m.find("--netns"), std::string::npos) << m;
}

TEST(ForwardingLoops, TargetServedByAnotherRuleLoops) {
  auto found =
      loops(host({rule("127.0.0.1", 8080, 8080, 9000), rule("0.0.0.0", 9000, 9010, 7000)}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].rule, 0);
  EXPECT_EQ(found[0].other_rule, 1);
  EXPECT_NE(found[0].message.find("HOST rule 1 (TCP [0.0.0.0]:9000-9010 => 7000-7010)"),
            std::string::npos)
      << found[0].message;
}

TEST(ForwardingLoops, TwoRulesThatFeedEachOtherLoop) {
  // 127.0.0.1:8080 -> 127.0.0.2:9090 and 127.0.0.2:9090 -> 127.0.0.1:8080.
  auto found = loops(host({rule("127.0.0.1", 8080, 8080, 9090, "127.0.0.2"),
                           rule("127.0.0.2", 9090, 9090, 8080, "127.0.0.1")}));
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0].other_rule, 1);
  EXPECT_EQ(found[1].other_rule, 0);
}

TEST(ForwardingLoops, TargetEqualToAnExplicitListenAddressLoops) {
  auto found =
      loops(host({rule("0.0.0.0", 80, 80, 8080, "192.0.2.7"), rule("192.0.2.7", 8080, 8080, 81)}));
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].rule, 0);
  EXPECT_NE(found[0].message.find("of 192.0.2.7"), std::string::npos) << found[0].message;
}

TEST(ForwardingLoops, OtherPortsFamiliesTargetsAndInterfacesDoNotLoop) {
  EXPECT_TRUE(loops(host({rule("127.0.0.1", 8080, 8080, 8000)})).empty());
  // An IPv4 listener's default target is 127.0.0.1, not served by a ::1 listener.
  EXPECT_TRUE(
      loops(host({rule("127.0.0.1", 8080, 8080, 9000), rule("::1", 9000, 9000, 1)})).empty());
  // An explicit target elsewhere does not loop, even on the same port.
  EXPECT_TRUE(loops(host({rule("127.0.0.1", 8080, 8080, 8080, "192.0.2.7")})).empty());
  // UDP does not loop into TCP.
  Rule udp = rule("0.0.0.0", 9000, 9000, 1);
  udp.proto = Proto::kUdp;
  EXPECT_TRUE(loops(host({rule("127.0.0.1", 8080, 8080, 9000), udp})).empty());
  // A listener bound to another interface never sees sluice's own
  // connections, which travel on lo.
  Rule eth = rule("0.0.0.0", 8080, 8080, 8080);
  eth.ifname = "eth0";
  EXPECT_TRUE(loops(host({eth})).empty());
  Rule lo = eth;
  lo.ifname = "lo";
  EXPECT_EQ(loops(host({lo})).size(), 1u);
}

TEST(ForwardingLoops, ContainerPublishFormsAreNotLoops) {
  // -t 0.0.0.0/8080:10.88.0.5/8080 (podman -p 8080:8080) and its IPv6 twin:
  // nothing says the target is local, so nothing is refused at commit time.
  TableSet v4 = host({rule("0.0.0.0", 8080, 8080, 8080, "10.88.0.5")});
  TableSet v6 = host({rule("::", 8080, 8080, 8080, "fd00::5")});
  TableSet dual = host({rule("*", 8080, 8080, 8080, "fd00::5")});
  for (const TableSet* t : {&v4, &v6, &dual}) {
    EXPECT_TRUE(check_commit(*t, CommitFacts{}, nullptr).empty())
        << check_commit(*t, CommitFacts{}, nullptr)[0].message;
  }
  // They may still loop if the target is one of the host's own addresses:
  // the forwarder guards them at run time.
  EXPECT_EQ(rules_needing_loop_guard(v4.of(Pif::kHost), CommitFacts{}), std::vector<bool>{true});
  EXPECT_EQ(rules_needing_loop_guard(v6.of(Pif::kHost), CommitFacts{}), std::vector<bool>{true});
}

TEST(ForwardingLoops, OnlyRulesThatMayLoopAreGuarded) {
  Table t = host({rule("127.0.0.1", 80, 80, 8080, "192.0.2.7"),  // nothing listens on *:8080
                  rule("0.0.0.0", 443, 443, 443, "10.0.0.9"),    // *:443 serves 10.0.0.9:443
                  rule("0.0.0.0", 22, 22, 2222, "::1"),          // IPv6 target: no v4 wildcard
                  rule("127.0.0.1", 53, 53, 5353)})              // default target: checked
                .of(Pif::kHost);
  EXPECT_EQ(rules_needing_loop_guard(t, CommitFacts{}),
            (std::vector<bool>{false, true, false, false}));
  // With a target namespace, loopback there cannot lead back; an explicit
  // address may be this host's, routed back (a veth's host end).
  CommitFacts apart;
  apart.targets_share_namespace = false;
  EXPECT_EQ(rules_needing_loop_guard(t, apart), (std::vector<bool>{false, true, false, false}));
}

TEST(ForwardingLoops, ATargetNamespaceRoutingBackArrivesOnAnInterfaceNotLo) {
  // *:7410 bound to the veth's host end: sluice's own connections on lo never
  // reach it, but those the target namespace routes back arrive there.
  Rule bound = rule("0.0.0.0", 7410, 7410, 7410, "10.88.0.1");
  bound.ifname = "veth0";
  Rule exact = rule("10.88.0.1", 7411, 7411, 7411, "10.88.0.1");
  exact.ifname = "veth0";
  Table t = host({bound, exact}).of(Pif::kHost);
  EXPECT_EQ(rules_needing_loop_guard(t, CommitFacts{}), (std::vector<bool>{false, false}));
  CommitFacts apart;
  apart.targets_share_namespace = false;
  EXPECT_EQ(rules_needing_loop_guard(t, apart), (std::vector<bool>{true, true}));
}

TEST(ForwardingLoops, NoneWhenTargetsAreInAnotherNamespace) {
  CommitFacts apart;
  apart.targets_share_namespace = false;
  EXPECT_TRUE(find_certain_loops(host({rule("0.0.0.0", 8080, 8080, 8080)}), apart).empty());
}

/// A SPLICE rule as -T writes it: [*]%lo:first-last => to (or `target`).
Rule splice(uint16_t first, uint16_t last, uint16_t to, const char* target = "") {
  Rule r = rule("*", first, last, to, target);
  r.ifname = "lo";
  return r;
}

/// HOST and SPLICE tables together, checked as by a server with a target
/// namespace.
std::vector<control::Failure> cross(std::vector<Rule> host_rules, std::vector<Rule> splice_rules) {
  TableSet t = host(std::move(host_rules));
  t.of(Pif::kSplice).rules = std::move(splice_rules);
  CommitFacts apart;
  apart.targets_share_namespace = false;
  return find_cross_table_loops(t, apart);
}

TEST(ForwardingLoops, AHostAndASpliceRuleThatSendEachOtherBackLoop) {
  // -t 8080 -T 8080: into the namespace's 8080, and straight back out.
  auto same = cross({rule("*", 8080, 8080, 8080)}, {splice(8080, 8080, 8080)});
  ASSERT_EQ(same.size(), 1u);
  EXPECT_EQ(same[0].pif, Pif::kHost);
  EXPECT_EQ(same[0].rule, 0);
  EXPECT_EQ(same[0].port, 8080);
  EXPECT_NE(same[0].message.find("SPLICE rule 0 (TCP [*]%lo:8080 => 8080)"), std::string::npos)
      << same[0].message;
  EXPECT_NE(same[0].message.find("circle"), std::string::npos) << same[0].message;
  // Mapped both ways, over a range, with an explicit loopback target.
  auto mapped =
      cross({rule("0.0.0.0", 18000, 18010, 9000, "127.0.0.1")}, {splice(9005, 9020, 18005)});
  ASSERT_EQ(mapped.size(), 1u);
  EXPECT_EQ(mapped[0].port, 18005);
}

TEST(ForwardingLoops, HostAndSpliceRulesThatDoNotMeetDoNotLoop) {
  // Another port inside; back to another port here; a HOST listener that
  // does not hear this side's loopback; a container address as the target;
  // another protocol; no namespace at all.
  EXPECT_TRUE(cross({rule("*", 8080, 8080, 8080)}, {splice(8081, 8081, 8081)}).empty());
  EXPECT_TRUE(cross({rule("*", 8080, 8080, 9090)}, {splice(9090, 9090, 9091)}).empty());
  EXPECT_TRUE(cross({rule("127.0.0.2", 8080, 8080, 8080)}, {splice(8080, 8080, 8080)}).empty());
  EXPECT_TRUE(
      cross({rule("0.0.0.0", 8080, 8080, 8080, "10.88.0.5")}, {splice(8080, 8080, 8080)}).empty());
  Rule udp = splice(8080, 8080, 8080);
  udp.proto = Proto::kUdp;
  EXPECT_TRUE(cross({rule("*", 8080, 8080, 8080)}, {udp}).empty());
  TableSet t = host({rule("*", 8080, 8080, 18080)});
  t.of(Pif::kSplice).rules = {splice(18080, 18080, 8080)};
  EXPECT_TRUE(find_cross_table_loops(t, CommitFacts{}).empty());
}

TEST(ForwardingLoops, AnAutoScanRuleFacingAWildcardListenerNeverCircles) {
  // A scan rule listens only while a socket that is not sluice's holds its
  // target port on the other side; that socket clashes with the other
  // rule's wildcard listener there, so the two never listen at once.
  Rule host_auto = rule("*", 1, 32767, 1);
  host_auto.scan = true;
  Rule splice_auto = splice(1, 32767, 1);
  splice_auto.scan = true;
  EXPECT_TRUE(cross({host_auto}, {splice_auto}).empty()) << "-t auto -T auto";
  EXPECT_TRUE(cross({host_auto}, {splice(5432, 5432, 5432)}).empty()) << "-t auto -T 5432";
  EXPECT_TRUE(cross({rule("*", 8080, 8080, 8080)}, {splice_auto}).empty()) << "-t 8080 -T auto";
  // A HOST rule on one address leaves room for another server on the same
  // port here, which a SPLICE scan follows: that pair can still circle.
  auto specific = cross({rule("127.0.0.1", 8080, 8080, 8080)}, {splice_auto});
  ASSERT_EQ(specific.size(), 1u);
  EXPECT_NE(specific[0].message.find("circle"), std::string::npos) << specific[0].message;
}

TEST(DefaultTarget, OneDefinitionForBothSpellings) {
  Addr mapped_any = addr_v4(0, 0, 0, 0);
  EXPECT_TRUE(is_default_target(Addr{}));
  EXPECT_TRUE(is_default_target(mapped_any));
  EXPECT_EQ(canonical_target(mapped_any), Addr{});
  EXPECT_FALSE(is_default_target(addr_v4(127, 0, 0, 1)));
  Rule r = rule("0.0.0.0", 8080, 8080, 8081);
  r.target = mapped_any;
  EXPECT_EQ(rule_target_addresses(r), std::vector<Addr>{addr_v4(127, 0, 0, 1)});
  EXPECT_EQ(format_rule(r), "TCP [0.0.0.0]:8080 => 8081");
}

TEST(CheckCommit, V4MappedUnspecifiedTargetIsCheckedAsTheDefaultTarget) {
  // The bypass: a target sent as ::ffff:0.0.0.0 must meet the same target
  // policy as the default target (it forwards to loopback).
  TargetPolicy deny_loopback;
  deny_loopback.use_rules = true;
  deny_loopback.source = "policy";
  TargetRule deny;
  deny.allow = false;
  deny.tcp = true;
  deny.udp = true;
  deny.any_addr = true;
  deny.any_port = true;
  deny.line = 1;
  deny.text = "target deny tcp,udp * *";
  deny_loopback.rules.push_back(deny);
  Rule plain = rule("0.0.0.0", 8080, 8080, 8081);
  Rule mapped = plain;
  mapped.target = addr_v4(0, 0, 0, 0);
  for (const Rule& r : {plain, mapped}) {
    auto failures = check_commit(host({r}), CommitFacts{}, &deny_loopback);
    ASSERT_EQ(failures.size(), 1u) << format_rule(r);
    EXPECT_EQ(failures[0].kind, control::FailureKind::kPolicyDenied);
    EXPECT_NE(failures[0].message.find("127.0.0.1"), std::string::npos) << failures[0].message;
  }
}

TEST(CheckCommit, StepsRunInOrderAndStopAtTheFirstThatFails) {
  // A conflict is reported alone, although the rules also loop.
  auto conflict =
      check_commit(host({rule("*", 80, 80, 80), rule("*", 80, 80, 80)}), CommitFacts{}, nullptr);
  ASSERT_EQ(conflict.size(), 1u);
  EXPECT_EQ(conflict[0].kind, control::FailureKind::kConflict);
  // A table the server does not serve.
  TableSet splice;
  Rule s = rule("::", 8080, 8080, 8081);
  s.dual_stack = false;
  s.ifname = "lo";
  splice.of(Pif::kSplice).rules.push_back(s);
  CommitFacts host_only;
  host_only.served = {true, false};
  auto unserved = check_commit(splice, host_only, nullptr);
  ASSERT_EQ(unserved.size(), 1u);
  EXPECT_EQ(unserved[0].pif, Pif::kSplice);
  EXPECT_EQ(unserved[0].rule, -1);
  EXPECT_NE(unserved[0].message.find("does not serve it"), std::string::npos);
  EXPECT_TRUE(check_commit(splice, CommitFacts{}, nullptr).empty());
  // Then loops.
  auto loop = check_commit(host({rule("*", 80, 80, 80)}), CommitFacts{}, nullptr);
  ASSERT_EQ(loop.size(), 1u);
  EXPECT_NE(loop[0].message.find("come back into sluice"), std::string::npos);
}

}  // namespace
}  // namespace sluice
