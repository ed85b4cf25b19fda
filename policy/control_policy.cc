// The control policy decision (see control_policy.h).
#include "policy/control_policy.h"

#include <algorithm>

namespace sluice {
namespace {

/// Returns true when `id` is in `ids`.
bool listed(const std::vector<uint32_t>& ids, uint32_t id) noexcept {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

/// Returns true when `rule` names the peer.
bool rule_matches(const ControlRule& rule, uint32_t uid, uint32_t gid,
                  std::span<const uint32_t> groups) noexcept {
  if (rule.anyone || listed(rule.uids, uid) || listed(rule.gids, gid)) return true;
  for (uint32_t g : groups) {
    if (listed(rule.gids, g)) return true;
  }
  return false;
}

}  // namespace

ControlDecision decide_control(const ControlPolicy& policy, uint32_t uid, uint32_t gid,
                               std::span<const uint32_t> groups) noexcept {
  if (!policy.use_rules) {
    const bool owner = uid == 0 || uid == policy.owner_uid;
    return ControlDecision{owner ? ControlAccess::kCommit : ControlAccess::kNone, 0};
  }
  for (const ControlRule& rule : policy.rules) {
    if (rule_matches(rule, uid, gid, groups)) return ControlDecision{rule.access, rule.line};
  }
  return ControlDecision{ControlAccess::kNone, 0};
}

const char* access_name(ControlAccess access) noexcept {
  switch (access) {
    case ControlAccess::kNone:
      return "none";
    case ControlAccess::kRead:
      return "read";
    case ControlAccess::kCommit:
      return "commit";
  }
  return "none";
}

std::string explain_control(const std::string& source, bool use_rules, uint32_t owner_uid,
                            const ControlDecision& decision, const std::string& rule_text,
                            uint32_t uid) {
  const std::string who = "uid " + std::to_string(uid);
  if (!use_rules) {
    return "the default control policy (no `control` line in the policy) allows only uid " +
           std::to_string(owner_uid) + " (the user sluiced runs as) and root";
  }
  if (decision.line == 0) {
    return "no `control` line of " + source + " matches " + who + ", and no match is denied";
  }
  return source + " line " + std::to_string(decision.line) + " (" + rule_text + ") grants " + who +
         " " + access_name(decision.access) + " access" +
         (decision.access == ControlAccess::kRead ? " only" : "");
}

}  // namespace sluice
