// Probes of sluicectl's allowlist (policy/seccomp_client.cc). Each runs the
// way sluicectl does: prepare_client_for_seccomp(), then the filter. Covered:
// send/recv on the control socket with exactly the client's flags, write to
// stdout/stderr only, memory without PROT_EXEC and realloc without mremap,
// abort(); and what the client must never do, including everything the
// allowlist used to grant before the client was shaped to need less (read,
// recvmsg/sendmsg, poll/ppoll, stdio's fstat/TCGETS, mremap, clock_gettime,
// a signal handler's return).
#include <fcntl.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

/// ioctl(fd, TCGETS), as isatty() makes it.
bool tcgets(int fd) {
  termios t;
  return ioctl(fd, TCGETS, &t) == 0 || errno == ENOTTY;
}

}  // namespace

const std::vector<Probe>& client_probes() {
  static const std::vector<Probe> probes = with_futex_probes({
      // --- The control connection: send() and recv(), with the client's flags.
      {"send_recv", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char c;
         return send(f.stream[0], "b", 1, MSG_NOSIGNAL) == 1 && recv(f.stream[1], &c, 1, 0) == 1;
       }},
      {"send_to_closed_peer_is_epipe", Expect::kAllowed,
       +[](const ProbeFds& f) {
         // A server that went away: EPIPE, and no SIGPIPE thanks to MSG_NOSIGNAL.
         return close(f.stream[1]) == 0 && send(f.stream[0], "x", 1, MSG_NOSIGNAL) == -1 &&
                errno == EPIPE;
       }},
      {"recv_from_closed_peer_is_eof", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char c;
         return close(f.stream[1]) == 0 && recv(f.stream[0], &c, 1, 0) == 0;
       }},
      {"send_without_nosignal", Expect::kKilled, FORBIDDEN(send(f.stream[0], "b", 1, 0))},
      {"send_dontwait", Expect::kKilled,
       FORBIDDEN(send(f.stream[0], "b", 1, MSG_NOSIGNAL | MSG_DONTWAIT))},
      {"recv_dontwait", Expect::kKilled,
       +[](const ProbeFds& f) {
         char c;
         (void)recv(f.stream[1], &c, 1, MSG_DONTWAIT);
         return false;
       }},
      {"recv_peek", Expect::kKilled,
       +[](const ProbeFds& f) {
         char c;
         (void)recv(f.stream[1], &c, 1, MSG_PEEK);
         return false;
       }},
      {"read", Expect::kKilled,
       +[](const ProbeFds& f) {
         char c;
         [[maybe_unused]] ssize_t n = read(f.stream[1], &c, 1);
         return false;
       }},
      {"read_stdin", Expect::kKilled,
       +[](const ProbeFds&) {
         char c;
         [[maybe_unused]] ssize_t n = read(0, &c, 0);
         return false;
       }},
      {"sendmsg", Expect::kKilled,
       +[](const ProbeFds& f) {
         msghdr msg{};
         (void)sendmsg(f.stream[0], &msg, MSG_NOSIGNAL);
         return false;
       }},
      {"recvmsg", Expect::kKilled,
       +[](const ProbeFds& f) {
         msghdr msg{};
         (void)recvmsg(f.stream[1], &msg, 0);
         return false;
       }},
      {"poll", Expect::kKilled,
       +[](const ProbeFds& f) {
         pollfd p = {f.stream[1], POLLIN, 0};
         (void)poll(&p, 1, 0);
         return false;
       }},
      {"ppoll", Expect::kKilled,
       +[](const ProbeFds& f) {
         pollfd p = {f.stream[1], POLLIN, 0};
         timespec zero = {0, 0};
         (void)ppoll(&p, 1, &zero, nullptr);
         return false;
       }},
      {"close", Expect::kAllowed, +[](const ProbeFds& f) { return close(f.stream[0]) == 0; }},

      // --- Output: write() to stdout and stderr, and no other fd.
      {"write_stdout_stderr", Expect::kAllowed,
       +[](const ProbeFds&) { return write(1, "", 0) == 0 && write(2, "", 0) == 0; }},
      {"stdio_to_dev_null", Expect::kAllowed,
       // stdout is /dev/null, a character device that is not a tty: glibc
       // would fstat it and ask for TCGETS on first use, had
       // prepare_client_for_seccomp() not given it a buffer.
       +[](const ProbeFds&) {
         return std::printf("client output %d\n", 42) > 0 && std::fflush(stdout) == 0;
       },
       kSetupStdoutDevNull},
      {"write_socket", Expect::kKilled, FORBIDDEN(write(f.stream[0], "a", 1))},
      {"write_pipe", Expect::kKilled, FORBIDDEN(write(f.pipe_w, "a", 1))},
      {"write_stdin", Expect::kKilled, FORBIDDEN(write(0, "", 0))},
      {"fstat_stdout", Expect::kKilled,
       +[](const ProbeFds&) {
         struct stat st;
         (void)fstat(1, &st);
         return false;
       }},
      {"tcgets_stdout", Expect::kKilled, FORBIDDEN(tcgets(1))},
#ifdef SLUICE_SANITIZE
      // Sanitizer builds let the runtime ask isatty(2) before a report
      // (policy/seccomp_table.cc, sanitizer_seccomp_rules).
      {"tcgets_stderr", Expect::kAllowed, +[](const ProbeFds&) { return tcgets(2); }},
#else
      {"tcgets_stderr", Expect::kKilled, FORBIDDEN(tcgets(2))},
#endif
      {"stat_path", Expect::kKilled,
       +[](const ProbeFds&) {
         struct stat st;
         (void)stat("/etc/passwd", &st);
         return false;
       }},
      {"lseek", Expect::kKilled, FORBIDDEN(lseek(0, 0, SEEK_CUR))},

      // --- Memory.
      {"malloc_realloc_free", Expect::kAllowed,
       +[](const ProbeFds&) {
         // Up to 16 MiB, far above malloc's default mmap threshold: with
         // M_MMAP_MAX 0 every block comes from brk and realloc never mremaps.
         for (size_t size = 16; size <= (8u << 20); size *= 4) {
           void* p = std::malloc(size);
           if (p == nullptr) return false;
           std::memset(p, 1, size);
           void* q = std::realloc(p, size * 2);
           if (q == nullptr) return false;
           std::free(q);
         }
         return true;
       }},
      {"mmap_rw_munmap", Expect::kAllowed,
       +[](const ProbeFds&) {
         void* a = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         return a != MAP_FAILED && munmap(a, 8192) == 0;
       }},
      {"brk_futex", Expect::kAllowed,
       +[](const ProbeFds&) {
         int word = 0;
         return syscall(SYS_brk, 0) > 0 &&
                syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) == 0;
       }},
      {"mmap_exec", Expect::kKilled,
       FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))},
      {"mremap", Expect::kKilled, FORBIDDEN(mremap(f.page, 4096, 8192, MREMAP_MAYMOVE))},
      {"mprotect", Expect::kKilled, FORBIDDEN(mprotect(f.page, 4096, PROT_READ))},
      // Request deadlines read CLOCK_MONOTONIC_COARSE, which the vDSO
      // serves without the syscall (client/control_client.cc).
      {"clock_monotonic_coarse_from_vdso", Expect::kAllowed,
       +[](const ProbeFds&) {
         timespec a, b;
         return clock_gettime(CLOCK_MONOTONIC_COARSE, &a) == 0 &&
                clock_gettime(CLOCK_MONOTONIC_COARSE, &b) == 0 &&
                (b.tv_sec > a.tv_sec || (b.tv_sec == a.tv_sec && b.tv_nsec >= a.tv_nsec));
       }},
      {"clock_gettime_syscall", Expect::kKilled,
       +[](const ProbeFds&) {
         timespec ts;
         (void)syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
         return false;
       }},

      // --- Signals: abort() works; nothing else does.
      {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }},
      {"signal_handler_return", Expect::kKilled,
       // The handler runs, and its return (rt_sigreturn) is killed: sluicectl
       // installs no handler.
       +[](const ProbeFds&) {
         (void)raise(SIGABRT);
         return false;
       },
       kSetupAbortHandler},
      {"tgkill_other_process", Expect::kKilled,
       FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, SIGABRT))},
      {"tgkill_self_sigterm", Expect::kKilled,
       FORBIDDEN(syscall(SYS_tgkill, getpid(), gettid(), SIGTERM))},
      {"kill", Expect::kKilled, FORBIDDEN(kill(getpid(), 0))},

      // --- What the client never needs once connected.
      {"openat", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY))},
      {"socket", Expect::kKilled, FORBIDDEN(socket(AF_UNIX, SOCK_STREAM, 0))},
      {"connect", Expect::kKilled, FORBIDDEN(connect(f.tcp4, nullptr, 0))},
      {"fcntl", Expect::kKilled, FORBIDDEN(fcntl(f.stream[0], F_GETFL))},
      {"execve", Expect::kKilled,
       +[](const ProbeFds&) {
         char* const argv[] = {const_cast<char*>("true"), nullptr};
         execve("/bin/true", argv, nullptr);
         return false;
       }},
      {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork))},
  });
  return probes;
}

}  // namespace sluice::testing
