// Error messages of the spec parser: each names the option, quotes the spec,
// gives the 1-based position of the offending byte and says what to write.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "schema/rules/spec_parser.h"

namespace sluice {
namespace {

struct ErrorCase {
  char option;
  std::string spec;
  std::vector<std::string> parts;  // substrings the message must contain
};

/// Prints a case name for failure messages.
std::ostream& operator<<(std::ostream& os, const ErrorCase& c) {
  return os << "-" << c.option << " '" << c.spec << "'";
}

// clang-format off
const ErrorCase kErrors[] = {
    // The messages quoted in the design, exactly.
    {'t', "80-70", {"-t '80-70': at position 1: the range 80-70 runs backwards; write 70-80"}},
    {'t', "0", {"-t '0': at position 1: port 0 cannot be forwarded; use 1-65535"}},
    {'t', "22-80:32-100", {"-t '22-80:32-100': at position 7: the target range 32-100 has 69 ports "
                           "but the source range 22-80 has 59; give ranges of the same length",
                           "(e.g. 22-80:32-90)"}},
    {'T', "192.0.2.1/22", {"-T '192.0.2.1/22': -T and -U listen inside the target namespace and "
                           "take no address or interface", "drop '192.0.2.1/' and write '22'"}},
    // Ports and ranges.
    {'t', "0-80", {"at position 1", "port 0", "1-80"}},
    {'t', "70000", {"at position 1", "'70000' is out of range", "1 to 65535"}},
    {'t', "22-99999999999999999999999", {"at position 4", "out of range"}},
    {'t', "22-", {"at position 4", "expected a port number", "after '-'"}},
    {'t', "-22", {"at position 1", "unexpected '-'", "first port"}},
    {'t', "22-80-90", {"at position 6", "unexpected '-' after the range 22-80"}},
    {'t', "22:0", {"at position 4", "cannot forward to port 0"}},
    {'t', "1-10:0-9", {"at position 6", "cannot forward to port 0"}},
    {'t', "22-80:32", {"at position 7", "has 1 port but the source range 22-80 has 59",
                       "(e.g. 22-80:32-90)"}},
    {'t', "60000-65535:65000-65500", {"at position 13", "same length"}},
    {'t', "22:", {"at position 4", "nothing follows ':'"}},
    {'t', "22:80:90", {"at position 6", "unexpected ':'", "22:192.0.2.1/80"}},
    // Chunks and separators.
    {'t', "22,,80", {"at position 4", "empty chunk", "remove one ','"}},
    {'t', "22,", {"at position 3", "ends with ','"}},
    {'t', ",22", {"at position 1", "nothing before it"}},
    {'t', "22x", {"at position 3", "unexpected 'x' after port 22", "expected ','"}},
    {'t', "22 ,80", {"at position 3", "unexpected ' ' (a space)", "remove the spaces"}},
    {'t', "22,foo", {"at position 4", "unknown word 'foo'", "a chunk is a port"}},
    {'t', "22,none", {"at position 4", "none must be the whole spec"}},
    {'t', "none,22", {"at position 1", "none must be the whole spec"}},
    {'t', "auto:80", {"at position 5", "auto takes nothing after it"}},
    {'T', "auto:80", {"at position 5", "auto takes nothing after it"}},
    {'t', "~22:80", {"at position 4", "exclusion (~22)", "no target"}},
    {'t', "~", {"at position 2", "expected a port number"}},
    {'t', "1-10,5", {"at position 6", "port 5 is already forwarded by 1-10 at position 1"}},
    {'t', "100-200,1-150", {"at position 9", "ports 100-150 are already forwarded by 100-200"}},
    {'t', "~1-65535", {"forwards nothing", "write none"}},
    {'t', "22,~22", {"forwards nothing"}},
    {'t', "", {"-t '': the spec is empty", "none"}},
    {'t', std::string(5000, '1'), {"5000 bytes long", "limit of 4096", "several -t options"}},
    {'t', std::string("22\0", 3), {"at position 3", "unexpected byte \\x00"}},
    {'t', "22\xff", {"at position 3", "byte \\xff"}},
    {'t', "22,[::1]/80", {"at position 4", "unexpected '['", "at the start of the spec"}},
    {'t', "22,*/80", {"at position 4", "at the start"}},
    {'t', "22,192.0.2.1/80", {"at position 7", "unexpected '.' after port 192"}},
    {'t', "22/80", {"at position 3", "unexpected '/' after port 22"}},
    // Listen addresses and interfaces.
    {'t', "300.1.1.1/22", {"at position 1", "'300.1.1.1' is not a valid listen address"}},
    {'t', "192.0.2.1x/22", {"at position 10", "unexpected 'x' in the listen address"}},
    {'t', "[::1/22", {"at position 1", "no matching ']'"}},
    {'t', "[::1]x/22", {"at position 6", "unexpected 'x' after the listen address"}},
    {'t', "[]/22", {"at position 2", "listen address is empty"}},
    {'t', "[*]/22", {"at position 2", "without brackets"}},
    {'t', "192.0.2.1/", {"at position 11", "nothing follows '/'", "192.0.2.1/22"}},
    {'t', "%abcdefghijklmnop/22", {"at position 2", "is 16 bytes long", "at most 15"}},
    {'t', "%/22", {"at position 2", "followed by an interface name"}},
    {'t', "%./22", {"at position 2", "'.' is not an interface name"}},
    {'t', "%../22", {"at position 2", "'..' is not an interface name"}},
    {'t', "%et h0/22", {"at position 4", "cannot contain ' ' (a space)"}},
    {'t', "%eth:0/22", {"at position 5", "cannot contain ':'"}},
    {'T', "%eth0/22", {"-T and -U listen inside the target namespace"}},
    {'U', "::1/53", {"-U '::1/53': -T and -U listen"}},
    // Targets.
    // (Unbracketed IPv6 targets are accepted as pasta reads them: spec_pasta_test.cc.)
    {'t', "22:2001:db8::1::2", {"at position 4", "'2001:db8::1::2' is not a valid IPv6 target address"}},
    {'t', "::/22:80::90::1/80", {"at position 7", "'80::90::1' is not a valid IPv6 target address"}},
    {'t', "22::80", {"at position 4", "':80' is not a valid target address"}},
    {'t', "22:abc", {"at position 4", "'abc' is not a valid target address"}},
    {'t', "22:fd00::5x", {"at position 11", "unexpected 'x' after the target address"}},
    {'t', "22:fd00::5x/80", {"at position 11", "unexpected 'x' in the listen address"}},
    {'t', "all:fd00::5::1", {"at position 5", "'fd00::5::1' is not a valid target address"}},
    {'t', "0.0.0.0/22:192.0.2.1:80", {"at position 21", "after '/', not ':'", "write 0.0.0.0/22:192.0.2.1/80"}},
    {'t', "8080:localhost/80", {"in the listen address '8080:localhost'", "host names are not looked up",
                                "127.0.0.1"}},
    {'t', "22:localhost", {"at position 4", "host names are not looked up"}},
    {'t', "db.internal/22", {"host names are not looked up"}},
    {'t', "22:[::1", {"at position 4", "no matching ']'"}},
    {'t', "22:[::1]x", {"at position 9", "unexpected 'x' after the target address"}},
    {'t', "22:1.2.3/80", {"at position 4", "'1.2.3' is not a valid target address"}},
    {'t', "22:xyz", {"at position 4", "unexpected 'x' after ':'"}},
    {'t', "22:192.0.2.1", {"at position 4", "dual-stack", "IPv4 target 192.0.2.1",
                           "write 0.0.0.0/22:192.0.2.1"}},
    {'t', "%eth0/22:192.0.2.1", {"write 0.0.0.0%eth0/22:192.0.2.1"}},
    {'t', "all:192.0.2.1", {"at position 5", "dual-stack", "0.0.0.0/all:192.0.2.1"}},
    {'T', "22:192.0.2.1", {"dual-stack", "give an IPv6 target in brackets"}},
    {'t', "0.0.0.0/22:[::1]", {"at position 12", "listens on IPv4 (0.0.0.0)", "IPv6 target ::1"}},
    {'t', "0.0.0.0/all:192.0.2.1/80", {"at position 22", "all keeps every port number"}},
    {'t', "0.0.0.0/all:192.0.2.1,all", {"at position 23", "all is given twice with different targets"}},
    {'t', "all:", {"at position 5", "nothing follows 'all:'"}},
};
// clang-format on

class SpecErrorsTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(SpecErrorsTest, MessageSaysWhereWhatAndHow) {
  const ErrorCase& c = GetParam();
  auto rules = parse_spec(c.option, c.spec, SpecContext{});
  ASSERT_FALSE(rules.ok()) << "parsed into " << rules->size() << " rules";
  const std::string& msg = rules.error().message;
  std::string head = std::string("-") + c.option + " '";
  EXPECT_EQ(msg.rfind(head, 0), 0u) << msg;
  for (const std::string& part : c.parts) {
    EXPECT_NE(msg.find(part), std::string::npos) << "missing \"" << part << "\" in: " << msg;
  }
  EXPECT_LT(msg.size(), 600u) << msg;
}

INSTANTIATE_TEST_SUITE_P(Messages, SpecErrorsTest, testing::ValuesIn(kErrors));

/// Returns the error of `spec` under -t, or "" and a test failure when it parses.
std::string tcp_error(const std::string& spec) {
  auto rules = parse_spec('t', spec, SpecContext{});
  EXPECT_FALSE(rules.ok()) << spec << " parsed";
  return rules.ok() ? "" : rules.error().message;
}

TEST(SpecErrors, AddressColonPortAsSocatHaproxyAndSsWriteItSaysToUseASlash) {
  EXPECT_EQ(tcp_error("0.0.0.0:19300"),
            "-t '0.0.0.0:19300': '0.0.0.0:19300' looks like ADDRESS:PORT; sluice (like pasta) "
            "writes the listen address before a '/': 0.0.0.0/19300");
  EXPECT_EQ(tcp_error("[::]:19300"),
            "-t '[::]:19300': '[::]:19300' looks like ADDRESS:PORT; sluice (like pasta) writes "
            "the listen address before a '/': [::]/19300");
  EXPECT_EQ(tcp_error("*:19300"),
            "-t '*:19300': '*:19300' looks like ADDRESS:PORT; sluice (like pasta) writes the "
            "listen address before a '/': */19300");
  // ss prints the interface after '%'; a range, a list and a target follow along.
  EXPECT_NE(tcp_error("127.0.0.53%lo:53").find("before a '/': 127.0.0.53%lo/53"),
            std::string::npos);
  EXPECT_NE(tcp_error("[::1]:8000-8010,9000").find("before a '/': [::1]/8000-8010,9000"),
            std::string::npos);
  EXPECT_NE(tcp_error("0.0.0.0:19100:127.0.0.1:8000")
                .find("'0.0.0.0:19100' looks like ADDRESS:PORT; sluice (like pasta) writes the "
                      "listen address before a '/': 0.0.0.0/19100:127.0.0.1/8000"),
            std::string::npos);
  EXPECT_NE(tcp_error("0.0.0.0:19100:[::1]:8000").find("0.0.0.0/19100:[::1]/8000"),
            std::string::npos);
  EXPECT_NE(tcp_error("0.0.0.0:19100:8000").find("before a '/': 0.0.0.0/19100:8000"),
            std::string::npos);
  // Each suggestion parses.
  for (const char* fixed : {"0.0.0.0/19300", "[::]/19300", "*/19300",
                            "0.0.0.0/19100:127.0.0.1/8000", "[::1]/8000-8010,9000"}) {
    EXPECT_TRUE(parse_spec('t', fixed, SpecContext{}).ok()) << fixed;
  }
  // Other mistakes keep their own messages, and valid specs parse as before.
  EXPECT_EQ(tcp_error("0:80").find("looks like ADDRESS:PORT"), std::string::npos);
  EXPECT_EQ(tcp_error("300.1.1.1:80").find("looks like ADDRESS:PORT"), std::string::npos);
  EXPECT_TRUE(parse_spec('t', "80:fd00::5:80", SpecContext{}).ok());
  EXPECT_TRUE(parse_spec('t', "0.0.0.0/22:192.0.2.1", SpecContext{}).ok());
}

TEST(SpecErrors, UnknownOptionLetter) {
  auto rules = parse_spec('x', "22", SpecContext{});
  ASSERT_FALSE(rules.ok());
  EXPECT_NE(rules.error().message.find("unknown forwarding option -x"), std::string::npos);
}

TEST(SpecErrors, ServerWithoutFamilies) {
  SpecContext ctx;
  ctx.ipv4 = ctx.ipv6 = false;
  auto rules = parse_spec('t', "22", ctx);
  ASSERT_FALSE(rules.ok());
  EXPECT_NE(rules.error().message.find("neither IPv4 nor IPv6"), std::string::npos);
}

TEST(SpecErrors, LongSpecIsQuotedShort) {
  std::string spec(3000, '1');
  spec += "x";
  auto rules = parse_spec('t', spec, SpecContext{});
  ASSERT_FALSE(rules.ok());
  EXPECT_LT(rules.error().message.size(), 400u);
  EXPECT_NE(rules.error().message.find("at position 1"), std::string::npos)
      << rules.error().message;
}

TEST(SpecErrors, ControlBytesAreEscapedInTheQuote) {
  auto rules = parse_spec('t', "22\n\x1b[31m", SpecContext{});
  ASSERT_FALSE(rules.ok());
  const std::string& msg = rules.error().message;
  for (char c : msg) {
    EXPECT_TRUE(c >= 0x20 && c < 0x7f) << "raw byte " << static_cast<int>(c) << " in " << msg;
  }
}

}  // namespace
}  // namespace sluice
