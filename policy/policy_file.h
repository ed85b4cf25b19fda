// The administrator's policy file (e.g. /etc/sluice/policy). One rule per line,
// `#` starts a comment, blank lines are ignored:
//
//   bind allow|deny PROTOS PORTS ADDRS
//     PROTOS  tcp | udp | tcp,udp | *
//     PORTS   * | a comma list of N or N-M (1..65535)
//     ADDRS   * | a comma list of IPv4 or IPv6 addresses or CIDR prefixes
//             (10.0.0.0/8, ::1, fd00::/8); host bits must be zero
//   target ...   accepted here and enforced by the worker (not yet parsed)
//   control ...  accepted here and enforced by the worker (not yet parsed)
//
// `bind` lines are checked in order; the first that matches decides, and a
// request no line matches is denied (bind_policy.h says how lines match).
// Parsed by the broker (which enforces `bind`), and later by the worker.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/bind_policy.h"

namespace sluice {

/// Limit: policy file size. A real policy is a few hundred lines; 1 MiB is far
/// above that and stops a wrong path (a log, /dev/zero) from being read whole.
inline constexpr size_t kMaxPolicyFileBytes = 1 << 20;

/// A parsed policy file.
struct PolicyFile {
  std::string source;                // the path (or name) errors and reasons cite
  std::vector<BindRule> bind_rules;  // in file order
  unsigned other_lines = 0;          // `target`/`control` lines, left to the worker
};

/// Parses the text of a policy file. `source` names the file in messages.
/// Fails on the first bad line with "SOURCE line N: what is wrong in `LINE`
/// (what is expected)".
Result<PolicyFile> parse_policy_text(std::string_view text, const std::string& source);

/// Reads and parses the policy file at `path` (a regular file of at most
/// kMaxPolicyFileBytes). Fails with the path, the errno text and what to do
/// when it cannot be read, or with the parse error. Needs `openat`, `fstat`
/// and `read`; called before the broker's seccomp filter.
Result<PolicyFile> load_policy_file(const std::string& path);

/// Returns a BindPolicy that enforces the `bind` lines of `file` (the kernel
/// facts, unprivileged_port_start and has_bind_cap, are filled in by the caller).
BindPolicy bind_policy_from_file(const PolicyFile& file);

}  // namespace sluice
