// The policy reader's seccomp allowlist (broker/policy_reader.h): loaded by
// the reader's working child before it waits for its first request, after
// its namespaces and the drop of every capability.
//
// Unlike the other tables this one is broad on purpose. The reader runs the
// system's user database (NSS) as the administrator configured it: the
// "files" module opens /etc/passwd and /etc/group, "systemd" loads
// libnss_systemd.so and asks systemd-userdb's varlink sockets, "sss" and
// nscd talk to their daemons over AF_UNIX sockets and nscd passes a mapped
// database along. Which fds, paths and flags those modules use is theirs to
// choose, so most rows have no argument conditions. What the rows rule out
// is what none of those modules needs and what an attacker who got code into
// the reader (through a malicious NSS answer, say) would want next:
//  - no file opened for writing, created or truncated (the access mode must
//    be O_RDONLY, and O_CREAT and O_TRUNC are refused; the reader's mounts
//    are read-only too, where it could make a mount namespace), no rename,
//    unlink, link, chmod or chown;
//  - no exec, no new process or thread, no ptrace, no signal to anyone but
//    itself (abort);
//  - no socket but AF_UNIX: no network, so what the reader can read (root's
//    files, when sluiced runs as root) cannot leave the host through it. NSS
//    modules that go to the network themselves (nss_ldap without nslcd,
//    nss_nis) are stopped; their names resolve through nslcd, sssd or nscd,
//    or the policy names the ids as numbers (docs/POLICY.md);
//  - no namespace, mount, capability, uid, keyring, BPF, io_uring,
//    userfaultfd or perf call, and no ioctl: less of the kernel to attack.
// Checked with strace on Debian 12 (glibc 2.36, systemd 252), and found
// wanting once by the test below (libnss_systemd's varlink client needs a
// timerfd for its event loop): names found in
// /etc/passwd and /etc/group, names unknown to every module (libnss_systemd
// loaded, its userdb directories searched), and a user and a group known
// only to a systemd-userdb varlink service, and names a daemon answers over
// AF_UNIX (tests/integration/policy_reload_test.cc, ReaderFilter.*, runs
// each under the filter).
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <cstdint>

#include "policy/seccomp.h"

namespace sluice {
namespace {

/// The open flags that could write: any access mode but O_RDONLY (0),
/// O_CREAT, and O_TRUNC (which truncates even with O_RDONLY where the
/// caller may write). O_TMPFILE needs a writable access mode.
constexpr uint32_t kWriteFlags = O_ACCMODE | O_CREAT | O_TRUNC;

/// Rows for the files the reader and NSS read.
std::vector<SyscallRule> file_rows() {
  return {
      {"openat",
       {arg_masked_eq32(2, kWriteFlags, 0)},
       "the policy file, /etc/passwd, /etc/group, NSS modules and their libraries, "
       "/run/systemd/userdb/: read-only (O_RDONLY, no O_CREAT, no O_TRUNC); O_PATH walks too"},
      {"open",
       {arg_masked_eq32(1, kWriteFlags, 0)},
       "the same for a module built against the older call: read-only only"},
      {"read", {}, "the policy file, the user database's files, answers of NSS daemons"},
      {"pread64", {}, "NSS modules that read files at an offset"},
      {"readv", {}, "NSS daemons' answers read in parts"},
      {"lseek", {}, "nss_files rewinds /etc/passwd and /etc/group; policy_memfd rewinds its memfd"},
      {"close", {}, "every descriptor it opened"},
      {"fstat", {}, "the size of a file or library before it is read or mapped"},
      {"newfstatat", {}, "glibc stats nsswitch.conf (has it changed?) and opened files"},
      {"statx", {}, "the same, for modules built to use statx"},
      {"readlinkat", {}, "libnss_systemd resolves the symbolic links of its search paths"},
      {"readlink", {}, "the same, through the older call"},
      {"getdents64", {}, "libnss_systemd lists /run/systemd/userdb/ for its services"},
      {"faccessat", {}, "modules that check for a file before they open it"},
      {"faccessat2", {}, "the same, through the newer call"},
      {"access", {}, "the same, through the older call"},
      {"fcntl", {arg_eq32(1, F_GETFD)}, "descriptor flags (read only), as libraries check them"},
      {"fcntl", {arg_eq32(1, F_SETFD)}, "close-on-exec on a descriptor a module opened"},
      {"fcntl", {arg_eq32(1, F_GETFL)}, "status flags (read only)"},
      {"fcntl",
       {arg_eq32(1, F_SETFL)},
       "O_NONBLOCK on a daemon's socket (nscd, sssd, varlink); no file is writable to begin "
       "with, so no flag here makes one"},
      {"fcntl", {arg_eq32(1, F_DUPFD_CLOEXEC)}, "libnss_systemd moves descriptors above stdio"},
      {"fcntl", {arg_eq32(1, F_ADD_SEALS)}, "policy_memfd seals the answer (no write, no resize)"},
      {"memfd_create", {}, "policy_memfd: the answer to sluiced, an anonymous file"},
      {"write", {}, "the answer into its memfd; log lines to stderr; requests to NSS daemons"},
      {"writev", {}, "requests to NSS daemons sent in parts"},
  };
}

/// Rows for the reader's channel to sluiced and the sockets of NSS daemons
/// (nscd, sssd, nslcd, systemd-userdb): AF_UNIX only.
std::vector<SyscallRule> socket_rows() {
  return {
      {"socket",
       {arg_eq32(0, AF_UNIX)},
       "a socket to an NSS daemon (nscd, sssd, nslcd, systemd-userdb's varlink); AF_UNIX only: "
       "no network"},
      {"connect", {}, "to the daemon's socket path (only AF_UNIX sockets can exist here)"},
      {"sendmsg", {}, "the answer to sluiced on its channel; requests to NSS daemons"},
      {"recvmsg",
       {},
       "sluiced's request on its channel; NSS daemons' answers (nscd passes its mapped "
       "database as a descriptor)"},
      {"sendto", {}, "requests to NSS daemons; log lines when stderr is a journal socket"},
      {"recvfrom", {}, "NSS daemons' answers"},
      {"getsockopt", {}, "SO_PEERCRED and SO_ERROR of a daemon's socket"},
      {"setsockopt", {}, "buffer sizes and timeouts of a daemon's socket"},
      {"getsockname", {}, "libraries that check what a socket is"},
      {"getpeername", {}, "the same, for the peer"},
      {"shutdown", {}, "the end of a varlink exchange"},
      {"poll", {}, "waits for an NSS daemon's answer, with the module's own timeout"},
      {"ppoll", {}, "the same (systemd's varlink client waits with ppoll)"},
      {"epoll_create1", {}, "NSS clients built on an event loop"},
      {"epoll_ctl", {}, "the same"},
      {"epoll_wait", {}, "the same"},
      {"epoll_pwait", {}, "the same"},
      {"timerfd_create",
       {},
       "libnss_systemd's varlink client runs an sd-event loop with a timer for its timeout"},
      {"timerfd_settime", {}, "the same: arms the timeout"},
      {"timerfd_gettime", {}, "the same"},
      {"eventfd2", {}, "event loops of NSS clients wake themselves through an eventfd"},
  };
}

/// Rows for memory, time, identity and the rest of libc's own needs.
std::vector<SyscallRule> libc_rows(uint32_t self) {
  return {
      {"brk", {}, "malloc"},
      {"mmap",
       {},
       "malloc; loading an NSS module and its libraries (PROT_EXEC: the module's code); "
       "nscd's database and the loader's cache, mapped read-only"},
      {"munmap", {}, "free, unloading, the loader's cache"},
      {"mprotect", {}, "the loader makes a module's relocated data read-only (RELRO)"},
      {"mremap", {}, "realloc of a large block"},
      {"madvise", {}, "malloc gives memory back"},
      {"futex", {}, "glibc's locks around NSS and the loader (one thread: never contended)"},
      {"set_robust_list", {}, "glibc's start of a process (after the fork into its PID namespace)"},
      {"rseq", {}, "glibc's start of a process"},
      {"getrandom", {}, "malloc's and libsystemd's random seeds"},
      {"clock_gettime", {}, "timeouts of NSS clients, when the vDSO falls back to a syscall"},
      {"clock_nanosleep", {}, "NSS clients that wait before they retry a daemon"},
      {"nanosleep", {}, "the same, through the older call"},
      {"gettimeofday", {}, "the same, as older modules read the time"},
      {"getpid", {}, "libraries that cache their pid; abort() raises SIGABRT on this process"},
      {"gettid", {}, "abort() raises SIGABRT on this thread"},
      {"getuid", {}, "NSS modules that check who asks"},
      {"geteuid", {}, "the same"},
      {"getgid", {}, "the same"},
      {"getegid", {}, "the same"},
      {"getresuid", {}, "libsystemd's check of a secure environment"},
      {"getresgid", {}, "the same"},
      {"getgroups", {}, "the same"},
      {"capget", {}, "libcap (a library of libnss_systemd) reads the capability sets"},
      {"prctl",
       {arg_eq32(0, PR_CAPBSET_READ)},
       "libcap's start counts the capabilities the kernel knows (a read of the bounding set)"},
      {"prctl", {arg_eq32(0, PR_GET_NAME)}, "libraries that read the process's name"},
      {"prctl", {arg_eq32(0, PR_GET_DUMPABLE)}, "libsystemd's check of a secure environment"},
      {"prlimit64",
       {arg_eq64(2, 0)},
       "libsystemd reads the descriptor limit; reading only (no new limit)"},
      {"uname", {}, "libraries that check the kernel's version"},
      {"sched_getaffinity", {}, "libraries that size their pools by the CPUs they may use"},
      {"sched_yield", {}, "glibc's spin locks"},
      {"rt_sigprocmask", {}, "NSS modules block signals around a daemon's exchange"},
      {"rt_sigaction",
       {},
       "NSS modules ignore SIGPIPE around a daemon's exchange; abort() resets SIGABRT"},
      {"rt_sigreturn", {}, "the return from a handler a module installed"},
      {"restart_syscall", {}, "the kernel restarts an interrupted wait"},
      {"tgkill",
       {arg_eq32(0, self), arg_eq32(2, SIGABRT)},
       "abort() raises SIGABRT on itself only"},
      {"exit", {}, "a thread's end (libraries that end one)"},
      {"exit_group", {}, "the reader's end: sluiced closed the channel, or a fatal error"},
  };
}

/// Appends `more` to `rules`.
void append(std::vector<SyscallRule>& rules, std::vector<SyscallRule> more) {
  rules.insert(rules.end(), more.begin(), more.end());
}

}  // namespace

std::vector<SyscallRule> reader_seccomp_rules(int self_pid) {
  std::vector<SyscallRule> rules = file_rows();
  append(rules, socket_rows());
  append(rules, libc_rows(static_cast<uint32_t>(self_pid)));
  return rules;
}

}  // namespace sluice
