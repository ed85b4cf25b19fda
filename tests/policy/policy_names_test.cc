// The policy reader's rewriting of a policy file (resolve_policy_names):
// names of `control` lines become numbers, every other line and every line
// number stay, and the result parses with a resolver that knows no name.
#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "policy/policy_file.h"

namespace sluice {
namespace {

/// A user database of two users and one group.
std::optional<uint32_t> fake_db(bool group, const std::string& name) {
  if (!group && name == "alice") return 1000;
  if (!group && name == "bob") return 1001;
  if (group && name == "ops") return 2000;
  return std::nullopt;
}

TEST(PolicyNames, NamesBecomeNumbersAndLinesStay) {
  const std::string text =
      "# header\n"
      "bind allow tcp 8080 127.0.0.1   # kept as written\n"
      "\n"
      "control   commit uid=alice,0   gid=ops  # the team\n"
      "control read *\n"
      "control read uid=bob,7 gid=5\n";
  const NameResolver resolver = fake_db;
  auto out = resolve_policy_names(text, "P", resolver);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(*out,
            "# header\n"
            "bind allow tcp 8080 127.0.0.1   # kept as written\n"
            "\n"
            "control commit uid=1000,0 gid=2000\n"
            "control read *\n"
            "control read uid=1001,7 gid=5\n");
  // The result needs no user database, and names the same lines.
  const NameResolver none = resolve_no_names;
  auto parsed = parse_policy_text(*out, "P", &none);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->control_rules.size(), 3u);
  EXPECT_EQ(parsed->control_rules[0].line, 4u);
  EXPECT_EQ(parsed->control_rules[0].uids, (std::vector<uint32_t>{1000, 0}));
  EXPECT_EQ(parsed->control_rules[0].gids, (std::vector<uint32_t>{2000}));
  EXPECT_TRUE(parsed->control_rules[1].anyone);
  EXPECT_EQ(parsed->control_rules[2].line, 6u);
  ASSERT_EQ(parsed->bind_rules.size(), 1u);
  EXPECT_EQ(parsed->bind_rules[0].line, 2u);
}

TEST(PolicyNames, UnknownNameFailsNamingTheLine) {
  const NameResolver resolver = fake_db;
  auto out = resolve_policy_names("bind allow * * *\ncontrol read uid=mallory\n", "P", resolver);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message.find("P line 2: unknown user \"mallory\""), std::string::npos)
      << out.error().message;
}

TEST(PolicyNames, BadLineFailsAsTheParserSays) {
  const NameResolver resolver = fake_db;
  auto out = resolve_policy_names("bind allow tcp 0 *\n", "P", resolver);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message.find("P line 1: bad port \"0\""), std::string::npos)
      << out.error().message;
}

TEST(PolicyNames, LeftOverNameIsAnErrorForTheNumericParser) {
  const NameResolver none = resolve_no_names;
  auto parsed = parse_policy_text("control read uid=alice\n", "P", &none);
  ASSERT_FALSE(parsed.ok());
  EXPECT_NE(parsed.error().message.find("P line 1: unknown user"), std::string::npos);
}

TEST(PolicyNames, GrowthBeyondTheLimitIsRefused) {
  // One-letter names written as ten-digit numbers grow a file near the limit past it.
  const NameResolver big = [](bool, const std::string&) -> std::optional<uint32_t> {
    return 4000000000u;
  };
  std::string line = "control read uid=a";
  for (int i = 0; i < 500; ++i) line += ",a";
  line += "\n";
  std::string text;
  while (text.size() + line.size() < kMaxPolicyFileBytes) text += line;
  auto out = resolve_policy_names(text, "P", big);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.error().message.find("larger than"), std::string::npos) << out.error().message;
}

}  // namespace
}  // namespace sluice
