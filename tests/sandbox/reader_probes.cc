// Probes of the policy reader's allowlist (reader_seccomp_rules in
// policy/seccomp_reader.cc). The table is broad on purpose (NSS modules
// choose their own files and daemons), so the probes check its argument
// conditions and what it must never admit: every read-only open passes and
// every open that could write dies (either access mode that writes, O_CREAT,
// O_TRUNC, through openat and open); AF_UNIX sockets pass and every other
// family dies; the read-only prctl and prlimit64 calls pass and their
// writing forms die; abort() still ends in SIGABRT and signals to others
// die; and exec, fork, clone, ptrace, namespaces, mounts, ioctl, file
// changes, BPF and io_uring all die.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

/// A file every system has, readable by everyone.
constexpr const char* kReadable = "/etc/passwd";
/// A path that never exists: should the filter wrongly allow a writing
/// open, it creates nothing the probes care about (in /tmp, removed by the
/// system), and O_CREAT|O_EXCL would make it.
constexpr const char* kScratch = "/tmp/sluice-reader-probe-never-kept";

/// openat(AT_FDCWD, `path`, `flags`) closes what it opened; true when it did.
bool opens(const char* path, int flags) {
  int fd = openat(AT_FDCWD, path, flags);
  return fd >= 0 && close(fd) == 0;
}

/// A socket of `family` is made and closed.
bool makes_socket(int family, int type) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  return fd >= 0 && close(fd) == 0;
}

}  // namespace

const std::vector<Probe>& reader_probes() {
  // Long by nature: one entry per condition and per forbidden call.
  static const std::vector<Probe> probes = {
      // --- Files: read-only opens only.
      {"openat_rdonly", Expect::kAllowed,
       +[](const ProbeFds&) { return opens(kReadable, O_RDONLY | O_CLOEXEC); }},
      {"openat_path_directory", Expect::kAllowed,
       +[](const ProbeFds&) { return opens("/", O_PATH | O_DIRECTORY | O_CLOEXEC); }},
      {"openat_nonblock_directory", Expect::kAllowed,
       +[](const ProbeFds&) { return opens("/etc", O_RDONLY | O_NONBLOCK | O_DIRECTORY); }},
      {"openat_wronly", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, kScratch, O_WRONLY))},
      {"openat_rdwr", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, kReadable, O_RDWR))},
      {"openat_creat", Expect::kKilled,
       FORBIDDEN(openat(AT_FDCWD, kScratch, O_RDONLY | O_CREAT | O_EXCL, 0600))},
      {"openat_trunc", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, kReadable, O_RDONLY | O_TRUNC))},
      {"openat_tmpfile", Expect::kKilled,
       FORBIDDEN(openat(AT_FDCWD, "/tmp", O_TMPFILE | O_RDWR, 0600))},
      {"open_rdonly", Expect::kAllowed,
       +[](const ProbeFds&) {
         long fd = syscall(SYS_open, kReadable, O_RDONLY | O_CLOEXEC);
         return fd >= 0 && close(static_cast<int>(fd)) == 0;
       }},
      {"open_wronly", Expect::kKilled, FORBIDDEN(syscall(SYS_open, kScratch, O_WRONLY))},
      {"open_creat", Expect::kKilled,
       FORBIDDEN(syscall(SYS_open, kScratch, O_RDONLY | O_CREAT | O_EXCL, 0600))},
      {"creat", Expect::kKilled, FORBIDDEN(syscall(SYS_creat, kScratch, 0600))},
      {"openat2", Expect::kKilled, FORBIDDEN(syscall(SYS_openat2, AT_FDCWD, kReadable, 0, 0))},
      {"unlinkat", Expect::kKilled, FORBIDDEN(unlinkat(AT_FDCWD, kScratch, 0))},
      {"renameat", Expect::kKilled, FORBIDDEN(renameat(AT_FDCWD, kScratch, AT_FDCWD, kScratch))},
      {"mkdirat", Expect::kKilled, FORBIDDEN(mkdirat(AT_FDCWD, kScratch, 0700))},
      {"fchmodat", Expect::kKilled, FORBIDDEN(fchmodat(AT_FDCWD, kScratch, 0600, 0))},
      {"fchownat", Expect::kKilled, FORBIDDEN(fchownat(AT_FDCWD, kScratch, 0, 0, 0))},
      {"ftruncate", Expect::kKilled, FORBIDDEN(ftruncate(f.pipe_w, 0))},
      {"fcntl_getfl", Expect::kAllowed,
       +[](const ProbeFds& f) { return fcntl(f.pipe_r, F_GETFL) >= 0; }},
      {"fcntl_setown", Expect::kKilled, FORBIDDEN(fcntl(f.pipe_r, F_SETOWN, getpid()))},
      {"fcntl_setlk", Expect::kKilled,
       +[](const ProbeFds& f) {
         struct flock lock = {};
         lock.l_type = F_RDLCK;
         [[maybe_unused]] int r = fcntl(f.pipe_r, F_SETLK, &lock);
         return false;
       }},
      {"memfd_sealed", Expect::kAllowed,
       +[](const ProbeFds&) {
         int fd = memfd_create("probe", MFD_CLOEXEC | MFD_ALLOW_SEALING);
         return fd >= 0 && write(fd, "x", 1) == 1 && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE) == 0 &&
                close(fd) == 0;
       }},
      {"ioctl_tiocsti", Expect::kKilled,
       +[](const ProbeFds&) {
         char c = 'x';
         [[maybe_unused]] int r = ioctl(2, TIOCSTI, &c);  // injecting input into a terminal
         return false;
       }},

      // --- Sockets: AF_UNIX only (the daemons of NSS), never the network.
      {"socket_unix_stream", Expect::kAllowed,
       +[](const ProbeFds&) { return makes_socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK); }},
      {"socket_unix_dgram", Expect::kAllowed,
       +[](const ProbeFds&) { return makes_socket(AF_UNIX, SOCK_DGRAM); }},
      {"connect_unix_missing", Expect::kAllowed,
       +[](const ProbeFds&) {
         int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
         sockaddr_un addr{};
         addr.sun_family = AF_UNIX;
         std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", kScratch);
         const bool refused =
             connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 && errno == ENOENT;
         return fd >= 0 && refused && close(fd) == 0;
       }},
      {"socket_inet", Expect::kKilled, FORBIDDEN(socket(AF_INET, SOCK_STREAM, 0))},
      {"socket_inet6", Expect::kKilled, FORBIDDEN(socket(AF_INET6, SOCK_DGRAM, 0))},
      {"socket_netlink", Expect::kKilled, FORBIDDEN(socket(AF_NETLINK, SOCK_RAW, 0))},
      {"socket_packet", Expect::kKilled, FORBIDDEN(socket(AF_PACKET, SOCK_RAW, 0))},
      {"socketpair", Expect::kKilled,
       +[](const ProbeFds&) {
         int sv[2];
         [[maybe_unused]] int r = socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
         return false;
       }},
      {"sendmsg_stream", Expect::kAllowed,
       +[](const ProbeFds& f) { return send(f.stream[0], "x", 1, MSG_NOSIGNAL) == 1; }},
      {"recvfrom_stream", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char c = 0;
         return send(f.stream[0], "y", 1, MSG_NOSIGNAL) == 1 && recv(f.stream[1], &c, 1, 0) == 1 &&
                c == 'y';
       }},

      // --- Reads of the process's own state; their writing forms die.
      {"prctl_capbset_read", Expect::kAllowed,
       +[](const ProbeFds&) { return prctl(PR_CAPBSET_READ, 0, 0, 0, 0) >= 0; }},
      {"prctl_set_name", Expect::kKilled, FORBIDDEN(prctl(PR_SET_NAME, "probe", 0, 0, 0))},
      {"prctl_set_dumpable", Expect::kKilled, FORBIDDEN(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))},
      {"prlimit_read", Expect::kAllowed,
       +[](const ProbeFds&) {
         struct rlimit lim;
         return prlimit(0, RLIMIT_NOFILE, nullptr, &lim) == 0;
       }},
      {"prlimit_write", Expect::kKilled,
       +[](const ProbeFds&) {
         struct rlimit lim = {64, 64};
         [[maybe_unused]] int r = prlimit(0, RLIMIT_NOFILE, &lim, nullptr);
         return false;
       }},

      // --- Processes, signals and privilege: never.
      {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }},
      {"kill_child", Expect::kKilled, FORBIDDEN(kill(f.child, SIGKILL)), kSetupBrokerFds},
      {"tgkill_other", Expect::kKilled, FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, 1, SIGKILL))},
      {"execve", Expect::kKilled, FORBIDDEN(execl("/bin/true", "true", nullptr))},
      {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork))},
      {"clone_thread", Expect::kKilled,
       FORBIDDEN(syscall(SYS_clone, CLONE_VM | CLONE_THREAD | CLONE_SIGHAND, nullptr))},
      {"clone3", Expect::kKilled, FORBIDDEN(syscall(SYS_clone3, nullptr, 0))},
      {"ptrace", Expect::kKilled, FORBIDDEN(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr))},
      {"unshare", Expect::kKilled, FORBIDDEN(unshare(CLONE_NEWUSER))},
      {"setns", Expect::kKilled, FORBIDDEN(setns(0, 0))},
      {"mount", Expect::kKilled, FORBIDDEN(mount("none", "/", nullptr, MS_REMOUNT, nullptr))},
      {"setuid", Expect::kKilled, FORBIDDEN(syscall(SYS_setuid, 0))},
      {"capset", Expect::kKilled, FORBIDDEN(syscall(SYS_capset, nullptr, nullptr))},
      {"bpf", Expect::kKilled, FORBIDDEN(syscall(SYS_bpf, 0, nullptr, 0))},
      {"io_uring_setup", Expect::kKilled, FORBIDDEN(syscall(SYS_io_uring_setup, 1, nullptr))},
      {"userfaultfd", Expect::kKilled, FORBIDDEN(syscall(SYS_userfaultfd, 0))},
      {"keyctl", Expect::kKilled, FORBIDDEN(syscall(SYS_keyctl, 0, 0, 0, 0, 0))},
  };
  return probes;
}

}  // namespace sluice::testing
