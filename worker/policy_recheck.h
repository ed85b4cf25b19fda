// Policy reload in the worker: the re-check of the tables in force against
// the policy in force, and the engine's side of a PolicyReload
// (schema/broker_wire.h). A reloaded policy applies to the next commit; the
// rules already in force are not removed when they no longer pass: they keep
// forwarding, and what no longer passes is reported (the log, an audit line,
// and `policyFailures` of the stats a client reads) until a commit removes or
// changes those rules, or a later reload lets them pass again.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "policy/bind_policy.h"
#include "policy/policy_file.h"
#include "policy/target_policy.h"
#include "schema/control_types.h"
#include "schema/model.h"
#include "worker/broker_client.h"
#include "worker/commit_plan.h"

namespace sluice {

/// Re-checks the tables in force, `tables`, and the listeners they hold,
/// `keys` (each with its rule), against a policy: `bind` (the file's bind
/// lines, with the kernel facts and the initial rules' grants of `info`,
/// as the broker and prepare_acquisition judge a new listener) and `target`
/// (check_table_targets). Returns one failure of kind policy-denied per rule
/// that no longer passes: its bind verdict for the first listener refused
/// (with how many more of its listeners are), else its target verdict; each
/// message says that the rule stays in force and what to do. Empty when
/// everything passes. Pure: no syscalls.
std::vector<control::Failure> recheck_policy(const TableSet& tables,
                                             std::span<const PlannedKey> keys,
                                             const BindPolicy& bind, const BrokerInfo& info,
                                             const TargetPolicy& target);

/// Reads a reloaded policy text from `fd` (a memfd from sluiced, at most
/// `length` bytes, read to its end from its current offset) and parses it;
/// `source` names it in messages. Fails when it cannot be read, is not
/// `length` bytes, or does not parse (sluiced parsed it first, so that is a
/// broken sluiced). Needs `read`.
Result<PolicyFile> read_reloaded_policy(int fd, uint32_t length, const std::string& source);

}  // namespace sluice
