// Rules and tables for unit tests, built from text the way a reader of the
// test thinks of them ("0.0.0.0", ports, a target), in one place.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "schema/model.h"

namespace sluice::test {

/// A TCP rule on `listen` (or dual-stack "*") for ports first..last to `to`,
/// at `target` ("" for the default target). A bad address fails the test.
inline Rule make_rule(const char* listen, uint16_t first, uint16_t last, uint16_t to,
                      const char* target = "") {
  Rule r;
  if (std::string(listen) == "*") {
    r.dual_stack = true;
  } else {
    EXPECT_TRUE(parse_addr(listen, &r.listen)) << listen;
  }
  r.first = first;
  r.last = last;
  r.to = to;
  if (*target != '\0') {
    EXPECT_TRUE(parse_addr(target, &r.target)) << target;
  }
  return r;
}

/// A table set holding `rules` in the HOST table, and nothing else.
inline TableSet host_table(std::vector<Rule> rules) {
  TableSet t;
  t.of(Pif::kHost).rules = std::move(rules);
  return t;
}

}  // namespace sluice::test
