// The control socket (see control_socket.h).
#include "broker/control_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

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
                               const SocketRole& role, const std::string& on_way_to,
                               bool owner_unmapped) {
  const std::string noun = role.noun;
  const std::string option = role.option;
  char octal[8];
  std::snprintf(octal, sizeof(octal), "%04o", mode & 07777);
  // What `dir` is to the socket, and what its owner or writers could do.
  const bool own = on_way_to.empty();
  const std::string what =
      own ? ", the " + noun + "'s directory,"
          : ", a directory on the way to " + on_way_to + " (the " + noun + "'s directory),";
  const std::string could =
      own ? "could replace the socket"
          : "could rename what lies below it and put their own directory and socket in its place";
  if (owner != 0 && owner != euid && !owner_unmapped) {
    if (own) {
      return Err(dir + what + " belongs to uid " + std::to_string(owner) + " (mode " + octal +
                 "), who " + could + "; use a directory of root or of uid " + std::to_string(euid) +
                 " (such as /run/sluice), or pass another " + option);
    }
    return Err(dir + what + " belongs to uid " + std::to_string(owner) + " (mode " + octal +
               "), who " + could + "; every directory on the way to the " + noun +
               " must belong to root or to uid " + std::to_string(euid) + ": pass another " +
               option + " (such as one in /run/sluice), or chown " + dir);
  }
  if ((mode & (S_IWGRP | S_IWOTH)) != 0 && (mode & S_ISVTX) == 0) {
    return Err(dir + what + " is writable by other users (mode " + octal + "), who " + could +
               "; run chmod go-w (or chmod +t) on it, or pass another " + option);
  }
  return Ok();
}

bool owner_is_unmapped(uint32_t owner, std::string_view uid_map, uint32_t overflow_uid) {
  if (owner != overflow_uid) return false;
  // Each line: "INSIDE OUTSIDE COUNT"; the owner is mapped when it lies in
  // an inside range (the initial namespace maps 0 to 4294967294).
  size_t at = 0;
  while (at < uid_map.size()) {
    size_t end = uid_map.find('\n', at);
    if (end == std::string_view::npos) end = uid_map.size();
    std::string line(uid_map.substr(at, end - at));
    at = end + 1;
    unsigned long inside = 0, outside = 0, count = 0;
    if (std::sscanf(line.c_str(), "%lu %lu %lu", &inside, &outside, &count) != 3) continue;
    if (owner >= inside && owner - inside < count) return false;
  }
  return true;
}

namespace {

/// Reads at most `max` bytes of the small /proc file `path`; "" when it
/// cannot be read.
std::string read_proc_text(const char* path, size_t max) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) return "";
  std::string text(max, '\0');
  size_t got = 0;
  while (got < max) {
    ssize_t n = ::read(fd.get(), text.data() + got, max - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  text.resize(got);
  return text;
}

/// Whether `owner`, as fstat shows it here, stands for a user that sluiced's
/// user namespace does not map (owner_is_unmapped() on this process's
/// /proc/self/uid_map and the kernel's overflow uid). False when /proc
/// cannot be read: the owner is then judged as it reads.
bool unmapped_here(uint32_t owner) {
  // Limit: /proc/self/uid_map holds at most 340 lines of at most 33 bytes.
  const std::string map = read_proc_text("/proc/self/uid_map", 340 * 33);
  if (map.empty()) return false;
  // Limit: the overflow uid is one number of at most 10 digits and a newline.
  const std::string overflow = read_proc_text("/proc/sys/kernel/overflowuid", 16);
  unsigned long overflow_uid = 65534;
  if (!parse_uint(overflow.substr(0, overflow.find('\n')), UINT32_MAX, &overflow_uid)) {
    overflow_uid = 65534;
  }
  return owner_is_unmapped(owner, map, static_cast<uint32_t>(overflow_uid));
}

/// Returns the parent of the absolute path `path` ("/" for "/" and "/x").
std::string parent_path(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

/// Returns the real path of `path` (realpath), or `path` when it has none.
std::string real_path_of(const std::string& path) {
  char* resolved = ::realpath(path.c_str(), nullptr);
  std::string real = resolved != nullptr ? std::string(resolved) : path;
  std::free(resolved);
  return real;
}

/// Returns the directories that `dir`'s path goes through before `dir`
/// itself, in order: "/", "/a" and "/a/b" for "/a/b/c"; ".", "a" for "a/b".
std::vector<std::string> path_prefixes(const std::string& dir) {
  std::vector<std::string> out;
  std::string prefix = dir[0] == '/' ? "/" : ".";
  out.push_back(prefix);
  size_t at = dir[0] == '/' ? 1 : 0;
  while (at < dir.size()) {
    size_t slash = dir.find('/', at);
    if (slash == std::string::npos) break;  // the last component is `dir` itself
    std::string component = dir.substr(at, slash - at);
    at = slash + 1;
    if (component.empty() || component == ".") continue;
    prefix = prefix == "/" ? "/" + component : prefix == "." ? component : prefix + "/" + component;
    out.push_back(prefix);
  }
  return out;
}

/// Checks the directory open as `dir_fd`, whose real path is `real`, and
/// every directory above it, walking ".." up to / (at most
/// kMaxControlDirDepth) or to a directory in `checked` (whose ancestors were
/// checked). `dir_fd` is the socket's own directory, named `own_name` in
/// messages, when `on_way_to` is empty; otherwise that is the directory
/// `on_way_to`. Adds every directory that passes to `checked`. Fails with
/// the first that does not.
Result<void> check_upwards(int dir_fd, const std::string& real, const std::string& own_name,
                           const std::string& on_way_to, uint32_t euid, const SocketRole& role,
                           std::set<std::pair<dev_t, ino_t>>* checked) {
  UniqueFd cur(::openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!cur.valid()) {
    int err = errno;
    return SysErr(err, "cannot open " + real + " to check it");
  }
  std::string name = real;
  for (size_t depth = 0; depth < kMaxControlDirDepth; ++depth) {
    struct stat st;
    if (::fstat(cur.get(), &st) != 0) {
      int err = errno;
      return SysErr(err, "cannot stat " + name);
    }
    if (checked->count({st.st_dev, st.st_ino}) != 0) return Ok();
    const bool unmapped = st.st_uid != 0 && st.st_uid != euid && unmapped_here(st.st_uid);
    if (unmapped) {
      LOG_DEBUG(
          "%s belongs to a user outside sluiced's user namespace (uid %u here): its owner "
          "cannot be checked, only its mode",
          name.c_str(), static_cast<unsigned>(st.st_uid));
    }
    const bool own = depth == 0 && on_way_to.empty();
    auto ok = check_control_dir(own ? own_name : name, st.st_uid, st.st_mode, euid, role,
                                own                 ? ""
                                : on_way_to.empty() ? own_name
                                                    : on_way_to,
                                unmapped);
    if (!ok) return ok;
    checked->insert({st.st_dev, st.st_ino});
    UniqueFd up(::openat(cur.get(), "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!up.valid()) {
      int err = errno;
      return SysErr(err, "cannot open the directory above " + name + " to check it");
    }
    struct stat up_st;
    if (::fstat(up.get(), &up_st) != 0) {
      int err = errno;
      return SysErr(err, "cannot stat the directory above " + name);
    }
    // At the root, ".." is the directory itself: every directory is checked.
    if (up_st.st_dev == st.st_dev && up_st.st_ino == st.st_ino) return Ok();
    cur = std::move(up);
    name = parent_path(name);
  }
  return Err(real + " is more than " + std::to_string(kMaxControlDirDepth) +
             " directories deep; give a shorter " + role.option);
}

}  // namespace

Result<void> check_control_dir_chain(int dir_fd, const std::string& dir, uint32_t euid,
                                     const SocketRole& role) {
  std::set<std::pair<dev_t, ino_t>> checked;
  // The directory the socket goes in, by its real path: the walk follows
  // ".." from the directory that was opened, so no rename can steer it.
  const std::string real = real_path_of(dir);
  const std::string named = real == dir ? dir : dir + " (real path " + real + ")";
  if (auto ok = check_upwards(dir_fd, real, named, "", euid, role, &checked); !ok) return ok;
  // The path as written, which clients follow too. A symbolic link on it
  // must be root's or sluiced's user's: in a sticky directory (/tmp) its
  // owner may replace it, pointing the path elsewhere.
  std::vector<std::string> prefixes = path_prefixes(dir);
  prefixes.push_back(dir);
  for (const std::string& prefix : prefixes) {
    struct stat st;
    if (prefix == "/" || prefix == "." || ::lstat(prefix.c_str(), &st) != 0 ||
        !S_ISLNK(st.st_mode) || st.st_uid == 0 || st.st_uid == euid || unmapped_here(st.st_uid)) {
      continue;
    }
    return Err(prefix + ", a symbolic link on the way to " + named + " (the " + role.noun +
               "'s directory), belongs to uid " + std::to_string(st.st_uid) +
               ", who could point it elsewhere; pass another " + role.option +
               " (such as one in /run/sluice), or give the real path");
  }
  prefixes.pop_back();
  // The directories the path goes through as written: the one that holds a
  // symbolic link could point it elsewhere. Without symlinks, they were all
  // checked above.
  for (const std::string& prefix : prefixes) {
    UniqueFd fd(::open(prefix.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) {
      int err = errno;
      return SysErr(err, "cannot open " + prefix + ", on the way to " + dir + ", to check it");
    }
    const std::string real_prefix = real_path_of(prefix);
    auto ok = check_upwards(fd.get(), real_prefix, real_prefix, named, euid, role, &checked);
    if (!ok) return ok;
  }
  return Ok();
}

Result<std::string> default_control_path() {
  std::string tried;
  if (::geteuid() == 0) {
    // 0755: clients of any user may reach the socket, whose own mode (0660)
    // then decides who may connect. Root has no other default: sluicectl
    // run by root looks there (base/paths.h), so a socket put anywhere else
    // would not be found.
    auto ok = ensure_dir("/run/sluice", 0755);
    if (ok) return std::string("/run/sluice/control.sock");
    return Err("no default place for the control socket: " + ok.error().message +
               "; fix /run/sluice (a directory of root, not writable by others), or pass a path "
               "with -c PATH and give the same path to sluicectl");
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
  auto safe = check_control_dir_chain(sock.dir_fd.get(), dir, ::geteuid(), role);
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
