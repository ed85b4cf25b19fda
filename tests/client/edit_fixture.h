// Tables for the client's tests, made with the real edits (schema/rules).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "schema/rules/table_edit.h"

namespace sluice {

/// A spec command: `option` (t, u, T, U) with its spec `text`.
inline EditCommand spec(char option, const std::string& text) {
  EditCommand c;
  c.option = option;
  c.spec = text;
  return c;
}

/// Tables made by `edits` from empty tables; empty tables (and a test
/// failure) when the edits are refused.
inline TableSet make(const std::vector<EditCommand>& edits) {
  auto t = apply_edits(TableSet{}, edits, SpecContext{});
  EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().message);
  return t.ok() ? *t : TableSet{};
}

}  // namespace sluice
