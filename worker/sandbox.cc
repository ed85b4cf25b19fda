// The worker's sandbox: named stages, in the order of worker/sandbox.h, each
// with a comment saying why it is needed and why it is safe at that point.
//
// The order matters:
//  - the uid switch (2) comes before PDEATHSIG (3), because a credential
//    change resets the parent-death signal;
//  - the user namespace (4) comes before the other namespaces (5) and the
//    mounts (6), because those need CAP_SYS_ADMIN, which an unprivileged
//    process only has inside a user namespace it owns;
//  - capabilities (7) are dropped after the last privileged operation (6);
//  - the seccomp allowlist (9) comes last: it forbids every syscall the
//    earlier stages make (unshare, mount, pivot_root, prctl, capset, openat).
#include "worker/sandbox.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "policy/seccomp.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

// 65534 is also the kernel's overflow uid: what SO_PEERCRED reports inside the worker's
// user namespace for every uid that stage 4 does not map. A worker left on
// the fallback ids (65534, no dedicated user) therefore sees every control
// client but its own uid as itself; access is decided by sluiced on the real
// ids (PeerQuery), so this only blurs the worker's own log lines. With a
// dedicated user (sluiced's --worker-user, or the user "sluice") the worker
// also shares its uid with no other process, which could otherwise signal
// it or trace it while it is dumpable for stage 4's map writes.

/// Limit: the /proc files read here are one short line; 4 KiB is plenty and
/// bounds the read.
constexpr size_t kMaxProcFile = 4096;

/// Upper bound for the PR_CAPBSET_DROP loop; capability numbers are < 64 in
/// the kernel's 64-bit capability sets, so the loop always ends.
constexpr int kMaxCapability = 64;

/// Builds the error of a failed stage: "sandbox stage N (name): what: ERRNO (text)".
Unexpected stage_error(const char* stage, const std::string& what, int err,
                       const char* hint = nullptr) {
  std::string msg = std::string("sandbox stage ") + stage + ": " + what;
  if (err != 0) msg += ": " + errno_text(err);
  if (hint != nullptr) msg += std::string("; ") + hint;
  return Err(err, std::move(msg));
}

/// Re-wraps an Error from a helper as the error of a stage, keeping its errno.
Unexpected stage_wrap(const char* stage, const Error& error) {
  return Err(error.err, std::string("sandbox stage ") + stage + ": " + error.message);
}

/// Reads a small file (a /proc entry) into a string. Fails with errno when it
/// cannot be opened or read, or with EFBIG when it exceeds kMaxProcFile.
Result<std::string> read_small_file(const char* path) {
  UniqueFd fd(open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, std::string("open ") + path);
  }
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      return SysErr(err, std::string("read ") + path);
    }
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxProcFile) return Err(EFBIG, std::string(path) + " is too large");
  }
}

/// Writes `text` to `path` in one write(2), as /proc/self/{uid,gid}_map and
/// setgroups require. Fails with errno on open, on write, or on a short write.
Result<void> write_whole_file(const char* path, std::string_view text) {
  UniqueFd fd(open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, std::string("open ") + path);
  }
  ssize_t n = write(fd.get(), text.data(), text.size());
  if (n < 0) {
    int err = errno;
    return SysErr(err, std::string("write ") + path);
  }
  if (static_cast<size_t>(n) != text.size()) {
    return Err(EIO, std::string("short write to ") + path);
  }
  return Ok();
}

/// Splits `text` on ASCII whitespace.
std::vector<std::string_view> split_words(std::string_view text) {
  std::vector<std::string_view> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n')) ++i;
    size_t start = i;
    while (i < text.size() && text[i] != ' ' && text[i] != '\t' && text[i] != '\n') ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

/// Returns true when the process is in the initial user namespace, whose
/// uid_map is the identity over the whole range: "0 0 4294967295". Fails when
/// /proc/self/uid_map cannot be read.
Result<bool> in_initial_user_namespace() {
  Result<std::string> map = read_small_file("/proc/self/uid_map");
  if (!map) return Err(std::move(map).error());
  std::vector<std::string_view> words = split_words(*map);
  return words.size() == 3 && words[0] == "0" && words[1] == "0" && words[2] == "4294967295";
}

/// Closes fds `first`..`last` (inclusive): close_range, or one by one up to
/// the soft RLIMIT_NOFILE on kernels before 5.9. Fails with the errno.
Result<void> close_fd_range(unsigned first, unsigned last) {
  if (close_range(first, last, 0) == 0) return Ok();
  if (errno != ENOSYS) {
    int err = errno;
    return SysErr(err, "close_range(" + std::to_string(first) + ", " + std::to_string(last) + ")");
  }
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    int err = errno;
    return SysErr(err, "getrlimit(RLIMIT_NOFILE)");
  }
  for (rlim_t fd = first; fd <= last && fd < lim.rlim_cur; ++fd) close(static_cast<int>(fd));
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 1: close every inherited fd from wire::kWorkerFirstFreeFd up, except
// `keep_fds`.
// Why: the broker passes exactly fds 0-8 (stdio, broker channel, control
// socket, audit sink, policy text, pesto socket, audit tail; broker_wire.h).
// Anything else that leaked across exec (a missing CLOEXEC in the broker, a
// test harness) must not survive into the sandbox.
// Safe: the fds the worker needs sit below kWorkerFirstFreeFd by contract,
// or are named by the caller (the epoll fd, made before the sandbox).
Result<void> close_inherited_fds(std::span<const int> keep_fds) {
  std::vector<unsigned> keep;
  for (int fd : keep_fds) {
    if (fcntl(fd, F_GETFD) < 0) {
      return stage_error("1 (close fds)", "fd " + std::to_string(fd) + " to keep is not open",
                         EBADF);
    }
    if (fd >= wire::kWorkerFirstFreeFd) keep.push_back(static_cast<unsigned>(fd));
  }
  std::sort(keep.begin(), keep.end());
  unsigned first = wire::kWorkerFirstFreeFd;
  for (unsigned fd : keep) {
    if (fd > first) {
      if (Result<void> r = close_fd_range(first, fd - 1); !r) {
        return stage_wrap("1 (close fds)", r.error());
      }
    }
    first = fd + 1;  // duplicates in `keep` are harmless: first only grows
  }
  if (Result<void> r = close_fd_range(first, ~0U); !r) {
    return stage_wrap("1 (close fds)", r.error());
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 2: if root in the initial user namespace, become the worker's user.
// Why: real root owns files, /proc entries and IPC objects of the host; the
// namespaces and the empty capability sets of the later stages do not change
// the uid that the host sees. The ids are sluiced's --worker-user (a
// dedicated user, so that no other process shares them), nobody/nogroup
// without one. Safe: the worker needs no uid-0 privilege (the
// broker opens every privileged socket), and supplementary groups are dropped
// first, while CAP_SETGID is still held. Root inside a non-initial user
// namespace (e.g. under `unshare -Ur`) is skipped: it is an ordinary user's
// uid outside, 65534 is usually not even mapped there (`unshare -Ur` maps
// uid 0 only), and stage 7 drops all its capabilities anyway.
Result<void> switch_to_unprivileged_user(WorkerIds ids) {
  uid_t ruid, euid, suid;
  if (getresuid(&ruid, &euid, &suid) != 0) {
    return stage_error("2 (switch user)", "getresuid", errno);
  }
  if (ruid != 0 && euid != 0 && suid != 0) {
    LOG_DEBUG("running as uid %u: no switch needed", static_cast<unsigned>(ruid));
    return Ok();
  }
  Result<bool> initial = in_initial_user_namespace();
  if (!initial) return stage_wrap("2 (switch user)", initial.error());
  if (!*initial) {
    LOG_DEBUG("uid 0 in a non-initial user namespace: already unprivileged outside, not switching");
    return Ok();
  }
  // Never root: parse_worker_args() refuses id 0, and this checks it again.
  const uid_t uid = ids.uid;
  const gid_t gid = ids.gid;
  if (uid == 0 || gid == 0) {
    return stage_error("2 (switch user)", "the worker's ids must not be 0", EINVAL);
  }
  const std::string to = std::to_string(uid) + ":" + std::to_string(gid);
  if (setgroups(0, nullptr) != 0) return stage_error("2 (switch user)", "setgroups(0)", errno);
  if (setresgid(gid, gid, gid) != 0) {
    return stage_error("2 (switch user)", "setresgid(" + std::to_string(gid) + ")", errno);
  }
  if (setresuid(uid, uid, uid) != 0) {
    return stage_error("2 (switch user)", "setresuid(" + std::to_string(uid) + ")", errno);
  }
  // Verify: a half-done switch must never go unnoticed.
  gid_t rgid, egid, sgid;
  if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0 || ruid != uid ||
      euid != uid || suid != uid || rgid != gid || egid != gid || sgid != gid ||
      getgroups(0, nullptr) != 0) {
    return stage_error("2 (switch user)", "ids after the switch are not all " + to, EPERM);
  }
  LOG_DEBUG("switched from root to uid:gid %s", to.c_str());
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 3: PR_SET_PDEATHSIG(SIGKILL), then exit if the broker is already gone.
// Why: the worker must not outlive the broker, which is its only source of
// listeners and the only process that reaps it. Safe and ordered: it comes
// after stage 2 because a uid change resets the parent-death signal; the
// re-check of the parent closes the race with a broker that died before the
// prctl took effect. The parent is compared with the one seen on entry, not
// with 1, because sluiced may itself be pid 1 of a container; a broker that
// died before enter_sandbox() even started shows up as EOF on the broker
// channel instead.
Result<void> die_with_parent(pid_t parent_at_start) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    return stage_error("3 (parent death signal)", "prctl(PR_SET_PDEATHSIG)", errno);
  }
  if (getppid() != parent_at_start) {
    return stage_error("3 (parent death signal)",
                       "the parent (pid " + std::to_string(parent_at_start) + ") has exited",
                       ESRCH);
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 4: a new user namespace, mapping only the current uid and gid.
// Why: it gives the capabilities that stages 5-6 need to build the
// mount/IPC/UTS/PID namespaces and the empty root, without any privilege on
// the host. Safe: the ids map to themselves, one each, so a control client
// with our own uid keeps its number in SO_PEERCRED; any other uid reads as the
// overflow uid 65534 (see the note on 65534 at the top for why that matters). setgroups is
// denied, so no group can be dropped to escape a negative group permission.
Result<void> enter_user_namespace() {
  const uid_t uid = getuid();  // read before unshare: afterwards it is unmapped
  const gid_t gid = getgid();
  if (unshare(CLONE_NEWUSER) != 0) {
    return stage_error("4 (user namespace)", "unshare(CLONE_NEWUSER)", errno,
                       "enable unprivileged user namespaces (sysctl "
                       "kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0); in "
                       "a user namespace that does not map the worker's uid and gid, the kernel "
                       "refuses it too (sluiced avoids joining one: see sluiced(8), --netns)");
  }
  // After a uid change (stage 2) the kernel makes the process non-dumpable,
  // and /proc/self then belongs to real root, whom this namespace does not
  // map: the map files could not be opened. Be dumpable just for these three
  // writes (during them another process of our uid, which owns this user
  // namespace, could attach with ptrace; the window is three writes long);
  // stage 8 makes the process non-dumpable for good.
  const int dumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
  if (dumpable == 0 && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
    return stage_error("4 (user namespace)", "prctl(PR_SET_DUMPABLE, 1)", errno);
  }
  Result<void> written = write_whole_file("/proc/self/setgroups", "deny");
  if (written) {
    written = write_whole_file("/proc/self/uid_map",
                               std::to_string(uid) + " " + std::to_string(uid) + " 1");
  }
  if (written) {
    written = write_whole_file("/proc/self/gid_map",
                               std::to_string(gid) + " " + std::to_string(gid) + " 1");
  }
  if (dumpable == 0 && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return stage_error("4 (user namespace)", "prctl(PR_SET_DUMPABLE, 0)", errno);
  }
  if (!written) return stage_wrap("4 (user namespace)", written.error());
  LOG_DEBUG("user namespace: uid %u and gid %u mapped to themselves", static_cast<unsigned>(uid),
            static_cast<unsigned>(gid));
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 5: unshare the mount, IPC, UTS and PID namespaces.
// Why: a private mount namespace lets stage 6 replace the root without
// touching the host; private IPC hides the host's SysV/POSIX IPC objects;
// UTS keeps hostname changes local; a new PID namespace means any child (none
// can be created: clone is not allowed) could not see or signal host
// processes. The network namespace is kept on purpose: the worker must reach
// the forwarding targets in it. Safe: nothing the worker uses lives in these
// namespaces; the worker's own pid does not change.
// With data-path threads (`pid` false) the PID namespace is left out: the
// kernel makes no thread (CLONE_THREAD) once the caller's children would be
// born in another PID namespace than its own, and the threads are made
// after this stage. It costs nothing: the namespace was for children, which
// the filter forbids either way.
Result<void> unshare_other_namespaces(bool pid) {
  if (unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | (pid ? CLONE_NEWPID : 0)) != 0) {
    return stage_error("5 (namespaces)",
                       pid ? "unshare(NEWNS|NEWIPC|NEWUTS|NEWPID)" : "unshare(NEWNS|NEWIPC|NEWUTS)",
                       errno);
  }
  return Ok();
}

/// Fails unless "/" is a tmpfs with no entries but "." and "..".
Result<void> verify_empty_root() {
  struct statfs fs;
  if (statfs("/", &fs) != 0) return stage_error("6 (empty root)", "statfs(/)", errno);
  if (fs.f_type != TMPFS_MAGIC) {
    return stage_error("6 (empty root)", "the new root is not a tmpfs", EINVAL);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> dir(opendir("/"), closedir);
  if (!dir) return stage_error("6 (empty root)", "opendir(/)", errno);
  while (struct dirent* entry = readdir(dir.get())) {
    if (std::strcmp(entry->d_name, ".") != 0 && std::strcmp(entry->d_name, "..") != 0) {
      return stage_error("6 (empty root)",
                         std::string("the new root is not empty: ") + entry->d_name, EEXIST);
    }
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 6: pivot_root into an empty, read-only tmpfs.
// Why: even before seccomp forbids open, a process with no files in reach has
// nothing to read, write, exec or connect to by path (UNIX sockets of the
// host included). Safe: the worker needs no file after this point: its fds
// are open, and its host facts were read by gather_host_facts(). Mount events
// stay private (MS_PRIVATE), so nothing propagates back to the host.
Result<void> pivot_to_empty_root() {
  if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return stage_error("6 (empty root)", "making / private (MS_REC|MS_PRIVATE)", errno);
  }
  // Any existing directory will do as the mount point; it is only a place to
  // stack the tmpfs on before it becomes "/". /proc exists wherever the
  // worker can run, /tmp nearly everywhere.
  const char* mount_point = access("/tmp", F_OK) == 0 ? "/tmp" : "/proc";
  // Read-only, so size is moot; size=0 would mean "unlimited" for tmpfs, so
  // say a tiny one. nr_inodes=2: the root inode and nothing else.
  if (mount("tmpfs", mount_point, "tmpfs", MS_RDONLY | MS_NODEV | MS_NOEXEC | MS_NOSUID,
            "size=4k,nr_inodes=2,mode=0555") != 0) {
    return stage_error("6 (empty root)", std::string("mounting a tmpfs on ") + mount_point, errno);
  }
  if (chdir(mount_point) != 0) {
    return stage_error("6 (empty root)", std::string("chdir ") + mount_point, errno);
  }
  // pivot_root(".", "."): the tmpfs becomes the root, the old root is stacked
  // on top of it, and the detach below removes it (see pivot_root(2)).
  if (syscall(SYS_pivot_root, ".", ".") != 0) {
    return stage_error("6 (empty root)", "pivot_root(., .)", errno);
  }
  if (umount2(".", MNT_DETACH) != 0) {
    return stage_error("6 (empty root)", "detaching the old root", errno);
  }
  if (chdir("/") != 0) return stage_error("6 (empty root)", "chdir /", errno);
  // Check now: after seccomp the worker cannot even look.
  return verify_empty_root();
}

// ---------------------------------------------------------------------------
// Stage 7: drop the bounding set, ambient, inheritable, permitted and
// effective capabilities.
// Why: the capabilities held in the new user namespace (all of them) are only
// needed for stages 5-6. An empty bounding set also means no exec could ever
// grant any again. Safe: every later operation (accept, connect, splice, UDP)
// needs no capability. Done with raw prctl/capset because /proc (which
// libcap-ng reads) is gone; the loop finds the last capability by EINVAL.
Result<void> drop_capabilities() {
  int cap = 0;
  for (; cap < kMaxCapability; ++cap) {
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0) continue;
    if (errno == EINVAL && cap > 0) break;  // past the kernel's last capability
    return stage_error("7 (capabilities)", "PR_CAPBSET_DROP " + std::to_string(cap), errno);
  }
  for (int c = 0; c < cap; ++c) {
    if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) != 0) {
      return stage_error("7 (capabilities)",
                         "capability " + std::to_string(c) + " still in the bounding set", EPERM);
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
    return stage_error("7 (capabilities)", "PR_CAP_AMBIENT_CLEAR_ALL", errno);
  }
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capset, &header, data) != 0) {
    return stage_error("7 (capabilities)", "capset(all empty)", errno);
  }
  struct __user_cap_data_struct check[_LINUX_CAPABILITY_U32S_3] = {};
  header = {_LINUX_CAPABILITY_VERSION_3, 0};
  if (syscall(SYS_capget, &header, check) != 0) {
    return stage_error("7 (capabilities)", "capget", errno);
  }
  for (const auto& word : check) {
    if (word.effective != 0 || word.permitted != 0 || word.inheritable != 0) {
      return stage_error("7 (capabilities)", "capabilities left after capset", EPERM);
    }
  }
  LOG_DEBUG("dropped capabilities 0..%d from every set", cap - 1);
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 8: PR_SET_DUMPABLE 0 and PR_SET_NO_NEW_PRIVS 1.
// Why: not dumpable means no core file with table contents or fds, and no
// ptrace or /proc/PID access by other processes of the same uid (the owner of
// our user namespace included). NO_NEW_PRIVS is required to load a seccomp
// filter without CAP_SYS_ADMIN, and makes sure no exec could raise privilege.
// Safe: neither changes anything the worker does.
Result<void> forbid_privilege_regain() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    return stage_error("8 (no new privileges)", "prctl(PR_SET_DUMPABLE, 0)", errno);
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
    return stage_error("8 (no new privileges)", "prctl(PR_SET_NO_NEW_PRIVS, 1)", errno);
  }
  return Ok();
}

// ---------------------------------------------------------------------------
// Stage 9: the seccomp allowlist of policy/seccomp_worker.cc.
// Why: it takes away every syscall the data path does not need (bind,
// listen, open, exec, ptrace, clone, unshare, mount, ...), with argument
// filters on socket, fcntl, mmap and the socket options. Safe: last, because
// it forbids what stages 1-8 use; the rows were written for exactly what the
// event loop does afterwards, and an unknown row name fails here, loudly.
Result<void> load_allowlist() {
  Result<void> installed = install_seccomp(worker_seccomp_rules(static_cast<int>(getpid())));
  if (!installed) return stage_wrap("9 (seccomp)", installed.error());
  return Ok();
}

/// Probes whether a socket of `family` can be created (module loaded, not
/// disabled). Returns false, with an info line, when it cannot.
bool probe_family(int family, const char* name) {
  UniqueFd fd(socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.valid()) return true;
  LOG_INFO("%s is not available (%s); rules that need it will be refused", name,
           errno_text(errno).c_str());
  return false;
}

}  // namespace

HostFacts gather_host_facts() {
  HostFacts facts;
  static constexpr const char* kRangePath = "/proc/sys/net/ipv4/ip_local_port_range";
  Result<std::string> range = read_small_file(kRangePath);
  if (!range) {
    LOG_WARN("cannot read %s (%s); assuming ephemeral ports %u-%u", kRangePath,
             range.error().message.c_str(), facts.ephemeral_first, facts.ephemeral_last);
  } else {
    std::vector<std::string_view> words = split_words(*range);
    unsigned long first = 0, last = 0;
    if (words.size() == 2 && parse_uint(words[0], 65535, &first) &&
        parse_uint(words[1], 65535, &last) && first >= 1 && first <= last) {
      facts.ephemeral_first = static_cast<uint16_t>(first);
      facts.ephemeral_last = static_cast<uint16_t>(last);
    } else {
      LOG_WARN("cannot parse %s (\"%s\"); assuming ephemeral ports %u-%u", kRangePath,
               sanitize(*range, 64).c_str(), facts.ephemeral_first, facts.ephemeral_last);
    }
  }
  facts.ipv4 = probe_family(AF_INET, "IPv4");
  facts.ipv6 = probe_family(AF_INET6, "IPv6");
  static constexpr const char* kPipePagesPath = "/proc/sys/fs/pipe-user-pages-soft";
  Result<std::string> pages = read_small_file(kPipePagesPath);
  std::vector<std::string_view> words;
  if (pages) words = split_words(*pages);
  unsigned long soft = 0;
  if (words.size() == 1 && parse_uint(words[0], 1UL << 40, &soft)) {
    facts.pipe_user_pages_soft = soft;
  } else {
    LOG_WARN("cannot read %s; assuming %llu pipe pages per user", kPipePagesPath,
             static_cast<unsigned long long>(facts.pipe_user_pages_soft));
  }
  // The descriptor budget of every commit (worker/fd_budget.h). The sandbox
  // changes no limit, but read it here with the other facts.
  struct rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    facts.fd_limit = nofile.rlim_cur == RLIM_INFINITY ? UINT64_MAX : nofile.rlim_cur;
  } else {
    LOG_WARN("getrlimit(RLIMIT_NOFILE): %s; commits are not checked against the descriptor limit",
             errno_text(errno).c_str());
  }
  return facts;
}

Result<void> enter_sandbox(std::span<const int> keep_fds, WorkerIds ids,
                           const std::function<Result<void>()>& before_filter) {
  // The broker's pid, read before anything can re-parent us (stage 3).
  const pid_t parent = getppid();

  if (Result<void> r = close_inherited_fds(keep_fds); !r) return r;
  if (Result<void> r = switch_to_unprivileged_user(ids); !r) return r;
  if (Result<void> r = die_with_parent(parent); !r) return r;
  if (Result<void> r = enter_user_namespace(); !r) return r;
  if (Result<void> r = unshare_other_namespaces(!before_filter); !r) return r;
  if (Result<void> r = pivot_to_empty_root(); !r) return r;
  if (Result<void> r = drop_capabilities(); !r) return r;
  if (Result<void> r = forbid_privilege_regain(); !r) return r;
  if (before_filter) {
    if (Result<void> r = before_filter(); !r) {
      return stage_wrap("8 (data-path threads, after no new privileges)", r.error());
    }
  }
  if (Result<void> r = load_allowlist(); !r) return r;
  LOG_DEBUG("sandbox complete");
  return Ok();
}

}  // namespace sluice
