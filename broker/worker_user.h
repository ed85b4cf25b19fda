// The user a root-started worker runs as (sluiced --worker-user).
//
// Started as real root, the worker switches ids in its sandbox's stage 2
// (worker/sandbox.h). A dedicated user that no other process runs as keeps
// other processes from signalling the worker, lowering its resource limits,
// or tracing it in the short window where stage 4 makes it dumpable to write
// its id maps. sluiced therefore resolves, before anything else runs:
//   - --worker-user NAME: that user's uid and primary gid, from the user
//     database;
//   - --worker-user UID[:GID]: those numbers (GID defaults to UID);
//   - no --worker-user: the user "sluice" when the user database has one (the
//     install step creates it), else 65534:65534 (nobody/nogroup) with a
//     warning that says how to create a dedicated user.
// The ids are never 0. An unprivileged sluiced's worker keeps sluiced's own
// user (it has no other), so --worker-user is refused there.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "base/result.h"

namespace sluice {

/// A user from the user database: uid and primary gid.
struct UserEntry {
  uint32_t uid = 0;
  uint32_t gid = 0;
};

/// Looks a user name up in the user database; nullopt when there is none.
using UserLookup = std::function<std::optional<UserEntry>(const std::string& name)>;

/// The worker's ids and how they were chosen, for sluiced's start-up line.
struct WorkerUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  /// Neither --worker-user nor a user "sluice": the shared 65534:65534.
  bool shared_fallback = false;
  /// What to log: "user sluice (uid 998, gid 998)", "uid 4242, gid 4242".
  std::string description;
};

/// Resolves `spec` (sluiced's --worker-user; empty when not given) with
/// `lookup`. Fails with a one-line message saying what to do: an unknown
/// name, a malformed or out-of-range number, or a user or group 0.
Result<WorkerUser> resolve_worker_user(const std::string& spec, const UserLookup& lookup);

/// The user database through NSS (getpwnam_r), in a short-lived child
/// process, as sluiced uses it. Why a child: NSS loads the modules that
/// /etc/nsswitch.conf names (libnss_systemd and what it links, about 0.8 MiB
/// resident) into the process that asks, and they stay for its whole life;
/// in the child they go when it exits. Falls back to asking in this process
/// when the child cannot be started or gives no answer. Call it only while
/// this process has one thread (it forks).
std::optional<UserEntry> lookup_system_user(const std::string& name);

/// The same lookup in this process: what the child of lookup_system_user runs.
std::optional<UserEntry> lookup_system_user_here(const std::string& name);

/// True when this process is real root in the initial user namespace (the
/// one case where the worker switches ids). Reads /proc/self/uid_map; false
/// when it cannot.
bool root_in_initial_user_namespace();

}  // namespace sluice
