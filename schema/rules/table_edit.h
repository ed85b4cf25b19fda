// Table edits as in pesto(1): sluicectl reads the server's tables, applies the
// command line's -t/-u/-T/-U specs and -A/-D/-C commands to a copy, in order,
// and sends the whole result as the new shadow table. See docs/RULES.md,
// "Edits", for the semantics and where they improve on upstream. Plain model
// in, plain model out: the SpecContext comes from the caller (sluicectl
// builds it from the server's Hello), and the caller validates the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "schema/model.h"
#include "schema/rules/spec_parser.h"

namespace sluice {

/// One command of an edit sequence, in command-line order.
struct EditCommand {
  enum class Kind : uint8_t {
    kSpec,    // -t/-u/-T/-U SPEC: replace, append or delete, by the current mode
    kAppend,  // -A: the specs that follow append
    kDelete,  // -D: the specs that follow delete
    kClear,   // -C PIF: empty a table
  };
  Kind kind = Kind::kSpec;
  char option = 't';     // kSpec: t, u, T or U
  std::string spec;      // kSpec: the SPEC text as given
  Pif pif = Pif::kHost;  // kClear: the table to empty
  std::string origin;    // "" on the command line, "FILE:LINE" from --file

  bool operator==(const EditCommand&) const = default;
};

/// Applies `edits` to a copy of `tables`, in order, and returns the result:
/// - Specs before any -A/-D replace their table: the first -t/-u empties HOST
///   (TCP and UDP rules alike, as upstream), the first -T/-U empties SPLICE,
///   each once; the specs then append.
/// - After -A, specs append; after -D, they delete; -C PIF empties PIF.
/// - "none" adds nothing, and fails when the table already has a rule of its
///   protocol, or when a later spec adds one.
/// - -D follows pesto: a spec deletes a rule that matches it exactly (listen
///   address or dual-stack, interface, ports, target address and port, and
///   flags). sluice also deletes part of a rule where all else matches: that
///   rule is split around the deleted ports, keeping its mapping, target and
///   flags.
/// Fails, with nothing applied, on the first spec that does not parse
/// (parse_spec's message) or cannot be applied (a port not forwarded, a
/// misplaced none); the message starts with the origin ("FILE:LINE: ") of
/// commands from --file. The result is not validated: call validate_tables.
Result<TableSet> apply_edits(const TableSet& tables, const std::vector<EditCommand>& edits,
                             const SpecContext& ctx);

/// Removes from `table` the ports first..last of `what` wherever a rule
/// forwards them exactly as `what` does: same protocol, listen address,
/// dual-stack flag, interface, target address, target port of each port, and
/// flags (weak, scan). A rule equal to `what` goes (pesto's exact match); a
/// rule that also covers other ports is cut into the parts before and after,
/// in its place, with `to` shifted so every remaining port keeps its target
/// port. Fails, leaving `table` unchanged, when some of those ports are not
/// forwarded that way: the message says there is no such rule, names the
/// ports and where `what` sends them (the default target included), points
/// at a rule that forwards the first of them otherwise (another address,
/// interface, target or flags), if there is one, says in what it differs,
/// and gives the -D spec that would delete from it. `label` is the table name used in messages
/// ("HOST").
Result<void> delete_ports(Table* table, const Rule& what, const char* label);

/// Returns how a spec command reads on the command line, for messages:
/// "-t '22'", or "-D -t '22'" when `deleting`.
std::string describe_spec(const EditCommand& command, bool deleting);

}  // namespace sluice
