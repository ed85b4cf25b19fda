// sluicectl's command line: options into a plan, --file splicing with
// file:line in errors, and every usage error naming its option.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <map>
#include <string>
#include <vector>

#include "client/cli.h"
#include "tests/client/fake_files.h"

namespace sluice {
namespace {

/// Parses `args` with `files`; fails the test on an error.
Plan parse(const std::vector<std::string>& args,
           const std::map<std::string, std::string>& files = {}) {
  auto plan = parse_command_line(args, fake_files(files));
  EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().message);
  return plan.ok() ? *plan : Plan{};
}

/// Parses `args` and returns the usage error ("" and a test failure on success).
std::string usage_error(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& files = {}) {
  auto plan = parse_command_line(args, fake_files(files));
  EXPECT_FALSE(plan.ok()) << "expected a usage error";
  return plan.ok() ? "" : plan.error().message;
}

/// A spec command as parse_command_line builds it.
EditCommand spec(char option, const std::string& text, const std::string& origin = "") {
  EditCommand c;
  c.option = option;
  c.spec = text;
  c.origin = origin;
  return c;
}

/// A -A/-D/-C command.
EditCommand mode(EditCommand::Kind kind, const std::string& origin = "", Pif pif = Pif::kHost) {
  EditCommand c;
  c.kind = kind;
  c.origin = origin;
  c.pif = pif;
  return c;
}

constexpr auto kAppend = EditCommand::Kind::kAppend;
constexpr auto kDelete = EditCommand::Kind::kDelete;
constexpr auto kClear = EditCommand::Kind::kClear;

TEST(Cli, NoArgumentsListsWithDefaults) {
  Plan p = parse({});
  EXPECT_EQ(p.action, Plan::Action::kRun);
  EXPECT_FALSE(p.has_edits());
  EXPECT_EQ(p.path, "");
  EXPECT_EQ(p.timeout_ms, 10000);
  EXPECT_EQ(p.history, 0u);
  EXPECT_FALSE(p.json || p.show || p.dry_run || p.debug);
}

TEST(Cli, EditCommandsKeepTheirOrder) {
  Plan p = parse(
      {"-t", "22", "-A", "-u", "53", "-D", "-T", "3000", "-C", "splice", "-U", "4", "/run/x.sock"});
  std::vector<EditCommand> want = {spec('t', "22"),   mode(kAppend),
                                   spec('u', "53"),   mode(kDelete),
                                   spec('T', "3000"), mode(kClear, "", Pif::kSplice),
                                   spec('U', "4")};
  EXPECT_EQ(p.edits, want);
  EXPECT_EQ(p.path, "/run/x.sock");
  EXPECT_TRUE(p.has_edits());
}

TEST(Cli, ShortOptionsBundleAndTakeAttachedValues) {
  Plan p = parse({"-t22", "-sAt", "23", "-dDu53"});
  std::vector<EditCommand> want = {spec('t', "22"), mode(kAppend), spec('t', "23"), mode(kDelete),
                                   spec('u', "53")};
  EXPECT_EQ(p.edits, want);
  EXPECT_TRUE(p.show);
  EXPECT_TRUE(p.debug);
}

TEST(Cli, TheNextArgumentIsTheValueEvenWithADash) {
  Plan p = parse({"-t", "-22"});
  EXPECT_EQ(p.edits, (std::vector<EditCommand>{spec('t', "-22")}));
}

TEST(Cli, ClearTakesAPifInAnyCase) {
  EXPECT_EQ(parse({"-C", "host"}).edits[0].pif, Pif::kHost);
  EXPECT_EQ(parse({"-C", "HOST"}).edits[0].pif, Pif::kHost);
  EXPECT_EQ(parse({"-CSplice"}).edits[0].pif, Pif::kSplice);
  std::string e = usage_error({"-C", "foo"});
  EXPECT_EQ(e,
            "-C 'foo': no such table; write -C HOST (the -t/-u rules) or -C SPLICE (the -T/-U "
            "rules)");
}

TEST(Cli, MissingValuesNameTheOption) {
  EXPECT_EQ(usage_error({"-t"}), "-t needs a SPEC (e.g. 8080:80)");
  EXPECT_EQ(usage_error({"-C"}), "-C needs a table: HOST or SPLICE");
  EXPECT_EQ(usage_error({"--timeout"}), "--timeout needs a number of SECONDS");
  EXPECT_EQ(usage_error({"--comment"}), "--comment needs a TEXT (quote it if it has spaces)");
  EXPECT_EQ(usage_error({"--file"}), "--file needs a FILE of options");
}

TEST(Cli, AModeSwitchThatNoSpecFollowsIsAUsageError) {
  // "-t SPEC -A" replaced a whole table: -A applies to the specs after it.
  EXPECT_EQ(usage_error({"--tcp-p=0.0.0.0/19100:127.0.0.1/8000", "--ad", "/run/s.sock"}),
            "-A applies to the specs after it; nothing follows it here, so this would replace "
            "every rule of HOST with the specs before it (pesto would do so without a word). Put "
            "-A first: sluicectl -A -t 0.0.0.0/19100:127.0.0.1/8000 /run/s.sock");
  EXPECT_EQ(usage_error({"-t", "[::]/80", "-T", "22", "-u", "53", "-t", "1", "-t", "2", "-D"}),
            "-D applies to the specs after it; nothing follows it here, so this would replace "
            "every rule of HOST and SPLICE with the specs before it (pesto would do so without "
            "a word). Put -D first: sluicectl -D -t '[::]/80' -T 22 -u 53 -t 1 ... SOCKET");
  EXPECT_EQ(usage_error({"-A", "s.sock"}),
            "-A applies to the specs after it, and no spec follows it here, so it would do "
            "nothing; put the specs to add after it: sluicectl -A -t SPEC s.sock");
  EXPECT_EQ(usage_error({"-A", "-t", "22", "-D"}),
            "-D applies to the specs after it, and no spec follows it here, so it would do "
            "nothing; put the specs to delete after it: sluicectl -D -t SPEC SOCKET");
  // After an earlier switch, putting the trailing one first would change what
  // the other specs do (here: delete 80 instead of replacing HOST with it), so
  // no rewritten line is suggested.
  std::string mixed = usage_error({"-t", "80", "-A", "-t", "81", "-D", "SOCK"});
  EXPECT_EQ(mixed,
            "the trailing -D applies to the specs after it, and no spec follows it here, so it "
            "applies to nothing; remove it, or put the specs it should delete after it");
  EXPECT_EQ(mixed.find("sluicectl -D -t 80"), std::string::npos) << mixed;
  EXPECT_EQ(
      usage_error({"--file", "f"}, {{"f", "-t 80\n-D -t 81\n-A\n"}}),
      "f:3: the trailing -A applies to the specs after it, and no spec follows it here, so it "
      "applies to nothing; remove it, or put the specs it should add after it");
  EXPECT_NE(usage_error({"-t", "22", "-C", "HOST", "-A"}).find("-A applies to the specs after it"),
            std::string::npos);
  EXPECT_EQ(usage_error({"--file", "f"}, {{"f", "-t 22\n-A\n"}}).rfind("f:2: -A applies", 0), 0u);
  // A switch with specs after it, wherever they come from, is fine.
  EXPECT_EQ(parse({"-A", "--file", "f"}, {{"f", "-t 22\n"}}).edits.size(), 2u);
  EXPECT_EQ(parse({"-D", "-A", "-t", "22"}).edits.size(), 3u);
  EXPECT_EQ(parse({"-t", "22", "-A", "-C", "HOST", "-t", "23"}).edits.size(), 4u);
}

TEST(Cli, UnknownOptionsSayWhereToLook) {
  EXPECT_EQ(usage_error({"-x"}), "unknown option -x in '-x'; see sluicectl -h for the options");
  EXPECT_EQ(usage_error({"-Ax"}), "unknown option -x in '-Ax'; see sluicectl -h for the options");
  EXPECT_EQ(usage_error({"--frob"}), "unknown option '--frob'; see sluicectl -h for the options");
  EXPECT_EQ(usage_error({"--json=yes"}), "--json takes no value; write --json alone");
}

TEST(Cli, LongOptionsTakeValuesBothWays) {
  Plan p = parse({"--timeout=5", "--comment", "deploy 42", "--json", "--dry-run", "-t", "1"});
  EXPECT_EQ(p.timeout_ms, 5000);
  EXPECT_EQ(p.comment, "deploy 42");
  EXPECT_TRUE(p.json);
  EXPECT_TRUE(p.dry_run);
  EXPECT_EQ(parse({"--timeout", "3600"}).timeout_ms, 3600000);
  EXPECT_EQ(parse({"--comment=a=b", "-C", "HOST"}).comment, "a=b");
}

TEST(Cli, TimeoutIsChecked) {
  EXPECT_EQ(usage_error({"--timeout", "0"}),
            "--timeout takes whole seconds from 1 to 3600, not '0'");
  EXPECT_EQ(usage_error({"--timeout", "3601"}),
            "--timeout takes whole seconds from 1 to 3600, not '3601'");
  EXPECT_EQ(usage_error({"--timeout=1.5"}),
            "--timeout takes whole seconds from 1 to 3600, not '1.5'");
}

TEST(Cli, OnePathAtMost) {
  EXPECT_EQ(usage_error({"a.sock", "b.sock"}),
            "one control socket PATH at most; got 'a.sock' and 'b.sock' (a SPEC goes right after "
            "its -t/-u/-T/-U)");
  EXPECT_EQ(parse({"--", "-odd.sock"}).path, "-odd.sock");
  EXPECT_EQ(parse({"x.sock", "-t", "22"}).path, "x.sock");
  EXPECT_EQ(parse({"-"}).path, "-");
}

TEST(Cli, HelpAndVersionStopParsing) {
  EXPECT_EQ(parse({"-h", "--bogus"}).action, Plan::Action::kHelp);
  EXPECT_EQ(parse({"--help"}).action, Plan::Action::kHelp);
  EXPECT_EQ(parse({"--version", "-x"}).action, Plan::Action::kVersion);
  // An error before -h is still an error.
  EXPECT_EQ(usage_error({"-x", "-h"}),
            "unknown option -x in '-x'; see sluicectl -h for the options");
}

TEST(Cli, HistoryTakesAnOptionalCount) {
  EXPECT_EQ(parse({"--history"}).history, 20u);
  EXPECT_EQ(parse({"--history", "5"}).history, 5u);
  EXPECT_EQ(parse({"--history=256"}).history, 256u);
  Plan p = parse({"--history", "/run/x.sock"});
  EXPECT_EQ(p.history, 20u);
  EXPECT_EQ(p.path, "/run/x.sock");
  EXPECT_EQ(usage_error({"--history", "0"}),
            "--history takes a number of entries from 1 to 256 (the server keeps that many), not "
            "'0'");
  EXPECT_NE(usage_error({"--history=257"}).find("not '257'"), std::string::npos);
  EXPECT_NE(usage_error({"--history", "-t", "22"})
                .find("--history shows past commits and does not "
                      "go with edits"),
            std::string::npos);
  EXPECT_NE(usage_error({"--history", "-s"}).find("does not go with --dry-run, --comment or -s"),
            std::string::npos);
}

TEST(Cli, AWordAfterHistoryThatIsNoNumberIsCalledSoWhenAPathFollows) {
  const std::string expected =
      "--history takes a number of entries from 1 to 256 (the server keeps that many), not "
      "'abc'";
  EXPECT_EQ(usage_error({"--history", "abc", "SOCK"}), expected);
  EXPECT_EQ(usage_error({"--history", "abc", "--json", "SOCK"}), expected);
  EXPECT_EQ(usage_error({"SOCK", "--history", "abc"}), expected);
  // Two paths with --history elsewhere are still two paths.
  EXPECT_EQ(usage_error({"--history", "5", "a.sock", "b.sock"}),
            "one control socket PATH at most; got 'a.sock' and 'b.sock' (a SPEC goes right after "
            "its -t/-u/-T/-U)");
  EXPECT_EQ(usage_error({"--history", "--json", "a.sock", "b.sock"}),
            "one control socket PATH at most; got 'a.sock' and 'b.sock' (a SPEC goes right after "
            "its -t/-u/-T/-U)");
  // Alone, the word is the path, as before.
  Plan p = parse({"--history", "abc"});
  EXPECT_EQ(p.history, 20u);
  EXPECT_EQ(p.path, "abc");
}

TEST(Cli, StatsStandsAlone) {
  Plan p = parse({"--stats", "--json", "/run/x.sock"});
  EXPECT_TRUE(p.stats);
  EXPECT_TRUE(p.json);
  EXPECT_EQ(p.path, "/run/x.sock");
  EXPECT_FALSE(parse({}).stats);
  EXPECT_NE(usage_error({"--stats", "-t", "22"})
                .find("--stats shows counters and does not go with edits"),
            std::string::npos);
  EXPECT_NE(usage_error({"--stats", "--history"}).find("or --history"), std::string::npos);
  EXPECT_NE(usage_error({"--stats", "-s"}).find("does not go with --dry-run, --comment or -s"),
            std::string::npos);
}

TEST(Cli, PrometheusIsAFormatOfStats) {
  Plan p = parse({"--stats", "--prometheus"});
  EXPECT_TRUE(p.stats);
  EXPECT_TRUE(p.prometheus);
  EXPECT_FALSE(parse({"--stats"}).prometheus);
  EXPECT_EQ(usage_error({"--prometheus"}),
            "--prometheus is a format of the counters: write sluicectl --stats --prometheus");
  EXPECT_EQ(usage_error({"--stats", "--prometheus", "--json"}),
            "--prometheus and --json are two formats of the counters; choose one");
  EXPECT_EQ(usage_error({"--history", "--prometheus"}),
            "--prometheus is a format of the counters: write sluicectl --stats --prometheus");
}

TEST(Cli, ConfirmWithinNeedsAnEditAndConfirmStandsAlone) {
  Plan p = parse({"--confirm-within", "30", "-t", "22"});
  EXPECT_EQ(p.confirm_within, 30u);
  EXPECT_EQ(parse({"--confirm-within=86400", "-A", "-t", "22"}).confirm_within, 86400u);
  EXPECT_EQ(parse({"-t", "22"}).confirm_within, 0u);
  EXPECT_EQ(usage_error({"--confirm-within", "0", "-t", "22"}),
            "--confirm-within takes whole seconds from 1 to 86400, not '0'");
  EXPECT_EQ(usage_error({"--confirm-within", "86401", "-t", "22"}),
            "--confirm-within takes whole seconds from 1 to 86400, not '86401'");
  EXPECT_EQ(usage_error({"--confirm-within", "x", "-t", "22"}),
            "--confirm-within takes whole seconds from 1 to 86400, not 'x'");
  EXPECT_NE(usage_error({"--confirm-within", "5"}).find("applies to an edit, and there is no edit"),
            std::string::npos);
  EXPECT_NE(usage_error({"--confirm-within", "5", "--dry-run", "-t", "22"})
                .find("--confirm-within and --dry-run do not go together"),
            std::string::npos);
  Plan c = parse({"--confirm", "--json", "/run/x.sock"});
  EXPECT_TRUE(c.confirm);
  EXPECT_TRUE(c.json);
  EXPECT_EQ(c.path, "/run/x.sock");
  for (const std::vector<std::string>& other :
       std::vector<std::vector<std::string>>{{"--confirm", "-t", "22"},
                                             {"--confirm", "--stats"},
                                             {"--confirm", "--history"},
                                             {"--confirm", "-s"},
                                             {"--confirm", "--confirm-within", "5", "-t", "1"}}) {
    EXPECT_NE(usage_error(other).find("--confirm confirms the commit that waits and does nothing "
                                      "else"),
              std::string::npos)
        << other[1];
  }
  // "--co" now names three options; "--comment" and "--confirm" stay exact.
  EXPECT_EQ(usage_error({"--co", "x"}),
            "option '--co' is ambiguous: it could be --comment, --confirm-within, --confirm; "
            "write more of the name");
}

TEST(Cli, VerifyAuditTakesJsonAndAllowEmptyOnly) {
  Plan p = parse({"--verify-audit", "a.log", "--allow-empty", "--json"});
  EXPECT_EQ(p.action, Plan::Action::kVerifyAudit);
  EXPECT_EQ(p.audit_path, "a.log");
  EXPECT_TRUE(p.allow_empty);
  EXPECT_TRUE(p.json);
  EXPECT_FALSE(parse({"--verify-audit", "a.log"}).allow_empty);
  EXPECT_TRUE(parse({"--allow", "--verify-audit", "a.log"}).allow_empty);  // a unique prefix
  EXPECT_EQ(usage_error({"--allow-empty"}),
            "--allow-empty is about an audit log: it goes with --verify-audit FILE only");
  EXPECT_NE(usage_error({"--verify-audit", "a.log", "--stats", "-t", "22"})
                .find("it goes with --json and --allow-empty only"),
            std::string::npos);
}

TEST(Cli, DryRunAndCommentNeedAnEdit) {
  EXPECT_EQ(usage_error({"--dry-run"}),
            "--dry-run needs an edit to try, e.g. sluicectl --dry-run -t 8080:80");
  EXPECT_NE(usage_error({"--comment", "x"}).find("--comment describes an edit"), std::string::npos);
  EXPECT_TRUE(parse({"--dry-run", "-C", "HOST"}).dry_run);
}

TEST(Cli, CommentLimits) {
  EXPECT_EQ(parse({"--comment", std::string(1024, 'a'), "-C", "HOST"}).comment.size(), 1024u);
  EXPECT_EQ(
      usage_error({"--comment", std::string(1025, 'a'), "-C", "HOST"}),
      "--comment has 1025 bytes, over the limit of 1024; shorten it to one line of prose (the "
      "audit log keeps the details)");
  EXPECT_EQ(usage_error({"--comment", "a\nb", "-C", "HOST"}),
            "--comment 'a\\x0ab' has a control character (such as a newline); write it on one "
            "line");
  EXPECT_EQ(usage_error({"--comment", "a", "--comment", "b", "-C", "HOST"}),
            "--comment is given twice; give one comment for the commit");
  EXPECT_EQ(parse({"--comment", "naïve", "-C", "HOST"}).comment, "naïve");
}

TEST(CliPesto, EveryLongOptionOfPestosTable) {
  Plan p = parse({"--tcp-ports", "22", "--add", "--udp-ports", "53", "--delete", "--tcp-ns", "3000",
                  "--clear", "SPLICE", "--udp-ns", "4", "--show", "--debug", "x.sock"});
  std::vector<EditCommand> want = {spec('t', "22"),   mode(kAppend),
                                   spec('u', "53"),   mode(kDelete),
                                   spec('T', "3000"), mode(kClear, "", Pif::kSplice),
                                   spec('U', "4")};
  EXPECT_EQ(p.edits, want);
  EXPECT_TRUE(p.show);
  EXPECT_TRUE(p.debug);
  EXPECT_EQ(p.path, "x.sock");
  EXPECT_EQ(parse({"--help"}).action, Plan::Action::kHelp);
  EXPECT_EQ(parse({"--version"}).action, Plan::Action::kVersion);
}

TEST(CliPesto, LongOptionsTakeTheirValueAttachedOrNext) {
  std::vector<EditCommand> want = {mode(kAppend), spec('t', "0.0.0.0/8080:80")};
  EXPECT_EQ(parse({"-A", "--tcp-ports=0.0.0.0/8080:80", "s"}).edits, want);
  EXPECT_EQ(parse({"-A", "--tcp-ports", "0.0.0.0/8080:80", "s"}).edits, want);
  // As getopt_long: the next argument is the value, whatever it starts with,
  // and "=" may give an empty one (which the spec parser then refuses).
  EXPECT_EQ(parse({"--udp-ports", "-5"}).edits, (std::vector<EditCommand>{spec('u', "-5")}));
  EXPECT_EQ(parse({"--tcp-ns="}).edits, (std::vector<EditCommand>{spec('T', "")}));
  EXPECT_EQ(parse({"--clear=HOST"}).edits, (std::vector<EditCommand>{mode(kClear)}));
  EXPECT_EQ(usage_error({"--tcp-ports"}), "--tcp-ports needs a SPEC (e.g. 8080:80)");
  EXPECT_EQ(usage_error({"--clear"}), "--clear needs a table: HOST or SPLICE");
  EXPECT_EQ(usage_error({"--add=1"}), "--add takes no value; write --add alone");
  EXPECT_EQ(usage_error({"--verify-audit"}), "--verify-audit needs an audit log FILE");
}

TEST(CliPesto, UniquePrefixesAsGetoptLong) {
  EXPECT_EQ(parse({"--del", "-t", "22"}).edits[0], mode(kDelete));
  EXPECT_EQ(parse({"--a", "-t", "22"}).edits[0], mode(kAppend));
  EXPECT_EQ(parse({"--tcp-p", "22"}).edits, (std::vector<EditCommand>{spec('t', "22")}));
  EXPECT_EQ(parse({"--tcp-n=22"}).edits, (std::vector<EditCommand>{spec('T', "22")}));
  EXPECT_EQ(parse({"--udp-p=53"}).edits, (std::vector<EditCommand>{spec('u', "53")}));
  EXPECT_EQ(parse({"--udp-n", "53"}).edits, (std::vector<EditCommand>{spec('U', "53")}));
  EXPECT_EQ(parse({"--cl", "HOST"}).edits, (std::vector<EditCommand>{mode(kClear)}));
  EXPECT_TRUE(parse({"--sh"}).show);
  EXPECT_TRUE(parse({"--deb"}).debug);
  EXPECT_EQ(parse({"--vers"}).action, Plan::Action::kVersion);
  // sluice's own options abbreviate too.
  EXPECT_TRUE(parse({"--j"}).json);
  EXPECT_TRUE(parse({"--st"}).stats);
  EXPECT_EQ(parse({"--hist=3"}).history, 3u);
  EXPECT_EQ(parse({"--time", "7"}).timeout_ms, 7000);
}

TEST(CliPesto, PestosOwnPrefixesKeepTheirMeaning) {
  // Unique among pesto's options, so pesto takes them; sluice's extra
  // options (--stats, --comment, --verify-audit, --history) do not steal them.
  EXPECT_TRUE(parse({"--s"}).show);
  EXPECT_FALSE(parse({"--s"}).stats);
  EXPECT_EQ(parse({"--c", "HOST"}).edits, (std::vector<EditCommand>{mode(kClear)}));
  EXPECT_EQ(parse({"--v"}).action, Plan::Action::kVersion);
  EXPECT_EQ(parse({"--h"}).action, Plan::Action::kHelp);
}

TEST(CliPesto, AmbiguousAndUnknownPrefixes) {
  EXPECT_EQ(usage_error({"--de"}),
            "option '--de' is ambiguous: it could be --debug, --delete; write more of the name");
  EXPECT_EQ(usage_error({"--tcp", "22"}),
            "option '--tcp' is ambiguous: it could be --tcp-ports, --tcp-ns; write more of the "
            "name");
  EXPECT_EQ(usage_error({"--t=22"}),
            "option '--t' is ambiguous: it could be --tcp-ports, --tcp-ns, --timeout; write more "
            "of the name");
  // --version and --verify-audit share "--ver", but pesto has only --version.
  EXPECT_EQ(parse({"--ver"}).action, Plan::Action::kVersion);
  EXPECT_EQ(parse({"--veri", "a.log"}).action, Plan::Action::kVerifyAudit);
  EXPECT_EQ(usage_error({"--addx"}), "unknown option '--addx'; see sluicectl -h for the options");
  EXPECT_EQ(usage_error({"--=x"}),
            "'--' followed by '=' is no option; write the option's name, e.g. --add");
}

TEST(CliPesto, PathMayStandAnywhere) {
  std::vector<EditCommand> want = {mode(kAppend), spec('t', "0.0.0.0/8080"),
                                   spec('t', "[::]/8080")};
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--add", "-t", "0.0.0.0/8080", "-t", "[::]/8080", "/run/p.sock"},
           {"/run/p.sock", "--add", "-t", "0.0.0.0/8080", "-t", "[::]/8080"},
           {"--add", "/run/p.sock", "-t", "0.0.0.0/8080", "-t", "[::]/8080"},
           {"--add", "-t", "0.0.0.0/8080", "/run/p.sock", "-t", "[::]/8080"},
           {"--add", "--tcp-ports=0.0.0.0/8080", "/run/p.sock", "--tcp-ports", "[::]/8080"}}) {
    Plan p = parse(args);
    EXPECT_EQ(p.edits, want) << args[0];
    EXPECT_EQ(p.path, "/run/p.sock") << args[0];
  }
  EXPECT_EQ(usage_error({"a.sock", "--add", "-t", "22", "b.sock"}),
            "one control socket PATH at most; got 'a.sock' and 'b.sock' (a SPEC goes right after "
            "its -t/-u/-T/-U)");
}

TEST(CliFile, OptionsAreSplicedInPlaceWithTheirLines) {
  std::map<std::string, std::string> files = {{"a.conf",
                                               "# forwarding for the web tier\n"
                                               "-t 22 -A\n"
                                               "\n"
                                               "  -u 53   # DNS\n"
                                               "--comment 'fix #12 now'\n"}};
  Plan p = parse({"-t", "1", "--file", "a.conf", "-T", "3"}, files);
  std::vector<EditCommand> want = {spec('t', "1"), spec('t', "22", "a.conf:2"),
                                   mode(kAppend, "a.conf:2"), spec('u', "53", "a.conf:4"),
                                   spec('T', "3")};
  EXPECT_EQ(p.edits, want);
  EXPECT_EQ(p.comment, "fix #12 now");
  EXPECT_EQ(parse({"--file=a.conf"}, files).edits.size(), 3u);
}

TEST(CliFile, SeveralFilesAndTheSameFileTwice) {
  std::map<std::string, std::string> files = {{"a", "-t 1"}, {"b", "-A -t 2"}};
  Plan p = parse({"--file", "a", "--file", "b", "--file", "b"}, files);
  EXPECT_EQ(p.edits.size(), 5u);
  EXPECT_EQ(p.edits[4], spec('t', "2", "b:1"));
}

TEST(CliFile, ErrorsNameFileAndLine) {
  std::map<std::string, std::string> files = {{"unknown", "-t 22\n\n--frob\n"},
                                              {"split", "-t\n22\n"},
                                              {"nested", "-A\n--file other\n"},
                                              {"path", "-t 22 /run/x.sock\n"},
                                              {"quote", "-t 22\n--comment 'oops\n"},
                                              {"nul", std::string("-t 22\n-t 2\0 3\n", 14)},
                                              {"badpif", "\n-C LOCAL\n"},
                                              {"dashdash", "--\n"},
                                              {"history", "--history 0\n"}};
  EXPECT_EQ(usage_error({"--file", "unknown"}, files),
            "unknown:3: unknown option '--frob'; see sluicectl -h for the options");
  EXPECT_EQ(usage_error({"--file", "split"}, files),
            "split:1: -t needs a SPEC (e.g. 8080:80) on the same line");
  EXPECT_EQ(usage_error({"--file", "nested"}, files),
            "nested:2: --file cannot be used inside an option file (files do not nest); give "
            "every --file on the command line");
  EXPECT_EQ(usage_error({"--file", "path"}, files),
            "path:1: unexpected word '/run/x.sock': an option file holds options only (a SPEC "
            "goes after its -t/-u/-T/-U); give the control socket PATH on the command line");
  EXPECT_EQ(usage_error({"--file", "quote"}, files),
            "quote:2: the ' quote is not closed on this line; close it (quotes "
            "cannot span lines and have no escapes)");
  EXPECT_EQ(usage_error({"--file", "nul"}, files),
            "nul:2: the file has a NUL byte; an option file is text, one or more "
            "options a line");
  EXPECT_EQ(
      usage_error({"--file", "badpif"}, files).rfind("badpif:2: -C 'LOCAL': no such table", 0), 0u);
  EXPECT_EQ(usage_error({"--file", "dashdash"}, files),
            "dashdash:1: '--' has no meaning in an option file; remove it");
  EXPECT_EQ(usage_error({"--file", "history"}, files).rfind("history:1: --history takes", 0), 0u);
  EXPECT_EQ(usage_error({"--file", "missing"}, files),
            "--file 'missing': cannot open it: ENOENT (No such file or directory)");
}

TEST(CliFile, CombinationErrorsNameTheFileLine) {
  std::map<std::string, std::string> files = {{"f", "\n--dry-run\n"}};
  EXPECT_EQ(usage_error({"--file", "f"}, files),
            "f:2: --dry-run needs an edit to try, e.g. sluicectl --dry-run -t 8080:80");
}

TEST(CliFile, SplitWords) {
  auto words = split_option_file("a'b c'd \"x y\" '' x#y #z\n  -t\t22\r\n", "n");
  ASSERT_TRUE(words.ok());
  std::vector<FileWord> want = {{"ab cd", 1}, {"x y", 1}, {"", 1},
                                {"x#y", 1},   {"-t", 2},  {"22", 2}};
  EXPECT_EQ(*words, want);
  auto empty = split_option_file("", "n");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
  auto open_quote = split_option_file("\n\n\"abc", "n");
  ASSERT_FALSE(open_quote.ok());
  EXPECT_EQ(open_quote.error().message.rfind("n:3: the \" quote is not closed", 0), 0u);
}

TEST(CliFile, ReadsRealFilesWithLimits) {
  char dir_tmpl[] = "/tmp/sluicectl-cli-test-XXXXXX";
  ASSERT_NE(mkdtemp(dir_tmpl), nullptr);
  std::string dir = dir_tmpl;
  std::string small = dir + "/small.conf";
  std::string big = dir + "/big.conf";
  int fd = open(small.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "-t 22\n", 6), 6);
  close(fd);
  fd = open(big.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, kMaxOptionFileBytes + 1), 0);
  close(fd);

  auto text = read_option_file(small);
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(*text, "-t 22\n");
  auto too_big = read_option_file(big);
  ASSERT_FALSE(too_big.ok());
  EXPECT_EQ(too_big.error().err, EFBIG);
  auto is_dir = read_option_file(dir);
  ASSERT_FALSE(is_dir.ok());
  EXPECT_EQ(is_dir.error().err, EISDIR);
  auto missing = read_option_file(dir + "/missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().err, ENOENT);
  EXPECT_NE(missing.error().message.find("ENOENT"), std::string::npos);

  auto plan = parse_command_line({"--file", small}, read_option_file);
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan->edits, (std::vector<EditCommand>{spec('t', "22", small + ":1")}));
  unlink(small.c_str());
  unlink(big.c_str());
  rmdir(dir.c_str());
}

TEST(Cli, UsageNamesEveryOption) {
  std::string u = usage_text();
  for (const char* option : {"-t SPEC",
                             "-u SPEC",
                             "-T SPEC",
                             "-U SPEC",
                             "-A",
                             "-D",
                             "-C PIF",
                             "-s",
                             "--dry-run",
                             "--tcp-ports",
                             "--udp-ports",
                             "--tcp-ns",
                             "--udp-ns",
                             "--add",
                             "--delete",
                             "--clear",
                             "--show",
                             "--verify-audit",
                             "--prometheus",
                             "--confirm-within SECONDS",
                             "--confirm",
                             "--allow-empty",
                             "--end-removed-flows",
                             "--comment TEXT",
                             "--file FILE",
                             "--json",
                             "--history [N]",
                             "--stats",
                             "--timeout SECONDS",
                             "--debug",
                             "--help",
                             "--version",
                             "Exit status"}) {
    EXPECT_NE(u.find(option), std::string::npos) << option;
  }
}

}  // namespace
}  // namespace sluice
