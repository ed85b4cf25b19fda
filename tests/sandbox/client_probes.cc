// Probes of sluicectl's allowlist (policy/seccomp_client.cc): the control
// socket I/O, stdio's probing of stdout/stderr (fd and request restricted),
// memory without PROT_EXEC, abort(); and what the client must never do.
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
#include <cstdlib>

#include "base/scm_rights.h"
#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

/// A probe that returns false, for forbidden calls (they must not return).
#define FORBIDDEN(call)            \
  +[](const ProbeFds& f) -> bool { \
    (void)f;                       \
    (void)(call);                  \
    return false;                  \
  }

/// ioctl(fd, TCGETS): allowed for fds 1 and 2 whether or not they are a tty.
bool tcgets(int fd) {
  termios t;
  return ioctl(fd, TCGETS, &t) == 0 || errno == ENOTTY;
}

}  // namespace

const std::vector<Probe>& client_probes() {
  static const std::vector<Probe> probes = {
      // --- The control connection.
      {"read_write", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char c;
         return write(f.stream[0], "a", 1) == 1 && read(f.stream[1], &c, 1) == 1;
       }},
      {"send_recv", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char c;
         return send(f.stream[0], "b", 1, MSG_NOSIGNAL) == 1 &&
                recv(f.stream[1], &c, 1, MSG_DONTWAIT) == 1;
       }},
      {"sendmsg_recvmsg", Expect::kAllowed,
       +[](const ProbeFds& f) {
         char buf[2];
         if (!send_message(f.stream[0], "c", 1, {})) return false;
         Result<ReceivedMessage> got = receive_message(f.stream[1], buf, sizeof(buf), 0);
         return got && got->len == 1;
       }},
      {"poll_ppoll", Expect::kAllowed,
       +[](const ProbeFds& f) {
         pollfd p = {f.stream[1], POLLIN, 0};
         timespec zero = {0, 0};
         return poll(&p, 1, 0) == 0 && ppoll(&p, 1, &zero, nullptr) == 0;
       }},
      {"close", Expect::kAllowed, +[](const ProbeFds& f) { return close(f.stream[0]) == 0; }},

      // --- stdio's probes of stdout and stderr, and nothing else.
      {"fstat_stdout_stderr", Expect::kAllowed,
       +[](const ProbeFds&) {
         struct stat st;
         return fstat(1, &st) == 0 && fstat(2, &st) == 0;
       }},
      {"tcgets_stdout_stderr", Expect::kAllowed,
       +[](const ProbeFds&) { return tcgets(1) && tcgets(2); }},
      {"tcgets_stdin", Expect::kKilled, FORBIDDEN(tcgets(0))},
      {"tcgets_socket", Expect::kKilled, FORBIDDEN(tcgets(f.stream[0]))},
      {"tiocsti_stdout", Expect::kKilled,
       +[](const ProbeFds&) {
         char c = 'x';
         (void)ioctl(1, TIOCSTI, &c);
         return false;
       }},
      {"tcsets_stdout", Expect::kKilled,
       +[](const ProbeFds&) {
         termios t{};
         (void)ioctl(1, TCSETS, &t);
         return false;
       }},
      {"fstat_socket", Expect::kKilled,
       +[](const ProbeFds& f) {
         struct stat st;
         (void)fstat(f.stream[0], &st);
         return false;
       }},
      {"stat_path", Expect::kKilled,
       +[](const ProbeFds&) {
         struct stat st;
         (void)stat("/etc/passwd", &st);
         return false;
       }},

      // --- Memory.
      {"malloc_mmap_mremap", Expect::kAllowed,
       +[](const ProbeFds&) {
         void* a = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         if (a == MAP_FAILED || mremap(a, 8192, 1 << 20, MREMAP_MAYMOVE) == MAP_FAILED) {
           return false;
         }
         for (size_t size = 16; size <= (8u << 20); size *= 4) {
           void* p = std::malloc(size);
           if (p == nullptr) return false;
           p = std::realloc(p, size * 2);
           std::free(p);
         }
         return true;
       }},
      {"brk_futex_clock", Expect::kAllowed,
       +[](const ProbeFds&) {
         int word = 0;
         timespec ts;
         return syscall(SYS_brk, 0) > 0 &&
                syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) == 0 &&
                syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
       }},
      {"mmap_exec", Expect::kKilled,
       FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))},
      {"mprotect", Expect::kKilled, FORBIDDEN(mprotect(f.page, 4096, PROT_READ))},

      // --- Signals.
      {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }},
      {"raise_sigabrt_handled", Expect::kAllowed,
       +[](const ProbeFds&) { return raise(SIGABRT) == 0 && abort_handler_ran(); },
       kSetupAbortHandler},
      {"tgkill_other_process", Expect::kKilled,
       FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, SIGABRT))},
      {"kill", Expect::kKilled, FORBIDDEN(kill(getpid(), 0))},

      // --- What the client never needs once connected.
      {"openat", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY))},
      {"socket", Expect::kKilled, FORBIDDEN(socket(AF_UNIX, SOCK_STREAM, 0))},
      {"connect", Expect::kKilled, FORBIDDEN(connect(f.tcp4, nullptr, 0))},
      {"fcntl", Expect::kKilled, FORBIDDEN(fcntl(f.stream[0], F_GETFL))},
      {"lseek", Expect::kKilled, FORBIDDEN(lseek(0, 0, SEEK_CUR))},
      {"execve", Expect::kKilled,
       +[](const ProbeFds&) {
         char* const argv[] = {const_cast<char*>("true"), nullptr};
         execve("/bin/true", argv, nullptr);
         return false;
       }},
      {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork))},
  };
  return probes;
}

}  // namespace sluice::testing
