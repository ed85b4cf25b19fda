// The exact command lines Podman and rootlesskit run pesto with
// (../shared/INTEROP.md), given to sluicectl: each parses into the expected
// plan (the socket PATH last), its edits turn the tables into the expected
// listing, the validator accepts the result, and the matching delete line
// gives the tables back as they were. No server: tests/integration/
// pesto_cli_test.cc runs the same lines against a real sluiced.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "client/cli.h"
#include "policy/validate.h"
#include "schema/rules/table_edit.h"
#include "tests/interop_lines.h"

namespace sluice {
namespace {

using Args = std::vector<std::string>;
using Texts = std::vector<std::string>;

/// The socket path the clients put last.
const char* const kSock = "/run/user/1000/containers/networks/rootless-netns/pasta.sock";

/// A FileReader for plans that read no file.
Result<std::string> no_files(const std::string& path) {
  return Err("unexpected --file " + path);
}

/// Parses `args` (pesto's arguments, without the program name); fails the
/// test on a usage error.
Plan plan_of(const Args& args) {
  auto plan = parse_command_line(args, no_files);
  EXPECT_TRUE(plan.ok()) << (plan.ok() ? "" : plan.error().message);
  return plan.ok() ? *plan : Plan{};
}

/// Runs the command line `args` on `tables`: parses it, applies its edits
/// and validates the result. Returns the new tables; fails the test on any
/// error.
TableSet run(const TableSet& tables, const Args& args) {
  Plan plan = plan_of(args);
  EXPECT_EQ(plan.path, kSock);
  auto after = apply_edits(tables, plan.edits, SpecContext{});
  EXPECT_TRUE(after.ok()) << (after.ok() ? "" : after.error().message);
  if (!after.ok()) return tables;
  for (const control::Failure& issue : validate_tables(*after, ServerCaps{})) {
    ADD_FAILURE() << issue.message;
  }
  return *after;
}

/// Returns the listing texts of HOST.
Texts host(const TableSet& tables) {
  Texts out;
  for (const Rule& r : tables.of(Pif::kHost).rules) out.push_back(format_rule(r));
  return out;
}

/// Returns `args` with the socket path appended, as the clients call pesto.
Args with_sock(Args args) {
  args.push_back(kSock);
  return args;
}

using ClientLine = test::InteropLine;

/// Every Podman line (INTEROP.md), in the order the generations came.
std::vector<ClientLine> podman_lines() {
  std::vector<ClientLine> out = test::kPodmanWithoutTarget;
  out.push_back(test::kPodmanListenAddress);
  out.insert(out.end(), test::kPodmanWithTarget.begin(), test::kPodmanWithTarget.end());
  return out;
}

/// The tables before a client runs: another container's rule, which neither
/// the adds nor the deletes may touch.
TableSet other_container() {
  auto t = apply_edits(TableSet{},
                       {EditCommand{EditCommand::Kind::kSpec, 't', "0.0.0.0/9090:10.88.0.9/90"}},
                       SpecContext{});
  EXPECT_TRUE(t.ok());
  return t.ok() ? *t : TableSet{};
}

/// Checks one client line: add, then delete, on top of another container's rule.
void check_round_trip(const ClientLine& line) {
  TableSet start = other_container();
  TableSet added = run(start, with_sock(line.add));
  Texts want = host(start);
  want.insert(want.end(), line.rules.begin(), line.rules.end());
  EXPECT_EQ(host(added), want) << line.add[1];
  TableSet deleted = run(added, with_sock(line.del));
  EXPECT_EQ(deleted, start) << line.del[1];
}

TEST(PestoCli, PodmanCommandLinesAddAndDelete) {
  for (const ClientLine& line : podman_lines()) check_round_trip(line);
}

TEST(PestoCli, RootlesskitCommandLinesAddAndDelete) {
  for (const ClientLine& line : test::kRootlesskit) check_round_trip(line);
}

TEST(PestoCli, CommandLinesParseToTheirEdits) {
  Plan p = plan_of(
      with_sock({"--add", "-t", "0.0.0.0/8080:10.88.0.5/80", "-t", "[::]/8080:fd00::5/80"}));
  ASSERT_EQ(p.edits.size(), 3u);
  EXPECT_EQ(p.edits[0].kind, EditCommand::Kind::kAppend);
  EXPECT_EQ(p.edits[1], (EditCommand{EditCommand::Kind::kSpec, 't', "0.0.0.0/8080:10.88.0.5/80"}));
  EXPECT_EQ(p.edits[2], (EditCommand{EditCommand::Kind::kSpec, 't', "[::]/8080:fd00::5/80"}));
  EXPECT_EQ(p.path, kSock);
  EXPECT_FALSE(p.show || p.json || p.dry_run);

  Plan r = plan_of(with_sock({"-D", "--tcp-ports=0.0.0.0/8080:80"}));
  ASSERT_EQ(r.edits.size(), 2u);
  EXPECT_EQ(r.edits[0].kind, EditCommand::Kind::kDelete);
  EXPECT_EQ(r.edits[1], (EditCommand{EditCommand::Kind::kSpec, 't', "0.0.0.0/8080:80"}));
}

TEST(PestoCli, RootlesskitVersionProbe) {
  EXPECT_EQ(plan_of({"--version"}).action, Plan::Action::kVersion);
}

TEST(PestoCli, ReAddingARuleIsAConflict) {
  // Podman issue 29032: a restart re-adds a rule whose delete never ran. As
  // with pesto, the add fails; rootlesskit's test expects the same.
  for (const Args& add : {Args{"--add", "-t", "0.0.0.0/8080:10.88.0.5/80"},
                          Args{"-A", "--tcp-ports=0.0.0.0/8080:80"}}) {
    TableSet added = run(TableSet{}, with_sock(add));
    auto again = apply_edits(added, plan_of(with_sock(add)).edits, SpecContext{});
    ASSERT_TRUE(again.ok());
    auto issues = validate_tables(*again, ServerCaps{});
    ASSERT_EQ(issues.size(), 1u) << add[2];
    EXPECT_EQ(issues[0].kind, control::FailureKind::kConflict);
  }
}

TEST(PestoCli, DeletingAnotherContainersTargetFails) {
  TableSet added = run(TableSet{}, with_sock({"--add", "-t", "0.0.0.0/8080:10.88.0.5/80"}));
  Plan del = plan_of(with_sock({"--delete", "-t", "0.0.0.0/8080:10.88.0.6/80"}));
  auto after = apply_edits(added, del.edits, SpecContext{});
  ASSERT_FALSE(after.ok());
  EXPECT_NE(after.error().message.find("(no such rule)"), std::string::npos)
      << after.error().message;
}

TEST(PestoCli, ExclusionsWinOverAPortNamedTwice) {
  TableSet t = run(TableSet{}, with_sock({"-t", "15100-15101,~15100,15100"}));
  EXPECT_EQ(host(t), (Texts{"TCP [*]:15101 => 15101"}));
}

TEST(PestoCli, IstioStyleUnbracketedAddresses) {
  TableSet t = run(TableSet{}, with_sock({"--add", "--tcp-ports", "::1/15001:::1/16001"}));
  EXPECT_EQ(host(t), (Texts{"TCP [::1]:15001 => ::1:16001"}));
}

TEST(PestoCli, PestoManPageSequence) {
  // pesto(1): -A -t 2000 -C HOST -A -T 3000 -t 2001 (-C with pesto's HOST).
  Plan p = plan_of(with_sock({"-A", "-t", "2000", "-C", "HOST", "-A", "-T", "3000", "-t", "2001"}));
  auto t = apply_edits(TableSet{}, p.edits, SpecContext{});
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(host(*t), (Texts{"TCP [*]:2001 => 2001"}));
  ASSERT_EQ(t->of(Pif::kSplice).rules.size(), 1u);
  EXPECT_EQ(format_rule(t->of(Pif::kSplice).rules[0]), "TCP [*]%lo:3000 => 3000");
}

}  // namespace
}  // namespace sluice
