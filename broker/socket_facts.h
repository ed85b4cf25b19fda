// What sluiced reads from a socket it holds or was given, the same way
// everywhere: an int option of SOL_SOCKET and the socket's cookie. Used by
// the socket activation checks (socket_activation.cc), the fd store's
// checks of what comes back (fd_store.cc) and the listener escrow
// (listener_escrow.cc).
#pragma once

#include <cstdint>

#include "base/result.h"

namespace sluice {

/// Reads the int socket option `opt` (level SOL_SOCKET) of `fd`: SO_DOMAIN,
/// SO_TYPE, SO_ACCEPTCONN. Returns its value, or -1 with errno set when
/// getsockopt fails (ENOTSOCK for a descriptor that is not a socket). Needs
/// `getsockopt` with that option (before sluiced's filter, or a row of it).
int sockopt_int(int fd, int opt) noexcept;

/// Returns the SO_COOKIE of the socket `fd`: a number the kernel gives each
/// socket once, shared by every descriptor of it. Fails with the errno of
/// getsockopt. Needs `getsockopt` (SOL_SOCKET, SO_COOKIE).
Result<uint64_t> read_socket_cookie(int fd);

}  // namespace sluice
