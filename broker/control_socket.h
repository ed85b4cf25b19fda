// The control socket: a listening UNIX stream socket that sluicectl connects
// to. The broker creates it (mode 0660) and hands it to the worker, which
// serves it; the broker only removes the file again at shutdown.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

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

/// Limit: directories checked from the socket's directory up to /. A path
/// of PATH_MAX (4096) bytes has at most 2048 components; a deeper walk means
/// a loop, and is refused.
inline constexpr size_t kMaxControlDirDepth = 2048;

/// The rule for one directory on the way from the control socket to /, given
/// its owner and mode and sluiced's effective uid. Anyone who can write to
/// the socket's directory can replace the socket (and then hear what clients
/// send); anyone who can write to a directory above it can rename the
/// directories below and put their own in place, which is the same. So, as
/// OpenSSH's StrictModes asks of the paths it trusts:
///   - it must belong to root or to sluiced's user, and
///   - it must not be writable by group or others, unless it is sticky (like
///     /tmp): then only its owner and an entry's owner may remove or rename
///     what is in it.
/// `on_way_to` is empty for the socket's own directory, else that directory
/// (`dir` is then above it, or on the way to it through a symbolic link),
/// for the message. `owner_unmapped`
/// says that `owner` is the overflow uid standing for a user that sluiced's
/// user namespace does not map: such an owner cannot be told apart from
/// root, and only the mode is checked. Fails with one line naming the
/// directory, its owner or mode, and what to do. `role` words the message.
Result<void> check_control_dir(const std::string& dir, uint32_t owner, uint32_t mode, uint32_t euid,
                               const SocketRole& role = kControlRole,
                               const std::string& on_way_to = "", bool owner_unmapped = false);

/// Whether `owner` stands for a user outside the user namespace whose
/// /proc/self/uid_map is `uid_map`: it is the kernel's `overflow_uid`
/// (/proc/sys/kernel/overflowuid), which the map does not map. False for
/// every uid in the initial namespace, whose map covers them all.
bool owner_is_unmapped(uint32_t owner, std::string_view uid_map, uint32_t overflow_uid);

/// Checks with check_control_dir() the directory open as `dir_fd` (named
/// `dir`, as given) and every directory above it up to /, at most
/// kMaxControlDirDepth. The walk follows ".." from the open directory, so it
/// checks its real path whatever symlinks `dir` went through and whatever is
/// renamed meanwhile. Then every directory that the path `dir` goes through
/// as written (clients follow it too), with the directories above each:
/// the directory that holds a symbolic link on the way must pass as well,
/// or its owner could point the link elsewhere. Messages name directories
/// by their real path (realpath). Fails with the first directory that does
/// not pass, or with the errno of a step. Needs `open`/`openat` (O_PATH),
/// `fstat`, and /proc/self/uid_map when an owner reads as the overflow uid.
Result<void> check_control_dir_chain(int dir_fd, const std::string& dir, uint32_t euid,
                                     const SocketRole& role = kControlRole);

/// Creates the control socket at `path`. Opens its directory and checks it
/// and every directory above it with check_control_dir_chain(), then works
/// inside that directory (fchdir), so a
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
