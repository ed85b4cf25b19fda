// Conformance of the spec parser with pasta/pesto: every example of
// PESTO-REFERENCE.md, and the rest of the grammar, as (option, spec, context)
// -> rules in listing format. Every result must also pass the validator.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "policy/validate.h"
#include "schema/rules/spec_parser.h"

namespace sluice {
namespace {

/// The server facts a case is parsed for.
enum class Ctx { kDefault, kV4Only, kV6Only, kEphemeral40k, kEphemeralHigh };

/// Returns the SpecContext for `ctx`.
SpecContext make_ctx(Ctx ctx) {
  SpecContext c;
  switch (ctx) {
    case Ctx::kDefault:
      break;
    case Ctx::kV4Only:
      c.ipv6 = false;
      break;
    case Ctx::kV6Only:
      c.ipv4 = false;
      break;
    case Ctx::kEphemeral40k:
      c.ephemeral_first = 40000;
      c.ephemeral_last = 50000;
      break;
    case Ctx::kEphemeralHigh:
      c.ephemeral_first = 1024;
      c.ephemeral_last = 65535;
      break;
  }
  return c;
}

struct Case {
  char option;
  const char* spec;
  std::vector<std::string> rules;  // format_rule of each, in order
  Ctx ctx = Ctx::kDefault;
};

/// Prints a case name for failure messages.
std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << "-" << c.option << " '" << c.spec << "'";
}

// clang-format off
const Case kCases[] = {
    // The examples of pesto(1)/pasta(1), as PESTO-REFERENCE.md lists them.
    {'t', "22-80:32-90", {"TCP [*]:22-80 => 32-90"}},
    {'t', "22,25", {"TCP [*]:22 => 22", "TCP [*]:25 => 25"}},
    {'t', "192.0.2.1/22", {"TCP [192.0.2.1]:22 => 22"}},
    {'t', "%eth0/22", {"TCP [*]%eth0:22 => 22"}},
    {'t', "2000-5000,~3000-3010", {"TCP [*]:2000-2999 => 2000-2999", "TCP [*]:3011-5000 => 3011-5000"}},
    {'t', "192.0.2.1/20-30,~25", {"TCP [192.0.2.1]:20-24 => 20-24", "TCP [192.0.2.1]:26-30 => 26-30"}},
    {'t', "~20000-20010", {"TCP [*]:1-19999 => 1-19999 (best effort)",
                           "TCP [*]:20011-32767 => 20011-32767 (best effort)",
                           "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "all", {"TCP [*]:1-32767 => 1-32767 (best effort)",
                  "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "auto", {"TCP [*]:1-32767 => 1-32767 (best effort) (auto-scan)",
                   "TCP [*]:61000-65535 => 61000-65535 (best effort) (auto-scan)"}},
    {'t', "8000-8010,auto", {"TCP [*]:8000-8010 => 8000-8010 (auto-scan)"}},
    {'T', "20000", {"TCP [*]%lo:20000 => 20000"}},
    // The listing-format examples, written as specs.
    {'t', "0.0.0.0/5000:192.0.2.5/6000", {"TCP [0.0.0.0]:5000 => 192.0.2.5:6000"}},
    {'t', "[::1]/5000:[::2]/6000", {"TCP [::1]:5000 => ::2:6000"}},
    {'t', "192.0.2.1%eth0/22", {"TCP [192.0.2.1]%eth0:22 => 22"}},
    {'u', "53", {"UDP [*]:53 => 53"}},
    // Single ports, ranges, mappings.
    {'t', "22", {"TCP [*]:22 => 22"}},
    {'t', "1", {"TCP [*]:1 => 1"}},
    {'t', "65535", {"TCP [*]:65535 => 65535"}},
    {'t', "1-65535", {"TCP [*]:1-65535 => 1-65535"}},
    {'t', "80:8080", {"TCP [*]:80 => 8080"}},
    {'t', "1-10:11-20", {"TCP [*]:1-10 => 11-20"}},
    {'t', "25,22", {"TCP [*]:25 => 25", "TCP [*]:22 => 22"}},
    {'t', "0022", {"TCP [*]:22 => 22"}},
    // Exclusions in any position; they win wherever they stand.
    {'t', "~25,20-30", {"TCP [*]:20-24 => 20-24", "TCP [*]:26-30 => 26-30"}},
    {'t', "20-30,~25,40-50,~45", {"TCP [*]:20-24 => 20-24", "TCP [*]:26-30 => 26-30",
                                  "TCP [*]:40-44 => 40-44", "TCP [*]:46-50 => 46-50"}},
    {'t', "2000-2010:3000-3010,~2005", {"TCP [*]:2000-2004 => 3000-3004", "TCP [*]:2006-2010 => 3006-3010"}},
    {'t', "22,~22,80", {"TCP [*]:80 => 80"}},
    {'t', "10-20,~10,~20,~12-13", {"TCP [*]:11 => 11", "TCP [*]:14-19 => 14-19"}},
    {'t', "10-20,~5-15,~12-18", {"TCP [*]:19-20 => 19-20"}},
    {'t', "~0-1023", {"TCP [*]:1024-32767 => 1024-32767 (best effort)",
                      "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "auto,~1-1000", {"TCP [*]:1001-32767 => 1001-32767 (best effort) (auto-scan)",
                           "TCP [*]:61000-65535 => 61000-65535 (best effort) (auto-scan)"}},
    // Listen addresses and interfaces.
    {'t', "*/22", {"TCP [*]:22 => 22"}},
    {'t', "/22", {"TCP [*]:22 => 22"}},
    {'t', "*%eth0/22", {"TCP [*]%eth0:22 => 22"}},
    {'t', "[::1]/22", {"TCP [::1]:22 => 22"}},
    {'t', "::1/22", {"TCP [::1]:22 => 22"}},
    {'t', "2001:db8::1/22", {"TCP [2001:db8::1]:22 => 22"}},
    {'t', "[192.0.2.1]/22", {"TCP [192.0.2.1]:22 => 22"}},
    {'t', "::ffff:192.0.2.1/22", {"TCP [192.0.2.1]:22 => 22"}},
    {'t', "0.0.0.0/22", {"TCP [0.0.0.0]:22 => 22"}},
    {'t', "::/22", {"TCP [::]:22 => 22"}},
    {'t', "fe80::1%eth0/22", {"TCP [fe80::1]%eth0:22 => 22"}},
    // Before the only '/', an unbracketed IPv6 text is the listen address,
    // even when it starts like "PORT:" (IPv6 targets need brackets).
    {'t', "22:fe80::1/80", {"TCP [22:fe80::1]:80 => 80"}},
    {'t', "[fe80::1]%eth0/22", {"TCP [fe80::1]%eth0:22 => 22"}},
    {'t', "%abcdefghijklmno/22", {"TCP [*]%abcdefghijklmno:22 => 22"}},
    // Targets: keep the ports, map them, IPv4 and bracketed IPv6, default.
    {'t', "0.0.0.0/22:192.0.2.1", {"TCP [0.0.0.0]:22 => 192.0.2.1:22"}},
    {'t', "0.0.0.0/22-80:192.0.2.1/32-90", {"TCP [0.0.0.0]:22-80 => 192.0.2.1:32-90"}},
    {'t', "22:[2001:db8::5]", {"TCP [*]:22 => 2001:db8::5:22"}},
    {'t', "22:[2001:db8::5]/2222", {"TCP [*]:22 => 2001:db8::5:2222"}},
    {'t', "[::1]/22:[::2]", {"TCP [::1]:22 => ::2:22"}},
    {'t', "[2001:db8::1]%eth0/80-90:[2001:db8::2]/8080-8090",
     {"TCP [2001:db8::1]%eth0:80-90 => 2001:db8::2:8080-8090"}},
    {'t', "::1/22:[::ffff:0.0.0.0]", {"TCP [::1]:22 => 22"}},
    {'t', "22:0.0.0.0/2222", {"TCP [*]:22 => 2222"}},
    {'t', "22:[::]", {"TCP [*]:22 => 22"}},
    {'t', "[::1]/22:[192.0.2.1]", {"TCP [::1]:22 => 192.0.2.1:22"}},
    // all with a target, and all together with explicit ports (sluice: the union).
    {'t', "all:[2001:db8::5]", {"TCP [*]:1-32767 => 2001:db8::5:1-32767 (best effort)",
                                "TCP [*]:61000-65535 => 2001:db8::5:61000-65535 (best effort)"}},
    {'t', "0.0.0.0/all:192.0.2.5", {"TCP [0.0.0.0]:1-32767 => 192.0.2.5:1-32767 (best effort)",
                                    "TCP [0.0.0.0]:61000-65535 => 192.0.2.5:61000-65535 (best effort)"}},
    {'t', "all:0.0.0.0", {"TCP [*]:1-32767 => 1-32767 (best effort)",
                          "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "all,all", {"TCP [*]:1-32767 => 1-32767 (best effort)",
                      "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "all,33000", {"TCP [*]:33000 => 33000", "TCP [*]:1-32767 => 1-32767 (best effort)",
                        "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "all,22", {"TCP [*]:22 => 22", "TCP [*]:1-21 => 1-21 (best effort)",
                     "TCP [*]:23-32767 => 23-32767 (best effort)",
                     "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "80:8080,all,~443", {"TCP [*]:80 => 8080", "TCP [*]:1-79 => 1-79 (best effort)",
                               "TCP [*]:81-442 => 81-442 (best effort)",
                               "TCP [*]:444-32767 => 444-32767 (best effort)",
                               "TCP [*]:61000-65535 => 61000-65535 (best effort)"}},
    {'t', "8000-8010,all,auto", {"TCP [*]:8000-8010 => 8000-8010 (auto-scan)",
                                 "TCP [*]:1-7999 => 1-7999 (best effort) (auto-scan)",
                                 "TCP [*]:8011-32767 => 8011-32767 (best effort) (auto-scan)",
                                 "TCP [*]:61000-65535 => 61000-65535 (best effort) (auto-scan)"}},
    // none.
    {'t', "none", {}},
    {'U', "none", {}},
    // UDP, and SPLICE through -T/-U.
    {'u', "5000-5010:6000-6010", {"UDP [*]:5000-5010 => 6000-6010"}},
    {'U', "5353", {"UDP [*]%lo:5353 => 5353"}},
    {'T', "*/20000", {"TCP [*]%lo:20000 => 20000"}},
    {'T', "20000-20010,~20005", {"TCP [*]%lo:20000-20004 => 20000-20004",
                                 "TCP [*]%lo:20006-20010 => 20006-20010"}},
    {'T', "all", {"TCP [*]%lo:1-32767 => 1-32767 (best effort)",
                  "TCP [*]%lo:61000-65535 => 61000-65535 (best effort)"}},
    // Single-family servers: the wildcard is that family's own.
    {'t', "22", {"TCP [0.0.0.0]:22 => 22"}, Ctx::kV4Only},
    {'t', "22:192.0.2.1", {"TCP [0.0.0.0]:22 => 192.0.2.1:22"}, Ctx::kV4Only},
    {'t', "%eth0/22", {"TCP [0.0.0.0]%eth0:22 => 22"}, Ctx::kV4Only},
    {'t', "22", {"TCP [::]:22 => 22"}, Ctx::kV6Only},
    {'T', "20000", {"TCP [0.0.0.0]%lo:20000 => 20000"}, Ctx::kV4Only},
    {'u', "all", {"UDP [::]:1-32767 => 1-32767 (best effort)",
                  "UDP [::]:61000-65535 => 61000-65535 (best effort)"}, Ctx::kV6Only},
    // The server's ephemeral range, not the client's.
    {'t', "all", {"TCP [*]:1-39999 => 1-39999 (best effort)",
                  "TCP [*]:50001-65535 => 50001-65535 (best effort)"}, Ctx::kEphemeral40k},
    {'t', "~100", {"TCP [*]:1-99 => 1-99 (best effort)", "TCP [*]:101-1023 => 101-1023 (best effort)"},
     Ctx::kEphemeralHigh},
    {'t', "45000", {"TCP [*]:45000 => 45000"}, Ctx::kEphemeral40k},
};
// clang-format on

class Conformance : public testing::TestWithParam<Case> {};

TEST_P(Conformance, ParsesToListing) {
  const Case& c = GetParam();
  auto rules = parse_spec(c.option, c.spec, make_ctx(c.ctx));
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  std::vector<std::string> got;
  for (const Rule& r : *rules) got.push_back(format_rule(r));
  EXPECT_EQ(got, c.rules);
  for (const Rule& r : *rules) {
    EXPECT_EQ(r.proto, option_proto(c.option));
  }

  // What the parser makes, the validator accepts (on a server with the same families).
  SpecContext ctx = make_ctx(c.ctx);
  ServerCaps caps;
  caps.ipv4 = ctx.ipv4;
  caps.ipv6 = ctx.ipv6;
  TableSet tables;
  tables.of(option_pif(c.option)).rules = *rules;
  for (const control::Failure& issue : validate_tables(tables, caps)) {
    ADD_FAILURE() << issue.message;
  }
}

INSTANTIATE_TEST_SUITE_P(PestoReference, Conformance, testing::ValuesIn(kCases));

TEST(SpecFields, WildcardIsDualStackAnyWithBothFamilies) {
  auto rules = parse_spec('t', "22", SpecContext{});
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->size(), 1u);
  const Rule& r = (*rules)[0];
  EXPECT_TRUE(r.dual_stack);
  EXPECT_TRUE(addr_is_zero(r.listen));
  EXPECT_FALSE(r.weak);
  EXPECT_FALSE(r.scan);
  EXPECT_TRUE(r.ifname.empty());
  EXPECT_TRUE(addr_is_zero(r.target));
}

TEST(SpecFields, DefaultTargetIsStoredAllZero) {
  for (const char* spec : {"22:0.0.0.0", "22:[::]", "22:[0.0.0.0]/80", "all:0.0.0.0"}) {
    auto rules = parse_spec('t', spec, SpecContext{});
    ASSERT_TRUE(rules.ok()) << spec << ": " << rules.error().message;
    for (const Rule& r : *rules) EXPECT_TRUE(addr_is_zero(r.target)) << spec;
  }
}

TEST(SpecFields, SpliceRulesListenOnLoopbackInterface) {
  auto rules = parse_spec('U', "53", SpecContext{});
  ASSERT_TRUE(rules.ok());
  ASSERT_EQ(rules->size(), 1u);
  EXPECT_EQ((*rules)[0].ifname, "lo");
  EXPECT_EQ((*rules)[0].proto, Proto::kUdp);
  EXPECT_EQ(option_pif('U'), Pif::kSplice);
  EXPECT_EQ(option_pif('t'), Pif::kHost);
  EXPECT_EQ(option_proto('T'), Proto::kTcp);
}

TEST(SpecFields, AllPlusPortsIsTheUnionWithoutOverlap) {
  // sluice's deliberate difference from upstream: -t all,33000 keeps all.
  auto rules = parse_spec('t', "all,33000,1000-2000:3000-4000", SpecContext{});
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  size_t ports = 0;
  for (const Rule& r : *rules) ports += static_cast<size_t>(r.last - r.first) + 1;
  // 1-32767 and 61000-65535 (37303 ports), plus 33000.
  EXPECT_EQ(ports, 32767u + 4536u + 1u);
  TableSet tables;
  tables.of(Pif::kHost).rules = *rules;
  EXPECT_TRUE(validate_tables(tables, ServerCaps{}).empty());
}

TEST(SpecFields, ManySinglePortsStayWithinLimits) {
  std::string spec;
  for (int port = 1; spec.size() < 4000; port += 2) {
    if (!spec.empty()) spec += ',';
    spec += std::to_string(port);
  }
  auto rules = parse_spec('t', spec, SpecContext{});
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  EXPECT_GT(rules->size(), 700u);
  EXPECT_LE(rules->size(), kMaxRulesPerTable);
}

}  // namespace
}  // namespace sluice
