// Harness of the seccomp death tests: see filter_harness.h.
#include "tests/sandbox/filter_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace sluice::testing {
namespace {

/// Writes "probe setup: what: strerror" to stderr and exits kExitFilterFailed.
[[noreturn]] void setup_failed(const char* what) {
  std::fprintf(stderr, "probe setup: %s: %s\n", what, std::strerror(errno));
  _exit(kExitFilterFailed);
}

/// Returns `fd`, or exits through setup_failed() when it is negative.
int need(int fd, const char* what) {
  if (fd < 0) setup_failed(what);
  return fd;
}

volatile sig_atomic_t g_abort_handled = 0;

/// SIGABRT handler of kSetupAbortHandler: returns, through rt_sigreturn.
void on_abort(int) {
  g_abort_handled = 1;
}

}  // namespace

bool abort_handler_ran() {
  return g_abort_handled != 0;
}

ProbeFds make_probe_fds(unsigned setup) {
  ProbeFds f;
  f.tcp4 = need(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "tcp4");
  f.tcp6 = need(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0), "tcp6");
  f.udp4 = need(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "udp4");
  f.udp6 = need(socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0), "udp6");
  f.listener = need(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "listener");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(f.listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) setup_failed("bind");
  if (listen(f.listener, 8) != 0) setup_failed("listen");
  f.udp_listener =
      need(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "udp_listener");
  int one = 1;
  if (setsockopt(f.udp_listener, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one)) != 0) {
    setup_failed("IP_PKTINFO");
  }
  if (bind(f.udp_listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    setup_failed("bind udp_listener");
  }
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f.stream) != 0) setup_failed("stream");
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, f.dgram) != 0) setup_failed("dgram");
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) setup_failed("pipe2");
  f.pipe_r = p[0];
  f.pipe_w = p[1];
  f.epoll = need(epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
  f.page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (f.page == MAP_FAILED) setup_failed("mmap");
  if (setup & kSetupAbortHandler) {
    struct sigaction sa = {};
    sa.sa_handler = on_abort;
    if (sigaction(SIGABRT, &sa, nullptr) != 0) setup_failed("sigaction");
  }
  return f;
}

bool ia32_syscalls_work() {
#if !defined(__x86_64__)
  return false;
#else
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    long ret = 20;  // __NR_getpid on i386
    asm volatile("int $0x80" : "+a"(ret) : : "memory");
    _exit(ret == getpid() ? 0 : 1);
  }
  int status = 0;
  return waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
#endif
}

void load_filter_or_exit(const std::vector<SyscallRule>& rules) {
  // No core file for the SIGSYS we are about to provoke.
  struct rlimit no_core = {0, 0};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0) setup_failed("setrlimit(RLIMIT_CORE)");
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) setup_failed("PR_SET_DUMPABLE");
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) setup_failed("PR_SET_NO_NEW_PRIVS");
  Result<void> installed = install_seccomp(rules);
  if (!installed) {
    std::fprintf(stderr, "install_seccomp: %s\n", installed.error().message.c_str());
    _exit(kExitFilterFailed);
  }
}

void run_probe(const Probe& probe, std::vector<SyscallRule> (*rules)(int)) {
  ProbeFds fds = make_probe_fds(probe.setup);
  std::fflush(nullptr);  // nothing buffered may need a syscall later
  load_filter_or_exit(rules(static_cast<int>(getpid())));
  bool ok = probe.run(fds);
  if (probe.expect != Expect::kAllowed) _exit(kExitNotKilled);
  _exit(ok ? 0 : kExitProbeFailed);
}

}  // namespace sluice::testing
