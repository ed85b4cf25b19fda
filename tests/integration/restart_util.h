// Helpers of the worker restart tests (restart_test.cc,
// restart_udp_splice_test.cc): a bounded wait for a new worker (daemon.h
// waits for log lines), the state of a process, and the inode of a listening socket as the
// kernel lists it in /proc/net, which tells a kept socket from a re-bound one.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <set>
#include <string>

#include "tests/integration/daemon.h"

namespace sluice::test {

/// Waits (at most 10 s) for a worker other than `old` (and not -1); returns
/// it, or -1.
pid_t wait_for_new_worker(const Daemon& d, pid_t old);

/// The line each worker logs once it serves.
inline constexpr const char* kWorkerReady = "sluice-worker: info: ready:";

/// Waits for a worker other than `old` (wait_for_new_worker), then until the
/// daemon's log holds `ready_lines` lines kWorkerReady, that is until the
/// replacement serves (at most 10 s each). Returns the new worker, or -1
/// with `why` set to which of the two did not happen.
pid_t wait_for_serving_worker(const Daemon& d, pid_t old, size_t ready_lines, std::string* why);

/// The state letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...), or 0 when
/// there is no such process.
char process_state(pid_t pid);

/// Waits (at most 10 s) until process `pid` is in state `state` ('T': stopped,
/// 'Z': dead and not yet reaped). Returns whether it got there.
bool wait_for_state(pid_t pid, char state);

/// Kills `worker`, the worker of `d`, while sluiced is stopped (SIGSTOP), and
/// runs `meanwhile` once the worker is dead and before sluiced goes on
/// (SIGCONT): `meanwhile` runs while no worker exists, however fast the
/// machine is, since a stopped sluiced starts none. A fatal failure when
/// sluiced does not stop or the worker does not die within 10 s (sluiced is
/// let go on then too).
void kill_worker_while_stopped(Daemon& d, pid_t worker, const std::function<void()>& meanwhile);

/// The kernel's inode numbers of the sockets that the /proc/net tables
/// `net_dir` + `proto` and `net_dir` + `proto` + "6" (net_dir: "/proc/self/net/"
/// or "/proc/PID/net/", proto: "tcp" or "udp") list as bound to local port
/// `port` and not connected (remote port 0): listeners, or UDP sockets bound
/// and unconnected. Empty when there is none. The inode is a socket's
/// identity: a socket closed and bound again gets a new one, so the same set
/// before and after an event means the same sockets.
std::set<uint64_t> listener_inodes(const std::string& net_dir, const std::string& proto,
                                   uint16_t port);

}  // namespace sluice::test
