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

/// Fails when two includes of the spec share a port: rules of one spec must
/// not conflict with each other. Reports the one written later, naming the
/// other. Sorts indices by first port, so it costs O(n log n).
Result<void> check_includes_disjoint(const SpecErrors& errs, const std::vector<Include>& includes) {
  std::vector<size_t> order(includes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return includes[a].source.first != includes[b].source.first
               ? includes[a].source.first < includes[b].source.first
               : a < b;
  });
  size_t reach = 0;  // the include with the highest last port so far
  for (size_t k = 1; k < order.size(); ++k) {
    const PortRange& prev = includes[order[reach]].source;
    const PortRange& cur = includes[order[k]].source;
    if (cur.first <= prev.last) {
      const PortRange& later = order[k] > order[reach] ? cur : prev;
      const PortRange& earlier = order[k] > order[reach] ? prev : cur;
      uint32_t lo = std::max(prev.first, cur.first);
      uint32_t hi = std::min(prev.last, cur.last);
      return errs.at(later.begin,
                     std::string(lo == hi ? "port " : "ports ") + range_text(lo, hi) +
                         (lo == hi ? " is" : " are") + " already forwarded by " +
                         range_text(earlier.first, earlier.last) + " at position " +
                         std::to_string(earlier.begin + 1) +
                         "; each port may appear only once in a spec, so remove or narrow one "
                         "of them");
    }
    if (cur.last > prev.last) reach = k;
  }
  return Ok();
}

/// Appends one rule per run, all made from `base`; `to_of_first` is where
/// port `source_first` goes. Fails when the table limit would be passed.
Result<void> emit_runs(const SpecErrors& errs, const Rule& base, const std::vector<Interval>& runs,
                       uint32_t source_first, uint32_t to_of_first, const Addr& target, bool weak,
                       std::vector<Rule>* rules) {
  for (const Interval& run : runs) {
    if (rules->size() >= kMaxRulesPerTable) {
      return errs.whole("the spec makes more than " + std::to_string(kMaxRulesPerTable) +
                        " rules, the limit of one table; merge its ranges or use fewer "
                        "exclusions (each exclusion inside a range splits it in two)");
    }
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

  auto disjoint = check_includes_disjoint(errs, parsed.includes);
  if (!disjoint) return Err(std::move(disjoint).error());

  Rule base = parsed.base;
  base.scan = parsed.scan;
  std::vector<Rule> rules;
  std::vector<Interval> runs;
  for (const Include& inc : parsed.includes) {
    runs.clear();
    subtract(inc.source.first, inc.source.last, excludes, &runs);
    auto emitted = emit_runs(errs, base, runs, inc.source.first, inc.to, inc.target, false, &rules);
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
