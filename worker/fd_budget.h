// The worker's descriptor budget: how many more listening sockets a commit
// may ask sluiced for. The worker receives its listeners over SCM_RIGHTS;
// past its RLIMIT_NOFILE the kernel drops the rest of a batch (MSG_CTRUNC)
// and the commit fails halfway (commit_engine.cc takes that as a rollback).
// So before it asks, the engine checks that the sockets a commit needs fit:
//
//   room = RLIMIT_NOFILE - held now - kFdReserve
//
// where "held now" counts what the worker can count: its own fixed
// descriptors, the listeners it holds, and the data path's connections,
// pipes and UDP flows; kFdReserve keeps room for what comes and goes between
// commits (control clients, the host socket pools, new connections). A
// commit whose new listeners exceed the room is refused with a `capacity`
// failure that says how many it needs, how many fit, and what to do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "schema/control_types.h"

namespace sluice {

/// Limit: descriptors the worker holds that no counter tracks: fds 0 to 8
/// (schema/broker_wire.h: stdio, the broker channel, the control and pesto
/// sockets, the audit sink), the epoll and timer fds and auto-scan's eight
/// /proc/net files (fds 16 to 23) are 19; 32 leaves room for a few more
/// without a recount.
inline constexpr size_t kWorkerFixedFds = 32;

/// Limit: descriptors a commit never takes, for what comes and goes between
/// commits: control clients (64 sessions and 32 waiting for sluiced's
/// answer, worker/control_admission.h and kPeerQueryWindow), a pesto session,
/// the host socket pools of SPLICE rules (4 x 32, worker/socket_pool.h), and
/// at least 128 new TCP connections at kFdsPerConnection each.
/// 96 + 1 + 128 + 768 = 993; 1024 rounds that up. A table that leaves less
/// would take every new connection's descriptors: forwarding would stall at
/// the first burst.
inline constexpr size_t kFdReserve = 1024;

/// Limit: RLIMIT_NOFILE below which the reserve is a quarter of the limit
/// instead of kFdReserve: 1.5 x kFdReserve, where kFdReserve would leave
/// fewer than a third of the descriptors to listeners and the worker's own.
inline constexpr uint64_t kSmallFdLimit = kFdReserve * 3 / 2;

/// Limit: descriptors one TCP connection slot is counted for, the most it
/// holds: its two sockets and, while bytes are in flight, a pipe each way
/// (two descriptors each), as the shipped unit's LimitNOFILE= counts them.
inline constexpr size_t kFdsPerConnection = 6;

/// Limit: descriptors of the room (FdUse::room) that UDP flows leave to the
/// listeners of later commits. Flows come from whoever sends a datagram,
/// spoofed sources included; without this, a flood of sources would take
/// all the room, and every commit that adds a port would fail for lack of
/// descriptors until the flows went idle. 256 lets a commit of a few hundred
/// new ports through.
inline constexpr uint64_t kFlowListenerHeadroom = 256;

/// What the worker holds when a commit is checked.
struct FdUse {
  uint64_t limit = 0;      // RLIMIT_NOFILE (soft); 0: unknown, nothing is checked
  size_t listeners = 0;    // listening sockets held: in force, and adopted from a dead worker
  size_t connections = 0;  // TCP connection slots in use (Forwarder::in_use)
  size_t idle_pipes = 0;   // pipes kept for reuse (two descriptors each)
  size_t flows = 0;        // UDP flows (one socket each)

  /// Descriptors held now, as counted: kWorkerFixedFds and the above.
  uint64_t held() const noexcept {
    return kWorkerFixedFds + listeners + kFdsPerConnection * uint64_t{connections} +
           2 * uint64_t{idle_pipes} + flows;
  }
  /// The descriptors kept free: kFdReserve, or a quarter of a limit below
  /// kSmallFdLimit, so that a low hard limit (1,024 is common for a user)
  /// leaves room for listeners too instead of none.
  uint64_t reserve() const noexcept;
  /// Listening sockets that may still arrive without eating into the
  /// reserve: limit - held() - reserve(), or 0. UINT64_MAX when the limit is
  /// unknown.
  uint64_t room() const noexcept;
};

/// Checks that `fresh` new listening sockets (those a commit asks sluiced
/// for, of `total` its tables need) fit `use`. Returns nothing when they do,
/// or a `capacity` failure about table `pif` (the one with most new sockets)
/// naming the numbers and what to do: forward fewer ports, or raise
/// sluiced's LimitNOFILE= (systemd) or `ulimit -n`, which its workers
/// inherit. Pure.
std::optional<control::Failure> check_fd_budget(size_t fresh, size_t total, Pif pif,
                                                const FdUse& use);

/// Returns the `capacity` failure of a commit some of whose `lost` sockets
/// (of table `pif`) sluiced sent and the worker never received, its
/// descriptor table being full (`use` as it is now): the commit fails and
/// is rolled back, whatever its rules' kind. Pure.
control::Failure lost_sockets_failure(size_t lost, Pif pif, const FdUse& use);

}  // namespace sluice
