#include "schema/rules/spec_expand.h"

#include <algorithm>

namespace sluice::spec_detail {
namespace {

/// A closed interval of ports.
struct Interval {
  uint32_t first = 0;
  uint32_t last = 0;
};

/// Sorts `intervals` and merges the ones that overlap or touch, so that the
/// result is sorted, disjoint and separated by at least one port.
std::vector<Interval> merge_intervals(std::vector<Interval> intervals) {
  std::sort(intervals.begin(), intervals.end(),
            [](const Interval& a, const Interval& b) { return a.first < b.first; });
  std::vector<Interval> out;
  for (const Interval& iv : intervals) {
    if (!out.empty() && iv.first <= out.back().last + 1) {
      out.back().last = std::max(out.back().last, iv.last);
    } else {
      out.push_back(iv);
    }
  }
  return out;
}

/// Appends to `runs` the maximal runs of [first, last] that no interval of
/// `holes` (sorted, disjoint) covers. Costs O(log |holes| + runs).
void subtract(uint32_t first, uint32_t last, const std::vector<Interval>& holes,
              std::vector<Interval>* runs) {
  // The first hole that could touch [first, last]: the first one ending at or after `first`.
  auto it = std::lower_bound(holes.begin(), holes.end(), first,
                             [](const Interval& h, uint32_t port) { return h.last < port; });
  uint32_t next = first;
  for (; it != holes.end() && it->first <= last; ++it) {
    if (it->first > next) runs->push_back(Interval{next, it->first - 1});
    next = std::max(next, it->last + 1);
    if (next > last) return;
  }
  if (next <= last) runs->push_back(Interval{next, last});
}

/// A run of ports an include forwards once the exclusions are taken out,
/// and the index of that include in the spec.
struct IncludeRun {
  Interval ports;
  size_t include = 0;
};

/// Fails when two includes of the spec still share a port once the
/// exclusions are taken out (`runs`, each include's runs in order): rules of
/// one spec must not conflict with each other. A port that an exclusion
/// removes may be named twice ("15100-15101,~15100,15100"), as in pasta.
/// Reports the include written later, naming the other. Sorts, so it costs
/// O(n log n) in the number of runs.
Result<void> check_runs_disjoint(const SpecErrors& errs, const std::vector<Include>& includes,
                                 std::vector<IncludeRun> runs) {
  std::stable_sort(runs.begin(), runs.end(), [](const IncludeRun& a, const IncludeRun& b) {
    return a.ports.first < b.ports.first;
  });
  size_t reach = 0;  // the run with the highest last port so far
  for (size_t k = 1; k < runs.size(); ++k) {
    const IncludeRun& prev = runs[reach];
    const IncludeRun& cur = runs[k];
    if (cur.ports.first <= prev.ports.last) {
      const PortRange& later = includes[std::max(prev.include, cur.include)].source;
      const PortRange& earlier = includes[std::min(prev.include, cur.include)].source;
      uint32_t lo = std::max(prev.ports.first, cur.ports.first);
      uint32_t hi = std::min(prev.ports.last, cur.ports.last);
      return errs.at(later.begin,
                     std::string(lo == hi ? "port " : "ports ") + range_text(lo, hi) +
                         (lo == hi ? " is" : " are") + " already forwarded by " +
                         range_text(earlier.first, earlier.last) + " at position " +
                         std::to_string(earlier.begin + 1) +
                         "; each port may appear only once in a spec, so remove or narrow one "
                         "of them");
    }
    if (cur.ports.last > prev.ports.last) reach = k;
  }
  return Ok();
}

/// Returns the error for a spec that would make more than kMaxRulesPerTable rules.
Unexpected too_many_rules(const SpecErrors& errs) {
  return errs.whole("the spec makes more than " + std::to_string(kMaxRulesPerTable) +
                    " rules, the limit of one table; merge its ranges or use fewer "
                    "exclusions (each exclusion inside a range splits it in two)");
}

/// Appends one rule per run, all made from `base`; `to_of_first` is where
/// port `source_first` goes. Fails when the table limit would be passed.
Result<void> emit_runs(const SpecErrors& errs, const Rule& base, const std::vector<Interval>& runs,
                       uint32_t source_first, uint32_t to_of_first, const Addr& target, bool weak,
                       std::vector<Rule>* rules) {
  for (const Interval& run : runs) {
    if (rules->size() >= kMaxRulesPerTable) return too_many_rules(errs);
    Rule rule = base;
    rule.first = static_cast<uint16_t>(run.first);
    rule.last = static_cast<uint16_t>(run.last);
    rule.to = static_cast<uint16_t>(to_of_first + (run.first - source_first));
    rule.target = target;
    rule.weak = weak;
    rules->push_back(std::move(rule));
  }
  return Ok();
}

}  // namespace

Result<std::vector<Rule>> expand_spec(const SpecErrors& errs, const ParsedSpec& parsed,
                                      const SpecContext& ctx) {
  std::vector<Interval> raw_excludes;
  raw_excludes.reserve(parsed.excludes.size());
  for (const PortRange& ex : parsed.excludes) raw_excludes.push_back(Interval{ex.first, ex.last});
  const std::vector<Interval> excludes = merge_intervals(std::move(raw_excludes));

  // Each include split around the exclusions; the runs are capped, since
  // every run becomes a rule, so overlapping includes cannot make many.
  std::vector<IncludeRun> include_runs;
  std::vector<Interval> runs;
  for (size_t i = 0; i < parsed.includes.size(); ++i) {
    const Include& inc = parsed.includes[i];
    runs.clear();
    subtract(inc.source.first, inc.source.last, excludes, &runs);
    if (include_runs.size() + runs.size() > kMaxRulesPerTable) return too_many_rules(errs);
    for (const Interval& run : runs) include_runs.push_back(IncludeRun{run, i});
  }
  auto disjoint = check_runs_disjoint(errs, parsed.includes, include_runs);
  if (!disjoint) return Err(std::move(disjoint).error());

  Rule base = parsed.base;
  base.scan = parsed.scan;
  std::vector<Rule> rules;
  for (const IncludeRun& run : include_runs) {
    const Include& inc = parsed.includes[run.include];
    auto emitted =
        emit_runs(errs, base, {run.ports}, inc.source.first, inc.to, inc.target, false, &rules);
    if (!emitted) return Err(std::move(emitted).error());
  }

  // "all", or a spec of only auto and exclusions: every port that is not
  // ephemeral, not excluded and not already named by an include, best effort.
  if (parsed.includes.empty() || parsed.all) {
    std::vector<Interval> holes = excludes;
    if (ctx.ephemeral_first <= ctx.ephemeral_last) {
      holes.push_back(Interval{ctx.ephemeral_first, ctx.ephemeral_last});
    }
    for (const Include& inc : parsed.includes) {
      holes.push_back(Interval{inc.source.first, inc.source.last});
    }
    holes = merge_intervals(std::move(holes));
    runs.clear();
    subtract(1, kMaxPort, holes, &runs);
    auto emitted = emit_runs(errs, base, runs, 0, 0, parsed.all_target, true, &rules);
    if (!emitted) return Err(std::move(emitted).error());
  }

  if (rules.empty()) {
    return errs.whole(
        "every port this spec names is excluded, so it forwards nothing; remove the exclusion "
        "(~) that covers it, or write none to forward nothing");
  }
  return rules;
}

}  // namespace sluice::spec_detail
