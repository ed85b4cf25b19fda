// Socket activation (sd_listen_fds(3)), without libsystemd: when
// LISTEN_PID is sluiced's pid, the service manager passed LISTEN_FDS
// descriptors from fd 3 on, named by LISTEN_FDNAMES (colon-separated,
// FileDescriptorName= of the .socket unit). sluiced adopts the one named
// `control` as its control socket and the one named `pesto` as its
// --pesto-socket, after checking each is what it claims (an AF_UNIX
// SOCK_STREAM socket that listens); anything else is closed with a log line.
// The variables are unset at once, so that no child sees them.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// The first fd of socket activation (SD_LISTEN_FDS_START).
inline constexpr int kListenFdsStart = 3;
/// Limit: descriptors sluiced accepts from LISTEN_FDS: the socket unit's
/// two (control and pesto), and what sluiced put in the service manager's fd
/// store (one per listener and the worker's state; broker/fd_store.h), which
/// the unit's FileDescriptorStoreMax= bounds. 65,536 is the shipped unit's
/// LimitNOFILE, more than sluiced could hold open anyway; a larger count is
/// nonsense, refused before close_range sizes on it.
inline constexpr int kMaxListenFds = 65536;

/// LISTEN_FDNAMES name of the control socket's fd (FileDescriptorName=).
inline constexpr char kControlFdName[] = "control";
/// LISTEN_FDNAMES name of the --pesto-socket fd.
inline constexpr char kPestoFdName[] = "pesto";

/// What the service manager passed, parsed from the three variables.
struct ListenEnv {
  int count = 0;                   // fds kListenFdsStart .. + count - 1; 0: none for us
  std::vector<std::string> names;  // one per fd; "unknown" where LISTEN_FDNAMES has none
};

/// Parses LISTEN_FDNAMES for `count` fds: colon-separated names, one per
/// fd. A missing variable names every fd "unknown" (as sd_listen_fds_with_names
/// does). Fails when the number of names is not `count`, or a name is empty
/// or longer than 255 bytes (systemd's FDNAME_MAX) or holds a control byte.
Result<std::vector<std::string>> parse_listen_fdnames(const char* names, int count);

/// Reads LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES (each may be null) for
/// the process `self`: count 0 when LISTEN_PID is unset or another pid (the
/// fds are not ours: a parent's leftovers). Fails on a malformed LISTEN_PID
/// or LISTEN_FDS, a count above kMaxListenFds, or bad names.
Result<ListenEnv> parse_listen_env(const char* pid, const char* fds, const char* names, pid_t self);

/// Checks that `fd` is what a socket unit's ListenStream= for a UNIX path
/// gives: SO_DOMAIN AF_UNIX, SO_TYPE SOCK_STREAM, SO_ACCEPTCONN 1. Fails,
/// naming `name` and what it is instead.
Result<void> check_activated_socket(int fd, const std::string& name);

/// The path a listening UNIX socket is bound to (getsockname), or "" for an
/// unnamed or abstract one.
std::string socket_path_of(int fd);

/// Removes LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES, NOTIFY_SOCKET,
/// WATCHDOG_USEC and WATCHDOG_PID from sluiced's environment: they were for
/// sluiced alone, never for a child.
void unset_service_manager_env();

}  // namespace sluice
