// sluicectl's check of its specs before it connects (check_specs): typos
// and paths taken for specs are usage errors with the parser's message, and
// nothing that some server's facts make valid is refused (the permissive
// context); every spec example of --help and every example command line of
// sluicectl(1) passes it.
#include <gtest/gtest.h>

#include <cerrno>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "client/cli.h"
#include "client/spec_context.h"
#include "tests/client/fake_files.h"

namespace sluice {
namespace {

/// Returns check_specs' error for `args` ("" and a test failure when the
/// specs pass or the command line does not parse).
std::string spec_error(const std::vector<std::string>& args,
                       const std::map<std::string, std::string>& files = {}) {
  auto plan = parse_command_line(args, fake_files(files));
  EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().message);
  if (!plan.ok()) return "";
  auto checked = check_specs(*plan);
  EXPECT_FALSE(checked.ok()) << "expected a spec error";
  return checked.ok() ? "" : checked.error().message;
}

/// True when check_specs passes the specs of `args`.
bool specs_pass(const std::vector<std::string>& args) {
  auto plan = parse_command_line(args, fake_files({}));
  EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().message);
  if (!plan.ok()) return false;
  auto checked = check_specs(*plan);
  EXPECT_TRUE(checked.ok()) << checked.error().message;
  return checked.ok();
}

TEST(CliSpecs, ATypoIsReportedWithTheParsersMessage) {
  EXPECT_EQ(spec_error({"-t", "80-70", "/run/x.sock"}),
            "-t '80-70': at position 1: the range 80-70 runs backwards; write 70-80");
  EXPECT_EQ(spec_error({"-A", "-t", "22", "-u", "53x"}),
            "-u '53x': at position 3: unexpected 'x' after port 53; expected ',' or the end of "
            "the spec");
  // From a file: FILE:LINE first, as every other error of a file.
  EXPECT_EQ(spec_error({"--file", "f"}, {{"f", "-A\n-T 80-70\n"}}),
            "f:2: -T '80-70': at position 1: the range 80-70 runs backwards; write 70-80");
}

TEST(CliSpecs, APathTakenForASpecGetsAHintWhenNoPathWasGiven) {
  const std::string hint =
      "; if '/tmp/x/control.sock' is the control socket: a SPEC goes right after its "
      "-t/-u/-T/-U, and the socket PATH comes last, e.g. sluicectl -A -t 8080:80 PATH";
  std::string e = spec_error({"-A", "-t", "/tmp/x/control.sock"});
  EXPECT_EQ(e.find("-t '/tmp/x/control.sock': at position 2: "), 0u) << e;
  EXPECT_NE(e.find(hint), std::string::npos) << e;
  EXPECT_NE(spec_error({"-u", "run/sluice.sock"}).find("the socket PATH comes last"),
            std::string::npos);
  // No hint with a PATH given, nor for a typo in a spec with an address or
  // an interface (a stray letter, hex digits, all, auto, an IFNAME).
  EXPECT_EQ(spec_error({"-t", "/tmp/x/control.sock", "/run/y.sock"}).find("PATH comes last"),
            std::string::npos);
  for (const char* typo :
       {"127.0.0.1/80x", "[fd00::1]/22,auto,,", "%eth0/22-", "%tailscale0/all,~x", "/22:"}) {
    EXPECT_EQ(spec_error({"-t", typo}).find("PATH comes last"), std::string::npos) << typo;
  }
}

TEST(CliSpecs, TypicalValidSpecsPass) {
  for (const char* spec :
       {"22", "8080:80", "2000-2010", "1000-2000:11000-12000", "2000-5000,~3000-3010",
        "15100-15101,~15100,15100", "127.0.0.1/8080:80", "0.0.0.0/5000:192.0.2.5/6000",
        "[::]/8080:fd00::5/80", "[::1]%lo/22", "%eth0/22", "*/22", "all", "all:10.0.0.5", "auto",
        "80:8080,auto", "~22,auto", "all,~1-1023", "none"}) {
    EXPECT_TRUE(specs_pass({"-A", "-t", spec})) << spec;
    EXPECT_TRUE(specs_pass({"-u", spec})) << spec;
  }
  for (const char* spec : {"22", "8080:80", "2000-2010,~2005", "all", "auto", "none"}) {
    EXPECT_TRUE(specs_pass({"-T", spec, "-U", spec})) << spec;
  }
}

TEST(CliSpecs, ASpecThatOnlyAnIpv4OnlyServerAcceptsPasses) {
  // A wildcard is dual-stack with both families, and a dual-stack rule
  // cannot forward IPv6 clients to an IPv4 target; an IPv4-only server's
  // wildcard is 0.0.0.0, which can. The check before the connection must
  // not refuse what such a server accepts.
  for (const char* spec : {"8080:10.0.0.5/80", "all:10.0.0.5", "%eth0/22:10.0.0.5"}) {
    SpecContext both;
    EXPECT_FALSE(parse_spec('t', spec, both).ok()) << spec;
    SpecContext v4;
    v4.ipv6 = false;
    EXPECT_TRUE(parse_spec('t', spec, v4).ok()) << spec;
    EXPECT_TRUE(specs_pass({"-A", "-t", spec})) << spec;
  }
  // And the IPv6 targets an IPv4-only server refuses, a dual-stack one takes.
  SpecContext v4;
  v4.ipv6 = false;
  EXPECT_FALSE(parse_spec('t', "8080:[fd00::5]/80", v4).ok());
  EXPECT_TRUE(specs_pass({"-A", "-t", "8080:[fd00::5]/80"}));
  // What no server accepts is refused before the connection.
  EXPECT_NE(spec_error({"-t", "127.0.0.1/8080:fd00::5/80"}).find("cannot forward to the IPv6"),
            std::string::npos);
}

TEST(CliSpecs, ASpecThatOnlyTheServersEphemeralRangeMakesValidPasses) {
  // With the default range (32768-60999) left out, this spec forwards
  // nothing; a server whose range is 49152-65535 forwards 32768-49151 with
  // it. The check before the connection must not refuse it.
  const char* spec = "all,~1-32767,~61000-65535";
  SpecContext defaults;
  EXPECT_FALSE(parse_spec('t', spec, defaults).ok());
  SpecContext server;
  server.ephemeral_first = 49152;
  server.ephemeral_last = 65535;
  auto rules = parse_spec('t', spec, server);
  ASSERT_TRUE(rules.ok()) << rules.error().message;
  ASSERT_EQ(rules->size(), 1u);
  EXPECT_EQ((*rules)[0].first, 32768);
  EXPECT_EQ((*rules)[0].last, 49151);
  EXPECT_TRUE(specs_pass({"-t", spec}));
  // What no range can save is refused before the connection.
  EXPECT_NE(spec_error({"-t", "all,~1-65535"}).find("every port this spec names is excluded"),
            std::string::npos);
}

TEST(CliSpecs, ThePermissiveContextReachesNoRuleLimit) {
  // The most rules a spec of kMaxSpecBytes makes with no ephemeral range:
  // "all" and every other port, as includes (two rules each: the port and
  // the gap after it) or as exclusions, as many as fit.
  for (const char* chunk : {",", ",~"}) {
    std::string spec = "all";
    for (uint32_t port = 2; spec.size() + 8 <= kMaxSpecBytes; port += 2) {
      spec += chunk + std::to_string(port);
    }
    auto rules = parse_spec('t', spec, permissive_spec_context());
    ASSERT_TRUE(rules.ok()) << rules.error().message;
    EXPECT_LT(rules->size(), kMaxRulesPerTable) << chunk;
  }
}

TEST(CliSpecs, TheUsagesSpecExamplesPass) {
  // "SPEC is the pasta/pesto syntax, e.g. 22, 8080:80, ..., none (see ...".
  std::string u = usage_text();
  size_t begin = u.find("SPEC is the pasta/pesto syntax, e.g. ");
  ASSERT_NE(begin, std::string::npos) << u;
  begin = u.find("e.g. ", begin) + 5;
  size_t end = u.find(" (see", begin);
  ASSERT_NE(end, std::string::npos);
  std::string list = u.substr(begin, end - begin);
  for (char& c : list) c = c == '\n' ? ' ' : c;
  size_t count = 0;
  for (size_t pos = 0; pos <= list.size(); ++count) {
    size_t comma = list.find(", ", pos);
    if (comma == std::string::npos) comma = list.size();
    std::string spec = list.substr(pos, comma - pos);
    EXPECT_TRUE(specs_pass({"-A", "-t", spec})) << spec;
    pos = comma + 2;
  }
  EXPECT_EQ(count, 7u) << list;
}

TEST(CliSpecs, TheManPagesExamplesPass) {
  // The lines between ".SH EXAMPLES" and the next section, as a shell reads
  // them: "\\e" at the end continues a line, '#' starts a comment, and a
  // pipe ends the command (split_option_file splits the words as a shell).
  std::ifstream in(std::string(SLUICE_SOURCE_DIR) + "/docs/man/sluicectl.1");
  ASSERT_TRUE(in.good());
  std::string line, command;
  bool in_examples = false;
  size_t count = 0;
  for (int n = 0; n < 100000 && std::getline(in, line); ++n) {
    if (line.rfind(".SH ", 0) == 0) {
      if (in_examples) break;
      in_examples = line == ".SH EXAMPLES";
      continue;
    }
    if (!in_examples || line.rfind(".", 0) == 0) continue;
    if (line.size() >= 2 && line.compare(line.size() - 2, 2, "\\e") == 0) {
      command += line.substr(0, line.size() - 2) + " ";
      continue;
    }
    command += line;
    command = command.substr(0, command.find('|'));
    auto words = split_option_file(command, "example");
    ASSERT_TRUE(words.ok()) << command;
    if (words->empty()) {  // a comment that goes on from the line before
      command.clear();
      continue;
    }
    EXPECT_EQ((*words)[0].text, "sluicectl") << command;
    std::vector<std::string> args;
    for (size_t i = 1; i < words->size(); ++i) args.push_back((*words)[i].text);
    auto plan = parse_command_line(args, [](const std::string&) -> Result<std::string> {
      return std::string("-A -t 8080:80\n");
    });
    ASSERT_TRUE(plan.ok()) << command << ": " << plan.error().message;
    auto checked = check_specs(*plan);
    EXPECT_TRUE(checked.ok()) << command << ": " << checked.error().message;
    command.clear();
    ++count;
  }
  EXPECT_GE(count, 15u);
}

}  // namespace
}  // namespace sluice
