// The one rule check: everything that decides whether a table set may be
// committed, before any socket is asked for. sluicectl runs it with what it
// knows of the server (fast feedback, nothing sent when it fails); the worker
// runs it with authority and never trusts that the client did.
//
// In order, each step only when the ones before found nothing (a table that
// is malformed is not worth a policy verdict):
//   1. structure, limits and conflicts (validate_tables, policy/validate.h);
//   2. tables the server does not serve (their rules could never forward);
//   3. forwarding loops that are certain (see find_certain_loops), also
//      between a HOST and a SPLICE rule (find_cross_table_loops);
//   4. the target policy, when the caller knows it (the worker does).
#pragma once

#include <array>
#include <vector>

#include "policy/target_policy.h"
#include "schema/control_types.h"
#include "schema/model.h"

namespace sluice {

/// What the checking side knows about the server a commit goes to.
struct CommitFacts {
  /// What the server can do (from its Hello).
  ServerCaps caps;
  /// The tables the server serves, in Pif order (its Hello lists them).
  std::array<bool, kPifCount> served{true, true};
  /// True when HOST rules connect in the network namespace where HOST rules
  /// listen, so a loopback target can reach sluice's own listeners. Every
  /// server without a target namespace works this way.
  bool targets_share_namespace = true;
};

/// Checks a whole table set for commit. `target_policy` is the worker's
/// target policy, or nullptr where it is not known (sluicectl); then that step
/// is skipped. Returns every failure found (empty: the set may be committed),
/// each naming its pif, rule, listing text and, where one is at fault, port;
/// every message says what failed, why, and what to do.
std::vector<control::Failure> check_commit(const TableSet& tables, const CommitFacts& facts,
                                           const TargetPolicy* target_policy);

/// Finds the forwarding loops of the HOST table that are certain: a rule
/// whose target port is served by a listener of the same table at the target
/// address, where the target is loopback (the default target included) and
/// the listener is dual-stack, the wildcard of the target's family, or that
/// loopback address; or where the target is an address the table listens on
/// explicitly. Such a rule sends every connection back into sluice, which
/// multiplies it until descriptors run out. A listener bound to an interface
/// other than lo never sees sluice's own connections (they travel on lo).
/// A target that may or may not be a local address of a wildcard listener is
/// not refused (rules_needing_loop_guard). Returns one failure (kind invalid)
/// per looping rule, naming both rules; nothing when targets do not share the
/// namespace. O(n^2) in the rule count with cheap tests first; at most
/// kMaxRulesPerTable rules.
std::vector<control::Failure> find_certain_loops(const TableSet& tables, const CommitFacts& facts);

/// With a target namespace, finds the HOST rules whose connections a SPLICE
/// rule sends straight back: a HOST rule forwards port p to port q of the
/// namespace's loopback (its default target, or a loopback address), a
/// SPLICE rule listens on q there and forwards to port p of this side's
/// loopback, where the HOST rule listens (`-t 8080 -T 8080`). Every
/// connection would circle between the two and multiply. Returns one
/// failure (kind invalid) per such HOST rule, naming both rules and the
/// first looping port; nothing without a target namespace. Longer cycles
/// (through more rules) are not looked for. O(n * m) in the two tables.
std::vector<control::Failure> find_cross_table_loops(const TableSet& tables,
                                                     const CommitFacts& facts);

/// For each rule of the HOST table, true when its connections may come back
/// into sluice although find_certain_loops let it pass: its target is an
/// explicit address that is not loopback, and a wildcard (or dual-stack)
/// listener of the table, not bound to another interface, serves a port of
/// the target range, so the target may be one of the host's own addresses.
/// With a target namespace (targets do not share the namespace), the target
/// may be an address of this host that the namespace routes back to: a
/// listener of the table on that address or its family's wildcard, bound to
/// an interface or not, serving a port of the target range counts too. The
/// forwarder guards such rules at run time (a connection or datagram that
/// arrives from one of sluice's own outgoing sockets is reset or dropped).
std::vector<bool> rules_needing_loop_guard(const Table& table, const CommitFacts& facts);

}  // namespace sluice
