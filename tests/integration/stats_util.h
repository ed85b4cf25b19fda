// Reading `sluicectl --stats --json` in integration tests (stats, limits).
#pragma once

#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "tests/integration/daemon.h"
#include "tests/json_check.h"

namespace sluice::test {

/// Finds the rule whose text contains `needle` in a --stats --json document.
inline const JsonValue* rule_with(const JsonValue& doc, const std::string& needle) {
  const JsonValue* rules = doc.get("rules");
  if (rules == nullptr) return nullptr;
  for (const JsonValue& r : rules->array) {
    if (r.get("text") != nullptr && r.get("text")->string.find(needle) != std::string::npos) {
      return &r;
    }
  }
  return nullptr;
}

/// Runs sluicectl --stats --json and parses it.
inline std::optional<JsonValue> stats_json(Daemon& d) {
  RunResult r = d.ctl({"--stats", "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  return parse_json(r.out);
}

}  // namespace sluice::test
