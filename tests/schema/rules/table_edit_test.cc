// Table edits as in pesto(1), with sluice's improvements: replace clears each
// table once, -A appends, -D removes exactly the ports named and splits
// rules, -C clears, "none" checks, and the order of commands.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/spec_context.h"
#include "policy/validate.h"
#include "schema/rules/table_edit.h"

namespace sluice {
namespace {

/// A spec command: -`option` `spec`.
EditCommand spec(char option, const std::string& text, const std::string& origin = "") {
  EditCommand c;
  c.kind = EditCommand::Kind::kSpec;
  c.option = option;
  c.spec = text;
  c.origin = origin;
  return c;
}
/// -A.
EditCommand append() {
  EditCommand c;
  c.kind = EditCommand::Kind::kAppend;
  return c;
}
/// -D.
EditCommand del() {
  EditCommand c;
  c.kind = EditCommand::Kind::kDelete;
  return c;
}
/// -C PIF.
EditCommand clear(Pif pif) {
  EditCommand c;
  c.kind = EditCommand::Kind::kClear;
  c.pif = pif;
  return c;
}

/// Builds tables by replacing with `edits` from empty tables.
TableSet tables_of(const std::vector<EditCommand>& edits) {
  auto t = apply_edits(TableSet{}, edits, SpecContext{});
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? *t : TableSet{};
}

/// Returns the listing texts of one table.
std::vector<std::string> texts(const TableSet& tables, Pif pif = Pif::kHost) {
  std::vector<std::string> out;
  for (const Rule& r : tables.of(pif).rules) out.push_back(format_rule(r));
  return out;
}

/// Applies `edits` to `start` and returns the HOST texts; fails the test on an error.
std::vector<std::string> host_after(const TableSet& start, const std::vector<EditCommand>& edits,
                                    Pif pif = Pif::kHost) {
  auto t = apply_edits(start, edits, SpecContext{});
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? texts(*t, pif) : std::vector<std::string>{"<error>"};
}

/// Applies `edits` to `start` and returns the error message ("" on success).
std::string error_of(const TableSet& start, const std::vector<EditCommand>& edits) {
  auto t = apply_edits(start, edits, SpecContext{});
  EXPECT_FALSE(t.ok()) << "expected an error";
  return t.ok() ? "" : t.error().message;
}

using Texts = std::vector<std::string>;

TEST(TableEditReplace, FirstTClearsHostOnceIncludingUdp) {
  TableSet start = tables_of({spec('t', "80"), spec('u', "53")});
  EXPECT_EQ(host_after(start, {spec('t', "22"), spec('t', "25")}),
            (Texts{"TCP [*]:22 => 22", "TCP [*]:25 => 25"}));
}

TEST(TableEditReplace, UAfterTInTheSameBatchDoesNotClearAgain) {
  TableSet start = tables_of({spec('t', "80")});
  EXPECT_EQ(host_after(start, {spec('t', "22"), spec('u', "53")}),
            (Texts{"TCP [*]:22 => 22", "UDP [*]:53 => 53"}));
  EXPECT_EQ(host_after(start, {spec('u', "53"), spec('t', "22")}),
            (Texts{"UDP [*]:53 => 53", "TCP [*]:22 => 22"}));
}

TEST(TableEditReplace, HostSpecsLeaveSpliceAlone) {
  TableSet start = tables_of({spec('t', "80"), spec('T', "3000")});
  auto t = apply_edits(start, {spec('t', "22")}, SpecContext{});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(texts(*t), (Texts{"TCP [*]:22 => 22"}));
  EXPECT_EQ(texts(*t, Pif::kSplice), (Texts{"TCP [*]%lo:3000 => 3000"}));
}

TEST(TableEditReplace, SpliceSpecsClearSpliceOnce) {
  TableSet start = tables_of({spec('t', "80"), spec('T', "3000"), spec('U', "3001")});
  auto t = apply_edits(start, {spec('T', "4000"), spec('U', "4001")}, SpecContext{});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(texts(*t, Pif::kSplice), (Texts{"TCP [*]%lo:4000 => 4000", "UDP [*]%lo:4001 => 4001"}));
  EXPECT_EQ(texts(*t), (Texts{"TCP [*]:80 => 80"}));
}

TEST(TableEditAppend, AppendsAfterTheExistingRules) {
  TableSet start = tables_of({spec('t', "80"), spec('u', "53")});
  EXPECT_EQ(host_after(start, {append(), spec('t', "23")}),
            (Texts{"TCP [*]:80 => 80", "UDP [*]:53 => 53", "TCP [*]:23 => 23"}));
}

TEST(TableEditAppend, AppendAfterReplaceKeepsTheReplacement) {
  TableSet start = tables_of({spec('t', "80")});
  EXPECT_EQ(host_after(start, {spec('t', "22"), append(), spec('t', "23")}),
            (Texts{"TCP [*]:22 => 22", "TCP [*]:23 => 23"}));
}

TEST(TableEditAppend, ResultIsLeftToTheValidator) {
  TableSet start = tables_of({spec('t', "80")});
  auto t = apply_edits(start, {append(), spec('t', "80")}, SpecContext{});
  ASSERT_TRUE(t.ok());
  auto issues = validate_tables(*t, ServerCaps{});
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].kind, control::FailureKind::kConflict);
}

TEST(TableEditDelete, RemovesAnExactRule) {
  TableSet start = tables_of({spec('t', "22"), spec('t', "80")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "80")}), (Texts{"TCP [*]:22 => 22"}));
}

TEST(TableEditDelete, SplitsARuleAroundAMiddlePort) {
  TableSet start = tables_of({spec('t', "1000-2000")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "1500")}),
            (Texts{"TCP [*]:1000-1499 => 1000-1499", "TCP [*]:1501-2000 => 1501-2000"}));
}

TEST(TableEditDelete, SplitKeepsTheMapping) {
  // The spec names the mapping, as pesto's -D needs: port 1500 goes to 3500.
  TableSet start = tables_of({spec('t', "1000-2000:3000-4000")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "1500:3500")}),
            (Texts{"TCP [*]:1000-1499 => 3000-3499", "TCP [*]:1501-2000 => 3501-4000"}));
  EXPECT_EQ(host_after(start, {del(), spec('t', "1000:3000")}),
            (Texts{"TCP [*]:1001-2000 => 3001-4000"}));
  EXPECT_EQ(host_after(start, {del(), spec('t', "2000:4000")}),
            (Texts{"TCP [*]:1000-1999 => 3000-3999"}));
  EXPECT_EQ(host_after(start, {del(), spec('t', "1000-1001:3000-3001,1999-2000:3999-4000")}),
            (Texts{"TCP [*]:1002-1998 => 3002-3998"}));
}

TEST(TableEditDelete, SplitLeavesSinglePortsAtTheEdges) {
  TableSet start = tables_of({spec('t', "10-12:20-22")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "11:21")}),
            (Texts{"TCP [*]:10 => 20", "TCP [*]:12 => 22"}));
}

TEST(TableEditDelete, SplitKeepsTargetAddressListenAddressAndPlace) {
  TableSet start = tables_of(
      {spec('t', "22"), spec('t', "0.0.0.0/1000-2000:192.0.2.5/3000-4000"), spec('t', "25")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "0.0.0.0/1200-1299:192.0.2.5/3200-3299")}),
            (Texts{"TCP [*]:22 => 22", "TCP [0.0.0.0]:1000-1199 => 192.0.2.5:3000-3199",
                   "TCP [0.0.0.0]:1300-2000 => 192.0.2.5:3300-4000", "TCP [*]:25 => 25"}));
}

TEST(TableEditDelete, SplitKeepsWeakAndScanFlags) {
  // The spec's flags must match: a best-effort port is named by a spec of
  // exclusions only, which makes best-effort rules.
  TableSet start = tables_of({spec('t', "all")});
  EXPECT_EQ(
      host_after(start, {del(), spec('t', "~1-21,~23-65535")}),
      (Texts{"TCP [*]:1-21 => 1-21 (best effort)", "TCP [*]:23-32767 => 23-32767 (best effort)",
             "TCP [*]:61000-65535 => 61000-65535 (best effort)"}));
  TableSet scan = tables_of({spec('t', "8000-8010,auto")});
  EXPECT_EQ(host_after(scan, {del(), spec('t', "8005,auto")}),
            (Texts{"TCP [*]:8000-8004 => 8000-8004 (auto-scan)",
                   "TCP [*]:8006-8010 => 8006-8010 (auto-scan)"}));
}

TEST(TableEditDelete, FlagsMustMatch) {
  TableSet start = tables_of({spec('t', "all")});
  std::string e = error_of(start, {del(), spec('t', "22")});
  EXPECT_NE(
      e.find("-D -t '22': TCP port 22 on [*] is not forwarded to port 22 of the default target in "
             "HOST (no such rule)"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("HOST rule 0 (TCP [*]:1-32767 => 1-32767 (best effort)) forwards port 22 on "
                   "[*] to port 22 of the default target, best effort, so it differs in its flags"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("to delete it, write -D -t all"), std::string::npos) << e;
  EXPECT_EQ(host_after(start, {del(), spec('t', "all")}), Texts{});

  TableSet scan = tables_of({spec('t', "8000-8010,auto")});
  e = error_of(scan, {del(), spec('t', "8005")});
  EXPECT_NE(e.find("to port 8005 of the default target, with auto-scan"), std::string::npos) << e;
  EXPECT_NE(e.find("to delete port 8005 from it, write -D -t 8005,auto"), std::string::npos) << e;
  e = error_of(tables_of({spec('t', "8005")}), {del(), spec('t', "8005,auto")});
  EXPECT_NE(e.find("TCP port 8005 on [*] is not forwarded to port 8005 of the default target, with "
                   "auto-scan in HOST"),
            std::string::npos)
      << e;
}

TEST(TableEditDelete, RangeAcrossSeveralAdjacentRules) {
  TableSet start = tables_of({spec('t', "10-20,21-40:121-140,41-50")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "15-20,21-40:121-140,41-45")}),
            (Texts{"TCP [*]:10-14 => 10-14", "TCP [*]:46-50 => 46-50"}));
  EXPECT_EQ(
      host_after(start, {del(), spec('t', "15-20,21-30:121-130")}),
      (Texts{"TCP [*]:10-14 => 10-14", "TCP [*]:31-40 => 131-140", "TCP [*]:41-50 => 41-50"}));
  // One range across rules with other mappings matches only where they agree.
  std::string e = error_of(start, {del(), spec('t', "15-45")});
  EXPECT_NE(
      e.find(
          "TCP ports 21-40 on [*] are not forwarded to ports 15-45 of the default target in HOST"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("HOST rule 1 (TCP [*]:21-40 => 121-140) forwards port 21 on [*] to port 121"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("to delete it, write -D -t 21-40:121-140"), std::string::npos) << e;
  TableSet plain = tables_of({spec('t', "10-20,21-40,41-50")});
  EXPECT_EQ(host_after(plain, {del(), spec('t', "15-45")}),
            (Texts{"TCP [*]:10-14 => 10-14", "TCP [*]:46-50 => 46-50"}));
}

TEST(TableEditDelete, PortNotForwardedIsAnErrorNamingIt) {
  TableSet start = tables_of({spec('t', "22")});
  std::string e = error_of(start, {del(), spec('t', "9999")});
  EXPECT_NE(
      e.find("-D -t '9999': TCP port 9999 on [*] is not forwarded to port 9999 of the default "
             "target in HOST"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("nothing was changed"), std::string::npos) << e;
}

TEST(TableEditDelete, GapsInARangeAreNamed) {
  TableSet start = tables_of({spec('t', "10-20,30-40,50-60")});
  std::string e = error_of(start, {del(), spec('t', "15-55")});
  EXPECT_NE(e.find("TCP ports 21-29, 41-49 on [*] are not forwarded"), std::string::npos) << e;
}

TEST(TableEditDelete, ManyGapsAreCountedNotListed) {
  TableSet start = tables_of({spec('t', "2,4,6,8,10,12,14,16,18,20,22")});
  std::string e = error_of(start, {del(), spec('t', "1-22")});
  EXPECT_NE(e.find("1, 3, 5, 7, 9, 11, 13, 15 and 3 more ranges"), std::string::npos) << e;
}

TEST(TableEditDelete, OnePartNotForwardedChangesNothing) {
  TableSet start = tables_of({spec('t', "22")});
  std::string e = error_of(start, {del(), spec('t', "22,9999")});
  EXPECT_NE(e.find("port 9999"), std::string::npos) << e;
  Table table = start.of(Pif::kHost);
  Rule r = table.rules[0];
  r.first = r.last = r.to = 9999;
  auto deleted = delete_ports(&table, r, "HOST");
  EXPECT_FALSE(deleted.ok());
  EXPECT_EQ(table, start.of(Pif::kHost));
}

TEST(TableEditDelete, AddressMustMatchAndTheMessagePointsAtTheRule) {
  TableSet start = tables_of({spec('t', "127.0.0.1/8080")});
  std::string e = error_of(start, {del(), spec('t', "8080")});
  EXPECT_NE(
      e.find("TCP port 8080 on [*] is not forwarded to port 8080 of the default target in HOST"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("HOST rule 0 (TCP [127.0.0.1]:8080 => 8080) forwards port 8080 on "
                   "[127.0.0.1]"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("so it differs in its listen address"), std::string::npos) << e;
  EXPECT_NE(e.find("to delete it, write -D -t 127.0.0.1/8080"), std::string::npos) << e;
  EXPECT_EQ(host_after(start, {del(), spec('t', "127.0.0.1/8080")}), Texts{});
}

TEST(TableEditDelete, DualStackAndIpv4WildcardAreDifferentListeners) {
  TableSet start = tables_of({spec('t', "22")});
  std::string e = error_of(start, {del(), spec('t', "0.0.0.0/22")});
  EXPECT_NE(e.find("on [0.0.0.0] is not forwarded"), std::string::npos) << e;
}

TEST(TableEditDelete, ProtocolAndInterfaceMustMatch) {
  TableSet start = tables_of({spec('t', "53"), spec('t', "%eth0/22")});
  std::string e = error_of(start, {del(), spec('u', "53")});
  EXPECT_NE(e.find("-D -u '53': UDP port 53 on [*] is not forwarded"), std::string::npos) << e;
  e = error_of(start, {del(), spec('t', "22")});
  EXPECT_NE(e.find("forwards port 22 on [*]%eth0"), std::string::npos) << e;
  EXPECT_NE(e.find("differs in its interface"), std::string::npos) << e;
  EXPECT_NE(e.find("write -D -t '*%eth0/22'"), std::string::npos) << e;
  EXPECT_EQ(host_after(start, {del(), spec('t', "%eth0/22")}), (Texts{"TCP [*]:53 => 53"}));
}

TEST(TableEditDelete, TargetOfTheDeleteSpecMustMatch) {
  // pesto's -D: the target port is part of the match.
  TableSet start = tables_of({spec('t', "1000-2000:3000-4000")});
  std::string e = error_of(start, {del(), spec('t', "1500:80")});
  EXPECT_NE(
      e.find("-D -t '1500:80': TCP port 1500 on [*] is not forwarded to port 80 of the default "
             "target in HOST "
             "(no such rule), so it cannot be deleted; nothing was changed; HOST rule 0 "
             "(TCP [*]:1000-2000 => 3000-4000) forwards port 1500 on [*] to port 3500"),
      std::string::npos)
      << e;
  EXPECT_NE(e.find("differs in its target port"), std::string::npos) << e;
  EXPECT_NE(e.find("to delete port 1500 from it, write -D -t 1500:3500"), std::string::npos) << e;
  e = error_of(start, {del(), spec('t', "1500")});
  EXPECT_NE(
      e.find("TCP port 1500 on [*] is not forwarded to port 1500 of the default target in HOST "
             "(no such rule)"),
      std::string::npos)
      << e;
}

TEST(TableEditDelete, PodmanWrongTargetIsNoSuchRule) {
  // -D -t 0.0.0.0/8080:10.88.0.6/80 must not delete 0.0.0.0/8080:10.88.0.5/80.
  TableSet start = tables_of({spec('t', "0.0.0.0/8080:10.88.0.5/80")});
  std::string e = error_of(start, {del(), spec('t', "0.0.0.0/8080:10.88.0.6/80")});
  EXPECT_EQ(e,
            "-D -t '0.0.0.0/8080:10.88.0.6/80': TCP port 8080 on [0.0.0.0] is not forwarded to "
            "10.88.0.6:80 in HOST (no such rule), so it cannot be deleted; nothing was changed; "
            "HOST rule 0 (TCP [0.0.0.0]:8080 => 10.88.0.5:80) forwards port 8080 on [0.0.0.0] to "
            "10.88.0.5:80, so it differs in its target address: -D deletes only what matches a "
            "rule in listen address, interface, target and flags, as pesto's does; to delete "
            "it, write -D -t 0.0.0.0/8080:10.88.0.5/80");
  EXPECT_EQ(host_after(start, {del(), spec('t', "0.0.0.0/8080:10.88.0.5/80")}), Texts{});
}

TEST(TableEditDelete, APlainSpecMeansTheDefaultTargetAndTheMessageSaysSo) {
  // -D -t 0.0.0.0/18080 names port 18080 of the default target; the rule on
  // that port goes elsewhere, so it is no match, and the message says both.
  TableSet start = tables_of({spec('t', "22"), spec('t', "0.0.0.0/18080:127.0.0.2/9000")});
  std::string e = error_of(start, {del(), spec('t', "0.0.0.0/18080")});
  EXPECT_EQ(e,
            "-D -t '0.0.0.0/18080': TCP port 18080 on [0.0.0.0] is not forwarded to port 18080 "
            "of the default target in HOST (no such rule), so it cannot be deleted; nothing was "
            "changed; HOST rule 1 (TCP [0.0.0.0]:18080 => 127.0.0.2:9000) forwards port 18080 on "
            "[0.0.0.0] to 127.0.0.2:9000, so it differs in its target (address and port): -D "
            "deletes only what matches a rule in listen address, interface, target and flags, as "
            "pesto's does; to delete it, write -D -t 0.0.0.0/18080:127.0.0.2/9000");
  // The spec it gives deletes the rule.
  EXPECT_EQ(host_after(start, {del(), spec('t', "0.0.0.0/18080:127.0.0.2/9000")}),
            (Texts{"TCP [*]:22 => 22"}));
  // Several differences are named together.
  e = error_of(tables_of({spec('t', "127.0.0.1/18080:9000,auto")}), {del(), spec('t', "18080")});
  EXPECT_NE(e.find("so it differs in its listen address, target port and flags"), std::string::npos)
      << e;
}

TEST(TableEditDelete, PodmanIPv6TargetIsMatchedUnbracketedOrBracketed) {
  TableSet start =
      tables_of({spec('t', "0.0.0.0/8080:10.88.0.5/80"), spec('t', "[::]/8080:fd00::5/80")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "[::]/8080:[fd00::5]/80")}),
            (Texts{"TCP [0.0.0.0]:8080 => 10.88.0.5:80"}));
  std::string e = error_of(start, {del(), spec('t', "[::]/8080:fd00::6/80")});
  EXPECT_NE(e.find("forwards port 8080 on [::] to [fd00::5]:80"), std::string::npos) << e;
  EXPECT_NE(e.find("write -D -t '[::]/8080:[fd00::5]/80'"), std::string::npos) << e;
}

TEST(TableEditDelete, ExactRangeRuleAndPartOfIt) {
  TableSet start = tables_of({spec('t', "0.0.0.0/8000-8004:10.88.0.5/80-84")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "0.0.0.0/8000-8004:10.88.0.5/80-84")}), Texts{});
  // sluice's improvement: part of a rule, where everything else matches.
  EXPECT_EQ(host_after(start, {del(), spec('t', "0.0.0.0/8002:10.88.0.5/82")}),
            (Texts{"TCP [0.0.0.0]:8000-8001 => 10.88.0.5:80-81",
                   "TCP [0.0.0.0]:8003-8004 => 10.88.0.5:83-84"}));
  std::string e = error_of(start, {del(), spec('t', "0.0.0.0/8002:10.88.0.5/80")});
  EXPECT_NE(e.find("to delete port 8002 from it, write -D -t 0.0.0.0/8002:10.88.0.5/82"),
            std::string::npos)
      << e;
}

TEST(TableEditDelete, DeleteThenAppendWorks) {
  // Upstream pesto fails on -D -t X -A -t Y.
  TableSet start = tables_of({spec('t', "22")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "22"), append(), spec('t', "23")}),
            (Texts{"TCP [*]:23 => 23"}));
}

TEST(TableEditDelete, FromTheSpliceTable) {
  TableSet start = tables_of({spec('T', "3000-3010")});
  auto t = apply_edits(start, {del(), spec('T', "3005")}, SpecContext{});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(texts(*t, Pif::kSplice),
            (Texts{"TCP [*]%lo:3000-3004 => 3000-3004", "TCP [*]%lo:3006-3010 => 3006-3010"}));
}

TEST(TableEditDelete, NoneDeletesNothing) {
  TableSet start = tables_of({spec('t', "22")});
  EXPECT_EQ(host_after(start, {del(), spec('t', "none")}), (Texts{"TCP [*]:22 => 22"}));
}

TEST(TableEditClear, ClearsOneTable) {
  TableSet start = tables_of({spec('t', "22"), spec('T', "3000")});
  auto t = apply_edits(start, {clear(Pif::kHost)}, SpecContext{});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(texts(*t), Texts{});
  EXPECT_EQ(texts(*t, Pif::kSplice), (Texts{"TCP [*]%lo:3000 => 3000"}));
  t = apply_edits(start, {clear(Pif::kSplice)}, SpecContext{});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(texts(*t), (Texts{"TCP [*]:22 => 22"}));
  EXPECT_EQ(texts(*t, Pif::kSplice), Texts{});
}

TEST(TableEditSequence, PestoManPageExample) {
  // pesto(1): -A -t 2000 -C HOST -A -T 3000 -t 2001 -D -u 5000. -C HOST
  // empties HOST after 2000 was added; the -D then names a UDP port that is
  // not forwarded, which sluice reports instead of ignoring.
  TableSet start = tables_of({spec('u', "5000")});
  std::vector<EditCommand> edits = {append(), spec('t', "2000"), clear(Pif::kHost),
                                    append(), spec('T', "3000"), spec('t', "2001"),
                                    del(),    spec('u', "5000")};
  std::string e = error_of(start, edits);
  EXPECT_NE(
      e.find("-D -u '5000': UDP port 5000 on [*] is not forwarded to port 5000 of the default "
             "target in HOST"),
      std::string::npos)
      << e;
  // With the UDP rule appended after the clear, the same sequence deletes it.
  edits.insert(edits.begin() + 6, spec('u', "5000"));
  auto t = apply_edits(start, edits, SpecContext{});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(texts(*t), (Texts{"TCP [*]:2001 => 2001"}));
  EXPECT_EQ(texts(*t, Pif::kSplice), (Texts{"TCP [*]%lo:3000 => 3000"}));
}

TEST(TableEditSequence, CommandsActInOrder) {
  TableSet start = tables_of({spec('t', "80")});
  EXPECT_EQ(host_after(start, {spec('t', "22"), clear(Pif::kHost), append(), spec('t', "23")}),
            (Texts{"TCP [*]:23 => 23"}));
  EXPECT_EQ(host_after(start, {append(), spec('t', "23"), clear(Pif::kHost)}), Texts{});
  EXPECT_EQ(host_after(start, {clear(Pif::kHost), spec('t', "22")}), (Texts{"TCP [*]:22 => 22"}));
  // Replace mode clears once: after -C, later specs of the batch only add.
  EXPECT_EQ(host_after(start, {spec('t', "22"), clear(Pif::kHost), spec('t', "23")}),
            (Texts{"TCP [*]:23 => 23"}));
  EXPECT_EQ(host_after(start, {append(), spec('t', "22"), del(), spec('t', "80"), append(),
                               spec('t', "24")}),
            (Texts{"TCP [*]:22 => 22", "TCP [*]:24 => 24"}));
}

TEST(TableEditNone, AloneEmptiesTheProtocolByReplacing) {
  TableSet start = tables_of({spec('t', "80"), spec('u', "53")});
  EXPECT_EQ(host_after(start, {spec('t', "none")}), Texts{});
  EXPECT_EQ(host_after(start, {spec('t', "none"), spec('u', "54")}), (Texts{"UDP [*]:54 => 54"}));
}

TEST(TableEditNone, WithAnotherSpecOfTheSameProtocolIsAnError) {
  std::string e = error_of(TableSet{}, {spec('t', "22"), spec('t', "none")});
  EXPECT_NE(e.find("-t 'none': HOST already has TCP rules (TCP [*]:22 => 22)"), std::string::npos)
      << e;
  EXPECT_NE(e.find("drop 'none' or the other -t specs"), std::string::npos) << e;
  e = error_of(TableSet{}, {spec('t', "none", "rules.conf:2"), spec('t', "22", "rules.conf:3")});
  EXPECT_NE(e.find("rules.conf:3: -t '22': it adds TCP rules to HOST after -t 'none' "
                   "(rules.conf:2) said there are none"),
            std::string::npos)
      << e;
}

TEST(TableEditNone, AppendedToATableWithThatProtocolIsAnError) {
  TableSet start = tables_of({spec('t', "80"), spec('u', "53")});
  std::string e = error_of(start, {append(), spec('t', "none")});
  EXPECT_NE(e.find("HOST already has TCP rules (TCP [*]:80 => 80)"), std::string::npos) << e;
  EXPECT_NE(e.find("-C HOST, or -D -t"), std::string::npos) << e;
  TableSet udp_only = tables_of({spec('u', "53")});
  EXPECT_EQ(host_after(udp_only, {append(), spec('t', "none")}), (Texts{"UDP [*]:53 => 53"}));
}

TEST(TableEditNone, ClearForgetsIt) {
  EXPECT_EQ(host_after(TableSet{}, {spec('t', "none"), clear(Pif::kHost), spec('t', "22")}),
            (Texts{"TCP [*]:22 => 22"}));
}

TEST(TableEditErrors, ParseErrorsCarryTheFileOrigin) {
  std::string e = error_of(TableSet{}, {spec('t', "80-70", "rules.conf:3")});
  EXPECT_EQ(e.rfind("rules.conf:3: -t '80-70': at position 1: the range 80-70 runs backwards", 0),
            0u)
      << e;
  e = error_of(TableSet{}, {spec('t', "80-70")});
  EXPECT_EQ(e.rfind("-t '80-70': at position 1:", 0), 0u) << e;
}

TEST(TableEditErrors, DeleteErrorsCarryTheFileOrigin) {
  std::string e = error_of(TableSet{}, {del(), spec('t', "22", "f:7")});
  EXPECT_EQ(e.rfind("f:7: -D -t '22': TCP port 22", 0), 0u) << e;
}

TEST(TableEditContext, ComesFromTheHello) {
  control::ServerHello hello;
  hello.ephemeral_first = 40000;
  hello.ephemeral_last = 50000;
  hello.caps.ipv6 = false;
  SpecContext ctx = spec_context(hello);
  EXPECT_EQ(ctx.ephemeral_first, 40000);
  EXPECT_EQ(ctx.ephemeral_last, 50000);
  EXPECT_TRUE(ctx.ipv4);
  EXPECT_FALSE(ctx.ipv6);
  auto t = apply_edits(TableSet{}, {spec('t', "all")}, ctx);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(texts(*t), (Texts{"TCP [0.0.0.0]:1-39999 => 1-39999 (best effort)",
                              "TCP [0.0.0.0]:50001-65535 => 50001-65535 (best effort)"}));
}

TEST(TableEditDescribe, QuotesAndSanitises) {
  EXPECT_EQ(describe_spec(spec('t', "22"), false), "-t '22'");
  EXPECT_EQ(describe_spec(spec('U', "5\n"), true), "-D -U '5\\x0a'");
}

}  // namespace
}  // namespace sluice
