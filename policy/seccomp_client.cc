// sluicectl's seccomp allowlist, loaded once its control socket is connected
// and before it reads anything from the worker. From then on the client only
// talks over that socket, prints to stdout/stderr, and exits.
//
// Checked with strace on Debian 12 (glibc 2.36): the first printf/std::cout to
// stdout does newfstatat(1, "", AT_EMPTY_PATH); when stdout is a character
// device that is not a pty (/dev/null, a console) it also does
// ioctl(1, TCGETS). A pipe or a file needs neither. Output is write(); exit is
// exit_group. lseek is not needed: the client never reads stdin after the
// filter, so stdio has no unread input to give back at exit.
//
// What the client can NOT do: open files, create sockets, exec, fork, mmap
// executable memory, or send signals to anyone but itself.
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <termios.h>

#include "policy/seccomp.h"

namespace sluice {

std::vector<SyscallRule> client_seccomp_rules(int self_pid) {
  const uint32_t self = static_cast<uint32_t>(self_pid);
  std::vector<SyscallRule> r;

  // --- The control connection (a UNIX stream socket, already connected).
  r.push_back({"read", {}, "control replies (capnp stream framing)"});
  r.push_back({"write", {}, "control requests; output to stdout/stderr"});
  r.push_back({"recvfrom", {}, "recv() on the control socket"});
  r.push_back({"sendto", {}, "send() on the control socket (MSG_NOSIGNAL)"});
  r.push_back({"recvmsg", {}, "control replies read with recvmsg"});
  r.push_back({"sendmsg", {}, "control requests written with sendmsg"});
  r.push_back({"ppoll", {}, "reply timeout"});
  r.push_back({"poll", {}, "reply timeout (poll() is its own syscall on x86_64)"});
  r.push_back({"close", {}, "close the control socket"});

  // --- stdio probing stdout/stderr on first use (see the file comment). The
  // fd is limited to 1 and 2, and newfstatat to AT_EMPTY_PATH (fstat).
  for (uint32_t fd : {1u, 2u}) {
    r.push_back({"newfstatat",
                 {arg_eq32(0, fd), arg_eq32(3, AT_EMPTY_PATH)},
                 "stdio: fstat(stdout/stderr) to choose buffering"});
    r.push_back({"ioctl",
                 {arg_eq32(0, fd), arg_eq32(1, TCGETS)},
                 "stdio: isatty(stdout/stderr) when it is a character device"});
  }

  // --- Memory: glibc malloc and Cap'n Proto message building. Never executable.
  r.push_back({"brk", {}, "glibc malloc main arena"});
  r.push_back({"mmap",
               {arg_flags_within(2, PROT_READ | PROT_WRITE)},
               "large allocations; prot only READ|WRITE (or NONE), never EXEC"});
  r.push_back({"munmap", {}, "free large allocations"});
  r.push_back({"mremap", {arg_flags_within(3, MREMAP_MAYMOVE)}, "realloc of large allocations"});
  r.push_back({"futex", {}, "glibc/libstdc++ locks; Cap'n Proto's first exception"});

  // --- Time, exit, signals.
  r.push_back({"clock_gettime", {}, "timeouts (vDSO fallback when the clocksource has none)"});
  r.push_back({"exit_group", {}, "exit() and _exit()"});
  r.push_back({"rt_sigreturn", {}, "return from a signal handler"});
  r.push_back({"rt_sigprocmask", {}, "abort() and raise() mask signals around tgkill"});
  r.push_back({"getpid", {}, "raise(): tgkill needs the pid (abort on a CHECK failure)"});
  r.push_back({"gettid", {}, "raise(): tgkill needs the tid (abort on a CHECK failure)"});
  r.push_back({"tgkill",
               {arg_eq32(0, self), arg_eq32(2, SIGABRT)},
               "abort() on a CHECK failure: SIGABRT to the client itself only"});
  return r;
}

}  // namespace sluice
