// sluicectl's seccomp allowlist, loaded once its control socket is connected
// and before it reads anything from the worker. From then on the client only
// talks over that socket, prints to stdout/stderr, and exits: 13 syscalls.
//
// The client is shaped so that it needs little, and nothing that touches other
// processes or the file system. Checked with strace on Debian 12 (glibc 2.36),
// listing, editing, --json, --history, -s, with stdout on a file, a pipe,
// /dev/null and a pty:
//  - The control socket is used through send() and recv() only (sendto and
//    recvfrom on x86_64): MSG_NOSIGNAL, so a server that closes gives EPIPE,
//    not SIGPIPE, and stdout keeps the usual SIGPIPE. Each request has one
//    deadline: SO_RCVTIMEO and SO_SNDTIMEO, set before the filter, cut every
//    wait into short slices, and CLOCK_MONOTONIC_COARSE is read between them.
//    The vDSO serves the coarse clocks from its data page and never falls
//    back to the syscall: no poll, and no clock_gettime.
//  - stdio: glibc fstats a stream (and asks a character device for TCGETS)
//    the first time it allocates the stream's buffer. prepare_client_for_seccomp()
//    gives stdout a buffer and stderr its unbuffered mode before the filter,
//    so neither is probed afterwards. Output is write() to fd 1 or 2 only.
//  - malloc: prepare_client_for_seccomp() turns off malloc's own mmap chunks
//    (M_MMAP_MAX 0), so realloc never calls mremap; large blocks come from
//    brk, and mmap (never executable) stays for malloc's fallback when brk
//    fails.
//  - abort() on a failed CHECK still ends in SIGABRT, to the client itself
//    only. The client installs no signal handler, so rt_sigreturn is absent.
//  - exit() flushes stdout (write) and closes nothing but the control socket;
//    stdin is never read, so lseek is not needed either.
//
// What the client can NOT do: open files, create sockets, exec, fork, read any
// fd (recvfrom only works on sockets), write to any fd but 1 and 2 (sendto
// only works on sockets), map executable memory, wait with poll, or send
// signals to anyone but itself.
#include <linux/futex.h>
#include <malloc.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "base/strings.h"
#include "policy/seccomp.h"

namespace sluice {
namespace {

/// stdout's buffer, given before the filter (see the file comment). Static
/// because stdio keeps using it until exit() has flushed it; BUFSIZ is the
/// size glibc picks for a stream it cannot ask for a block size.
char g_stdout_buffer[BUFSIZ];

}  // namespace

Result<void> prepare_client_for_seccomp() {
  // stdout: line-buffered on a terminal, fully buffered otherwise, exactly as
  // glibc would choose on first use. isatty() is ioctl(TCGETS), made here.
  int mode = isatty(STDOUT_FILENO) ? _IOLBF : _IOFBF;
  if (std::setvbuf(stdout, g_stdout_buffer, mode, sizeof(g_stdout_buffer)) != 0) {
    return SysErr("setvbuf(stdout)");
  }
  // stderr: unbuffered, as C requires; set explicitly so that stdio has its
  // one-byte buffer now and never asks for a real one.
  if (std::setvbuf(stderr, nullptr, _IONBF, 0) != 0) {
    return SysErr("setvbuf(stderr)");
  }
#ifndef SLUICE_SANITIZE
  // glibc's mallopt returns 1 on success. The sanitizer runtime replaces
  // malloc (and answers mallopt with 0); its realloc never uses mremap.
  if (mallopt(M_MMAP_MAX, 0) != 1) return Err(EINVAL, "mallopt(M_MMAP_MAX, 0) failed");
#endif
  return Ok();
}

std::vector<SyscallRule> verifier_seccomp_rules(int self_pid) {
  std::vector<SyscallRule> r = client_seccomp_rules(self_pid);
  r.push_back({"read",
               {arg_eq32(0, static_cast<uint32_t>(kVerifierAuditFd))},
               "--verify-audit: the audit log, moved onto this number before the filter"});
  return r;
}

std::vector<SyscallRule> client_seccomp_rules(int self_pid) {
  const uint32_t self = static_cast<uint32_t>(self_pid);
  std::vector<SyscallRule> r;

  // --- The control connection (a UNIX stream socket, already connected).
  r.push_back({"recvfrom",
               {arg_eq32(3, 0)},
               "recv() of control replies; no flags (SO_RCVTIMEO bounds the wait)"});
  r.push_back({"sendto",
               {arg_eq32(3, MSG_NOSIGNAL)},
               "send() of control requests; MSG_NOSIGNAL: a closed server gives EPIPE"});
  r.push_back({"close", {}, "close the control socket"});

  // --- Output: stdout and stderr only (their buffering is set up before the
  // filter, see the file comment).
  r.push_back({"write", {arg_eq32(0, 1)}, "listings, reports and JSON on stdout"});
  r.push_back({"write", {arg_eq32(0, 2)}, "errors and log lines on stderr"});

  // --- Memory: glibc malloc and Cap'n Proto messages. Never executable.
  r.push_back({"brk", {}, "glibc malloc main arena (M_MMAP_MAX 0: large blocks too)"});
  r.push_back({"mmap",
               {arg_flags_within(2, PROT_READ | PROT_WRITE)},
               "malloc's fallback when brk fails; prot only READ|WRITE (or NONE), never EXEC"});
  r.push_back({"munmap", {}, "free memory mapped before or by that fallback"});
  // futex: only process-private wait and wake; no shared futexes, no requeue
  // and no PI operations (CVE-2014-3153 was a requeue-PI bug).
  r.push_back({"futex",
               {arg_eq32(1, FUTEX_WAKE_PRIVATE)},
               "pthread_once's wake-up (std::locale's first use in rendering); Cap'n Proto's "
               "first exception"});
  r.push_back({"futex",
               {arg_eq32(1, FUTEX_WAIT_PRIVATE)},
               "wait on a lock held elsewhere (glibc, kj::Mutex); never reached single-threaded"});

  // --- Exit and abort.
  r.push_back({"exit_group", {}, "exit() and _exit()"});
  r.push_back({"rt_sigprocmask", {}, "abort() and raise() mask signals around tgkill"});
  r.push_back({"getpid", {}, "raise(): tgkill needs the pid (abort on a CHECK failure)"});
  r.push_back({"gettid", {}, "raise(): tgkill needs the tid (abort on a CHECK failure)"});
  r.push_back({"tgkill",
               {arg_eq32(0, self), arg_eq32(2, SIGABRT)},
               "abort() on a CHECK failure: SIGABRT to the client itself only"});
  return r;
}

}  // namespace sluice
