// The one rule validator, compiled into the client (fast feedback) and the
// worker (authority). The worker never trusts that the client ran it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "schema/control_types.h"
#include "schema/model.h"

namespace sluice {

// ServerCaps (what the server can do, from its Hello) is declared in schema/model.h.

/// Validates one rule on its own: ports (0, first > last, overflow of
/// to + last - first), interface name, dual-stack with a specific address,
/// IPv4 listen to IPv6 target, dual-stack to IPv4 target, multicast target,
/// SPLICE rules with an address or interface, and capabilities the server
/// lacks. Returns the failures found (empty when valid), each of kind invalid
/// and naming the rule (`index` fills `rule`, its listing text `text`).
std::vector<control::Failure> validate_rule(Pif pif, const Rule& rule, int index,
                                            const ServerCaps& caps);

/// Validates a whole table set: every rule, then conflicts within each table
/// (same protocol, overlapping ports, matching addresses; found by sorting, not
/// by comparing every pair), then limits (kMaxRulesPerTable,
/// kMaxListenersPerTable). Returns every issue found, in table and rule order.
std::vector<control::Failure> validate_tables(const TableSet& tables, const ServerCaps& caps);

/// True when two rules of one table conflict: same protocol, overlapping port
/// ranges, and matching addresses (either is dual-stack, either is the
/// unspecified address of the other's family, or both are equal). Interfaces,
/// targets and flags are ignored, as in pesto.
bool rules_conflict(const Rule& a, const Rule& b) noexcept;

}  // namespace sluice
