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
  std::vector<size_t> clashing;    // the subset of `close` that the rebinds wait for
};

/// Returns every listener key `tables` needs with its rule, sorted by key.
std::vector<PlannedKey> planned_keys(const TableSet& tables);

/// True when two listening sockets cannot both be bound: the same protocol
/// and port, compatible devices (either unbound or the same), and overlapping
/// addresses (a dual-stack socket overlaps every address; otherwise the same
/// family with either the wildcard or the same address).
bool kernel_clash(const ListenerKey& a, const ListenerKey& b) noexcept;

/// Plans a commit from the sorted keys in force to `next`.
CommitPlan plan_commit(std::span<const ListenerKey> installed, const TableSet& next);

/// Facts needed to word a bind failure.
struct BindContext {
  bool has_bind_cap = false;
  uint32_t unprivileged_port_start = 1024;
  /// The same facts in the target namespace, for SPLICE listeners.
  bool splice_has_bind_cap = false;
  uint32_t splice_unprivileged_port_start = 1024;
  /// True for the advice about a SPLICE listener (inside the target namespace).
  bool in_target_namespace = false;
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
/// bound). Failed ports of rules that do not fail are returned in `warnings`.
std::vector<control::Failure> judge_rules(const TableSet& next, std::span<const PlannedKey> keys,
                                          std::span<const int32_t> status,
                                          std::span<const std::string> policy_reason,
                                          const BindContext& ctx,
                                          std::vector<std::string>* warnings);

/// Returns the rules of `a` missing from `b`, as "PIF RULE-TEXT" lines, in
/// table order (a multiset difference: duplicates count).
std::vector<std::string> rule_diff(const TableSet& a, const TableSet& b);

}  // namespace sluice
