// The worker launcher: a small child of sluiced that starts sluice-worker on
// request, so that sluiced can replace a worker that died although its own
// seccomp filter forbids fork and exec (docs/ARCHITECTURE.md "Worker
// restarts").
//
// sluiced forks it at start-up, before it drops its capabilities and loads
// its filter, with everything a worker's start needs (the worker's path and
// argv, the control and pesto sockets, the audit sink and the audit log's
// read-only descriptor, sluiced's side's /proc/net files, the target
// namespace); the launcher keeps its own copies and sluiced drops them. The
// launcher then only:
//   1. dies with sluiced (PR_SET_PDEATHSIG) and exits when its channel closes;
//   2. with a --netns joined without its user namespace (real root with a
//      container's namespace, or a namespace of sluiced's own user
//      namespace), joins the target network namespace itself, so that its
//      workers are born there (otherwise each worker's child joins the
//      container's user namespace, then its network namespace, which its
//      owner may do without any capability);
//   3. cuts its capabilities to what a worker's start needs, in every set,
//      bounding and ambient included, and sets NO_NEW_PRIVS
//      (isolation.h cut_launcher_capabilities): CAP_SETUID and CAP_SETGID
//      for real root (its workers switch to their own user), CAP_SETFCAP
//      for uid 0 in a user namespace (its workers map uid 0 into their own),
//      none for anyone else;
//   4. waits for one fixed-size LaunchWorker on its channel (only sluiced
//      holds the other end; the worker never reaches it), which carries the
//      policy text to hand over (the one sluiced has in force now);
//   5. rewinds that text (a memfd shared with sluiced, whose offset the last
//      worker moved), and starts the worker as launch_worker() does, as a
//      child of sluiced (CLONE_PARENT): sluiced reaps it and learns how it
//      ended, and the worker's PR_SET_PDEATHSIG follows sluiced;
//   6. answers WorkerLaunched with the worker's pid, its pidfd and sluiced's
//      end of its channel, then closes its own copies.
// It reads nothing from the worker or any peer. Each new worker re-reads the
// audit log's last line, so its run links to the chain the dead worker wrote.
// TODO(security): a seccomp filter for the launcher. A filter is inherited
// by every child and kept across execve, so it would bind every worker too:
// it must admit the worker's whole start (the loader's opens, its own
// /proc/self/uid_map writes, unshare, mount, pivot_root, capset, seccomp)
// and its whole allowlist, and tests/broker's stand-in worker also binds,
// listens and polls. Such a union filter was built and passes the real
// worker's tests, but would still let a root launcher open root's files for
// writing (docs/THREAT_MODEL.md "Known gaps" has the way out).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/target_namespace.h"
#include "broker/worker_launch.h"
#include "schema/worker_args.h"

namespace sluice {

/// Limit: how long sluiced waits for the launcher's answer. A launch is a
/// clone and a pidfd_open (the exec happens in the child afterwards):
/// milliseconds. 30 s only catches a launcher that can never answer
/// (stopped, stuck in the kernel), so that sluiced fails with a message
/// instead of hanging; it is no measure of speed.
inline constexpr int kLaunchTimeoutMs = 30000;

/// Everything the launcher needs to start a worker; it owns these copies.
struct LaunchSet {
  std::string path;  // sluice-worker (find_worker_binary)
  WorkerArgs args;
  UniqueFd control;
  UniqueFd audit;
  UniqueFd pesto;       // invalid: no --pesto-socket
  UniqueFd audit_tail;  // invalid: the audit sink is stderr
  HostScanFiles host_scan;
  std::optional<TargetNamespace> target;
};

/// A running launcher.
struct WorkerLauncher {
  pid_t pid = -1;
  UniqueFd pidfd;    // its exit ends restarts (not forwarding)
  UniqueFd channel;  // sluiced's end of the SOCK_SEQPACKET pair, blocking
};

/// Forks the launcher with `set` (moved into the child; the parent's copies
/// close when `set` goes out of scope). Call before sluiced drops its
/// capabilities and loads its filter. Fails when the socketpair, fork or
/// pidfd_open fail. Needs `socketpair`, `fork`, `pidfd_open`.
Result<WorkerLauncher> start_worker_launcher(LaunchSet set);

/// Asks the launcher on `channel` for a worker, handing it `policy_fd` (the
/// policy text in force), and waits at most kLaunchTimeoutMs for its answer.
/// Returns the worker (pid, pidfd, channel; not yet at sluiced's fixed
/// numbers). Fails with the launcher's errno and what to do, or when the
/// launcher is gone or answered something else. Needs `sendmsg`, `poll`,
/// `recvmsg` on `channel`.
Result<WorkerProcess> launch_through(int channel, int policy_fd, uint64_t sequence);

}  // namespace sluice
