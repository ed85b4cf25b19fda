// The target policy: which addresses and ports rules may forward to. The
// worker enforces it when it validates a commit (a forwarding rule is the
// worker's own outbound connection, so no other process can check it), and
// sluicectl cannot bypass it: a denied rule fails the whole commit with a
// policy-denied failure naming the rule, the port and the policy line.
//
// Lines (policy_file.h): `target allow|deny PROTOS ADDRS [PORTS]`, checked in
// order, first match wins, no match is denied. A file without any `target`
// line leaves the default in force: every target is allowed (the control
// policy already decides who may commit rules at all).
//
// What is checked is every (protocol, address, port) a rule can connect to:
// its target port range, and its target address, or for the default target
// (is_default_target, schema/model.h) the loopback address of each family the
// rule's listener accepts (127.0.0.1 for IPv4, ::1 for IPv6, both for a
// dual-stack `*`): rule_target_addresses, the forwarder's own definition.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/bind_policy.h"
#include "schema/control_types.h"
#include "schema/model.h"

namespace sluice {

/// One `target allow|deny PROTOS ADDRS [PORTS]` line. It has the fields of a
/// bind line; PORTS defaults to `*`. A target line matches a destination when
/// the protocol is listed, some prefix contains the address (or ADDRS is
/// `*`), and some range contains the port (or PORTS is `*`).
using TargetRule = BindRule;

/// The target policy of a worker.
struct TargetPolicy {
  /// True when the policy file has `target` lines: they decide. False: the
  /// default, every target allowed.
  bool use_rules = false;
  std::string source;  // the policy file's path, named in denials
  std::vector<TargetRule> rules;
};

/// The verdict for one destination: `line` is the deciding rule, or nullptr
/// when no line matched (denied) or the default policy applies (allowed).
struct TargetDecision {
  bool allowed = true;
  const TargetRule* line = nullptr;
};

/// Decides one destination: `addr` is 16 bytes (IPv4 v4-mapped), `port` 1..65535.
TargetDecision check_target(const TargetPolicy& policy, Proto proto, const Addr& addr,
                            uint16_t port) noexcept;

/// Returns true when `rule` matches the destination (proto, addr, port).
bool target_rule_matches(const TargetRule& rule, Proto proto, const Addr& addr,
                         uint16_t port) noexcept;

/// Checks every rule of `tables` against the policy. Each denied rule gives
/// one failure of kind policy-denied naming the rule, the first denied port
/// and address, and the policy line that denied it (or that no line
/// matched), with what to do. The cost is bounded by the ports of the
/// tables times the lines that match a rule's protocol and address.
std::vector<control::Failure> check_table_targets(const TargetPolicy& policy,
                                                  const TableSet& tables);

}  // namespace sluice
