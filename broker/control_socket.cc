// The control socket (see control_socket.h).
#include "broker/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
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

/// Fills `addr` for `name`; the caller checked that it fits.
socklen_t fill_addr(const std::string& name, struct sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, name.c_str(), name.size() + 1);
  return static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + name.size() + 1);
}

/// The working directory moved to a directory fd for as long as it lives, so
/// that bind() and connect() of a UNIX socket, which take only a path, act in
/// exactly the directory that was opened and checked, whatever happens to
/// the path's components meanwhile. The broker is single-threaded here.
class ScopedCwd {
 public:
  /// Remembers the current directory and moves to `dir_fd`; check error().
  explicit ScopedCwd(int dir_fd) : old_(::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC)) {
    if (!old_.valid() || ::fchdir(dir_fd) != 0) {
      err_ = errno;
      old_.reset();
    }
  }
  /// Returns to the remembered directory (see restore()).
  ~ScopedCwd() { (void)restore(); }
  ScopedCwd(const ScopedCwd&) = delete;
  ScopedCwd& operator=(const ScopedCwd&) = delete;

  /// Returns 0 once in the directory, else the errno of the move.
  int error() const { return err_; }
  /// Returns to the remembered directory; 0, or the errno of fchdir.
  int restore() {
    if (!old_.valid()) return 0;
    int rc = ::fchdir(old_.get()) == 0 ? 0 : errno;
    old_.reset();
    return rc;
  }

 private:
  UniqueFd old_;
  int err_ = 0;
};

/// Handles an existing file called `sock.name` in the working directory
/// (which is sock.dir_fd): removes a stale socket (connect refused), refuses
/// a live one or a non-socket.
Result<void> clear_old_socket(const ControlSocket& sock) {
  struct stat st;
  if (::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return Ok();
    int err = errno;
    return SysErr(err, "cannot stat " + sock.path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Err(sock.path + " exists and is not a socket; remove it, or pass another " +
               std::string(sock.role.option));
  }
  // Non-blocking, so that a live listener with a full backlog (EAGAIN) cannot
  // hang the probe; it counts as in use.
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!probe.valid()) {
    int err = errno;
    return SysErr(err, "socket(AF_UNIX)");
  }
  struct sockaddr_un addr;
  socklen_t len = fill_addr(sock.name, &addr);
  if (::connect(probe.get(), reinterpret_cast<struct sockaddr*>(&addr), len) == 0 ||
      errno == EAGAIN || errno == EINPROGRESS) {
    return Err("another sluiced is listening on " + sock.path +
               "; stop it first, or pass another " + std::string(sock.role.option));
  }
  if (errno != ECONNREFUSED) {
    int err = errno;
    return Err(err, "cannot tell whether " + sock.path + " is in use: connect: " + errno_text(err) +
                        "; remove it if no sluiced is running");
  }
  LOG_INFO("removing stale %s %s (nothing listens on it)", sock.role.noun, sock.path.c_str());
  if (::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0) != 0) {
    int err = errno;
    return SysErr(err, "cannot remove stale " + std::string(sock.role.noun) + " " + sock.path);
  }
  return Ok();
}

/// Binds sock.listen_fd to sock.name in the working directory (sock.dir_fd) with the
/// socket file's final mode 0660 from birth: bind() applies the umask to
/// 0777, and no chmod by path follows, which a symlink swapped in after the
/// bind would redirect to any file. Then checks what was created (a socket,
/// mode 0660: a default ACL on the directory would replace the umask) and
/// records its identity in `sock`. Fails with the errno or the mode found;
/// a socket it created with the wrong mode is removed again.
Result<void> bind_0660(ControlSocket& sock) {
  struct sockaddr_un addr;
  socklen_t len = fill_addr(sock.name, &addr);
  mode_t old_umask = ::umask(kControlSocketUmask);
  int rc = ::bind(sock.listen_fd.get(), reinterpret_cast<struct sockaddr*>(&addr), len);
  int bind_err = errno;
  ::umask(old_umask);
  if (rc != 0 && (bind_err == EACCES || bind_err == EROFS)) {
    // The directory passed its checks but refuses the new file: say whose it is to write.
    const std::string dir = sock.path.substr(0, sock.path.rfind('/') + 1);
    return Err(bind_err, "cannot bind the " + std::string(sock.role.noun) + " " + sock.path + ": " +
                             errno_text(bind_err) + "; sluiced's user (uid " +
                             std::to_string(::getuid()) + ") may not create files in " +
                             (dir.empty() ? std::string("the working directory") : dir) +
                             ": give " + sock.role.option +
                             " in a directory it may write (an ordinary user's default is "
                             "$XDG_RUNTIME_DIR/sluice/)");
  }
  if (rc != 0)
    return SysErr(bind_err, "cannot bind the " + std::string(sock.role.noun) + " " + sock.path);
  struct stat st;
  if (::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat the " + std::string(sock.role.noun) + " " + sock.path);
  }
  if (!S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != kControlSocketMode) {
    if (S_ISSOCK(st.st_mode)) ::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0);
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Err(sock.path + " was created with mode " + mode + ", not 0660 (a default ACL on " +
               "its directory?); remove the ACL (setfacl -k), or pass another " + sock.role.option);
  }
  sock.dev = st.st_dev;
  sock.ino = st.st_ino;
  return Ok();
}

}  // namespace

Result<void> check_control_dir(const std::string& dir, uint32_t owner, uint32_t mode, uint32_t euid,
                               const SocketRole& role) {
  const std::string noun = role.noun;
  const std::string option = role.option;
  if (owner != 0 && owner != euid) {
    return Err(dir + ", the " + noun + "'s directory, belongs to uid " + std::to_string(owner) +
               ", who could replace the socket; use a directory of root or of uid " +
               std::to_string(euid) + " (such as /run/sluice), or pass another " + option);
  }
  if ((mode & (S_IWGRP | S_IWOTH)) != 0 && (mode & S_ISVTX) == 0) {
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", mode & 07777);
    return Err(dir + ", the " + noun + "'s directory, is writable by other users (mode " + octal +
               "), who could replace the socket; run chmod go-w (or chmod +t) on it, " +
               "or pass another " + option);
  }
  return Ok();
}

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

Result<ControlSocket> create_control_socket(const std::string& path, const SocketRole& role) {
  ControlSocket sock;
  sock.path = path;
  sock.role = role;
  const std::string noun = role.noun;
  const std::string option = role.option;
  struct sockaddr_un addr;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Err(noun + " path \"" + sanitize(path) + "\" must be 1 to " +
               std::to_string(sizeof(addr.sun_path) - 1) +
               " bytes (the UNIX socket address limit); pass a shorter " + option);
  }
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  sock.name = slash == std::string::npos ? path : path.substr(slash + 1);
  if (sock.name.empty() || sock.name == "." || sock.name == "..") {
    return Err(noun + " path " + path + " names a directory; give a file name");
  }
  sock.dir_fd.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!sock.dir_fd.valid()) {
    int err = errno;
    return Err(err, "cannot open " + dir + ", the directory of the " + noun + ": " +
                        errno_text(err) + "; create it, or pass another " + option);
  }
  struct stat dir_st;
  if (::fstat(sock.dir_fd.get(), &dir_st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat " + dir);
  }
  auto safe = check_control_dir(dir, dir_st.st_uid, dir_st.st_mode, ::geteuid(), role);
  if (!safe) return Err(safe.error());

  ScopedCwd in_dir(sock.dir_fd.get());
  if (in_dir.error() != 0) {
    return SysErr(in_dir.error(), "cannot enter " + dir + ", the directory of the " + noun);
  }
  if (auto ok = clear_old_socket(sock); !ok) return Err(ok.error());

  sock.listen_fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!sock.listen_fd.valid()) {
    int err = errno;
    return SysErr(err, "socket(AF_UNIX)");
  }
  auto bound = bind_0660(sock);
  int back = in_dir.restore();
  if (!bound) return Err(bound.error());
  if (back != 0) {
    ::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0);
    return SysErr(back, "cannot return to the working directory after binding " + path);
  }
  if (::listen(sock.listen_fd.get(), kControlBacklog) != 0) {
    int err = errno;
    ::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0);
    return SysErr(err, "cannot listen on the " + noun + " " + path);
  }
  return sock;
}

void remove_control_socket(const ControlSocket& sock) {
  if (sock.activated) return;
  struct stat st;
  if (::fstatat(sock.dir_fd.get(), sock.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) {
      LOG_WARN("cannot check %s %s: %s", sock.role.noun, sock.path.c_str(),
               errno_text(errno).c_str());
    }
    return;
  }
  if (st.st_dev != sock.dev || st.st_ino != sock.ino) {
    LOG_WARN("%s is no longer the socket this sluiced created; leaving it", sock.path.c_str());
    return;
  }
  if (::unlinkat(sock.dir_fd.get(), sock.name.c_str(), 0) != 0) {
    LOG_WARN("cannot remove %s %s: %s; remove it by hand", sock.role.noun, sock.path.c_str(),
             errno_text(errno).c_str());
  }
}

}  // namespace sluice
