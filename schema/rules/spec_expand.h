// The second half of the spec parser: a spec as written (its listen part and
// its chunks) becomes rules. Exclusions are applied, "all" ports are worked
// out from the server's ephemeral range, and the rule count is capped.
// Internal to schema/rules/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "schema/model.h"
#include "schema/rules/scan.h"
#include "schema/rules/spec_parser.h"

namespace sluice::spec_detail {

/// A port range as written: `first`..`last` (first <= last <= kMaxPort, 0
/// allowed; callers decide whether port 0 is acceptable), and the offsets of
/// its text [begin, end).
struct PortRange {
  uint32_t first = 0;
  uint32_t last = 0;
  size_t begin = 0;
  size_t end = 0;

  /// Returns the number of ports in the range.
  uint32_t size() const { return last - first + 1; }
};

/// One include chunk: RANGE [":" TADDR "/" RANGE | ":" TADDR | ":" RANGE].
struct Include {
  PortRange source;  // first >= 1
  uint32_t to = 0;   // the port source.first goes to; to + size - 1 <= kMaxPort
  Addr target{};     // all zero: the default target
};

/// A spec as written, before expansion.
struct ParsedSpec {
  Rule base;                        // proto, listen, ifname, dual_stack; ports unset
  std::vector<Include> includes;    // in spec order
  std::vector<PortRange> excludes;  // "~RANGE" chunks, in spec order
  bool all = false;                 // an "all" chunk was given
  Addr all_target{};                // its target (all zero: the default)
  bool scan = false;                // an "auto" chunk was given
};

/// Turns a parsed spec into rules: each include split around the exclusions
/// (one rule per maximal run, `to` shifted to keep the mapping), then, when
/// the spec has no include or has "all", the weak rules covering 1-kMaxPort
/// minus the ephemeral range of `ctx`, the exclusions and the includes.
/// Exclusions win: a port an exclusion removes may be named by several
/// includes. Fails when two includes share a port that no exclusion removes,
/// when nothing is left to forward, or when the spec would make more than
/// kMaxRulesPerTable rules.
Result<std::vector<Rule>> expand_spec(const SpecErrors& errs, const ParsedSpec& parsed,
                                      const SpecContext& ctx);

}  // namespace sluice::spec_detail
