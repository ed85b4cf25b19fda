// Robustness of the spec parser on hostile input: pseudo-random bytes and
// pseudo-random token soups (fixed seeds, so failures reproduce). The parser
// must always return; when it succeeds, its rules must be within limits and
// pass the validator; when it fails, its message must be short and printable.
// The libFuzzer target in tests/fuzz/ explores the same space further.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "policy/validate.h"
#include "schema/rules/spec_parser.h"

namespace sluice {
namespace {

/// Checks the parser's contract on one input; returns true when it parsed.
bool check_one(char option, const std::string& spec, const SpecContext& ctx) {
  auto rules = parse_spec(option, spec, ctx);
  if (!rules.ok()) {
    const std::string& msg = rules.error().message;
    EXPECT_FALSE(msg.empty());
    EXPECT_LT(msg.size(), 1024u) << msg;
    for (char c : msg) {
      EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "unprintable byte in: " << msg;
    }
    return false;
  }
  EXPECT_LE(rules->size(), kMaxRulesPerTable);
  TableSet tables;
  tables.of(option_pif(option)).rules = *rules;
  std::vector<control::Failure> issues = validate_tables(tables, ServerCaps{});
  EXPECT_TRUE(issues.empty()) << "-" << option << " '" << spec << "' made an invalid table: "
                              << (issues.empty() ? "" : issues[0].message);
  return true;
}

/// Returns a context with a random ephemeral range (sometimes inverted or
/// touching the ends) and random families (at least one).
SpecContext random_ctx(std::mt19937* rng) {
  SpecContext ctx;
  std::uniform_int_distribution<int> port(0, 65535);
  std::uniform_int_distribution<int> pick(0, 7);
  switch (pick(*rng)) {
    case 0:
      ctx.ephemeral_first = static_cast<uint16_t>(port(*rng));
      ctx.ephemeral_last = static_cast<uint16_t>(port(*rng));
      break;
    case 1:
      ctx.ephemeral_first = 0;
      ctx.ephemeral_last = 65535;
      break;
    case 2:
      ctx.ipv6 = false;
      break;
    case 3:
      ctx.ipv4 = false;
      break;
    default:
      break;
  }
  return ctx;
}

TEST(SpecRobustness, RandomBytesNeverCrash) {
  std::mt19937 rng(20260317);
  std::uniform_int_distribution<int> len(0, 64);
  std::uniform_int_distribution<int> byte(0, 255);
  const char options[] = {'t', 'u', 'T', 'U'};
  for (int i = 0; i < 4000; ++i) {
    std::string spec(static_cast<size_t>(len(rng)), '\0');
    for (char& c : spec) c = static_cast<char>(byte(rng));
    check_one(options[i % 4], spec, random_ctx(&rng));
  }
}

TEST(SpecRobustness, RandomAsciiNeverCrash) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> len(0, 40);
  const std::string alphabet = "0123456789-,:/~[]%*.abcdefl ntouxAF";
  std::uniform_int_distribution<size_t> pick(0, alphabet.size() - 1);
  for (int i = 0; i < 4000; ++i) {
    std::string spec(static_cast<size_t>(len(rng)), '\0');
    for (char& c : spec) c = alphabet[pick(rng)];
    check_one(i % 2 ? 't' : 'U', spec, random_ctx(&rng));
  }
}

TEST(SpecRobustness, TokenSoupsParseOftenAndValidate) {
  // Tokens of the grammar glued at random: many of these parse, which checks
  // that whatever the parser accepts the validator accepts too.
  const std::vector<std::string> heads = {"",           "",         "",        "*/",
                                          "/",          "0.0.0.0/", "::/",     "[::1]/",
                                          "192.0.2.1/", "%eth0/",   "::1%lo/", "[fe80::1]%eth0/"};
  const std::vector<std::string> chunks = {"22",
                                           "80",
                                           "8000-8010",
                                           "1-1000",
                                           "65535",
                                           "~25",
                                           "~0-1023",
                                           "~8005",
                                           "all",
                                           "auto",
                                           "443:8443",
                                           "1-10:11-20",
                                           "53:192.0.2.53",
                                           "53:[2001:db8::53]",
                                           "5000:[::2]/6000",
                                           "7000-7002:192.0.2.7/7100-7102",
                                           "all:[2001:db8::9]",
                                           "all:192.0.2.9",
                                           "40000",
                                           "61000"};
  std::mt19937 rng(42);
  std::uniform_int_distribution<size_t> head(0, heads.size() - 1);
  std::uniform_int_distribution<size_t> chunk(0, chunks.size() - 1);
  std::uniform_int_distribution<int> count(1, 5);
  const char options[] = {'t', 'u', 'T', 'U'};
  int parsed = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string spec = heads[head(rng)];
    int n = count(rng);
    for (int k = 0; k < n; ++k) {
      if (k > 0) spec += ',';
      spec += chunks[chunk(rng)];
    }
    if (check_one(options[i % 4], spec, random_ctx(&rng))) ++parsed;
  }
  EXPECT_GT(parsed, 300);
}

TEST(SpecRobustness, LongInputsAreBounded) {
  // At the byte limit, and just over it, with content that would make many rules.
  std::string spec = "1-65535";
  for (int port = 2; spec.size() + 8 < 4096; port += 2) spec += ",~" + std::to_string(port);
  auto rules = parse_spec('t', spec, SpecContext{});
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  EXPECT_LE(rules->size(), kMaxRulesPerTable);
  spec += std::string(4097 - spec.size(), '1');
  EXPECT_FALSE(parse_spec('t', spec, SpecContext{}).ok());
  EXPECT_FALSE(parse_spec('t', std::string(1 << 20, ','), SpecContext{}).ok());
  EXPECT_FALSE(parse_spec('t', std::string(4096, '9'), SpecContext{}).ok());
  EXPECT_FALSE(parse_spec('t', std::string(4096, '['), SpecContext{}).ok());
  EXPECT_FALSE(parse_spec('t', "%" + std::string(4000, 'a') + "/22", SpecContext{}).ok());
}

TEST(SpecRobustness, ParseAddrRejectsEmbeddedNul) {
  // Regression: parse_addr handed text to inet_pton as a C string, so
  // "192.0.2.1\0junk" read as 192.0.2.1.
  Addr a{};
  EXPECT_FALSE(parse_addr(std::string("192.0.2.1\0junk", 14), &a));
  EXPECT_FALSE(parse_addr(std::string("::1\0", 4), &a));
  EXPECT_TRUE(parse_addr("192.0.2.1", &a));
}

TEST(SpecRobustness, SuggestionQuotesInterfaceSanitized) {
  // Regression (found by spec_fuzzer): the "write 0.0.0.0%IF/..." suggestion
  // copied a non-ASCII interface name into the message raw.
  auto rules = parse_spec('t', "%e\xd4\xcf/22:192.0.2.1", SpecContext{});
  ASSERT_FALSE(rules.ok());
  const std::string& msg = rules.error().message;
  EXPECT_NE(msg.find("0.0.0.0%e\\xd4\\xcf/22:192.0.2.1"), std::string::npos) << msg;
  for (char c : msg) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << msg;
}

}  // namespace
}  // namespace sluice
