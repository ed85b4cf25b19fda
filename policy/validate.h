// The one rule validator, compiled into the client (fast feedback) and the
// worker (authority). The worker never trusts that the client ran it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "schema/model.h"

namespace sluice {

// ServerCaps (what the server can do, from its Hello) is declared in schema/model.h.

/// Why a table was rejected. Matches the failure kinds of the control protocol.
enum class IssueKind { kInvalid, kConflict, kCapacity, kPolicyDenied };

/// One reason a table set is invalid.
struct ValidationIssue {
  IssueKind kind = IssueKind::kInvalid;
  Pif pif = Pif::kHost;
  int rule = -1;        // index in its table, -1 when the whole table is at fault
  int other_rule = -1;  // the other rule of a conflict, else -1
  uint16_t port = 0;    // the port at fault (a policy denial), else 0
  std::string message;  // complete: names the rule(s) in listing format and says what to do
};

/// Validates one rule on its own: ports (0, first > last, overflow of
/// to + last - first), interface name, dual-stack with a specific address,
/// IPv4 listen to IPv6 target, dual-stack to IPv4 target, multicast target,
/// SPLICE rules with an address or interface, and capabilities the server
/// lacks. Returns the issues found (empty when valid); `index` fills `rule`.
std::vector<ValidationIssue> validate_rule(Pif pif, const Rule& rule, int index,
                                           const ServerCaps& caps);

/// Validates a whole table set: every rule, then conflicts within each table
/// (same protocol, overlapping ports, matching addresses; found by sorting, not
/// by comparing every pair), then limits (kMaxRulesPerTable,
/// kMaxListenersPerTable). Returns every issue found, in table and rule order.
std::vector<ValidationIssue> validate_tables(const TableSet& tables, const ServerCaps& caps);

/// True when two rules of one table conflict: same protocol, overlapping port
/// ranges, and matching addresses (either is dual-stack, either is the
/// unspecified address of the other's family, or both are equal). Interfaces,
/// targets and flags are ignored, as in pesto.
bool rules_conflict(const Rule& a, const Rule& b) noexcept;

}  // namespace sluice
