// Starting and stopping sluice-worker. The broker forks and execs the worker
// with its descriptors at the fixed numbers of schema/broker_wire.h and an
// empty environment; the worker sandboxes itself before it reads anything.
#pragma once

#include <sys/types.h>

#include <array>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/target_namespace.h"
#include "schema/broker_wire.h"
#include "schema/worker_args.h"

namespace sluice {

/// Limit: how long a worker gets to exit after SIGTERM (or after closing its
/// channel) before it is killed. The worker only closes sockets and writes
/// one audit line on its way out; 3 s is ample even on a loaded host, and
/// short enough for a service manager's stop timeout.
inline constexpr int kWorkerStopTimeoutMs = 3000;

/// A running worker.
struct WorkerProcess {
  pid_t pid = -1;
  UniqueFd pidfd;  // pidfd_open(pid): signals and waits never hit a recycled pid
  // The broker's end of the SOCK_SEQPACKET socketpair, non-blocking: a reply
  // the worker has no room for yet waits in BrokerHost, and the broker's loop
  // waits for room (POLLOUT) as long as the worker lives, with no time limit.
  // A worker is slow when flooded (it answers the flood first), not broken.
  UniqueFd channel;
};

/// Returns an fd on sluiced's stderr for the worker's logs (and, without
/// --audit-log, its audit lines). When stderr is a pipe or a terminal, the fd
/// is a new, non-blocking file description of it (opened through
/// /proc/self/fd/2): a reader that stops then pushes back on the worker,
/// which drops log lines and holds audit lines (bounded) instead of freezing
/// all forwarding, while sluiced's own stderr stays blocking. Anything else
/// (a regular file never blocks for long; a socket cannot be reopened) gets a
/// plain dup. Fails only when the dup fails.
Result<UniqueFd> stderr_for_worker();

/// Opens the --audit-log FILE for the worker's audit fd (kWorkerFdAudit):
/// O_WRONLY|O_APPEND|O_CREAT (mode 0600)|O_CLOEXEC|O_NOCTTY, plus O_NOFOLLOW
/// (a symlink is refused, never followed) and O_NONBLOCK (a FIFO without a
/// reader fails at once instead of hanging sluiced; a device's open cannot
/// wait). Then checks the file it got: a regular file, owned by sluiced's
/// effective uid, with one name (no hard link elsewhere), and no group or
/// other write bit; otherwise anyone could rewrite the log, or its lines would
/// go to a device, a pipe or another file. O_NONBLOCK is then cleared, so the
/// description is exactly what it always was. Fails with one line naming the
/// file and what to do. Needs `open`, `fstat` and `fcntl` (before the filter).
Result<UniqueFd> open_audit_log(const std::string& path);

/// Opens the --audit-log FILE a second time, read-only, for the worker's
/// kWorkerFdAuditTail: O_RDONLY|O_CLOEXEC|O_NOCTTY|O_NOFOLLOW|O_NONBLOCK (a
/// FIFO swapped in cannot hang sluiced), then checks with fstat that it is
/// the very file `sink` (from open_audit_log) appends to: same device and
/// inode. The worker reads the file's last line from it to link its run to
/// the lines before (worker/audit_tail.h); sluiced itself never reads it, so
/// it parses nothing it did not write. Fails with one line naming the file
/// and what to do (no read permission; the file was replaced in between).
/// Needs `open` and `fstat` (before the filter).
Result<UniqueFd> open_audit_tail(const std::string& path, const UniqueFd& sink);

/// sluiced's side's /proc/self/net/{tcp,tcp6,udp,udp6}, in that order, for
/// the worker's kWorkerFdHostScanFirst.. (an invalid fd for a file that does
/// not exist).
using HostScanFiles = std::array<UniqueFd, wire::kWorkerFdScanCount>;

/// Opens sluiced's own /proc/self/net/{tcp,tcp6,udp,udp6} read-only
/// (O_CLOEXEC|O_NOCTTY), in sluiced's network namespace, for SPLICE auto-scan
/// rules (-T/-U auto), which follow what is bound on this side. sluiced only
/// opens them and hands them to the worker; it never reads them, so it
/// parses nothing. A file that cannot be opened is left invalid: tcp6 and
/// udp6 are missing without IPv6, and anything else is logged as a warning
/// (the worker then says that auto on -T/-U is off). Call with --netns only,
/// before the broker's filter (needs `openat`).
HostScanFiles open_host_scan_files();

/// Returns the path of sluice-worker (kWorkerProgram): in the directory of
/// this binary (readlink /proc/self/exe), else in SLUICE_WORKER_RELDIR
/// relative to it (the install layout: ../libexec/sluice from sbin). Fails
/// with both paths and what to do when neither is executable.
Result<std::string> find_worker_binary();

/// Forks and execs `path` with to_argv(`args`) as its argv (the start-up
/// arguments of schema/worker_args.h; CHECKs that they are in range), an empty
/// environment, fd 0 on /dev/null, fds 1 and 2 on stderr_for_worker(), and
/// fds 3/4/5/6/7/8 = the worker's end of a new SOCK_SEQPACKET socketpair,
/// `control_fd`, `audit_fd`, `policy_fd`, `pesto_fd` and `audit_tail_fd`
/// (kWorkerFdBroker/Control/Audit/Policy/Pesto/AuditTail; -1 for no pesto
/// socket, or for no audit file to read the tail of, puts /dev/null there),
/// fds 20 to 23 = the valid files of `host_scan` (kWorkerFdHostScanFirst..;
/// an invalid one leaves its number closed); everything else closed, signal mask and dispositions
/// reset, in its own process group (terminal signals reach the broker only). The broker's end of
/// the pair is made non-blocking (see WorkerProcess). With `target`, the child first joins the
/// target namespace (join_target_namespace), so the worker runs in it. The child reports a setns or
/// exec failure on stderr and exits 127. Block SIGCHLD before calling. With `sibling`, the worker
/// is started with clone(CLONE_PARENT): a child of the caller's parent (the launcher's, sluiced),
/// which reaps it. Fails when the socketpair, fcntl, /dev/null, fork or pidfd_open fail.
Result<WorkerProcess> launch_worker(const std::string& path, const WorkerArgs& args, int control_fd,
                                    int audit_fd, int policy_fd, int pesto_fd, int audit_tail_fd,
                                    const HostScanFiles& host_scan = {},
                                    const TargetNamespace* target = nullptr, bool sibling = false);

/// Who logs how the worker ended.
enum class EndLog {
  kLog,         // poll_worker_exit() does (at stops: SIGTERM, a violation)
  kCallerLogs,  // the caller does, in its own line (a death it replaces the worker after)
};

/// Returns the worker's exit code as the broker reproduces it, or -1 when it
/// is still running: its exit status, or 128+N when killed by signal N; with
/// EndLog::kLog, logs "worker exited with status N" once it has exited (an
/// error unless 0, or unless it died of `expected_signal`, the one the
/// broker itself sent); with kCallerLogs only at debug level, so that each
/// end is one line. Needs `waitid` (P_PIDFD, WEXITED|WNOHANG).
int poll_worker_exit(const WorkerProcess& worker, int expected_signal = 0,
                     EndLog log = EndLog::kLog);

/// How stop_worker() ends the worker.
enum class StopMode {
  kTerminate,  // close the channel, up to kWorkerStopTimeoutMs, then SIGKILL (shutdown)
  kAwaitExit,  // no signal, up to kWorkerStopTimeoutMs, then SIGKILL (it closed its channel)
  kKill,       // SIGKILL at once (it misbehaved)
};

/// Ends the worker as `mode` says and reaps it. Returns the exit code as
/// poll_worker_exit() does (1 when it could not be reaped); `log` says who
/// logs how it ended, as there.
///
/// A clean stop closes the broker channel instead of signalling: the worker
/// stops on EOF. Signals may be refused: a worker started by root runs as
/// 65534, and the broker keeps no CAP_KILL. Then the worker still dies when
/// sluiced exits, through its PR_SET_PDEATHSIG(SIGKILL). Needs `shutdown`,
/// `pidfd_send_signal`, `poll`, `waitid` and `clock_gettime`.
int stop_worker(const WorkerProcess& worker, StopMode mode, EndLog log = EndLog::kLog);

}  // namespace sluice
