// The administrator's policy file (e.g. /etc/sluice/policy). One rule per line,
// `#` starts a comment, blank lines are ignored:
//
//   bind allow|deny PROTOS PORTS ADDRS
//     PROTOS  tcp | udp | tcp,udp | *
//     PORTS   * | a comma list of N or N-M (1..65535)
//     ADDRS   * | a comma list of IPv4 or IPv6 addresses or CIDR prefixes
//             (10.0.0.0/8, ::1, fd00::/8); host bits must be zero
//   target allow|deny PROTOS ADDRS [PORTS]      (target_policy.h)
//   control read|commit SUBJECT...               (control_policy.h)
//     SUBJECT uid=LIST | gid=LIST | *   LIST: comma-separated numbers or names
//
// Lines of each kind are checked in order; the first that matches decides,
// and a request no line matches is denied. A kind without any line in the
// file keeps its default (bind: any address and port; target: any; control:
// the uid sluiced runs as, and root). docs/POLICY.md is the user's guide.
//
// Parsed by the broker, which enforces `bind` and `control` and resolves the
// user and group names of `control` lines, and by the worker, which enforces
// `target` and pre-checks `bind` so that denials name their line. The broker
// hands the worker the file's text (schema/broker_wire.h, kWorkerFdPolicy).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "policy/bind_policy.h"
#include "policy/control_policy.h"
#include "policy/target_policy.h"

namespace sluice {

/// Limit: policy file size. A real policy is a few hundred lines; 1 MiB is far
/// above that and stops a wrong path (a log, /dev/zero) from being read whole.
inline constexpr size_t kMaxPolicyFileBytes = 1 << 20;

/// A parsed policy file.
struct PolicyFile {
  std::string source;                      // the path (or name) errors and reasons cite
  std::string text;                        // the file as read (load_policy_file only)
  std::vector<BindRule> bind_rules;        // in file order
  std::vector<TargetRule> target_rules;    // in file order
  std::vector<ControlRule> control_rules;  // in file order
};

/// Resolves a user name (`group` false) or group name (`group` true) of a
/// `control` line to its id, or nullopt when there is no such name.
using NameResolver = std::function<std::optional<uint32_t>(bool group, const std::string& name)>;

/// Limit: ids per `control` line. A line naming more than 1024 users or groups
/// is a generated file gone wrong; groups are the tool for many users.
inline constexpr size_t kMaxControlIds = 1024;

/// Parses the text of a policy file. `source` names the file in messages.
/// With a `resolver`, user and group names of `control` lines are resolved
/// (an unknown name is an error); without one they are kept unresolved and
/// never match (the worker, which does not decide control). Fails on the first
/// bad line with "SOURCE line N: what is wrong in `LINE` (what is expected)".
Result<PolicyFile> parse_policy_text(std::string_view text, const std::string& source,
                                     const NameResolver* resolver = nullptr);

/// Reads and parses the policy file at `path` (a regular file of at most
/// kMaxPolicyFileBytes; a symlink to one is followed), keeping its text. The
/// open never waits: anything but a regular file (a FIFO, a device, a
/// directory) is refused at once, so that a reload cannot hang on it. Fails
/// with the path, the errno text or the kind of file, and what to do, or with
/// the parse error. Needs `openat` (read-only, O_NONBLOCK), `fstat` and
/// `read`: sluiced calls it before its seccomp filter, the policy reader
/// under its own.
Result<PolicyFile> load_policy_file(const std::string& path,
                                    const NameResolver* resolver = nullptr);

/// Returns `text` with every user and group name of its `control` lines
/// replaced by its number through `resolver` (numbers stay as written), so
/// that whoever parses the result needs no user database: the policy
/// reader's work on a reload (broker/policy_reader.h). A rewritten line is
/// written in its normal form (single blanks, no comment); every other line,
/// and the line count, stay as they are, so line numbers keep naming the
/// administrator's lines. Fails with parse_policy_text()'s error (an
/// unknown name included), or when the result is longer than
/// kMaxPolicyFileBytes.
Result<std::string> resolve_policy_names(std::string_view text, const std::string& source,
                                         const NameResolver& resolver);

/// A NameResolver that knows no name: for text that resolve_policy_names()
/// wrote, where a name left over is an error.
std::optional<uint32_t> resolve_no_names(bool group, const std::string& name);

/// Returns a BindPolicy that enforces the `bind` lines of `file` (the kernel
/// facts, unprivileged_port_start and has_bind_cap, are filled in by the
/// caller). Without bind lines, the default (layer 1 allows everything).
BindPolicy bind_policy_from_file(const PolicyFile& file);

/// Returns the TargetPolicy of `file` (the default when it has no target line).
TargetPolicy target_policy_from_file(const PolicyFile& file);

/// Returns the ControlPolicy of `file` for a sluiced running as `owner_uid`
/// (the default when it has no control line).
ControlPolicy control_policy_from_file(const PolicyFile& file, uint32_t owner_uid);

}  // namespace sluice
