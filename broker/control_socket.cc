// The control socket (see control_socket.h).
#include "broker/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// Makes sure `dir` is a directory, creating it with exactly `mode` (not
/// narrowed by the umask) when missing. A symlink is refused, so that the
/// socket cannot be steered elsewhere. Fails with the path and errno.
Result<void> ensure_dir(const std::string& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) == 0) {
    if (::chmod(dir.c_str(), mode) != 0) {
      int err = errno;
      return SysErr(err, "cannot set the mode of " + dir);
    }
    return Ok();
  }
  if (errno != EEXIST) {
    int err = errno;
    return SysErr(err, "cannot create " + dir);
  }
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat " + dir);
  }
  if (!S_ISDIR(st.st_mode)) return Err(dir + " exists and is not a directory");
  return Ok();
}

/// Fills `addr` for `path`; the caller checked that the path fits.
socklen_t fill_addr(const std::string& path, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);
}

/// Handles an existing file at the socket's path: removes a stale socket
/// (connect refused), refuses a live one or a non-socket.
Result<void> clear_old_socket(const ControlSocket& sock) {
  struct stat st;
  if (::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    int err = errno;
    return SysErr(err, "cannot stat " + sock.path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Err(sock.path + " exists and is not a socket; remove it, or pass another -c PATH");
  }
  // Non-blocking, so that a live listener with a full backlog (EAGAIN) cannot
  // hang the probe; it counts as in use.
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid()) {
    int err = errno;
    return SysErr(err, "socket(AF_UNIX)");
  }
  struct sockaddr_un addr;
  socklen_t len = fill_addr(sock.path, &addr);
  if (::connect(probe.get(), reinterpret_cast<struct sockaddr*>(&addr), len) == 0 ||
      errno == EAGAIN || errno == EINPROGRESS) {
    return Err("another sluiced is listening on " + sock.path +
               "; stop it first, or pass another -c PATH");
  }
  if (errno != ECONNREFUSED) {
    int err = errno;
    return Err(err, "cannot tell whether " + sock.path + " is in use: connect: " + errno_text(err) +
                        "; remove it if no sluiced is running");
  }
  LOG_INFO("removing stale control socket %s (nothing listens on it)", sock.path.c_str());
  if (::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0) != 0) {
    int err = errno;
    return SysErr(err, "cannot remove stale control socket " + sock.path);
  }
  return Ok();
}

}  // namespace

Result<std::string> default_control_path() {
  std::string tried;
  if (::geteuid() == 0) {
    // 0755: clients of any user may reach the socket, whose own mode (0660)
    // then decides who may connect.
    auto ok = ensure_dir("/run/sluice", 0755);
    if (ok) return std::string("/run/sluice/control.sock");
    tried = ok.error().message + "; ";
  }
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && xdg[0] == '/') {
    // 0700: a per-user runtime directory; only this user's clients connect.
    std::string dir = std::string(xdg) + "/sluice";
    auto ok = ensure_dir(dir, 0700);
    if (ok) return dir + "/control.sock";
    tried += ok.error().message;
  } else {
    tried += "XDG_RUNTIME_DIR is not set to an absolute path";
  }
  return Err("no default place for the control socket (" + tried + "); pass one with -c PATH");
}

Result<ControlSocket> create_control_socket(const std::string& path) {
  ControlSocket sock;
  sock.path = path;
  struct sockaddr_un addr;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Err("control socket path \"" + sanitize(path) + "\" must be 1 to " +
               std::to_string(sizeof(addr.sun_path) - 1) +
               " bytes (the UNIX socket address limit); pass a shorter -c PATH");
  }
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  sock.name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (sock.name.empty() || sock.name == "." || sock.name == "..") {
    return Err("control socket path " + path + " names a directory; give a file name");
  }
  sock.dir_fd.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!sock.dir_fd.valid()) {
    int err = errno;
    return Err(err, "cannot open " + dir + ", the directory of the control socket: " +
                        errno_text(err) + "; create it, or pass another -c PATH");
  }
  if (auto ok = clear_old_socket(sock); !ok) return Err(ok.error());

  sock.listen_fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock.listen_fd.valid()) {
    int err = errno;
    return SysErr(err, "socket(AF_UNIX)");
  }
  socklen_t len = fill_addr(path, &addr);
  // bind() creates the file with the umask applied (fchmod before bind has no
  // effect on AF_UNIX). umask 0177 makes it 0600 at birth, so that it is never
  // more open than intended, and chmod below widens it to exactly 0660.
  mode_t old_umask = ::umask(0177);
  int rc = ::bind(sock.listen_fd.get(), reinterpret_cast<struct sockaddr*>(&addr), len);
  int bind_err = errno;
  ::umask(old_umask);
  if (rc != 0) {
    return SysErr(bind_err, "cannot bind the control socket " + path);
  }
  struct stat st;
  if (::fchmodat(sock.dir_fd.get(), sock.name.c_str(), 0660, 0) != 0 ||
      ::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
      ::listen(sock.listen_fd.get(), kControlBacklog) != 0) {
    int err = errno;
    ::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0);
    return SysErr(err, "cannot set up the control socket " + path);
  }
  sock.dev = st.st_dev;
  sock.ino = st.st_ino;
  return sock;
}

void remove_control_socket(const ControlSocket& sock) {
  struct stat st;
  if (::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) {
      LOG_WARN("cannot check control socket %s: %s", sock.path.c_str(), errno_text(errno).c_str());
    }
    return;
  }
  if (st.st_dev != sock.dev || st.st_ino != sock.ino) {
    LOG_WARN("%s is no longer the socket this sluiced created; leaving it", sock.path.c_str());
    return;
  }
  if (::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0) != 0) {
    LOG_WARN("cannot remove control socket %s: %s; remove it by hand", sock.path.c_str(),
             errno_text(errno).c_str());
  }
}

}  // namespace sluice
