// The re-check of the tables in force after a policy reload
// (worker/policy_recheck.h): one policy-denied failure per rule that the
// reloaded bind or target policy no longer lets pass, naming the rule, its
// first refused port and the policy line, and saying that the rule stays.
#include <gtest/gtest.h>

#include <unistd.h>

#include <string>
#include <vector>

#include "policy/policy_file.h"
#include "tests/rule_util.h"
#include "worker/commit_plan.h"
#include "worker/policy_recheck.h"

namespace sluice {
namespace {

using test::host_table;
using test::make_rule;

/// Parses `text` as the policy file "P".
PolicyFile policy(const std::string& text) {
  auto f = parse_policy_text(text, "P");
  EXPECT_TRUE(f.ok()) << f.error().message;
  return f.ok() ? *f : PolicyFile{};
}

/// Re-checks `tables` (every listener they need) against `text`.
std::vector<control::Failure> recheck(const TableSet& tables, const std::string& text) {
  const PolicyFile file = policy(text);
  BrokerInfo info;  // a sluiced without CAP_NET_BIND_SERVICE, ports from 1024
  return recheck_policy(tables, planned_keys(tables), bind_policy_from_file(file), info,
                        target_policy_from_file(file));
}

TEST(PolicyRecheck, EverythingPassesAnOpenPolicy) {
  TableSet t = host_table({make_rule("127.0.0.1", 18080, 18081, 18000)});
  EXPECT_TRUE(recheck(t, "").empty());
  EXPECT_TRUE(recheck(t, "bind allow tcp 18000-18100 127.0.0.1\n").empty());
}

TEST(PolicyRecheck, TightenedBindNamesRuleFirstPortAndLine) {
  TableSet t = host_table(
      {make_rule("127.0.0.1", 18080, 18080, 18000), make_rule("127.0.0.1", 18090, 18092, 18000)});
  auto failures = recheck(t,
                          "bind allow tcp 18080 127.0.0.1\n"
                          "bind deny tcp 18091-18092 *\n");
  ASSERT_EQ(failures.size(), 1u);
  const control::Failure& f = failures[0];
  EXPECT_EQ(f.kind, control::FailureKind::kPolicyDenied);
  EXPECT_EQ(f.pif, Pif::kHost);
  EXPECT_EQ(f.rule, 1);
  EXPECT_EQ(f.port, 18090);  // no line matches 18090: denied
  EXPECT_NE(f.text.find("18090"), std::string::npos) << f.text;
  EXPECT_NE(f.message.find("and 2 more listener(s)"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("in force, but the reloaded bind policy would refuse it now"),
            std::string::npos)
      << f.message;
  EXPECT_NE(f.message.find("P"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("keeps forwarding until a commit removes or changes it"),
            std::string::npos)
      << f.message;
}

TEST(PolicyRecheck, TightenedTargetIsReportedOncePerRule) {
  TableSet t = host_table({make_rule("127.0.0.1", 18080, 18080, 18000, "127.0.0.1"),
                           make_rule("127.0.0.1", 18081, 18081, 22, "127.0.0.1")});
  auto failures = recheck(t, "target allow tcp 127.0.0.1 18000\n");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].kind, control::FailureKind::kPolicyDenied);
  EXPECT_EQ(failures[0].rule, 1);
  EXPECT_NE(failures[0].message.find("reloaded target policy"), std::string::npos)
      << failures[0].message;
}

TEST(PolicyRecheck, BindAndTargetOfOneRuleGiveOneFailure) {
  TableSet t = host_table({make_rule("127.0.0.1", 18080, 18080, 22, "127.0.0.1")});
  auto failures = recheck(t,
                          "bind deny tcp * *\n"
                          "target deny tcp * \n");
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].message.find("bind policy"), std::string::npos) << failures[0].message;
}

TEST(PolicyRecheck, ReadTextMustHaveItsAnnouncedLength) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const std::string text = "bind allow tcp 80 *\n";
  ASSERT_EQ(::write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  auto short_read = read_reloaded_policy(fds[0], static_cast<uint32_t>(text.size()) + 1, "P");
  ::close(fds[0]);
  ASSERT_FALSE(short_read.ok());
  EXPECT_NE(short_read.error().message.find("not the"), std::string::npos);

  ASSERT_EQ(::pipe(fds), 0);
  ASSERT_EQ(::write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  auto ok = read_reloaded_policy(fds[0], static_cast<uint32_t>(text.size()), "P");
  ::close(fds[0]);
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ(ok->bind_rules.size(), 1u);
}

}  // namespace
}  // namespace sluice
