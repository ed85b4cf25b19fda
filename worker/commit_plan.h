// Commit planning: the pure part of a commit. Compares the listening sockets
// in force with the ones a new table set needs, by sorting (never a scan per
// port), and judges each rule once the broker has answered.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "schema/codec.h"
#include "schema/model.h"
#include "worker/port_scan.h"

namespace sluice {

/// The rule a listener key comes from.
struct KeyOrigin {
  Pif pif = Pif::kHost;
  uint32_t rule = 0;
  bool operator==(const KeyOrigin&) const = default;
};

/// A listener key of the new tables, with its rule.
struct PlannedKey {
  ListenerKey key;
  KeyOrigin origin;
};

/// The difference between the sockets in force and the ones needed.
struct CommitPlan {
  struct Keep {
    size_t installed;  // index into the installed keys
    KeyOrigin origin;  // the rule that takes the socket over
  };
  std::vector<Keep> keep;
  std::vector<PlannedKey> open;    // new sockets that can be bound next to the old ones
  std::vector<PlannedKey> rebind;  // new sockets that clash in the kernel with a closing one
  std::vector<size_t> close;       // installed indices to close
  std::vector<size_t> clashing;    // the subset of `close` that the rebinds replace
};

/// Returns every listener key `tables` needs with its rule, sorted by key. A
/// port of an auto-scan rule needs a socket only while its target port
/// (scan_target_port) is in `bound` of its table (HOST rules follow the
/// target namespace, SPLICE rules sluiced's side); without `bound`, no port
/// of a scan rule does.
std::vector<PlannedKey> planned_keys(const TableSet& tables, const PifPorts* bound = nullptr);

/// True when two listening sockets cannot both be bound: the same protocol
/// and port, compatible devices (either unbound or the same), and overlapping
/// addresses (a dual-stack socket overlaps every address; otherwise the same
/// family with either the wildcard or the same address).
bool kernel_clash(const ListenerKey& a, const ListenerKey& b) noexcept;

/// Plans a commit from the sorted keys in force to `next`, whose auto-scan
/// rules listen on the ports whose targets are in `bound` (planned_keys).
CommitPlan plan_commit(std::span<const ListenerKey> installed, const TableSet& next,
                       const PifPorts* bound = nullptr);

/// Plans an auto-scan change of the tables in force, `tables`: the sorted
/// keys in force `installed`, each opened for the rule `origins[i]`, stay as
/// they are unless their rule is an auto-scan rule; the keys of auto-scan
/// rules follow `bound` of their table. So a scan never retries the failed ports of other
/// weak rules, nor touches their sockets. O(n + m) after the sort of the
/// scan rules' keys.
CommitPlan plan_scan(std::span<const ListenerKey> installed, std::span<const KeyOrigin> origins,
                     const TableSet& tables, const PifPorts& bound);

/// Facts needed to word a bind failure.
struct BindContext {
  bool has_bind_cap = false;
  uint32_t unprivileged_port_start = 1024;
  /// The same facts in the target namespace, for SPLICE listeners.
  bool splice_has_bind_cap = false;
  uint32_t splice_unprivileged_port_start = 1024;
  /// True for the advice about a SPLICE listener (inside the target namespace).
  bool in_target_namespace = false;
  /// judge_rules(): the keys from this index on are rebinds (a rule moving
  /// to another address of its port); SIZE_MAX: none are.
  size_t first_rebind = SIZE_MAX;
  /// True for the advice about a rebind.
  bool rebind = false;
};

/// Returns advice for a bind errno ("another socket already listens ..."), or
/// "" when there is none to give.
std::string bind_errno_advice(int err, uint16_t port, const BindContext& ctx);

/// Judges every rule of `next` once the new sockets are known: `keys` are the
/// opened keys (open and rebind) and `status` their broker status
/// (wire::kStatusOk, an errno, or wire::kStatusPolicyDenied), and
/// `policy_reason` the text for a policy denial of each key ("" when the
/// broker's policy file refused it). A strict rule fails on any failed port;
/// a weak rule only when none of its ports is bound (kept ports count as
/// bound); an auto-scan rule never fails: its failed ports are tried again
/// at the next scan. Failed ports of rules that do not fail are returned in
/// `warnings`, their messages saying so.
std::vector<control::Failure> judge_rules(const TableSet& next, std::span<const PlannedKey> keys,
                                          std::span<const int32_t> status,
                                          std::span<const std::string> policy_reason,
                                          const BindContext& ctx,
                                          std::vector<control::Failure>* warnings);

/// Returns the rules of `a` missing from `b`, as "PIF RULE-TEXT" lines, in
/// table order (a multiset difference: duplicates count).
std::vector<std::string> rule_diff(const TableSet& a, const TableSet& b);

}  // namespace sluice
