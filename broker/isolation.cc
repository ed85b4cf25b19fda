// The broker's isolation stages (see isolation.h for the order).
#include "broker/isolation.h"

#include <cap-ng.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/log.h"
#include "base/strings.h"
#include "broker/target_namespace.h"
#include "policy/seccomp.h"

namespace sluice {
namespace {

/// Reads a small /proc file whole. Fails with the path and errno.
Result<std::string> read_proc_file(const char* path) {
  UniqueFd fd(::open(path, O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, std::string("cannot open ") + path);
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, std::string("cannot read ") + path);
    }
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
    // Limit: /proc/self/status is about 1.5 KiB; 64 KiB means something is off.
    if (text.size() > 65536) return Err(std::string(path) + " is unexpectedly large");
  }
}

/// Parses a hexadecimal u64 of 1..16 digits; false on anything else.
bool parse_hex64(std::string_view text, uint64_t* out) {
  if (text.empty() || text.size() > 16) return false;
  uint64_t v = 0;
  for (char c : text) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

/// Formats a capability mask for messages: "0x000001ffffffffff".
std::string cap_hex(uint64_t mask) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%016llx", static_cast<unsigned long long>(mask));
  return buf;
}

}  // namespace

Result<void> sanitize_inherited_fds(int activated) {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // Not CLOEXEC: these are the standard fds, and open() takes the lowest free
    // number, which is `fd` because the lower ones are open by now.
    int opened = ::open("/dev/null", O_RDWR | O_NOCTTY);
    if (opened < 0) {
      int err = errno;
      return Err(err, "cannot open /dev/null for closed fd " + std::to_string(fd) + ": " +
                          errno_text(err));
    }
    CHECK(opened == fd);
  }
  if (::close_range(3 + static_cast<unsigned>(activated), ~0U, 0) != 0) {
    int err = errno;
    return SysErr(err, "close_range of inherited fds");
  }
  return Ok();
}

Result<std::string> unblock_log() {
  struct stat st;
  if (::fstat(2, &st) != 0) {
    int err = errno;
    return SysErr(err, "fstat of stderr");
  }
  if (S_ISSOCK(st.st_mode)) {
    log_set_socket_sink(true);
    return std::string("stderr is a socket: log lines are sent with MSG_DONTWAIT");
  }
  if (!S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode)) {
    return std::string("stderr is a file: a write there does not wait for a reader");
  }
  // A new file description of the same pipe or terminal: O_NONBLOCK on it
  // changes nothing for fd 1 or for the processes that share the old one.
  // O_NOCTTY: a terminal never becomes sluiced's controlling terminal.
  UniqueFd fresh(::open("/proc/self/fd/2", O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fresh.valid() && errno == EACCES && S_ISCHR(st.st_mode)) {
    // A terminal of another user (sluiced started with runuser or sudo -u
    // from someone's session): someone is watching it, and a terminal holds
    // a line only while its output is stopped (Ctrl-S). Not worth a warning.
    return std::string(
        "stderr is another user's terminal, which sluiced may not reopen: it writes it as it "
        "is (a terminal stopped with Ctrl-S holds log lines)");
  }
  if (!fresh.valid()) {
    int err = errno;
    return Err(err, "cannot reopen stderr non-blocking (" + errno_text(err) +
                        (err == EACCES ? ": the pipe or terminal belongs to another user" : "") +
                        "), so a log line waits while its reader is slow; to avoid that, "
                        "give sluiced a file, a socket (systemd's journal), or a pipe of its "
                        "own user as stderr");
  }
  // Not close-on-exec, as fd 2 always was (the worker's fds are set
  // explicitly anyway).
  if (::dup3(fresh.get(), 2, 0) != 2) {
    int err = errno;
    return SysErr(err, "dup3 of the non-blocking stderr to fd 2");
  }
  return std::string(
      "stderr is a pipe or terminal: sluiced writes it through a non-blocking description of "
      "its own");
}

Result<void> raise_nofile_limit() {
  struct rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    int err = errno;
    return SysErr(err, "getrlimit(RLIMIT_NOFILE)");
  }
  if (lim.rlim_cur == lim.rlim_max) return Ok();
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    int err = errno;
    return SysErr(err, "setrlimit(RLIMIT_NOFILE) to the hard limit");
  }
  LOG_DEBUG("RLIMIT_NOFILE raised to %llu", static_cast<unsigned long long>(lim.rlim_cur));
  return Ok();
}

uint32_t read_unprivileged_port_start() {
  static constexpr const char* kPath = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
  auto text = read_proc_file(kPath);
  unsigned long value = 0;
  if (text) {
    std::string_view v = *text;
    while (!v.empty() && (v.back() == '\n' || v.back() == ' ')) v.remove_suffix(1);
    if (parse_uint(v, 65536, &value)) return static_cast<uint32_t>(value);
  }
  LOG_WARN("cannot read %s (%s); assuming the kernel default 1024", kPath,
           text ? "not a number" : text.error().message.c_str());
  return 1024;
}

bool read_local_port_range(uint32_t* first, uint32_t* last) {
  static constexpr const char* kPath = "/proc/sys/net/ipv4/ip_local_port_range";
  auto text = read_proc_file(kPath);
  if (text) {
    // "FIRST<tab>LAST\n"
    std::string_view v = *text;
    const size_t gap = v.find_first_of(" \t");
    const size_t next = gap == std::string_view::npos ? gap : v.find_first_not_of(" \t", gap);
    unsigned long a = 0, b = 0;
    if (next != std::string_view::npos) {
      std::string_view second = v.substr(next);
      while (!second.empty() && (second.back() == '\n' || second.back() == ' ')) {
        second.remove_suffix(1);
      }
      if (parse_uint(v.substr(0, gap), 65535, &a) && parse_uint(second, 65535, &b) && a >= 1 &&
          a <= b) {
        *first = static_cast<uint32_t>(a);
        *last = static_cast<uint32_t>(b);
        return true;
      }
    }
  }
  LOG_WARN("cannot read %s (%s); the worker assumes the kernel's default range", kPath,
           text ? "not a range" : text.error().message.c_str());
  return false;
}

Result<CapSets> parse_cap_status(std::string_view status) {
  CapSets caps;
  struct Field {
    const char* key;
    uint64_t* slot;
    bool seen;
  } fields[] = {{"CapInh:", &caps.inh, false},
                {"CapPrm:", &caps.prm, false},
                {"CapEff:", &caps.eff, false},
                {"CapBnd:", &caps.bnd, false},
                {"CapAmb:", &caps.amb, false}};
  while (!status.empty()) {
    size_t nl = status.find('\n');
    std::string_view line = status.substr(0, nl);
    status.remove_prefix(nl == std::string_view::npos ? status.size() : nl + 1);
    for (Field& f : fields) {
      std::string_view key(f.key);
      if (line.substr(0, key.size()) != key) continue;
      std::string_view value = line.substr(key.size());
      while (!value.empty() && (value.front() == '\t' || value.front() == ' ')) {
        value.remove_prefix(1);
      }
      if (!parse_hex64(value, f.slot)) {
        return Err(std::string("malformed ") + f.key + " line in /proc/self/status");
      }
      f.seen = true;
    }
  }
  for (const Field& f : fields) {
    if (!f.seen) return Err(std::string("no ") + f.key + " line in /proc/self/status");
  }
  return caps;
}

Result<void> check_caps_dropped(const CapSets& caps, bool bounding_cleared) {
  const struct {
    const char* name;
    uint64_t value;
    bool checked;
  } sets[] = {{"CapEff", caps.eff, true},
              {"CapPrm", caps.prm, true},
              {"CapInh", caps.inh, true},
              {"CapAmb", caps.amb, true},
              {"CapBnd", caps.bnd, bounding_cleared}};
  for (const auto& s : sets) {
    if (s.checked && (s.value & ~kBindCapMask) != 0) {
      return Err(std::string("capabilities were not dropped: ") + s.name + " is " +
                 cap_hex(s.value) + ", but only CAP_NET_BIND_SERVICE (" + cap_hex(kBindCapMask) +
                 ") may remain; refusing to run with more privilege than that");
    }
  }
  return Ok();
}

namespace {

/// Applies the capabilities staged in libcap-ng (capng_clear, capng_update):
/// the bounding set first while CAP_SETPCAP is still held (`has_setpcap`;
/// Debian's libcap-ng returns success without dropping anything when it is
/// not, DEPENDENCIES.md, which the caller's read-back then catches), then the
/// effective, permitted and inheritable sets; clears the ambient set; sets
/// NO_NEW_PRIVS; and reads back what the kernel now holds from
/// /proc/self/status. `whose` ("sluiced's", "the launcher's") names the
/// process in errors.
Result<CapSets> apply_staged_capabilities(bool has_setpcap, const std::string& whose) {
  if (has_setpcap && capng_apply(CAPNG_SELECT_BOUNDS) != 0) {
    return Err("capng_apply(CAPNG_SELECT_BOUNDS) failed to cut " + whose + " bounding set");
  }
  if (capng_apply(CAPNG_SELECT_CAPS) != 0) {
    return Err("capng_apply(CAPNG_SELECT_CAPS) failed to cut " + whose + " capabilities");
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    int err = errno;
    return SysErr(err, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    int err = errno;
    return SysErr(err, "prctl(PR_SET_NO_NEW_PRIVS)");
  }
  auto status = read_proc_file("/proc/self/status");
  if (!status) return Err(status.error());
  return parse_cap_status(*status);
}

}  // namespace

Result<bool> drop_capabilities(bool keep_bind_cap) {
  // Stage 4. Why here: the worker is already forked (it needs CAP_SETUID to
  // switch to an unprivileged user); from now on the broker needs nothing but
  // CAP_NET_BIND_SERVICE, and only for bind() below the unprivileged port start.
  if (capng_get_caps_process() != 0) {
    return Err("cannot read this process's capabilities (capng_get_caps_process)");
  }
  const bool has_setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) != 0;
  const bool had_bind =
      keep_bind_cap && capng_have_capability(CAPNG_PERMITTED, CAP_NET_BIND_SERVICE) != 0;
  capng_clear(CAPNG_SELECT_BOTH);
  if (had_bind &&
      capng_update(CAPNG_ADD, static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED),
                   CAP_NET_BIND_SERVICE) != 0) {
    return Err("capng_update(CAP_NET_BIND_SERVICE) failed");
  }
  // NO_NEW_PRIVS (set by the helper): no exec can ever gain privilege again
  // (the bounding set is then irrelevant), and the seccomp filter can be
  // loaded without CAP_SYS_ADMIN.
  auto caps = apply_staged_capabilities(has_setpcap, "sluiced's");
  if (!caps) return Err(caps.error());
  if (auto ok = check_caps_dropped(*caps, has_setpcap); !ok) return Err(ok.error());
  if (!has_setpcap) {
    // Root without CAP_SETPCAP: a service manager's bounding set left it
    // out, and the operator should know (the shipped unit keeps it).
    const bool root = ::geteuid() == 0;
    log_write(root ? LogLevel::kWarn : LogLevel::kDebug, __func__,
              "bounding set left as is (%s): clearing it needs CAP_SETPCAP, which sluiced does "
              "not hold%s; NO_NEW_PRIVS keeps any exec from gaining a capability",
              cap_hex(caps->bnd).c_str(),
              root ? " (a CapabilityBoundingSet= without it? add CAP_SETPCAP there)" : "");
  }
  const bool has_bind_cap = (caps->eff & kBindCapMask) != 0;
  LOG_DEBUG("capabilities dropped; CAP_NET_BIND_SERVICE %s", has_bind_cap ? "kept" : "not held");
  return has_bind_cap;
}

uint64_t launcher_capabilities_needed() {
  uid_t ruid = 1, euid = 1, suid = 1;
  if (::getresuid(&ruid, &euid, &suid) != 0 || (ruid != 0 && euid != 0 && suid != 0)) return 0;
  // Real root: its workers switch to their own user (worker/sandbox.cc
  // stage 2): setgroups and setresgid need CAP_SETGID, setresuid
  // CAP_SETUID. Their user namespace (stage 4) then maps that user, which
  // needs nothing more.
  // uid 0 in another user namespace (`unshare -Ur`): its workers do not
  // switch, and their stage 4 maps uid 0 of this namespace into their own;
  // since Linux 5.12 that map is refused unless the process held CAP_SETFCAP
  // when it made the namespace (verify_root_map, kernel/user_namespace.c).
  // Nothing else: a worker's later stages run in a user namespace of its
  // own, where it holds every capability (stage 7 empties its bounding set
  // there, so no CAP_SETPCAP is needed here); a target network namespace
  // with no user namespace to join was joined by the launcher before the
  // cut, and the owner of a rootless container needs no capability to join
  // it; the launcher opens no
  // privileged file, binds nothing and signals no other user.
  return in_initial_user_namespace() ? kSetidCapMask : kSetfcapMask;
}

Result<CapSets> cut_launcher_capabilities(uint64_t keep) {
  // The bounding set keeps them too: a root exec gains exactly inheritable |
  // bounding (limited by NO_NEW_PRIVS to what the launcher holds), so the
  // worker starts with these and nothing else.
  if (capng_get_caps_process() != 0) {
    return Err("cannot read this process's capabilities (capng_get_caps_process)");
  }
  const bool has_setpcap = capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP) != 0;
  // What of `keep` is permitted now, read before capng_clear() forgets it.
  uint64_t kept = 0;
  for (unsigned cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if ((keep & (1ULL << cap)) != 0 && capng_have_capability(CAPNG_PERMITTED, cap) != 0) {
      kept |= 1ULL << cap;
    }
  }
  capng_clear(CAPNG_SELECT_BOTH);
  const auto where =
      static_cast<capng_type_t>(CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET);
  for (unsigned cap = 0; cap <= CAP_LAST_CAP; ++cap) {
    if ((kept & (1ULL << cap)) != 0 && capng_update(CAPNG_ADD, where, cap) != 0) {
      return Err("capng_update(" + std::to_string(cap) + ") failed");
    }
  }
  // NO_NEW_PRIVS (set by the helper): no exec (a worker) gains more than the
  // launcher holds.
  auto caps = apply_staged_capabilities(has_setpcap, "the launcher's");
  if (!caps) return Err(caps.error());
  const struct {
    const char* name;
    uint64_t value;
    bool checked;
  } sets[] = {{"CapEff", caps->eff, true},
              {"CapPrm", caps->prm, true},
              {"CapInh", caps->inh, true},
              {"CapAmb", caps->amb, true},
              {"CapBnd", caps->bnd, has_setpcap}};
  for (const auto& s : sets) {
    if (s.checked && (s.value & ~keep) != 0) {
      return Err(std::string("the worker launcher's capabilities were not cut: ") + s.name +
                 " is " + cap_hex(s.value) + ", but only " + cap_hex(keep) +
                 " may remain; refusing to start workers with more privilege than that");
    }
  }
  return *caps;
}

Result<void> place_fds(std::span<const FdPlacement> placements) {
  int highest = 0;
  for (const FdPlacement& p : placements) highest = p.target > highest ? p.target : highest;
  for (const FdPlacement& p : placements) {
    UniqueFd moved(::fcntl(p.fd->get(), F_DUPFD_CLOEXEC, highest + 1));
    if (!moved.valid()) {
      int err = errno;
      return SysErr(err, "fcntl(F_DUPFD_CLOEXEC)");
    }
    *p.fd = std::move(moved);  // closes the old number
  }
  for (const FdPlacement& p : placements) {
    // Every fd the broker holds is owned by a UniqueFd; a foreign fd on a
    // target would be closed behind its owner's back.
    CHECK_MSG(::fcntl(p.target, F_GETFD) == -1 && errno == EBADF, "fixed fd number in use");
    if (::dup3(p.fd->get(), p.target, O_CLOEXEC) != p.target) {
      int err = errno;
      return SysErr(err, "dup3 to fd " + std::to_string(p.target));
    }
    p.fd->reset(p.target);
  }
  return Ok();
}

Result<void> install_broker_seccomp() {
#if defined(SLUICE_SANITIZE)
  LOG_WARN(
      "sanitizer build: the broker's seccomp filter is NOT loaded (the sanitizer runtime "
      "needs syscalls outside it)");
  return Ok();
#else
  return install_seccomp(broker_seccomp_rules(static_cast<int>(::getpid())));
#endif
}

Result<void> install_helper_seccomp() {
#if defined(SLUICE_SANITIZE)
  LOG_WARN(
      "sanitizer build: the namespace helper's seccomp filter is NOT loaded (the sanitizer "
      "runtime needs syscalls outside it)");
  return Ok();
#else
  return install_seccomp(helper_seccomp_rules(static_cast<int>(::getpid())));
#endif
}

}  // namespace sluice
