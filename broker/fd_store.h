// The service manager's file-descriptor store (sd_pid_notify_with_fds(3),
// "FDSTORE=1"), spoken by sluiced itself: no libsystemd. Under systemd,
// sluiced hands the manager a copy of every listener it keeps in escrow and
// of the worker's last state, so that a restart of sluiced (an upgrade, a
// crash) gets them back through LISTEN_FDS and refuses no connection: the
// sockets never close, and connections that arrive meanwhile wait in their
// accept queues.
//
// Names (FDNAME=, at most 255 bytes, no ':' and no control byte):
//   listener-<16 hex>-<80 hex> a listener: its SO_COOKIE, which every
//                             descriptor of one socket shares (unique per
//                             socket, so FDSTOREREMOVE=1 of the name removes
//                             exactly that listener when it is released),
//                             and the bytes of the wire::ListenerSpec it was
//                             opened for, which the escrow hands a new worker
//                             (checked against the socket at start);
//   state-<decimal sequence>  the worker's state (a sealed memfd). A new one
//                             is stored before the previous is removed, so
//                             the store never lacks one; at start the highest
//                             sequence wins and the others are closed.
// Whatever the store returns is checked before use (check_stored_listener()):
// the manager is trusted, but a stale or foreign descriptor must not become a
// listener.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/fd_store_queue.h"
#include "schema/broker_wire.h"

namespace sluice {

/// FDNAME prefix of a stored listener; 16 lower-case hex digits (the
/// cookie), '-' and 80 (the spec) follow.
inline constexpr std::string_view kStoredListenerPrefix = "listener-";
/// FDNAME prefix of a stored worker state; a decimal sequence number follows.
inline constexpr std::string_view kStoredStatePrefix = "state-";

/// What a stored listener's name says.
struct StoredListenerName {
  uint64_t cookie = 0;
  wire::ListenerSpec spec = {};
};

/// The FDNAME of the listener whose SO_COOKIE is `cookie`, opened for `spec`.
std::string stored_listener_name(uint64_t cookie, const wire::ListenerSpec& spec);
/// The FDNAME of the worker state number `sequence`.
std::string stored_state_name(uint64_t sequence);
/// The cookie and spec of a listener's FDNAME, or nullopt when `name` is not
/// exactly kStoredListenerPrefix, 16 lower-case hex digits, '-' and 80.
/// The spec is not validated here (check_stored_listener() compares it with
/// the socket; the escrow's users validate it as every spec).
std::optional<StoredListenerName> parse_stored_listener_name(std::string_view name);
/// The sequence of a state's FDNAME, or nullopt when `name` is not exactly
/// kStoredStatePrefix and 1 to 20 decimal digits (no leading zero, at most
/// UINT64_MAX).
std::optional<uint64_t> parse_stored_state_name(std::string_view name);

/// The datagram that stores one descriptor under `name` (no trailing newline).
std::string fd_store_message(std::string_view name);
/// The datagram that removes every stored descriptor named `name`.
std::string fd_remove_message(std::string_view name);

/// Stores `fd` under `name`: sends fd_store_message() with `fd` in
/// SCM_RIGHTS on the connected notify socket `notify_fd` (MSG_DONTWAIT |
/// MSG_NOSIGNAL). Fails with the errno (EAGAIN when the manager's queue is
/// full: nothing was stored). Needs `sendmsg` on the notify fd.
Result<void> fd_store_put(int notify_fd, std::string_view name, int fd) noexcept;
/// Removes what is stored under `name`: sends fd_remove_message(). Fails
/// with the errno. Needs `sendto` on the notify fd (the readiness row).
Result<void> fd_store_remove(int notify_fd, std::string_view name) noexcept;

/// Checks a listener the store gave back against its name: an AF_INET or
/// AF_INET6 socket, SOCK_STREAM and listening or SOCK_DGRAM, of the spec's
/// family and protocol, bound to the spec's address and port, whose
/// SO_COOKIE is the name's. Fails, naming `fd` and what differs. Needs
/// `getsockopt` and `getsockname` (before the filter).
Result<void> check_stored_listener(int fd, const StoredListenerName& name);

/// The descriptors of LISTEN_FDS that came from the store, sorted out.
struct StoredFds {
  struct Listener {
    StoredListenerName name;
    UniqueFd fd;
  };
  std::vector<Listener> listeners;   // checked with check_stored_listener()
  UniqueFd state;                    // the highest-numbered state, unchecked
  uint64_t state_sequence = 0;       // its number (0 with no state)
  std::vector<std::string> dropped;  // one line per descriptor closed, and why
  // The names closed here that the manager still stores, to be removed
  // from its store (ListenerEscrow::unstore_stale): a listener that failed
  // its check, and every older state. Never a name also kept (a second copy
  // of a listener has its name: removing that would drop the one kept).
  std::vector<FdStoreKey> stale;
};

/// Takes from `fds` (parallel to `names`, the LISTEN_FDNAMES) every
/// descriptor whose name is a stored listener's or a state's, and leaves the
/// others (the socket unit's `control` and `pesto`) in place. A listener
/// that fails check_stored_listener(), a second one with the same cookie, and
/// every state but the highest-numbered are closed and named in `dropped`;
/// those listed in `stale` are the ones whose cookie (a listener) or number
/// (a state) no kept descriptor has, so that no kept name is removed.
StoredFds take_stored_fds(std::vector<UniqueFd>& fds, const std::vector<std::string>& names);

}  // namespace sluice
