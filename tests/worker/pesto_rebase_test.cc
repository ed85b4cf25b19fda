// rebase_update(): a pesto client's update is the whole table it wants; when
// nobody committed since its hello that is what gets committed, and when a
// sluicectl client did, only the client's own edit (what it added and what it
// removed) is applied to the tables in force, so neither commit is lost.
#include <gtest/gtest.h>

#include <vector>

#include "tests/rule_util.h"
#include "worker/pesto_server.h"

namespace sluice {
namespace {

/// A wire table of HOST holding `rules` (records in canonical form).
pesto::WireTable wire_host(const std::vector<Rule>& rules) {
  pesto::WireTable t;
  t.pif = Pif::kHost;
  for (const Rule& r : rules) t.rules.push_back({r, pesto::encode_rule(r)});
  return t;
}

/// An offer of the HOST table holding `rules`.
PestoOffer offer_of(const std::vector<Rule>& rules) {
  PestoOffer offer;
  offer.tables = {wire_host(rules)};
  return offer;
}

/// Four distinct rules, made inside a test (make_rule may fail it).
class PestoRebase : public ::testing::Test {
 protected:
  const Rule kA = test::make_rule("0.0.0.0", 8080, 8080, 80, "10.88.0.5");
  const Rule kB = test::make_rule("0.0.0.0", 8081, 8081, 80, "10.88.0.6");
  const Rule kC = test::make_rule("0.0.0.0", 8082, 8082, 80, "10.88.0.7");
  const Rule kD = test::make_rule("127.0.0.1", 9000, 9000, 90);
};

TEST_F(PestoRebase, UnchangedTablesTakeTheUpdateAsItIs) {
  const TableSet current = test::host_table({kA, kB});
  // The client deleted A and added C, D; the order it chose is kept.
  TableSet out = rebase_update(offer_of({kA, kB}), {wire_host({kD, kB, kC})}, current);
  EXPECT_EQ(out.of(Pif::kHost).rules, (std::vector<Rule>{kD, kB, kC}));
}

TEST_F(PestoRebase, AnOfferedTableLeftOutIsEmptied) {
  TableSet out = rebase_update(offer_of({kA, kB}), {}, test::host_table({kA, kB}));
  EXPECT_TRUE(out.of(Pif::kHost).rules.empty());
}

TEST_F(PestoRebase, TablesNotOfferedKeepTheirRules) {
  TableSet current = test::host_table({kA});
  current.of(Pif::kSplice).rules = {kD};
  TableSet out = rebase_update(offer_of({kA}), {wire_host({kA, kB})}, current);
  EXPECT_EQ(out.of(Pif::kHost).rules, (std::vector<Rule>{kA, kB}));
  EXPECT_EQ(out.of(Pif::kSplice).rules, (std::vector<Rule>{kD}));
}

TEST_F(PestoRebase, ACommitSinceTheHelloKeepsBothEdits) {
  // The hello had A, B; meanwhile sluicectl added C; the client removed A
  // and added D. Neither C nor the client's edit is lost.
  TableSet out =
      rebase_update(offer_of({kA, kB}), {wire_host({kB, kD})}, test::host_table({kA, kB, kC}));
  EXPECT_EQ(out.of(Pif::kHost).rules, (std::vector<Rule>{kB, kC, kD}));
}

TEST_F(PestoRebase, AnEditAlreadyMadeMeanwhileIsNotRepeated) {
  // sluicectl removed A and added D, exactly what the client then asks for.
  TableSet out =
      rebase_update(offer_of({kA, kB}), {wire_host({kB, kD})}, test::host_table({kB, kD}));
  EXPECT_EQ(out.of(Pif::kHost).rules, (std::vector<Rule>{kB, kD}));
}

TEST_F(PestoRebase, DuplicatesAreRemovedOncePerRemoval) {
  // Equal rules are counted: removing one of two copies leaves the other.
  TableSet out = rebase_update(offer_of({kA, kA, kB}), {wire_host({kA, kB})},
                               test::host_table({kA, kA, kB, kC}));
  EXPECT_EQ(out.of(Pif::kHost).rules, (std::vector<Rule>{kA, kB, kC}));
}

}  // namespace
}  // namespace sluice
