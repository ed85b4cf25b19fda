// The control policy: which users and groups may read the state and which may
// commit. sluiced decides it for every control connection: only it sees the
// peer's real ids (the worker lives in its own user namespace, where every
// unmapped id reads as the overflow id 65534), so the worker hands each new
// connection's socket to the broker, which reads SO_PEERCRED and
// SO_PEERGROUPS and answers with the access this policy grants
// (schema/broker_wire.h, PeerQuery).
//
// Lines (policy_file.h): `control read|commit SUBJECT...`, where a SUBJECT is
// `uid=LIST`, `gid=LIST` (LIST: comma-separated numbers or names) or `*`
// (anyone). A line matches a peer whose uid is listed, or whose primary or
// supplementary group is listed. Lines are checked in order, the first match
// wins, and no match means no access at all. `commit` includes `read`.
//
// Default, when the policy file has no `control` line (or there is no file):
// the uid sluiced runs as, and root, may read and commit; nobody else may
// connect. The socket file's mode (0660) is a first fence; this is the rule.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace sluice {

/// What a control client may do. Ordered: each level includes the ones below.
enum class ControlAccess : uint8_t { kNone = 0, kRead = 1, kCommit = 2 };

/// One `control read|commit SUBJECT...` line.
struct ControlRule {
  ControlAccess access = ControlAccess::kRead;  // kRead or kCommit
  bool anyone = false;                          // a `*` subject
  std::vector<uint32_t> uids;                   // numeric, or resolved from names
  std::vector<uint32_t> gids;
  /// Names that were not resolved (the worker parses the file without a
  /// resolver: it never decides). They never match.
  std::vector<std::string> unresolved;
  unsigned line = 0;  // 1-based line number in the policy file
  std::string text;   // the line as written, comment and extra blanks removed
};

/// The control policy sluiced applies.
struct ControlPolicy {
  /// True when the policy file has `control` lines: they decide. False: the
  /// default (owner_uid and root).
  bool use_rules = false;
  std::string source;  // the policy file's path, named in denials
  std::vector<ControlRule> rules;
  uint32_t owner_uid = 0;  // the uid sluiced runs as
};

/// The access granted to one peer, and the line that granted or refused it
/// (0: the default policy, or no line matched).
struct ControlDecision {
  ControlAccess access = ControlAccess::kNone;
  unsigned line = 0;
};

/// Limit: supplementary groups considered per peer. NGROUPS_MAX is 65536, but
/// a process with more than 256 groups is unheard of; such a peer is refused
/// (decide_control is never asked), never judged on part of its groups,
/// because with first-match-wins a missing group could grant more.
inline constexpr size_t kMaxPeerGroups = 256;

/// Decides the access of a peer with `uid`, primary `gid` and supplementary
/// `groups`.
ControlDecision decide_control(const ControlPolicy& policy, uint32_t uid, uint32_t gid,
                               std::span<const uint32_t> groups) noexcept;

/// Returns "none", "read" or "commit".
const char* access_name(ControlAccess access) noexcept;

/// Explains a decision for an error or a log line: which policy line (or the
/// default) decided it, e.g. "/etc/sluice/policy line 5 (control read gid=100)
/// grants uid 1001 read access only" or "the default control policy allows
/// only uid 1000 and root". `rule_text` is the deciding line's text, or empty
/// when `decision.line` is 0.
std::string explain_control(const std::string& source, bool use_rules, uint32_t owner_uid,
                            const ControlDecision& decision, const std::string& rule_text,
                            uint32_t uid);

}  // namespace sluice
