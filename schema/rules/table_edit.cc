#include "schema/rules/table_edit.h"

#include <algorithm>
#include <array>
#include <utility>

#include "base/strings.h"
#include "schema/rules/scan.h"

namespace sluice {
namespace {

using spec_detail::range_text;

/// Limit: missing port ranges named in one -D error. The first few are enough
/// to see the mistake; the rest are counted.
constexpr size_t kMaxMissingNamed = 8;

/// The current meaning of a spec: replace (before any -A/-D), append or delete.
enum class Mode { kReplace, kAppend, kDelete };

/// Returns the listen part of `rule` as the listing shows it: "[*]",
/// "[192.0.2.1]", with "%ifname" when it has one.
std::string listen_text(const Rule& rule) {
  std::string out = rule.dual_stack ? "[*]" : "[" + format_addr(rule.listen) + "]";
  if (!rule.ifname.empty()) out += "%" + sanitize(rule.ifname);
  return out;
}

/// True when `rule` listens where `what` does: same protocol, listen
/// address, dual-stack flag and interface.
bool same_listener(const Rule& rule, const Rule& what) {
  return rule.proto == what.proto && rule.listen == what.listen &&
         rule.dual_stack == what.dual_stack && rule.ifname == what.ifname;
}

/// Returns the sub-ranges of first..last that no interval in `covered`
/// (unsorted, inclusive) reaches, in ascending order.
std::vector<std::pair<uint32_t, uint32_t>> uncovered(
    uint32_t first, uint32_t last, std::vector<std::pair<uint32_t, uint32_t>> covered) {
  std::sort(covered.begin(), covered.end());
  std::vector<std::pair<uint32_t, uint32_t>> out;
  uint32_t next = first;  // lowest port not yet known to be covered
  for (const auto& [lo, hi] : covered) {
    if (next > last) break;
    if (hi < next) continue;
    if (lo > next) out.emplace_back(next, std::min(lo - 1, last));
    next = std::max(next, hi + 1);
  }
  if (next <= last) out.emplace_back(next, last);
  return out;
}

/// Returns the message for ports of `what` that no matching rule forwards:
/// which ports, and the rule that forwards the first of them elsewhere, if any.
std::string missing_message(const Table& table, const Rule& what, const char* label,
                            const std::vector<std::pair<uint32_t, uint32_t>>& missing) {
  size_t ports = 0;
  for (const auto& [lo, hi] : missing) ports += hi - lo + 1;
  std::string list;
  for (size_t i = 0; i < missing.size() && i < kMaxMissingNamed; ++i) {
    if (i > 0) list += ", ";
    list += range_text(missing[i].first, missing[i].second);
  }
  if (missing.size() > kMaxMissingNamed) {
    list += " and " + std::to_string(missing.size() - kMaxMissingNamed) + " more ranges";
  }
  std::string msg = std::string(proto_name(what.proto)) + (ports == 1 ? " port " : " ports ") +
                    list + " on " + listen_text(what) + (ports == 1 ? " is" : " are") +
                    " not forwarded in " + label + ", so " + (ports == 1 ? "it" : "they") +
                    " cannot be deleted; nothing was changed";
  // A rule that forwards the first missing port on another address or
  // interface is the usual mistake: point at it.
  uint32_t port = missing.front().first;
  for (size_t i = 0; i < table.rules.size(); ++i) {
    const Rule& r = table.rules[i];
    if (r.proto == what.proto && r.first <= port && port <= r.last) {
      msg += "; " + std::string(label) + " rule " + std::to_string(i) + " (" +
             sanitize(format_rule(r)) + ") forwards port " + std::to_string(port) + " on " +
             listen_text(r) + ": to delete from it, give that listen part (e.g. " +
             (r.dual_stack ? std::string("*") : format_addr(r.listen)) +
             (r.ifname.empty() ? "" : "%" + sanitize(r.ifname)) + "/" + std::to_string(port) + ")";
      return msg;
    }
  }
  return msg + "; list the rules with sluicectl and delete only ports that are forwarded";
}

/// Returns the first rule of `table` with protocol `proto`, or nullptr.
const Rule* first_of_proto(const Table& table, Proto proto) {
  for (const Rule& r : table.rules) {
    if (r.proto == proto) return &r;
  }
  return nullptr;
}

/// Returns "FILE:LINE: " for commands from --file, else "".
std::string origin_prefix(const EditCommand& command) {
  return command.origin.empty() ? std::string() : command.origin + ": ";
}

}  // namespace

std::string describe_spec(const EditCommand& command, bool deleting) {
  std::string out = deleting ? "-D -" : "-";
  out += command.option;
  out += " '" + sanitize(command.spec, kMaxQuotedBytes) + "'";
  return out;
}

Result<void> delete_ports(Table* table, const Rule& what, const char* label) {
  CHECK(what.first <= what.last);
  std::vector<std::pair<uint32_t, uint32_t>> covered;
  for (const Rule& r : table->rules) {
    if (same_listener(r, what) && r.first <= what.last && what.first <= r.last) {
      covered.emplace_back(r.first, r.last);
    }
  }
  auto missing = uncovered(what.first, what.last, std::move(covered));
  if (!missing.empty()) return Err(missing_message(*table, what, label, missing));

  std::vector<Rule> out;
  out.reserve(table->rules.size() + 1);
  for (const Rule& r : table->rules) {
    if (!same_listener(r, what) || r.last < what.first || what.last < r.first) {
      out.push_back(r);
      continue;
    }
    // Keep the part below and the part above the deleted ports, each with
    // its ports still mapped to the same target ports.
    if (r.first < what.first) {
      Rule below = r;
      below.last = static_cast<uint16_t>(what.first - 1);
      out.push_back(below);
    }
    if (what.last < r.last) {
      Rule above = r;
      above.first = static_cast<uint16_t>(what.last + 1);
      // Modulo 2^16 like the rule's own mapping; a valid rule never wraps.
      above.to = static_cast<uint16_t>(r.to + (above.first - r.first));
      out.push_back(above);
    }
  }
  table->rules = std::move(out);
  return Ok();
}

Result<TableSet> apply_edits(const TableSet& tables, const std::vector<EditCommand>& edits,
                             const SpecContext& ctx) {
  TableSet out = tables;
  Mode mode = Mode::kReplace;
  std::array<bool, kPifCount> replaced{};  // the replace batch has emptied this table
  // none_given[pif][proto]: a "none" spec said this table has no rules of
  // that protocol; a later spec adding one contradicts it.
  std::array<std::array<const EditCommand*, 2>, kPifCount> none_given{};

  for (const EditCommand& command : edits) {
    switch (command.kind) {
      case EditCommand::Kind::kAppend:
        mode = Mode::kAppend;
        continue;
      case EditCommand::Kind::kDelete:
        mode = Mode::kDelete;
        continue;
      case EditCommand::Kind::kClear: {
        size_t pif = static_cast<size_t>(command.pif);
        CHECK(pif < kPifCount);
        out.tables[pif].rules.clear();
        none_given[pif] = {};
        continue;
      }
      case EditCommand::Kind::kSpec:
        break;
    }

    auto rules = parse_spec(command.option, command.spec, ctx);
    if (!rules) return Err(origin_prefix(command) + rules.error().message);
    Pif pif = option_pif(command.option);
    Proto proto = option_proto(command.option);
    size_t p = static_cast<size_t>(pif);
    Table& table = out.tables[p];
    const char* label = pif_name(pif);

    if (mode == Mode::kDelete) {
      // "-D -t none" deletes nothing, as "none" adds nothing.
      for (const Rule& rule : *rules) {
        auto deleted = delete_ports(&table, rule, label);
        if (!deleted) {
          return Err(origin_prefix(command) + describe_spec(command, true) + ": " +
                     deleted.error().message);
        }
      }
      continue;
    }

    if (mode == Mode::kReplace && !replaced[p]) {
      table.rules.clear();
      replaced[p] = true;
    }
    size_t proto_index = static_cast<size_t>(proto);
    if (rules->empty()) {  // "none": parse_spec yields no rules for nothing else
      if (const Rule* existing = first_of_proto(table, proto)) {
        std::string fix =
            mode == Mode::kReplace
                ? std::string("drop 'none' or the other -") + command.option + " specs"
                : std::string("drop 'none', or remove those rules first (-C ") + label +
                      ", or -D -" + command.option + " with their ports)";
        return Err(origin_prefix(command) + describe_spec(command, false) + ": " + label +
                   " already has " + proto_name(proto) + " rules (" +
                   sanitize(format_rule(*existing)) + "), and 'none' says it has none; " + fix);
      }
      none_given[p][proto_index] = &command;
      continue;
    }
    if (const EditCommand* none = none_given[p][proto_index]) {
      return Err(origin_prefix(command) + describe_spec(command, false) + ": it adds " +
                 proto_name(proto) + " rules to " + label + " after " +
                 describe_spec(*none, false) +
                 (none->origin.empty() ? "" : " (" + none->origin + ")") +
                 " said there are none; drop one of the two");
    }
    table.rules.insert(table.rules.end(), rules->begin(), rules->end());
  }
  return out;
}

}  // namespace sluice
