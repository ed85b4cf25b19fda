// The `target` and `control` lines of the policy file: parsing (every field
// form, every kind of error with its line), name resolution, the target check
// of whole tables (first match wins, no match is denied, each failure names
// its rule, port and line), and the control decision (first match wins,
// groups, the default of owner and root).
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "policy/control_policy.h"
#include "policy/policy_file.h"
#include "policy/target_policy.h"

namespace sluice {
namespace {

/// Parses `text` as "P" without a resolver and expects it to be valid.
PolicyFile parse_ok(const std::string& text, const NameResolver* resolver = nullptr) {
  auto f = parse_policy_text(text, "P", resolver);
  EXPECT_TRUE(f.ok()) << f.error().message;
  return f.ok() ? *f : PolicyFile{};
}

/// Expects `text` to fail with a message containing `needle`.
void expect_error(const std::string& text, const std::string& needle,
                  const NameResolver* resolver = nullptr) {
  auto f = parse_policy_text(text, "P", resolver);
  ASSERT_FALSE(f.ok()) << "accepted: " << text;
  EXPECT_NE(f.error().message.find(needle), std::string::npos) << f.error().message;
}

/// A resolver that knows user alice (1000) and group wheel (10).
std::optional<uint32_t> fake_names(bool group, const std::string& name) {
  if (!group && name == "alice") return 1000;
  if (group && name == "wheel") return 10;
  return std::nullopt;
}

/// A TCP rule listening on 127.0.0.1:first-last, forwarding to `to` at `target`.
Rule tcp_rule(uint16_t first, uint16_t last, uint16_t to, Addr target = {}) {
  Rule r;
  r.listen = addr_v4(127, 0, 0, 1);
  r.first = first;
  r.last = last;
  r.to = to;
  r.target = target;
  return r;
}

/// A table set holding `rules` in the HOST table.
TableSet host(std::vector<Rule> rules) {
  TableSet t;
  t.of(Pif::kHost).rules = std::move(rules);
  return t;
}

// --- target lines: parsing ---

TEST(TargetLines, ParseEveryFieldForm) {
  PolicyFile f = parse_ok(
      "target allow tcp 127.0.0.0/8,::1 8000-8999\n"
      "target deny * 169.254.0.0/16,fe80::/10\n"
      "target allow udp * 53\n");
  ASSERT_EQ(f.target_rules.size(), 3u);
  EXPECT_TRUE(f.target_rules[0].allow);
  EXPECT_TRUE(f.target_rules[0].tcp);
  EXPECT_FALSE(f.target_rules[0].udp);
  ASSERT_EQ(f.target_rules[0].ports.size(), 1u);
  EXPECT_EQ(f.target_rules[0].ports[0].last, 8999);
  EXPECT_EQ(f.target_rules[0].addrs.size(), 2u);
  EXPECT_FALSE(f.target_rules[1].allow);
  EXPECT_TRUE(f.target_rules[1].any_port);  // PORTS defaults to *
  EXPECT_EQ(f.target_rules[1].line, 2u);
  EXPECT_EQ(f.target_rules[1].text, "target deny * 169.254.0.0/16,fe80::/10");
  EXPECT_TRUE(f.target_rules[2].any_addr);
}

TEST(TargetLines, ErrorsNameTheLine) {
  expect_error("\ntarget allow tcp\n", "P line 2: a target line has 4 or 5 fields");
  expect_error("target permit tcp *\n", "unknown action \"permit\"");
  expect_error("target allow sctp *\n", "unknown protocol \"sctp\"");
  expect_error("target allow tcp 10.0.0.1/8\n", "did you mean 10.0.0.0/8?");
  expect_error("target allow tcp * 0\n", "bad port \"0\"");
  expect_error("target allow tcp * 90-80\n", "ends before it starts");
  expect_error("target allow tcp * 80 extra\n", "4 or 5 fields");
}

// --- target lines: decisions ---

TEST(TargetCheck, DefaultAllowsEverything) {
  TargetPolicy none = target_policy_from_file(parse_ok("bind allow * * *\n"));
  EXPECT_FALSE(none.use_rules);
  EXPECT_TRUE(check_target(none, Proto::kTcp, addr_v4(169, 254, 0, 1), 80).allowed);
  EXPECT_TRUE(check_table_targets(none, host({tcp_rule(8080, 8080, 22)})).empty());
}

TEST(TargetCheck, FirstMatchWinsAndNoMatchIsDenied) {
  TargetPolicy p =
      target_policy_from_file(parse_ok("target deny tcp 127.0.0.1 22\n"
                                       "target allow tcp 127.0.0.0/8\n"));
  EXPECT_FALSE(check_target(p, Proto::kTcp, addr_v4(127, 0, 0, 1), 22).allowed);
  EXPECT_EQ(check_target(p, Proto::kTcp, addr_v4(127, 0, 0, 1), 22).line->line, 1u);
  EXPECT_TRUE(check_target(p, Proto::kTcp, addr_v4(127, 0, 0, 1), 8000).allowed);
  EXPECT_TRUE(check_target(p, Proto::kTcp, addr_v4(127, 0, 0, 2), 22).allowed);
  TargetDecision udp = check_target(p, Proto::kUdp, addr_v4(127, 0, 0, 1), 53);
  EXPECT_FALSE(udp.allowed);
  EXPECT_EQ(udp.line, nullptr);
  EXPECT_FALSE(check_target(p, Proto::kTcp, addr_v4(10, 0, 0, 1), 80).allowed);
}

TEST(TargetCheck, IPv4LinesDoNotMatchIPv6Targets) {
  TargetPolicy p = target_policy_from_file(parse_ok("target allow * 0.0.0.0/0\n"));
  Addr v6{};
  v6[15] = 1;
  EXPECT_TRUE(check_target(p, Proto::kTcp, addr_v4(192, 0, 2, 1), 80).allowed);
  EXPECT_FALSE(check_target(p, Proto::kTcp, v6, 80).allowed);
}

TEST(TargetCheck, DefaultTargetIsTheLoopbackOfEachListenedFamily) {
  Rule v4 = tcp_rule(80, 80, 8080);
  ASSERT_EQ(rule_target_addresses(v4).size(), 1u);
  EXPECT_EQ(format_addr(rule_target_addresses(v4)[0]), "127.0.0.1");
  Rule dual = v4;
  dual.listen = Addr{};
  dual.dual_stack = true;
  ASSERT_EQ(rule_target_addresses(dual).size(), 2u);
  EXPECT_EQ(format_addr(rule_target_addresses(dual)[1]), "::1");
  Rule explicit_target = tcp_rule(80, 80, 8080, addr_v4(192, 0, 2, 7));
  EXPECT_EQ(format_addr(rule_target_addresses(explicit_target)[0]), "192.0.2.7");
  // A dual-stack rule needs both loopbacks allowed.
  TargetPolicy only_v4 = target_policy_from_file(parse_ok("target allow tcp 127.0.0.1\n"));
  auto issues = check_table_targets(only_v4, host({dual}));
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("[::1] port 8080"), std::string::npos) << issues[0].message;
}

TEST(TargetCheck, FailureNamesRulePortAndLine) {
  TargetPolicy p =
      target_policy_from_file(parse_ok("# header\n"
                                       "target allow tcp 127.0.0.1 8000-8009\n"
                                       "target deny tcp 127.0.0.1 8010\n"
                                       "target allow tcp 127.0.0.1 8011-9000\n"));
  // Rule 0 maps 80-89 to 8000-8009: allowed. Rule 1 maps 100-119 to 8005-8024:
  // port 8010 (listening port 105) is denied by line 3.
  auto issues = check_table_targets(p, host({tcp_rule(80, 89, 8000), tcp_rule(100, 119, 8005)}));
  ASSERT_EQ(issues.size(), 1u);
  const control::Failure& i = issues[0];
  EXPECT_EQ(i.kind, control::FailureKind::kPolicyDenied);
  EXPECT_EQ(i.rule, 1);
  EXPECT_EQ(i.port, 8010);
  EXPECT_NE(i.message.find("denied by P line 3 (target deny tcp 127.0.0.1 8010)"),
            std::string::npos)
      << i.message;
  EXPECT_NE(i.message.find("TCP 127.0.0.1 port 8010"), std::string::npos) << i.message;
  EXPECT_NE(i.message.find("ask the administrator"), std::string::npos) << i.message;
}

TEST(TargetCheck, NoMatchingLineSaysSo) {
  TargetPolicy p = target_policy_from_file(parse_ok("target allow udp * *\n"));
  auto issues = check_table_targets(p, host({tcp_rule(80, 80, 8080)}));
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].port, 8080);
  EXPECT_NE(issues[0].message.find("no `target` line of P matches it"), std::string::npos)
      << issues[0].message;
}

TEST(TargetCheck, OneIssuePerRuleEvenForWideRanges) {
  TargetPolicy p = target_policy_from_file(parse_ok("target deny * * *\n"));
  auto issues = check_table_targets(p, host({tcp_rule(1, 65535, 1), tcp_rule(70, 70, 70)}));
  ASSERT_EQ(issues.size(), 2u);
  EXPECT_EQ(issues[0].port, 1);
  EXPECT_EQ(issues[1].rule, 1);
}

// --- control lines: parsing ---

TEST(ControlLines, ParseSubjectsWithAndWithoutResolver) {
  const NameResolver resolver = fake_names;
  PolicyFile f = parse_ok(
      "control commit uid=0,alice gid=wheel\n"
      "control read *\n",
      &resolver);
  ASSERT_EQ(f.control_rules.size(), 2u);
  EXPECT_EQ(f.control_rules[0].access, ControlAccess::kCommit);
  EXPECT_EQ(f.control_rules[0].uids, (std::vector<uint32_t>{0, 1000}));
  EXPECT_EQ(f.control_rules[0].gids, (std::vector<uint32_t>{10}));
  EXPECT_TRUE(f.control_rules[0].unresolved.empty());
  EXPECT_EQ(f.control_rules[1].access, ControlAccess::kRead);
  EXPECT_TRUE(f.control_rules[1].anyone);
  // The worker parses without a resolver: names stay unresolved, never match.
  PolicyFile w = parse_ok("control commit uid=0,alice gid=wheel\n");
  EXPECT_EQ(w.control_rules[0].uids, (std::vector<uint32_t>{0}));
  EXPECT_EQ(w.control_rules[0].unresolved, (std::vector<std::string>{"alice", "wheel"}));
}

TEST(ControlLines, ErrorsNameTheLine) {
  const NameResolver resolver = fake_names;
  expect_error("control commit\n", "P line 1: a control line is");
  expect_error("control write uid=0\n", "unknown access \"write\"");
  expect_error("control read user=0\n", "unknown subject \"user=0\"");
  expect_error("control read uid=\n", "bad user name \"\"");
  expect_error("control read uid=4294967295\n", "bad user id");
  expect_error("control read gid=1x\n", "bad group id");
  expect_error("control read uid=a/b\n", "bad user name");
  expect_error("\ncontrol read uid=bob\n", "P line 2: unknown user \"bob\"", &resolver);
  expect_error("control read gid=staff\n", "unknown group \"staff\"", &resolver);
  std::string many = "control read uid=";
  for (int i = 0; i <= 1024; ++i) many += std::to_string(i) + (i < 1024 ? "," : "");
  expect_error(many + "\n", "use a group instead");
}

// --- control decisions ---

TEST(ControlDecision, DefaultIsOwnerAndRoot) {
  ControlPolicy p = control_policy_from_file(parse_ok(""), 1000);
  EXPECT_FALSE(p.use_rules);
  EXPECT_EQ(decide_control(p, 1000, 1000, {}).access, ControlAccess::kCommit);
  EXPECT_EQ(decide_control(p, 0, 0, {}).access, ControlAccess::kCommit);
  EXPECT_EQ(decide_control(p, 1001, 1000, {}).access, ControlAccess::kNone);
  std::string why = explain_control(p.source, p.use_rules, p.owner_uid,
                                    decide_control(p, 1001, 1000, {}), "", 1001);
  EXPECT_NE(why.find("allows only uid 1000 (the user sluiced runs as) and root"), std::string::npos)
      << why;
}

TEST(ControlDecision, FirstMatchWinsOverGroups) {
  ControlPolicy p = control_policy_from_file(parse_ok("control read gid=100\n"
                                                      "control commit uid=1001,1002\n"
                                                      "control read uid=1003\n"),
                                             0);
  // 1001 is in group 100 (supplementary): line 1 matches first, read only.
  const uint32_t groups100[] = {5, 100};
  ControlDecision d = decide_control(p, 1001, 1001, groups100);
  EXPECT_EQ(d.access, ControlAccess::kRead);
  EXPECT_EQ(d.line, 1u);
  d = decide_control(p, 1002, 1002, {});
  EXPECT_EQ(d.access, ControlAccess::kCommit);
  EXPECT_EQ(d.line, 2u);
  EXPECT_EQ(decide_control(p, 1003, 100, {}).line, 1u);  // primary group counts too
  d = decide_control(p, 0, 0, {});                       // root is not special with rules
  EXPECT_EQ(d.access, ControlAccess::kNone);
  EXPECT_EQ(d.line, 0u);
  std::string why = explain_control("P", true, 0, decide_control(p, 1001, 1001, groups100),
                                    "control read gid=100", 1001);
  EXPECT_EQ(why, "P line 1 (control read gid=100) grants uid 1001 read access only");
  EXPECT_NE(explain_control("P", true, 0, d, "", 0).find("no `control` line of P matches uid 0"),
            std::string::npos);
}

TEST(ControlDecision, UnresolvedNamesNeverMatch) {
  ControlPolicy p = control_policy_from_file(parse_ok("control commit uid=alice\n"), 0);
  EXPECT_EQ(decide_control(p, 1000, 1000, {}).access, ControlAccess::kNone);
}

// --- the shipped examples ---

TEST(PolicyExamples, EveryExampleParses) {
  for (const char* name : {"host-services.policy", "rootless-containers.policy"}) {
    auto f = load_policy_file(std::string(SLUICE_EXAMPLES_DIR) + "/" + name);
    ASSERT_TRUE(f.ok()) << name << ": " << f.error().message;
    EXPECT_FALSE(f->bind_rules.empty() && f->target_rules.empty() && f->control_rules.empty())
        << name;
  }
}

}  // namespace
}  // namespace sluice
