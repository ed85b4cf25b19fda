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

/// True when `rule` forwards each port it shares with `what` exactly as
/// `what` does: same listener, target address, target port and flags. This
/// is pesto's exact match, widened to the ports two rules share.
bool same_forwarding(const Rule& rule, const Rule& what) {
  return same_listener(rule, what) && rule.target == what.target && rule.weak == what.weak &&
         rule.scan == what.scan &&
         static_cast<uint16_t>(rule.to - rule.first) == static_cast<uint16_t>(what.to - what.first);
}

/// True when `a` and `b` listen on overlapping addresses, as the validator's
/// conflict check has it: either is dual-stack, either is the unspecified
/// address of the other's family, or both are equal. Interfaces are ignored.
bool addresses_overlap(const Rule& a, const Rule& b) {
  if (a.dual_stack || b.dual_stack || a.listen == b.listen) return true;
  if (addr_is_v4(a.listen) != addr_is_v4(b.listen)) return false;
  return addr_is_unspecified(a.listen) || addr_is_unspecified(b.listen);
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

/// Returns an address as a spec writes it: IPv4 dotted, IPv6 in brackets.
std::string spec_addr(const Addr& addr) {
  return addr_is_v4(addr) ? format_addr(addr) : "[" + format_addr(addr) + "]";
}

/// Returns where `rule` sends ports first..last, and how: "port 80 of the
/// default target", "10.88.0.5:80-84", "[fd00::5]:80", with ", best effort"
/// and ", with auto-scan" for its flags.
std::string forwarding_text(const Rule& rule, uint32_t first, uint32_t last) {
  uint32_t to = static_cast<uint16_t>(rule.to + (first - rule.first));
  uint32_t to_last = to + (last - first);
  std::string out = is_default_target(rule.target)
                        ? (first == last ? "port " : "ports ") + range_text(to, to_last) +
                              " of the default target"
                        : spec_addr(rule.target) + ":" + range_text(to, to_last);
  if (rule.weak) out += ", best effort";
  if (rule.scan) out += ", with auto-scan";
  return out;
}

/// Returns a spec that -D can delete ports first..last of `rule` with, in
/// table `pif`: its listen part (none for SPLICE or a plain dual-stack rule),
/// the ports and its target; "all" for a best-effort rule, which no port
/// list can name; ",auto" for scan. Unquoted: a message quotes it with
/// shell_word, since "*" and "[...]" would glob.
std::string delete_spec(const Rule& rule, Pif pif, uint32_t first, uint32_t last) {
  std::string out;
  if (pif == Pif::kHost && (!rule.dual_stack || !rule.ifname.empty())) {
    out = (rule.dual_stack ? std::string("*") : spec_addr(rule.listen)) +
          (rule.ifname.empty() ? "" : "%" + sanitize(rule.ifname)) + "/";
  }
  bool default_target = is_default_target(rule.target);
  if (rule.weak) {
    out += "all";
    if (!default_target) out += ":" + spec_addr(rule.target);
  } else {
    uint32_t to = static_cast<uint16_t>(rule.to + (first - rule.first));
    uint32_t to_last = to + (last - first);
    out += range_text(first, last);
    if (!default_target) {
      out += ":" + spec_addr(rule.target) + "/" + range_text(to, to_last);
    } else if (to != first) {
      out += ":" + range_text(to, to_last);
    }
  }
  if (rule.scan) out += ",auto";
  return out;
}

/// Returns what `rule` does otherwise than `what`, for the -D error: "its
/// target", "its listen address and flags", ...; "" when nothing differs.
std::string differences(const Rule& rule, const Rule& what) {
  std::vector<std::string> parts;
  if (rule.listen != what.listen || rule.dual_stack != what.dual_stack) {
    parts.emplace_back("listen address");
  }
  if (rule.ifname != what.ifname) parts.emplace_back("interface");
  const bool address = rule.target != what.target;
  const bool port =
      static_cast<uint16_t>(rule.to - rule.first) != static_cast<uint16_t>(what.to - what.first);
  if (address && port) parts.emplace_back("target (address and port)");
  if (address && !port) parts.emplace_back("target address");
  if (!address && port) parts.emplace_back("target port");
  if (rule.weak != what.weak || rule.scan != what.scan) parts.emplace_back("flags");
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    out += i == 0 ? "its " : i + 1 == parts.size() ? " and " : ", ";
    out += parts[i];
  }
  return out;
}

/// Returns the option that edits `proto` rules of table `pif`: "-t", "-u",
/// "-T" or "-U".
std::string option_of(Pif pif, Proto proto) {
  if (pif == Pif::kSplice) return proto == Proto::kTcp ? "-T" : "-U";
  return proto == Proto::kTcp ? "-t" : "-u";
}

/// Returns the message for ports of `what` that no rule forwards exactly as
/// `what` does (-D's rule): which ports ("no such rule"), and the rule that
/// forwards the first of them otherwise, if any, with the spec that would
/// delete from it.
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
  // Always where the spec sends the ports, even for a plain one: a plain
  // spec means the same port of the default target, and a rule that listens
  // there but goes elsewhere is no match.
  std::string how = " to " + forwarding_text(what, what.first, what.last);
  std::string msg = std::string(proto_name(what.proto)) + (ports == 1 ? " port " : " ports ") +
                    list + " on " + listen_text(what) + (ports == 1 ? " is" : " are") +
                    " not forwarded" + how + " in " + label + " (no such rule), so " +
                    (ports == 1 ? "it" : "they") + " cannot be deleted; nothing was changed";
  // A rule that forwards the first missing port otherwise is the usual
  // mistake: point at it, preferring one that listens where `what` does,
  // then one whose address overlaps (pesto: "conflicts with rule ..., but
  // doesn't match it"), then any.
  uint32_t port = missing.front().first;
  const Rule* best = nullptr;
  size_t best_index = 0;
  int best_rank = -1;
  for (size_t i = 0; i < table.rules.size(); ++i) {
    const Rule& r = table.rules[i];
    if (r.proto != what.proto || port < r.first || r.last < port) continue;
    int rank = same_listener(r, what) ? 2 : addresses_overlap(r, what) ? 1 : 0;
    if (rank > best_rank) {
      best = &r;
      best_index = i;
      best_rank = rank;
    }
  }
  if (best != nullptr) {
    const Rule& r = *best;
    size_t i = best_index;
    uint32_t first = std::max<uint32_t>(r.first, what.first);
    uint32_t last = std::min<uint32_t>(r.last, what.last);
    // A best-effort rule is deleted whole ("all"), whatever ports it is
    // asked for.
    const bool whole = r.weak || (first == r.first && last == r.last);
    std::string differs = differences(r, what);
    return msg + "; " + label + " rule " + std::to_string(i) + " (" + sanitize(format_rule(r)) +
           ") forwards port " + std::to_string(port) + " on " + listen_text(r) + " to " +
           forwarding_text(r, port, port) +
           (differs.empty() ? "" : ", so it differs in " + differs) +
           ": -D deletes only what matches a rule in listen address, interface, target and "
           "flags, as pesto's does; to delete " +
           (whole ? std::string("it")
                  : (first == last ? "port " : "ports ") + range_text(first, last) + " from it") +
           ", write -D " + option_of(table.pif, what.proto) + " " +
           shell_word(delete_spec(r, table.pif, first, last));
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
    if (same_forwarding(r, what) && r.first <= what.last && what.first <= r.last) {
      covered.emplace_back(r.first, r.last);
    }
  }
  auto missing = uncovered(what.first, what.last, std::move(covered));
  if (!missing.empty()) return Err(missing_message(*table, what, label, missing));

  std::vector<Rule> out;
  out.reserve(table->rules.size() + 1);
  for (const Rule& r : table->rules) {
    if (!same_forwarding(r, what) || r.last < what.first || what.last < r.first) {
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
