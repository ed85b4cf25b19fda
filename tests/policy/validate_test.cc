// The rule validator: every per-rule check, conflicts (found by the sweep, in
// both orders, and checked against a brute-force comparison), and the limits.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "base/strings.h"
#include "policy/validate.h"

namespace sluice {
namespace {

/// Parses `text` as an address or fails the test.
Addr addr(const std::string& text) {
  Addr a{};
  EXPECT_TRUE(parse_addr(text, &a)) << text;
  return a;
}

/// A TCP rule listening on `listen` ("*" for dual-stack) for first-last, unmapped.
Rule rule(const std::string& listen, unsigned first, unsigned last = 0) {
  Rule r;
  if (listen == "*") {
    r.dual_stack = true;
  } else {
    r.listen = addr(listen);
  }
  r.first = static_cast<uint16_t>(first);
  r.last = static_cast<uint16_t>(last == 0 ? first : last);
  r.to = r.first;
  return r;
}

/// Returns the messages of validating `r` alone as rule 0 of `pif`.
std::vector<std::string> problems(const Rule& r, Pif pif = Pif::kHost,
                                  const ServerCaps& caps = ServerCaps{}) {
  std::vector<std::string> out;
  for (const control::Failure& issue : validate_rule(pif, r, 0, caps)) {
    EXPECT_EQ(issue.kind, control::FailureKind::kInvalid);
    EXPECT_EQ(issue.rule, 0);
    EXPECT_EQ(issue.pif, pif);
    out.push_back(issue.message);
  }
  return out;
}

/// Expects exactly one problem whose message contains every one of `parts`.
void expect_problem(const Rule& r, const std::vector<std::string>& parts, Pif pif = Pif::kHost,
                    const ServerCaps& caps = ServerCaps{}) {
  std::vector<std::string> got = problems(r, pif, caps);
  ASSERT_EQ(got.size(), 1u) << format_rule(r) << (got.empty() ? "" : ": " + got[0]);
  std::string prefix = std::string(pif_name(pif)) + " rule 0 (" + sanitize(format_rule(r)) + "): ";
  EXPECT_EQ(got[0].rfind(prefix, 0), 0u) << got[0];
  for (const std::string& part : parts) {
    EXPECT_NE(got[0].find(part), std::string::npos) << "missing \"" << part << "\" in " << got[0];
  }
}

TEST(ValidateRule, GoodRulesPass) {
  EXPECT_TRUE(problems(rule("*", 22)).empty());
  EXPECT_TRUE(problems(rule("192.0.2.1", 1, 65535)).empty());
  Rule mapped = rule("0.0.0.0", 80);
  mapped.to = 8080;
  mapped.target = addr("192.0.2.5");
  EXPECT_TRUE(problems(mapped).empty());
  Rule v6_to_v4 = rule("::1", 22);  // only IPv4 to IPv6 is refused
  v6_to_v4.target = addr("192.0.2.1");
  EXPECT_TRUE(problems(v6_to_v4).empty());
  Rule dual_to_v6 = rule("*", 22);
  dual_to_v6.target = addr("2001:db8::1");
  EXPECT_TRUE(problems(dual_to_v6).empty());
  Rule flags = rule("*", 1, 1000);
  flags.weak = flags.scan = true;
  flags.ifname = "eth0";
  EXPECT_TRUE(problems(flags).empty());
  Rule top = rule("*", 100, 200);
  top.to = 65435;  // 65435-65535 fits exactly
  EXPECT_TRUE(problems(top).empty());
}

TEST(ValidateRule, Ports) {
  expect_problem(rule("*", 80, 70), {"port range 80-70 runs backwards", "write 70-80"});
  Rule from0 = rule("*", 0, 10);
  from0.to = 1;
  expect_problem(from0, {"forwards from port 0", "1-65535"});
  Rule to0 = rule("*", 22);
  to0.to = 0;
  expect_problem(to0, {"forwards to port 0"});
  Rule wrap = rule("*", 100, 200);
  wrap.to = 65500;
  expect_problem(wrap,
                 {"target ports 65500-65600 run past 65535", "wrap to port 0", "e.g. 65435-65535"});
}

TEST(ValidateRule, InterfaceNames) {
  Rule r = rule("*", 22);
  r.ifname = "abcdefghijklmnop";
  expect_problem(r, {"16 bytes long", "at most 15"});
  r.ifname = "..";
  expect_problem(r, {"'..' is not an interface name"});
  r.ifname = "eth 0";
  expect_problem(r, {"contains", "ip link"});
  r.ifname = std::string("et\0h", 4);
  expect_problem(r, {"\\x00"});
  r.ifname = "a/b";
  expect_problem(r, {"contains /"});
}

TEST(ValidateRule, Addresses) {
  Rule dual_specific = rule("192.0.2.1", 22);
  dual_specific.dual_stack = true;
  expect_problem(dual_specific, {"dual-stack but listens on 192.0.2.1"});

  Rule dual_v4 = rule("*", 22, 80);
  dual_v4.to = 32;
  dual_v4.target = addr("192.0.2.5");
  expect_problem(dual_v4, {"IPv4 target 192.0.2.5", "write -t 0.0.0.0/22-80:192.0.2.5/32-90"});
  dual_v4.proto = Proto::kUdp;
  dual_v4.ifname = "eth0";
  dual_v4.to = 22;
  expect_problem(dual_v4, {"write -u 0.0.0.0%eth0/22-80:192.0.2.5"});

  Rule v4_v6 = rule("127.0.0.1", 22);
  v4_v6.target = addr("::1");
  expect_problem(v4_v6, {"listens on IPv4 (127.0.0.1)", "IPv6 target ::1"});

  Rule mcast = rule("0.0.0.0", 22);
  mcast.target = addr("239.1.2.3");
  expect_problem(mcast, {"239.1.2.3 is a multicast address"});
  Rule mcast6 = rule("::", 22);
  mcast6.target = addr("ff02::1");
  expect_problem(mcast6, {"ff02::1 is a multicast address"});

  Rule default_target = rule("0.0.0.0", 22);
  default_target.target = addr("0.0.0.0");  // v4 unspecified: still the default
  EXPECT_TRUE(problems(default_target).empty());
}

TEST(ValidateRule, Splice) {
  Rule lo = rule("*", 20000);
  lo.ifname = "lo";
  EXPECT_TRUE(problems(lo, Pif::kSplice).empty());
  ServerCaps no_ifname;
  no_ifname.ifname = false;
  EXPECT_TRUE(problems(lo, Pif::kSplice, no_ifname).empty()) << "lo is implied by -T/-U";
  // pesto's form for a server without SO_BINDTODEVICE: the loopback addresses.
  EXPECT_TRUE(problems(rule("127.0.0.1", 20000), Pif::kSplice).empty());
  EXPECT_TRUE(problems(rule("::1", 20000), Pif::kSplice).empty());
  expect_problem(rule("192.0.2.1", 20000), {"SPLICE rules", "no other listen address"},
                 Pif::kSplice);
  expect_problem(rule("0.0.0.0", 20000), {"SPLICE rules", "every interface", "bind it to lo"},
                 Pif::kSplice);
  expect_problem(rule("*", 20000), {"SPLICE rules", "every interface"}, Pif::kSplice);
  Rule eth = rule("*", 20000);
  eth.ifname = "eth0";
  expect_problem(eth, {"SPLICE rules", "take no interface", "drop %eth0"}, Pif::kSplice);
  // auto on -T/-U follows sluiced's side: served wherever SCAN is, refused
  // with the line that says to start sluiced with --netns where it is not.
  Rule scan = lo;
  scan.scan = true;
  ServerCaps with_scan;
  with_scan.scan = true;
  EXPECT_TRUE(problems(scan, Pif::kSplice, with_scan).empty());
  ServerCaps without_scan;
  without_scan.scan = false;
  expect_problem(scan, {"auto (auto-scan) needs a target namespace", "--netns"}, Pif::kSplice,
                 without_scan);
  Rule v4 = rule("*", 20000);
  v4.ifname = "lo";
  v4.target = addr("192.0.2.1");
  expect_problem(v4, {"IPv4 target", "give an IPv6 target"}, Pif::kSplice);
}

TEST(ValidateRule, Capabilities) {
  ServerCaps caps;
  caps.tcp = false;
  expect_problem(rule("*", 22), {"TCP forwarding disabled"}, Pif::kHost, caps);
  caps = ServerCaps{};
  caps.udp = false;
  Rule udp = rule("*", 53);
  udp.proto = Proto::kUdp;
  expect_problem(udp, {"UDP forwarding disabled"}, Pif::kHost, caps);
  caps = ServerCaps{};
  caps.ipv6 = false;
  expect_problem(rule("*", 22), {"dual-stack", "no IPv6", "listen on 0.0.0.0"}, Pif::kHost, caps);
  expect_problem(rule("::1", 22), {"listens on IPv6"}, Pif::kHost, caps);
  Rule v6_target = rule("0.0.0.0", 22);
  v6_target.target = addr("2001:db8::1");
  std::vector<std::string> got = problems(v6_target, Pif::kHost, caps);
  EXPECT_EQ(got.size(), 2u);  // IPv4 to IPv6, and IPv6 disabled
  caps = ServerCaps{};
  caps.ipv4 = false;
  expect_problem(rule("192.0.2.1", 22), {"listens on IPv4"}, Pif::kHost, caps);
  expect_problem(rule("*", 22), {"no IPv4", "listen on ::"}, Pif::kHost, caps);
  Rule v4_target = rule("::1", 22);
  v4_target.target = addr("192.0.2.1");
  expect_problem(v4_target, {"target is IPv4"}, Pif::kHost, caps);
  caps = ServerCaps{};
  caps.scan = false;
  Rule scan = rule("*", 22);
  scan.scan = true;
  expect_problem(scan,
                 {"auto (auto-scan) needs a target namespace", "sluiced with --netns", "drop auto"},
                 Pif::kHost, caps);
  caps = ServerCaps{};
  caps.ifname = false;
  Rule eth = rule("*", 22);
  eth.ifname = "eth0";
  expect_problem(eth, {"SO_BINDTODEVICE", "drop %eth0"}, Pif::kHost, caps);
}

TEST(ValidateRule, CorruptEnums) {
  Rule r = rule("*", 22);
  r.proto = static_cast<Proto>(7);
  expect_problem(r, {"unknown protocol (7)"});
  EXPECT_EQ(validate_rule(static_cast<Pif>(9), rule("*", 22), 0, ServerCaps{}).size(), 1u);
}

/// Validates a HOST table of `rules` and returns the issues.
std::vector<control::Failure> check_table(std::vector<Rule> rules) {
  TableSet tables;
  tables.of(Pif::kHost).rules = std::move(rules);
  return validate_tables(tables, ServerCaps{});
}

/// True when the two rules, in either order, make exactly one conflict issue
/// that names both (indices and listing text).
bool conflict_both_orders(const Rule& a, const Rule& b) {
  bool result = true;
  for (int order = 0; order < 2; ++order) {
    const Rule& x = order == 0 ? a : b;
    const Rule& y = order == 0 ? b : a;
    std::vector<control::Failure> issues = check_table({x, y});
    bool conflict = issues.size() == 1 && issues[0].kind == control::FailureKind::kConflict;
    if (conflict) {
      const control::Failure& issue = issues[0];
      EXPECT_EQ(issue.rule, 1);
      EXPECT_EQ(issue.other_rule, 0);
      EXPECT_NE(issue.message.find("HOST rule 1 (" + format_rule(y) + ")"), std::string::npos)
          << issue.message;
      if (x == y) {
        EXPECT_NE(issue.message.find("is the same rule as rule 0: the table already forwards "
                                     "exactly this, so there is nothing to add"),
                  std::string::npos)
            << issue.message;
      } else {
        EXPECT_NE(issue.message.find("conflicts with rule 0 (" + format_rule(x) + ")"),
                  std::string::npos)
            << issue.message;
        EXPECT_NE(issue.message.find("remove one of them"), std::string::npos);
      }
    } else {
      EXPECT_TRUE(issues.empty()) << issues[0].message;
    }
    EXPECT_EQ(rules_conflict(x, y), conflict);
    if (order == 0) {
      result = conflict;
    } else {
      EXPECT_EQ(result, conflict) << "the order of the rules changed the verdict";
    }
  }
  return result;
}

TEST(Conflicts, MatchingAddresses) {
  EXPECT_TRUE(conflict_both_orders(rule("*", 20, 30), rule("*", 25)));
  EXPECT_TRUE(conflict_both_orders(rule("*", 22), rule("0.0.0.0", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("*", 22), rule("192.0.2.1", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("*", 22), rule("::1", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("0.0.0.0", 1, 100), rule("127.0.0.1", 100, 200)));
  EXPECT_TRUE(conflict_both_orders(rule("0.0.0.0", 22), rule("0.0.0.0", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("::", 22), rule("::1", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("::", 22), rule("::", 10, 30)));
  EXPECT_TRUE(conflict_both_orders(rule("192.0.2.1", 22), rule("192.0.2.1", 22)));
  EXPECT_TRUE(conflict_both_orders(rule("2001:db8::1", 5, 50), rule("2001:db8::1", 50, 60)));
}

TEST(Conflicts, InterfacesTargetsAndFlagsDoNotTellRulesApart) {
  Rule a = rule("*", 22);
  a.ifname = "eth0";
  a.weak = true;
  Rule b = rule("*", 22);
  b.ifname = "eth1";
  b.to = 2222;
  b.target = addr("2001:db8::1");
  b.scan = true;
  EXPECT_TRUE(conflict_both_orders(a, b));
}

TEST(Conflicts, NonMatching) {
  EXPECT_FALSE(conflict_both_orders(rule("192.0.2.1", 22), rule("::1", 22)));
  EXPECT_FALSE(conflict_both_orders(rule("0.0.0.0", 22), rule("::", 22)));
  EXPECT_FALSE(conflict_both_orders(rule("0.0.0.0", 22), rule("::1", 22)));
  EXPECT_FALSE(conflict_both_orders(rule("::", 22), rule("127.0.0.1", 22)));
  EXPECT_FALSE(conflict_both_orders(rule("192.0.2.1", 22), rule("192.0.2.2", 22)));
  EXPECT_FALSE(conflict_both_orders(rule("*", 20, 29), rule("*", 30, 40)));  // adjacent
  Rule udp = rule("*", 22);
  udp.proto = Proto::kUdp;
  EXPECT_FALSE(conflict_both_orders(rule("*", 22), udp));
}

TEST(Conflicts, MessageNamesTheOverlapAndTheReason) {
  std::vector<control::Failure> issues = check_table({rule("*", 20, 30), rule("0.0.0.0", 25, 40)});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("both listen for TCP on ports 25-30"), std::string::npos)
      << issues[0].message;
  EXPECT_NE(issues[0].message.find("dual-stack"), std::string::npos);
  issues = check_table({rule("192.0.2.1", 22), rule("0.0.0.0", 22)});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("0.0.0.0 covers every IPv4 address"), std::string::npos);
  issues = check_table({rule("::1", 22), rule("::1", 20, 22)});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("both listen on ::1"), std::string::npos);
  // The same rule twice (an -A of a rule the table has) says so.
  issues = check_table({rule("::1", 22), rule("::1", 22)});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("is the same rule as rule 0"), std::string::npos)
      << issues[0].message;
  EXPECT_EQ(issues[0].kind, control::FailureKind::kConflict);
}

TEST(Conflicts, SweepAgreesWithBruteForce) {
  // Random small tables over a few addresses and ports: the sweep must find a
  // conflict exactly when some pair conflicts, and only report real ones.
  const std::vector<std::string> listens = {"*",  "0.0.0.0", "192.0.2.1",  "192.0.2.2",
                                            "::", "::1",     "2001:db8::1"};
  std::mt19937 rng(99);
  std::uniform_int_distribution<size_t> pick_listen(0, listens.size() - 1);
  std::uniform_int_distribution<unsigned> port(1, 60);
  std::uniform_int_distribution<unsigned> width(0, 8);
  std::uniform_int_distribution<int> size(1, 12);
  std::uniform_int_distribution<int> coin(0, 1);
  for (int round = 0; round < 2000; ++round) {
    std::vector<Rule> rules;
    int n = size(rng);
    for (int i = 0; i < n; ++i) {
      unsigned first = port(rng);
      Rule r = rule(listens[pick_listen(rng)], first, first + width(rng));
      if (coin(rng) && coin(rng)) r.proto = Proto::kUdp;
      rules.push_back(r);
    }
    // The sweep order: (protocol, first port, index). A rule is reported when
    // it conflicts with a rule before it in that order (with one partner).
    auto before = [&](int x, int y) {
      const Rule& a = rules[static_cast<size_t>(x)];
      const Rule& b = rules[static_cast<size_t>(y)];
      return std::tie(a.proto, a.first, x) < std::tie(b.proto, b.first, y);
    };
    std::vector<std::pair<int, int>> pairs;
    size_t flagged = 0;
    for (int i = 0; i < n; ++i) {
      bool hit = false;
      for (int j = 0; j < n; ++j) {
        if (j == i) continue;
        if (rules_conflict(rules[static_cast<size_t>(i)], rules[static_cast<size_t>(j)])) {
          if (j < i) pairs.emplace_back(i, j);
          if (before(j, i)) hit = true;
        }
      }
      if (hit) ++flagged;
    }
    std::vector<control::Failure> issues = check_table(rules);
    std::set<int> named;
    for (const control::Failure& issue : issues) {
      ASSERT_EQ(issue.kind, control::FailureKind::kConflict) << issue.message;
      ASSERT_GT(issue.rule, issue.other_rule);
      EXPECT_TRUE(rules_conflict(rules[static_cast<size_t>(issue.rule)],
                                 rules[static_cast<size_t>(issue.other_rule)]));
      named.insert(issue.rule);
      named.insert(issue.other_rule);
    }
    EXPECT_EQ(issues.size(), flagged) << "round " << round;
    // Of every conflicting pair, at least one rule is named by some issue.
    for (const auto& [i, j] : pairs) {
      EXPECT_TRUE(named.count(i) || named.count(j)) << "round " << round << ": " << i << ", " << j;
    }
  }
}

TEST(Limits, FullTableOfDistinctPortsValidates) {
  std::vector<Rule> rules;
  for (unsigned port = 1; port <= kMaxRulesPerTable; ++port) rules.push_back(rule("*", port));
  EXPECT_TRUE(check_table(rules).empty());
  // The same, in reverse order and spread over addresses.
  std::vector<Rule> mixed;
  const char* listens[] = {"*", "192.0.2.1", "::1", "0.0.0.0"};
  for (unsigned i = 0; i < kMaxRulesPerTable; ++i) {
    unsigned port = 60000 - i * 14;
    mixed.push_back(rule(listens[i % 4], port, port + 3));
  }
  EXPECT_TRUE(check_table(mixed).empty());
}

TEST(Limits, TooManyRules) {
  std::vector<Rule> rules;
  for (unsigned port = 1; port <= kMaxRulesPerTable + 1; ++port) rules.push_back(rule("*", port));
  std::vector<control::Failure> issues = check_table(rules);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].kind, control::FailureKind::kCapacity);
  EXPECT_EQ(issues[0].rule, -1);
  EXPECT_NE(issues[0].message.find("4097 rules, over the limit of 4096"), std::string::npos)
      << issues[0].message;
}

TEST(Limits, TooManyListeners) {
  std::vector<Rule> rules;
  for (int i = 1; i <= 6; ++i) {
    rules.push_back(rule("192.0.2." + std::to_string(i), 1, 65535));
  }
  std::vector<control::Failure> issues = check_table(rules);
  ASSERT_EQ(issues.size(), 1u) << issues[0].message;
  EXPECT_EQ(issues[0].kind, control::FailureKind::kCapacity);
  EXPECT_NE(issues[0].message.find("393210 listening sockets"), std::string::npos)
      << issues[0].message;
}

TEST(Limits, IssuesPerTableAreCapped) {
  // A table where every rule conflicts with every other: n^2 pairs, yet the
  // report stays short and ends with a count of what it left out.
  std::vector<Rule> rules(kMaxRulesPerTable, rule("*", 1, 65535));
  rules[0].first = rules[0].last = 1;  // keep the listener count under its limit
  for (Rule& r : rules) r.last = r.first;
  std::vector<control::Failure> issues = check_table(rules);
  ASSERT_EQ(issues.size(), 101u);
  EXPECT_NE(issues.back().message.find("3995 more problems are not shown"), std::string::npos)
      << issues.back().message;
}

TEST(Limits, IssuesComeInRuleOrder) {
  Rule bad = rule("*", 80, 70);
  std::vector<control::Failure> issues =
      check_table({rule("*", 22), rule("*", 500), bad, rule("0.0.0.0", 22), bad});
  ASSERT_EQ(issues.size(), 3u);
  EXPECT_EQ(issues[0].rule, 2);
  EXPECT_EQ(issues[1].rule, 3);
  EXPECT_EQ(issues[1].kind, control::FailureKind::kConflict);
  EXPECT_EQ(issues[2].rule, 4);
}

TEST(Limits, TablesMustBeInPifOrder) {
  TableSet tables;
  tables.tables[0].pif = Pif::kSplice;
  std::vector<control::Failure> issues = validate_tables(tables, ServerCaps{});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].message.find("pif order"), std::string::npos);
}

}  // namespace
}  // namespace sluice
