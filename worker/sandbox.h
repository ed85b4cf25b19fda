// The worker's sandbox, entered in named stages before it reads any input
// (from the broker, the control socket, or its own argv's rule text).
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "base/result.h"
#include "schema/model.h"
#include "schema/worker_args.h"

namespace sluice {

/// Kernel facts the worker needs after its root is gone, read from /proc
/// before the sandbox closes it off.
struct HostFacts {
  uint16_t ephemeral_first = kDefaultEphemeralFirst;  // net.ipv4.ip_local_port_range
  uint16_t ephemeral_last = kDefaultEphemeralLast;
  bool ipv4 = true;  // an AF_INET socket can be created
  bool ipv6 = true;  // an AF_INET6 socket can be created (module loaded, not disabled)
  /// fs.pipe-user-pages-soft: pipe pages a user may hold before new pipes
  /// shrink to one or two pages; 0 means no limit.
  uint64_t pipe_user_pages_soft = 16384;
  /// The soft RLIMIT_NOFILE: one more than the highest descriptor number the
  /// worker may hold (worker/fd_budget.h); 0 when it could not be read (no
  /// budget is checked then).
  uint64_t fd_limit = 0;
};

/// Reads HostFacts. Falls back to the kernel defaults, with a warning, when a
/// file cannot be read. Must run before enter_sandbox().
HostFacts gather_host_facts();

/// The ids a worker started as real root switches to in stage 2: sluiced's
/// --worker-user (schema/worker_args.h), nobody/nogroup by default.
struct WorkerIds {
  uint32_t uid = kWorkerIdFallback;
  uint32_t gid = kWorkerIdFallback;
};

/// Enters the sandbox, in order (each stage is a function in sandbox.cc with a
/// comment saying why it is safe and needed):
///   1. close every fd from wire::kWorkerFirstFreeFd up (close_range), except
///      `keep_fds`: what the worker made before the sandbox and still needs,
///      such as its epoll fd (the allowlist has no epoll_create1). The log fd
///      must be below wire::kWorkerFirstFreeFd or in `keep_fds`;
///   2. if running as root in the initial user namespace, switch to `ids`
///      (never 0), dropping supplementary groups;
///   3. PR_SET_PDEATHSIG(SIGKILL), then exit if the broker is already gone;
///   4. a new user namespace, mapping only the current uid/gid;
///   5. unshare of mount, IPC, UTS and (without `before_filter`) PID namespaces;
///   6. pivot_root into an empty, read-only tmpfs;
///   7. drop the bounding set, ambient, inheritable, permitted and effective capabilities;
///   8. PR_SET_DUMPABLE 0 and PR_SET_NO_NEW_PRIVS 1;
///   9. the seccomp allowlist of policy/seccomp_worker.cc (KILL_PROCESS default).
/// `before_filter`, when given, runs between stages 8 and 9: it starts the
/// data-path threads (worker/data_thread.h), which inherit stages 2-8 and
/// get the filter with the main thread (TSYNC); its error stops the start.
/// Returns an Error naming the stage and errno on any failure (also when an
/// fd in `keep_fds` is not open); the caller exits.
Result<void> enter_sandbox(std::span<const int> keep_fds = {}, WorkerIds ids = {},
                           const std::function<Result<void>()>& before_filter = {});

}  // namespace sluice
