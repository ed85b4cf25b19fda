// The control socket: a listening UNIX stream socket that sluicectl connects
// to. The broker creates it (mode 0660) and hands it to the worker, which
// serves it; the broker only removes the file again at shutdown.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// Limit: pending connections on the control socket. Clients are operators'
/// tools and scripts, each commit is short, and the worker accepts in its loop;
/// 64 absorbs a burst of scripted pushes, and the kernel caps it at somaxconn.
inline constexpr int kControlBacklog = 64;

/// The control socket's mode: its owner (sluiced's user) and group may
/// connect; the `control` policy then decides what each client may do.
inline constexpr mode_t kControlSocketMode = 0660;
/// The umask in force while the socket is bound: bind() creates the file as
/// 0777 & ~umask, so the socket is born kControlSocketMode, and no chmod by
/// path (which follows a symlink swapped in after the bind) is needed.
inline constexpr mode_t kControlSocketUmask = 0117;

/// Which socket is made, for messages: its name and the option that sets
/// its path.
struct SocketRole {
  const char* noun;    // "control socket"
  const char* option;  // "-c PATH"
};
/// sluicectl's control socket (-c).
inline constexpr SocketRole kControlRole = {"control socket", "-c PATH"};
/// pesto's socket (--pesto-socket), made with the same rules.
inline constexpr SocketRole kPestoRole = {"pesto socket", "--pesto-socket PATH"};

/// A created control socket and what is needed to remove it later.
struct ControlSocket {
  SocketRole role = kControlRole;  // for messages
  UniqueFd listen_fd;  // SOCK_STREAM | NONBLOCK | CLOEXEC, listening; goes to the worker
  UniqueFd dir_fd;     // O_PATH of the socket's directory, for removal under seccomp
  std::string path;    // as given or defaulted
  std::string name;    // the last path component, relative to dir_fd
  dev_t dev = 0;       // identity of the socket file created, so that shutdown
  ino_t ino = 0;       // removes only that file, never a successor's
  /// Passed by the service manager (socket activation): its file belongs to
  /// the .socket unit, which outlives sluiced, so it is never removed, and
  /// dir_fd is /dev/null.
  bool activated = false;
};

/// Returns the default control socket path, creating its directory:
/// /run/sluice/control.sock as root (/run/sluice mode 0755), else
/// $XDG_RUNTIME_DIR/sluice/control.sock (the sluice directory mode 0700).
/// Fails, saying what was tried and to pass -c PATH, when neither works.
Result<std::string> default_control_path();

/// The rule for the directory that holds the control socket, given its
/// owner and mode and sluiced's effective uid. Anyone who can write to the
/// directory can replace the socket (and then hear what clients send), so:
///   - it must belong to root or to sluiced's user, and
///   - it must not be writable by group or others, unless it is sticky (like
///     /tmp): then only its owner and a file's owner may remove or rename
///     the socket.
/// Fails with one line naming the directory and what to do.
/// `role` words the message.
Result<void> check_control_dir(const std::string& dir, uint32_t owner, uint32_t mode, uint32_t euid,
                               const SocketRole& role = kControlRole);

/// Creates the control socket at `path`. Opens its directory and checks it
/// with check_control_dir(), then works inside that directory (fchdir), so a
/// component of the path that changes meanwhile cannot move the socket. An
/// existing socket file is probed with connect(): ECONNREFUSED means stale
/// (it is removed), a connection means "another sluiced is listening" (an
/// error), a non-socket is an error. Then socket, bind with umask
/// kControlSocketUmask (the file is born 0660; no chmod), a check that it is
/// a socket of mode 0660, listen(kControlBacklog). Fails with what to do.
/// `role` words the messages (the pesto socket is made the same way).
Result<ControlSocket> create_control_socket(const std::string& path,
                                            const SocketRole& role = kControlRole);

/// Removes the socket file of `sock` (name in dir_fd) if it is still the one
/// this broker created (same dev/ino); logs a warning when it cannot. Does
/// nothing for an activated socket (the .socket unit owns its file). Needs
/// `newfstatat` and `unlinkat` on dir_fd in the seccomp policy.
void remove_control_socket(const ControlSocket& sock);

}  // namespace sluice
