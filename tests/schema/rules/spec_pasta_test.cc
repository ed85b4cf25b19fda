// The spec forms where sluice reads a spec the way pasta's own parser does
// (conf.c/fwd_rule.c/parse.c of passt 37a73a2), beyond the examples of the
// man pages: unbracketed IPv6 target addresses, where the listen part ends
// when a spec starts like "PORT:", and exclusions that win over a port named
// twice. Each case is (option, spec) -> rules in listing format, and every
// result must pass the validator.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy/validate.h"
#include "schema/rules/spec_parser.h"

namespace sluice {
namespace {

struct PastaCase {
  char option;
  const char* spec;
  std::vector<std::string> rules;  // format_rule of each, in order
};

/// Prints a case name for failure messages.
std::ostream& operator<<(std::ostream& os, const PastaCase& c) {
  return os << "-" << c.option << " '" << c.spec << "'";
}

// clang-format off
const PastaCase kPastaCases[] = {
    // Podman: the container's IPv6 address after ':' is never bracketed.
    {'t', "[::]/8080:fd00::5/80", {"TCP [::]:8080 => fd00::5:80"}},
    {'t', "[::]/8000-8004:fd00::5/80-84", {"TCP [::]:8000-8004 => fd00::5:80-84"}},
    {'u', "[::]/53:fd00::5/53", {"UDP [::]:53 => fd00::5:53"}},
    // ... and the bracketed form still works.
    {'t', "[::]/8080:[fd00::5]/80", {"TCP [::]:8080 => fd00::5:80"}},
    // Istio-style: an unbracketed listen address and an unbracketed target.
    {'t', "::1/15001:::1/16001", {"TCP [::1]:15001 => ::1:16001"}},
    {'t', "[::1]/15001:[::1]/16001", {"TCP [::1]:15001 => ::1:16001"}},
    {'t', "::/22:fe80::1/80", {"TCP [::]:22 => fe80::1:80"}},
    // No listen part: pasta reads "15001:::1" as no address, so it is a chunk.
    {'t', "15001:::1/16001", {"TCP [*]:15001 => ::1:16001"}},
    {'t', "22:::1", {"TCP [*]:22 => ::1:22"}},
    {'t', "22:2001:db8::1", {"TCP [*]:22 => 2001:db8::1:22"}},
    {'t', "22-23:2001:db8::1,80", {"TCP [*]:22-23 => 2001:db8::1:22-23", "TCP [*]:80 => 80"}},
    {'t', "all:2001:db8::5", {"TCP [*]:1-32767 => 2001:db8::5:1-32767 (best effort)",
                              "TCP [*]:61000-65535 => 2001:db8::5:61000-65535 (best effort)"}},
    // pasta reads the longest run of address bytes, with no backtracking:
    // "fd00::5:80" is one address, not fd00::5 and port 80.
    {'t', "22:fd00::5:80", {"TCP [*]:22 => fd00::5:80:22"}},
    // Text before the first '/' that is an address is the listen address,
    // even when it starts like "PORT:" (pasta tries the listen part first).
    {'t', "8080:fd00::5/80", {"TCP [8080:fd00::5]:80 => 80"}},
    {'t', "1:2:3:4:5:6:7::/22", {"TCP [1:2:3:4:5:6:7:0]:22 => 22"}},
    // A v4-mapped target, written without brackets, is IPv4.
    {'t', "::ffff:192.0.2.1/22:::ffff:192.0.2.5/80", {"TCP [192.0.2.1]:22 => 192.0.2.5:80"}},
    {'t', "0.0.0.0/22:::ffff:192.0.2.5", {"TCP [0.0.0.0]:22 => 192.0.2.5:22"}},
    // rootlesskit: no target address; the listen address unbracketed.
    {'t', "0.0.0.0/8080:80", {"TCP [0.0.0.0]:8080 => 80"}},
    {'t', "::/8080:80", {"TCP [::]:8080 => 80"}},
    {'t', "::1/8080:80", {"TCP [::1]:8080 => 80"}},
    {'u', "::/8080:80", {"UDP [::]:8080 => 80"}},
    // Exclusions win over a port named twice: pasta drops what they remove
    // from every include, so the include left empty adds nothing.
    {'t', "15100-15101,~15100,15100", {"TCP [*]:15101 => 15101"}},
    {'t', "~15100,15100,15100-15101", {"TCP [*]:15101 => 15101"}},
    {'t', "15100,~15100,15101", {"TCP [*]:15101 => 15101"}},
    {'t', "1-10,~5,5", {"TCP [*]:1-4 => 1-4", "TCP [*]:6-10 => 6-10"}},
    {'t', "1-10,5-6:105-106,~5-6", {"TCP [*]:1-4 => 1-4", "TCP [*]:7-10 => 7-10"}},
    {'t', "0.0.0.0/8000-8004:10.88.0.5/80-84,~8002,8002:10.88.0.6/82",
     {"TCP [0.0.0.0]:8000-8001 => 10.88.0.5:80-81", "TCP [0.0.0.0]:8003-8004 => 10.88.0.5:83-84"}},
};
// clang-format on

class PastaForms : public testing::TestWithParam<PastaCase> {};

TEST_P(PastaForms, ParseAsPastaDoes) {
  const PastaCase& c = GetParam();
  auto rules = parse_spec(c.option, c.spec, SpecContext{});
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  std::vector<std::string> got;
  for (const Rule& r : *rules) got.push_back(format_rule(r));
  EXPECT_EQ(got, c.rules);
  TableSet tables;
  tables.of(option_pif(c.option)).rules = *rules;
  for (const control::Failure& issue : validate_tables(tables, ServerCaps{})) {
    ADD_FAILURE() << issue.message;
  }
}

INSTANTIATE_TEST_SUITE_P(Pasta, PastaForms, testing::ValuesIn(kPastaCases));

TEST(PastaForms, UnbracketedAndBracketedTargetsGiveTheSameRule) {
  for (const auto& [plain, bracketed] : std::vector<std::pair<const char*, const char*>>{
           {"[::]/8080:fd00::5/80", "[::]/8080:[fd00::5]/80"},
           {"22:2001:db8::1", "22:[2001:db8::1]"},
           {"::1/15001:::1/16001", "[::1]/15001:[::1]/16001"},
           {"all:2001:db8::5", "all:[2001:db8::5]"}}) {
    auto a = parse_spec('t', plain, SpecContext{});
    auto b = parse_spec('t', bracketed, SpecContext{});
    ASSERT_TRUE(a.ok() && b.ok()) << plain;
    EXPECT_EQ(*a, *b) << plain;
  }
}

TEST(PastaForms, APortThatNoExclusionRemovesIsStillNamedOnce) {
  // Only the exclusion makes a repeated port harmless.
  auto twice = parse_spec('t', "15100-15101,15100", SpecContext{});
  ASSERT_FALSE(twice.ok());
  EXPECT_NE(twice.error().message.find("port 15100 is already forwarded by 15100-15101"),
            std::string::npos)
      << twice.error().message;
  auto split = parse_spec('t', "1-10,~5,4-6", SpecContext{});
  ASSERT_FALSE(split.ok());
  EXPECT_NE(split.error().message.find("at position 9: port 4 is already forwarded by 1-10"),
            std::string::npos)
      << split.error().message;
}

TEST(PastaForms, IPv4ListenerStillRefusesAnUnbracketedIPv6Target) {
  auto rules = parse_spec('t', "0.0.0.0/8080:fd00::5/80", SpecContext{});
  ASSERT_FALSE(rules.ok());
  EXPECT_NE(rules.error().message.find("listens on IPv4 (0.0.0.0) and cannot forward to the IPv6 "
                                       "target fd00::5"),
            std::string::npos)
      << rules.error().message;
}

}  // namespace
}  // namespace sluice
