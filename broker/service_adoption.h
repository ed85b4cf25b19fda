// What the service manager hands sluiced at start, adopted before its
// filter: the control and pesto sockets of socket activation
// (broker/socket_activation.h), and the listeners and worker state sluiced
// itself put in the service manager's fd store before a restart
// (broker/fd_store.h), which go to the listener escrow so that the first
// worker resumes from them.
#pragma once

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/broker_host.h"
#include "broker/control_socket.h"
#include "broker/fd_store.h"
#include "broker/socket_activation.h"

namespace sluice {

/// The sockets the service manager passed (socket activation), adopted.
struct AdoptedSockets {
  UniqueFd control;             // named `control`, or invalid
  UniqueFd pesto;               // named `pesto`, or invalid
  StoredFds stored;             // listeners and the worker's state from the fd store
  bool closed_unnamed = false;  // an fd of a name sluiced does not use was closed
};

/// Adopts the fds of `env` (from kListenFdsStart on): the listeners and the
/// worker's state that sluiced put in the service manager's fd store
/// (take_stored_fds(): checked, moved above the fixed numbers), `control`,
/// and `pesto` when sluiced has --pesto-socket (`want_pesto`), each checked
/// with check_activated_socket() and made CLOEXEC and non-blocking (the
/// worker accepts from its event loop); every other fd, or a second one of a
/// name, is closed with a log line. Fails, naming the fd, when a `control` or
/// `pesto` fd is not a listening UNIX stream socket; the caller exits.
Result<AdoptedSockets> adopt_activated(const ListenEnv& env, bool want_pesto);

/// Wraps the adopted listening socket `fd` as a ControlSocket of `role`:
/// never removed by sluiced (the .socket unit owns its file), its path as
/// the socket reports it, else `fallback` (for messages only). Fails when
/// /dev/null (the stand-in for its directory's fd) cannot be opened.
Result<ControlSocket> activated_socket(UniqueFd fd, const SocketRole& role,
                                       const std::string& fallback);

/// Hands what the service manager's fd store gave back (`stored`) to the
/// escrow of `host`, so that the first worker resumes from it as after a
/// worker crash, and, under a service manager (`notify`), mirrors the escrow
/// into the store from now on and removes from it what sluiced closed at
/// start (StoredFds::stale). False (logged) when the stored state fails
/// its checks or the escrow is full: sluiced then stops rather than start
/// with part of what it had.
bool adopt_stored(BrokerHost& host, StoredFds stored, bool notify);

}  // namespace sluice
