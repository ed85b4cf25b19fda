// The allowlist of sluiced's worker launcher (broker/worker_launcher.h),
// loaded after its capabilities are cut and before it reads its first
// request.
//
// A seccomp filter is inherited by every child and kept across execve, and a
// process can never shed one. Every worker the launcher starts therefore runs
// under this filter too, stacked under its own: a call passes only when every
// filter allows it. So this table is the union of
//   1. what the launcher's loop and launch_worker() call (worker_launcher.cc,
//      worker_launch.cc), argument-pinned where it is cheap;
//   2. what the worker's child calls between clone and exec (exec_child);
//   3. what sluice-worker calls from its exec until its own filter is loaded:
//      the dynamic loader, its start-up and its sandbox stages
//      (worker/sandbox.cc), found in the code and with `strace -f` on a
//      sluiced whose worker was killed;
//   4. the worker's own allowlist (seccomp_worker.cc), which the worker then
//      narrows itself to: its rows must pass here as well.
// What this filter keeps from the launcher is everything outside that union:
// no ptrace, process_vm_*, bpf, keyctl, module, kexec, perf, io_uring or
// userfaultfd, no socket family but AF_INET/AF_INET6 and the AF_UNIX pair, no
// bind or listen, no open that creates or truncates a file, no chmod, chown,
// link, rename or unlink, no mknod, no clone but CLONE_PARENT's, no setns but
// into a user or network namespace, and setresuid, setresgid and setgroups
// only to the worker's own ids (the one use of the launcher's CAP_SETUID and
// CAP_SETGID). Reviewed like the other tables: a golden export
// (tests/sandbox/golden/launcher.pfc) and probes
// (tests/sandbox/launcher_probes.cc).
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cstdint>
#include <cstring>

#include "policy/seccomp.h"

namespace sluice {
namespace {

/// The flags of every file the launcher and a starting worker open: read
/// (libraries, /proc), write (the worker's own /proc/self/{setgroups,uid_map,
/// gid_map}), read-write (/dev/null); never O_CREAT, O_TRUNC, O_APPEND,
/// O_PATH or O_TMPFILE.
constexpr uint32_t kOpenFlags =
    O_WRONLY | O_RDWR | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_DIRECTORY | O_NOFOLLOW;

/// The two mount calls of the worker's stage 6: / made private, and the
/// read-only tmpfs it pivots into.
constexpr uint32_t kMountPrivate = MS_REC | MS_PRIVATE;
constexpr uint32_t kMountTmpfs = MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC;

/// The namespaces of the worker's stage 5.
constexpr uint32_t kWorkerNamespaces = CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWPID;

/// Section 1: the launcher itself (worker_launcher.cc, worker_launch.cc).
std::vector<SyscallRule> launcher_rows(uint32_t channel) {
  return {
      {"recvmsg",
       {arg_eq32(0, channel), arg_eq32(2, MSG_CMSG_CLOEXEC)},
       "wait for sluiced's next LaunchWorker and its policy memfd, on the launcher's channel "
       "only (blocking: the launcher has nothing else to do)"},
      {"sendmsg",
       {arg_eq32(0, channel), arg_eq32(2, MSG_NOSIGNAL)},
       "answer WorkerLaunched with the worker's pidfd and channel; MSG_NOSIGNAL: a dead "
       "sluiced gives EPIPE"},
      {"lseek",
       {arg_eq64(1, 0), arg_eq32(2, SEEK_SET)},
       "rewind the policy memfd that the last worker read to its end; to offset 0 only"},
      {"socketpair",
       {arg_eq32(0, AF_UNIX), arg_eq32(1, SOCK_SEQPACKET | SOCK_CLOEXEC), arg_eq32(2, 0)},
       "the new worker's channel to sluiced"},
      {"fcntl", {arg_eq32(1, F_GETFL)}, "sluiced's end of the worker channel: read its flags"},
      {"fcntl",
       {arg_eq32(1, F_SETFL), arg_eq32(2, O_RDWR | O_NONBLOCK)},
       "sluiced's end of the worker channel: make it non-blocking"},
      {"clone",
       {arg_eq64(0, CLONE_PARENT | SIGCHLD)},
       "start the worker as a child of sluiced (CLONE_PARENT), which reaps it; no CLONE_VM, no "
       "new namespace, no thread"},
      {"pidfd_open", {arg_eq32(1, 0)}, "the new worker's pidfd for sluiced"},
      {"kill",
       {arg_eq32(1, SIGKILL)},
       "kill a worker whose pidfd_open failed (not yet reaped, so its pid is not recycled)"},
      {"write", {arg_eq32(0, 2)}, "log lines to sluiced's stderr (base/log.cc), and exec_child's"},
      {"sendto",
       {arg_eq32(0, 2), arg_eq32(3, MSG_DONTWAIT | MSG_NOSIGNAL), arg_eq64(4, 0), arg_eq32(5, 0)},
       "log lines when stderr is a socket (a journal stream): send(MSG_DONTWAIT), no address"},
      {"exit_group", {}, "exit when sluiced closes the channel, and exec_child's exit 127"},
  };
}

/// Section 2: the worker's child between clone and exec (exec_child).
std::vector<SyscallRule> exec_child_rows() {
  return {
      {"setns",
       {arg_eq32(1, CLONE_NEWUSER)},
       "join the target's user namespace, which sluiced's user owns (--netns of a rootless "
       "container): the owner needs no capability"},
      {"setns",
       {arg_eq32(1, CLONE_NEWNET)},
       "then the target's network namespace (real root's launcher joined it itself, before its "
       "capabilities were cut)"},
      {"fcntl",
       {arg_eq32(1, F_DUPFD_CLOEXEC)},
       "move the worker's fds above their fixed numbers first; stderr_for_worker's dup"},
      {"dup2", {}, "put each of the worker's fds on its fixed number (schema/broker_wire.h)"},
      {"close", {}, "close the launcher's copies, and the scan numbers with no file"},
      {"close_range", {}, "close every fd the worker must not inherit"},
      {"setpgid", {arg_eq32(0, 0), arg_eq32(1, 0)}, "the worker's own process group"},
      {"rt_sigaction", {}, "reset every signal disposition for the worker"},
      {"rt_sigprocmask", {}, "clear the signal mask for the worker; abort()"},
      {"execve", {}, "exec sluice-worker (its path is fixed in the launcher's memory)"},
  };
}

/// Section 3: sluice-worker from its exec until its own filter is loaded.
std::vector<SyscallRule> worker_start_rows(uint32_t uid, uint32_t gid) {
  return {
      // The dynamic loader and libc's start-up.
      {"brk", {}, "malloc and the loader grow the heap"},
      {"access", {}, "the loader checks /etc/ld.so.preload; the sandbox checks its mount point"},
      {"openat",
       {arg_flags_within(2, kOpenFlags)},
       "the loader's libraries, the worker's /proc reads and its own uid_map, gid_map and "
       "setgroups writes, /dev/null; never O_CREAT, O_TRUNC, O_APPEND, O_PATH"},
      {"newfstatat", {}, "the loader's fstat of each library; stderr's type for the worker"},
      {"read", {}, "the loader reads library headers; the worker its /proc files"},
      {"pread64", {}, "the loader reads ELF program headers"},
      {"mmap",
       {arg_flags_within(2, PROT_READ | PROT_WRITE | PROT_EXEC)},
       "the loader maps libraries, some of them executable; malloc"},
      {"mprotect",
       {arg_flags_within(2, PROT_READ | PROT_WRITE | PROT_EXEC)},
       "the loader's RELRO and segment protections"},
      {"munmap", {}, "the loader and free"},
      {"arch_prctl", {}, "libc sets its thread pointer (ARCH_SET_FS)"},
      {"set_tid_address", {}, "libc's start-up"},
      {"set_robust_list", {}, "libc's start-up; fork's child"},
      {"rseq", {}, "libc's start-up registers restartable sequences"},
      {"prlimit64",
       {arg_eq32(0, 0), arg_eq64(2, 0)},
       "libc reads its stack limit: its own limits, read only"},
      {"getrandom", {}, "libc's malloc and the worker's hash seeds"},
      {"socket",
       {arg_eq32(0, AF_INET), arg_eq32(1, SOCK_STREAM | SOCK_CLOEXEC), arg_eq32(2, 0)},
       "the worker probes whether IPv4 exists here (probe_family)"},
      {"socket",
       {arg_eq32(0, AF_INET6), arg_eq32(1, SOCK_STREAM | SOCK_CLOEXEC), arg_eq32(2, 0)},
       "the worker probes whether IPv6 exists here (probe_family)"},
      {"epoll_create1", {}, "the worker's event loop, made before its filter"},
      {"timerfd_create", {}, "the worker's tick timer, made before its filter"},
      {"timerfd_settime", {}, "the worker arms its tick timer before its filter"},
      {"getppid", {}, "the worker remembers sluiced's pid, and checks it after PDEATHSIG"},
      {"getpid", {}, "libseccomp and the worker's own filter (tgkill to itself)"},
      {"getuid", {}, "the worker maps its own uid in its user namespace"},
      {"getgid", {}, "the worker maps its own gid in its user namespace"},
      {"getresuid", {}, "stage 2: is the worker root? then: did the switch take?"},
      {"getresgid", {}, "stage 2: did the switch take?"},
      {"getgroups", {}, "stage 2: no supplementary group left"},
      // Stage 2 as real root: the one use of the launcher's CAP_SETUID and
      // CAP_SETGID, pinned to the worker's ids.
      {"setgroups",
       {arg_eq32(0, 0), arg_eq64(1, 0)},
       "stage 2: drop every supplementary group (an empty list only)"},
      {"setresgid",
       {arg_eq32(0, gid), arg_eq32(1, gid), arg_eq32(2, gid)},
       "stage 2: to the worker's gid (--worker-user) and nothing else"},
      {"setresuid",
       {arg_eq32(0, uid), arg_eq32(1, uid), arg_eq32(2, uid)},
       "stage 2: to the worker's uid (--worker-user) and nothing else"},
      // Stages 3 to 8.
      {"prctl",
       {arg_eq32(0, PR_SET_PDEATHSIG), arg_eq32(1, SIGKILL)},
       "stage 3, and the launcher's: die with sluiced"},
      {"prctl", {arg_eq32(0, PR_GET_DUMPABLE)}, "stage 4: is it dumpable for its map writes?"},
      {"prctl", {arg_eq32(0, PR_SET_DUMPABLE)}, "stages 4 and 8: dumpable for the map writes only"},
      {"prctl", {arg_eq32(0, PR_CAPBSET_DROP)}, "stage 7: empty its bounding set"},
      {"prctl", {arg_eq32(0, PR_CAPBSET_READ)}, "stage 7: check its bounding set is empty"},
      {"prctl",
       {arg_eq32(0, PR_CAP_AMBIENT), arg_eq32(1, PR_CAP_AMBIENT_CLEAR_ALL)},
       "stage 7: clear its ambient set"},
      {"prctl",
       {arg_eq32(0, PR_SET_NO_NEW_PRIVS), arg_eq32(1, 1)},
       "stage 8 and libseccomp: no new privileges (only ever set)"},
      {"prctl", {arg_eq32(0, PR_GET_NO_NEW_PRIVS)}, "stage 8: check it"},
      {"unshare",
       {arg_eq32(0, CLONE_NEWUSER)},
       "stage 4: its own user namespace (unprivileged: the worker runs as its user by then)"},
      {"unshare", {arg_eq32(0, kWorkerNamespaces)}, "stage 5: mount, IPC, UTS and PID namespaces"},
      {"mount", {arg_eq32(3, kMountPrivate)}, "stage 6: make / private in its mount namespace"},
      {"mount", {arg_eq32(3, kMountTmpfs)}, "stage 6: the empty read-only tmpfs it pivots into"},
      {"chdir", {}, "stage 6: into the new root, and to / after pivot_root"},
      {"pivot_root", {}, "stage 6: pivot into the empty tmpfs"},
      {"umount2", {arg_eq32(1, MNT_DETACH)}, "stage 6: detach the old root"},
      {"statfs", {}, "stage 6: check that the new root is a tmpfs"},
      {"getdents64", {}, "stage 6: check that the new root is empty"},
      {"capset", {}, "stage 7: empty every capability set"},
      {"capget", {}, "stage 7: check that they are empty"},
      {"seccomp",
       {},
       "stage 9: load its own filter (libseccomp probes the kernel first); a filter only ever "
       "narrows"},
  };
}

}  // namespace

std::vector<SyscallRule> launcher_seccomp_rules(int channel, uint32_t worker_uid,
                                                uint32_t worker_gid) {
  std::vector<SyscallRule> rules = launcher_rows(static_cast<uint32_t>(channel));
  for (std::vector<SyscallRule> more :
       {exec_child_rows(), worker_start_rows(worker_uid, worker_gid)}) {
    rules.insert(rules.end(), more.begin(), more.end());
  }
  // Section 4: the worker's own allowlist, as it will load it. Its pid is not
  // known yet, so its abort() row (tgkill to itself) becomes tgkill of
  // SIGABRT to any thread of the worker's uid.
  for (SyscallRule row : worker_seccomp_rules(0)) {
    if (std::strcmp(row.name, "tgkill") == 0) {
      row.conds = {arg_eq32(2, SIGABRT)};
      row.reason =
          "the worker's abort() (its filter: SIGABRT to itself only; its pid is not known when "
          "this filter is built)";
    }
    rules.push_back(std::move(row));
  }
  return rules;
}

}  // namespace sluice
