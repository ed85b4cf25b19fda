// Harness of the seccomp death tests: see filter_harness.h.
#include "tests/sandbox/filter_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "policy/seccomp_broker.h"
#include "schema/broker_wire.h"

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

/// Returns a copy of `fd` at 100 or above and closes `fd`, so that it cannot
/// sit on a number that is about to be placed.
int move_high(int fd, const char* what) {
  int high = need(fcntl(fd, F_DUPFD_CLOEXEC, 100), what);
  close(fd);
  return high;
}

/// Starts a child that waits to be killed and dies with its parent (the
/// death-test child) at the latest; returns its pid.
pid_t start_waiting_child() {
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) setup_failed("fork");
  if (pid == 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || getppid() != parent) _exit(0);
    for (;;) pause();
  }
  return pid;
}

/// kSetupBrokerFds: puts what sluiced keeps on its fixed descriptor numbers
/// there. Runs first, so that the other probe objects get higher numbers.
/// A fixed number may be the death-test pipe of gtest; replacing it is
/// harmless, since a probe never returns into gtest: the parent reads end of
/// file and judges the child by its exit status alone.
void place_broker_fds(ProbeFds& f) {
  int channel[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    setup_failed("socketpair(SOCK_SEQPACKET)");
  }
  // One request queued for the broker's recvmsg.
  if (send(channel[1], "q", 1, MSG_NOSIGNAL) != 1) setup_failed("send");

  sigset_t usr1;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  if (sigprocmask(SIG_BLOCK, &usr1, nullptr) != 0) setup_failed("sigprocmask");
  int signal_fd = need(signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK), "signalfd");
  if (raise(SIGUSR1) != 0) setup_failed("raise(SIGUSR1)");  // pending: read() finds it

  f.child = start_waiting_child();
  int pidfd = need(static_cast<int>(syscall(SYS_pidfd_open, f.child, 0)), "pidfd_open");
  int dir = need(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), "open(/, O_PATH)");
  int pesto_dir = need(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), "open(/, O_PATH)");
  // The namespace helper's channel, with one answer queued for the broker's
  // blocking recvmsg, and the pidfd of a second waiting child.
  int helper[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, helper) != 0) {
    setup_failed("socketpair(SOCK_SEQPACKET) for the helper");
  }
  if (send(helper[1], "a", 1, MSG_NOSIGNAL) != 1) setup_failed("send");
  f.helper_child = start_waiting_child();
  int helper_pidfd =
      need(static_cast<int>(syscall(SYS_pidfd_open, f.helper_child, 0)), "pidfd_open");
  // systemd's notify socket: a connected datagram socket, as sluiced keeps
  // it; the peer end is left open so that a send finds a live receiver.
  int notify[2];
  if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, notify) != 0) {
    setup_failed("socketpair(SOCK_DGRAM) for the notify socket");
  }
  f.notify_peer = move_high(notify[1], "notify peer");
  // The policy reader's channel, with one answer queued for the broker's
  // non-blocking recvmsg; the policy text in force and a reloaded one, each
  // a sealed memfd.
  int reader[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, reader) != 0) {
    setup_failed("socketpair(SOCK_SEQPACKET) for the policy reader");
  }
  if (send(reader[1], "t", 1, MSG_NOSIGNAL) != 1) setup_failed("send");
  f.reader_peer = move_high(reader[1], "reader peer");
  auto sealed_memfd = [] {
    int fd = need(memfd_create("probe-policy", MFD_CLOEXEC | MFD_ALLOW_SEALING), "memfd_create");
    if (write(fd, "bind allow * * *\n", 17) != 17 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
      setup_failed("sealing a policy memfd");
    }
    return fd;
  };
  const int policy_text = sealed_memfd();
  const int policy_staging = sealed_memfd();
  // The worker launcher's channel with one answer queued, the pidfd of a
  // third waiting child, and a StoreState's cookie list on its staging number.
  int launcher[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, launcher) != 0) {
    setup_failed("socketpair(SOCK_SEQPACKET) for the launcher");
  }
  if (send(launcher[1], "l", 1, MSG_NOSIGNAL) != 1) setup_failed("send");
  f.launcher_child = start_waiting_child();
  int launcher_pidfd =
      need(static_cast<int>(syscall(SYS_pidfd_open, f.launcher_child, 0)), "pidfd_open");
  const int state_staging = sealed_memfd();
  // The socket tables a rebind reads: sluiced's side's tcp and the target
  // namespace's udp6 (this process's own, for the probe), and the same file
  // on the numbers just outside their range, which the filter must refuse.
  auto proc_net = [](const char* name) { return need(open(name, O_RDONLY | O_CLOEXEC), name); };
  const int tables = proc_net("/proc/self/net/tcp");
  const int target_tables = proc_net("/proc/self/net/tcp");
  const int below_tables = proc_net("/proc/self/net/tcp");
  const int above_tables = proc_net("/proc/self/net/tcp");

  // Everything out of the way first, the peers included: any of them may sit
  // on a fixed number.
  f.channel_peer = move_high(channel[1], "channel peer");
  f.helper_peer = move_high(helper[1], "helper peer");
  f.launcher_peer = move_high(launcher[1], "launcher peer");
  const int sources[] = {move_high(channel[0], "channel"),
                         move_high(signal_fd, "signalfd"),
                         move_high(pidfd, "pidfd"),
                         move_high(dir, "dir"),
                         move_high(pesto_dir, "pesto dir"),
                         move_high(helper[0], "helper"),
                         move_high(helper_pidfd, "helper pidfd"),
                         move_high(notify[0], "notify"),
                         move_high(reader[0], "reader"),
                         move_high(policy_text, "policy text"),
                         move_high(policy_staging, "policy staging"),
                         move_high(launcher[0], "launcher"),
                         move_high(launcher_pidfd, "launcher pidfd"),
                         move_high(state_staging, "state staging"),
                         move_high(tables, "socket tables"),
                         move_high(target_tables, "target socket tables"),
                         move_high(below_tables, "below the socket tables"),
                         move_high(above_tables, "above the socket tables")};
  const int targets[] = {broker_fd::kChannel,          broker_fd::kSignal,
                         broker_fd::kWorker,           broker_fd::kControlDir,
                         broker_fd::kPestoDir,         broker_fd::kHelperChannel,
                         broker_fd::kHelper,           broker_fd::kNotify,
                         broker_fd::kPolicyReader,     broker_fd::kPolicyText,
                         broker_fd::kPolicyStaging,    broker_fd::kLauncherChannel,
                         broker_fd::kLauncher,         broker_fd::kStateStaging,
                         broker_fd::kSocketTables,     broker_fd::kTargetSocketTables + 3,
                         broker_fd::kSocketTables - 1, broker_fd::kFirstFree};
  static_assert(sizeof(sources) == sizeof(targets));
  for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); ++i) {
    if (dup3(sources[i], targets[i], O_CLOEXEC) != targets[i]) setup_failed("dup3");
    close(sources[i]);
  }
}

/// kSetupHelperFds: puts on the namespace helper's channel number
/// (helper_fd::kChannel) a SOCK_SEQPACKET end with one request queued, as
/// sluiced would send it; the peer goes to f.channel_peer.
void place_helper_fds(ProbeFds& f) {
  int channel[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, channel) != 0) {
    setup_failed("socketpair(SOCK_SEQPACKET)");
  }
  if (send(channel[1], "q", 1, MSG_NOSIGNAL) != 1) setup_failed("send");
  f.channel_peer = move_high(channel[1], "channel peer");
  const int source = move_high(channel[0], "channel");
  if (dup3(source, helper_fd::kChannel, O_CLOEXEC) != helper_fd::kChannel) setup_failed("dup3");
  close(source);
}

/// kSetupAuditFd: puts on the worker's audit fd (kWorkerFdAudit, 5) what
/// sluiced puts there, an append-only file, holding one earlier line. A
/// memfd stands in for the file. Runs first, like place_broker_fds().
void place_audit_fd() {
  int fd = need(memfd_create("probe-audit", MFD_CLOEXEC), "memfd_create");
  static const char kLine[] = "{\"seq\":1}\n";
  if (write(fd, kLine, sizeof(kLine) - 1) != static_cast<ssize_t>(sizeof(kLine) - 1)) {
    setup_failed("write(audit)");
  }
  if (fcntl(fd, F_SETFL, O_APPEND) != 0) setup_failed("F_SETFL O_APPEND");
  int high = move_high(fd, "audit");
  if (dup3(high, wire::kWorkerFdAudit, O_CLOEXEC) != wire::kWorkerFdAudit) setup_failed("dup3");
  close(high);
}

/// kSetupScanFds: puts /proc/self/net/{tcp,tcp6,udp,udp6} on the worker's
/// fixed auto-scan fds of both sides (16 to 19, the target namespace's, and
/// 20 to 23, sluiced's side's), and a readable memfd on fds 15 and 24 next to
/// them. A table missing here (no IPv6) gets /proc/self/net/tcp instead: the
/// probes only need a readable file there. Runs first, like
/// place_broker_fds().
void place_scan_fds() {
  static const char* const kFiles[] = {"/proc/self/net/tcp", "/proc/self/net/tcp6",
                                       "/proc/self/net/udp", "/proc/self/net/udp6"};
  constexpr int kBlock = 2 * wire::kWorkerFdScanCount;
  int sources[kBlock];
  for (int i = 0; i < kBlock; ++i) {
    const char* file = kFiles[i % wire::kWorkerFdScanCount];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fd = need(open(kFiles[0], O_RDONLY | O_CLOEXEC), "open(/proc/self/net/tcp)");
    sources[i] = move_high(fd, "scan file");
  }
  for (int i = 0; i < kBlock; ++i) {
    const int target = wire::kWorkerFdScanFirst + i;
    if (dup3(sources[i], target, O_CLOEXEC) != target) setup_failed("dup3(scan file)");
    close(sources[i]);
  }
  for (int target : {wire::kWorkerFdScanFirst - 1, wire::kWorkerFdScanEnd}) {
    int fd = need(memfd_create("probe-other", MFD_CLOEXEC), "memfd_create");
    if (write(fd, "other file\n", 11) != 11) setup_failed("write(other file)");
    int high = move_high(fd, "other file");
    if (dup3(high, target, O_CLOEXEC) != target) setup_failed("dup3(other file)");
    close(high);
  }
}

}  // namespace

bool abort_handler_ran() {
  return g_abort_handled != 0;
}

ProbeFds make_probe_fds(unsigned setup) {
  ProbeFds f;
  if (setup & kSetupBrokerFds) place_broker_fds(f);
  if (setup & kSetupHelperFds) place_helper_fds(f);
  if (setup & kSetupAuditFd) place_audit_fd();
  if (setup & kSetupScanFds) place_scan_fds();
  if (setup & kSetupStdoutDevNull) {
    int null = need(open("/dev/null", O_WRONLY | O_CLOEXEC), "open(/dev/null)");
    std::fflush(stdout);
    if (dup2(null, 1) != 1) setup_failed("dup2(/dev/null, 1)");
    close(null);
  }
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

void run_probe(const Probe& probe, std::vector<SyscallRule> (*rules)(int), void (*prepare)()) {
  ProbeFds fds = make_probe_fds(probe.setup);
  std::fflush(nullptr);  // nothing buffered may need a syscall later
  if (prepare != nullptr) prepare();
  load_filter_or_exit(rules(static_cast<int>(getpid())));
  bool ok = probe.run(fds);
  if (probe.expect != Expect::kAllowed) _exit(kExitNotKilled);
  _exit(ok ? 0 : kExitProbeFailed);
}

std::vector<Probe> with_futex_probes(std::vector<Probe> probes) {
  static const Probe kFutex[] = {
      {"futex_wait_private", Expect::kAllowed,
       +[](const ProbeFds&) {
         // The word is not 1, so the wait returns EAGAIN at once.
         int word = 0;
         return syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 1, nullptr, nullptr, 0) == -1 &&
                errno == EAGAIN;
       }},
      {"futex_shared_wake", Expect::kKilled,
       +[](const ProbeFds&) {
         int word = 0;
         (void)syscall(SYS_futex, &word, FUTEX_WAKE, 1, nullptr, nullptr, 0);
         return false;
       }},
      {"futex_cmp_requeue_pi", Expect::kKilled,
       +[](const ProbeFds&) {
         int a = 0, b = 0;
         (void)syscall(SYS_futex, &a, FUTEX_CMP_REQUEUE_PI | FUTEX_PRIVATE_FLAG, 1, 0, &b, 0);
         return false;
       }},
      {"futex_lock_pi", Expect::kKilled,
       +[](const ProbeFds&) {
         int word = 0;
         (void)syscall(SYS_futex, &word, FUTEX_LOCK_PI_PRIVATE, 0, nullptr, nullptr, 0);
         return false;
       }},
  };
  probes.insert(probes.end(), std::begin(kFutex), std::end(kFutex));
  return probes;
}

}  // namespace sluice::testing
