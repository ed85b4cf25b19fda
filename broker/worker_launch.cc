// Starting and stopping sluice-worker (see worker_launch.h).
#include "broker/worker_launch.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): C linkage by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <sched.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"
#include "broker/target_namespace.h"
#include "schema/broker_wire.h"
#include "schema/worker_args.h"

namespace sluice {
namespace {

/// In the forked child: writes "sluiced: error: cannot start the worker PATH:
/// WHAT: ERRNO" to fd 2 and exits 127 (the shell's "command not found" code).
[[noreturn]] void child_fail(const char* path, const char* what) noexcept {
  int err = errno;
  char buf[512];
  int n =
      std::snprintf(buf, sizeof(buf), "sluiced: error: cannot start the worker %s: %s: %s (%s)\n",
                    path, what, errno_name(err), std::strerror(err));
  if (n > 0) {
    ssize_t ignored = ::write(2, buf, static_cast<size_t>(n) < sizeof(buf) ? n : sizeof(buf) - 1);
    (void)ignored;
  }
  ::_exit(127);
}

/// In the forked child: sets up the worker's fds and signals and execs it.
/// Sources are first moved above every target (F_DUPFD_CLOEXEC from
/// kWorkerFdScanEnd), so that a source already sitting on 0..8 or 20..23
/// cannot be overwritten by an earlier dup2; dup2 then places each at its
/// number with CLOEXEC cleared. `host_scan` (-1 for a file that is not
/// there) goes to kWorkerFdHostScanFirst..
[[noreturn]] void exec_child(const char* path, char* const* argv, char* const* envp, int devnull,
                             int log_fd, int channel, int control_fd, int audit_fd, int policy_fd,
                             int pesto_fd, int audit_tail_fd, const HostScanFiles& host_scan,
                             const TargetNamespace* target) noexcept {
  // First, while the namespace fds are still open: the worker runs inside the
  // target network namespace, so its connections go there, while the
  // listeners it gets from sluiced stay in sluiced's (target_namespace.h).
  if (target != nullptr) {
    if (int err = join_target_namespace(*target); err != 0) {
      errno = err;
      child_fail(path, "setns into the target namespace");
    }
  }
  const int sources[] = {devnull,
                         log_fd,
                         log_fd,
                         channel,
                         control_fd,
                         audit_fd,
                         policy_fd,
                         pesto_fd < 0 ? devnull : pesto_fd,
                         audit_tail_fd < 0 ? devnull : audit_tail_fd};
  static_assert(sizeof(sources) / sizeof(sources[0]) == wire::kWorkerFirstFreeFd);
  int moved[wire::kWorkerFirstFreeFd];
  for (int i = 0; i < wire::kWorkerFirstFreeFd; ++i) {
    moved[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, wire::kWorkerFdScanEnd);
    if (moved[i] < 0) child_fail(path, "fcntl(F_DUPFD_CLOEXEC)");
  }
  int moved_scan[wire::kWorkerFdScanCount];
  for (int i = 0; i < wire::kWorkerFdScanCount; ++i) {
    const int fd = host_scan[static_cast<size_t>(i)].get();
    moved_scan[i] = fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, wire::kWorkerFdScanEnd);
    if (fd >= 0 && moved_scan[i] < 0) child_fail(path, "fcntl(F_DUPFD_CLOEXEC)");
  }
  for (int i = 0; i < wire::kWorkerFirstFreeFd; ++i) {
    if (::dup2(moved[i], i) < 0) child_fail(path, "dup2");
  }
  for (int i = 0; i < wire::kWorkerFdScanCount; ++i) {
    if (moved_scan[i] >= 0 && ::dup2(moved_scan[i], wire::kWorkerFdHostScanFirst + i) < 0) {
      child_fail(path, "dup2");
    }
  }
  // Everything else goes, and so does a number of sluiced's scan block whose
  // file does not exist: the worker takes a closed number there for "none".
  for (int i = 0; i < wire::kWorkerFdScanCount; ++i) {
    if (moved_scan[i] < 0) ::close(wire::kWorkerFdHostScanFirst + i);
  }
  if (::close_range(wire::kWorkerFirstFreeFd, wire::kWorkerFdHostScanFirst - 1, 0) != 0 ||
      ::close_range(wire::kWorkerFdScanEnd, ~0U, 0) != 0) {
    child_fail(path, "close_range");
  }
  // Its own process group: a terminal's Ctrl-C reaches only the broker, which
  // then stops the worker in order (SIGTERM, bounded wait) and exits 0.
  if (::setpgid(0, 0) != 0) child_fail(path, "setpgid");
  // Dispositions first (the broker ignores SIGPIPE; ignored signals survive
  // exec), then the mask (SIGTERM/SIGINT/SIGCHLD are blocked for signalfd).
  // Errors for SIGKILL, SIGSTOP and libc's reserved signals are expected.
  struct sigaction dfl = {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) child_fail(path, "sigprocmask");
  ::execve(path, argv, envp);
  child_fail(path, "execve");
}

/// Waits up to `timeout_ms` for `fd` to become readable (a pidfd: the process
/// exited). Returns true when it did.
bool wait_readable(int fd, int timeout_ms) {
  const uint64_t deadline = monotonic_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  for (;;) {
    uint64_t now = monotonic_ns();
    if (now >= deadline) return false;
    struct pollfd p = {fd, POLLIN, 0};
    int left_ms = static_cast<int>((deadline - now + 999999) / 1000000);
    int rc = ::poll(&p, 1, left_ms);
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return false;
  }
}

}  // namespace

Result<UniqueFd> stderr_for_worker() {
  struct stat st;
  if (::fstat(2, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))) {
    // Opening the /proc link makes a new file description for a pipe or a
    // terminal (a dup would share sluiced's, and its O_NONBLOCK with it).
    UniqueFd fd(::open("/proc/self/fd/2", O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (fd.valid()) return fd;
    LOG_DEBUG("cannot reopen stderr for the worker (%s); it shares sluiced's, blocking",
              errno_text(errno).c_str());
  }
  UniqueFd fd(::fcntl(2, F_DUPFD_CLOEXEC, 3));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, "cannot duplicate stderr for the worker");
  }
  return fd;
}

Result<UniqueFd> open_audit_log(const std::string& path) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK,
                     0600));
  if (!fd.valid()) {
    int err = errno;
    if (err == ELOOP) {
      return Err(err, "audit log " + path +
                          " is a symbolic link, which sluiced does not follow; give the path of "
                          "the file itself to --audit-log");
    }
    return Err(err, "cannot open audit log " + path + ": " + errno_text(err) +
                        (err == ENXIO ? "; --audit-log needs a regular file, not a FIFO or device"
                                      : "; check the path given to --audit-log"));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat audit log " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISFIFO(st.st_mode)   ? "a FIFO"
                       : S_ISCHR(st.st_mode)  ? "a character device"
                       : S_ISBLK(st.st_mode)  ? "a block device"
                       : S_ISSOCK(st.st_mode) ? "a socket"
                                              : "not a regular file";
    return Err(EINVAL, "audit log " + path + " is " + kind +
                           "; --audit-log needs a regular file (to ship lines elsewhere, "
                           "follow the file: docs/AUDIT.md)");
  }
  if (st.st_uid != ::geteuid()) {
    return Err(EPERM, "audit log " + path + " belongs to uid " + std::to_string(st.st_uid) +
                          ", not to uid " + std::to_string(::geteuid()) +
                          " that sluiced runs as; chown it, or give another --audit-log FILE");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Err(EPERM, "audit log " + path + " is writable by other users (mode " + mode +
                          "), who could rewrite it; run chmod go-w on it");
  }
  if (st.st_nlink != 1) {
    return Err(EPERM, "audit log " + path + " has " + std::to_string(st.st_nlink) +
                          " names (hard links); give --audit-log a file with exactly one");
  }
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    int err = errno;
    return SysErr(err, "cannot clear O_NONBLOCK on audit log " + path);
  }
  return fd;
}

Result<UniqueFd> open_audit_tail(const std::string& path, const UniqueFd& sink) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK));
  if (!fd.valid()) {
    int err = errno;
    std::string what =
        err == EACCES ? "give sluiced's user read permission (chmod u+r)"
        : err == ELOOP
            ? "it was replaced by a symbolic link after sluiced opened it; start sluiced again"
            : "check the file";
    return Err(err, "cannot open audit log " + path + " for reading: " + errno_text(err) +
                        "; sluiced hands the worker a read-only descriptor of it, so that each "
                        "run links to the log's last line: " +
                        what);
  }
  struct stat tail_st, sink_st;
  if (::fstat(fd.get(), &tail_st) != 0 || ::fstat(sink.get(), &sink_st) != 0) {
    int err = errno;
    return SysErr(err, "cannot stat audit log " + path);
  }
  if (tail_st.st_dev != sink_st.st_dev || tail_st.st_ino != sink_st.st_ino) {
    return Err(EAGAIN, "audit log " + path +
                           " was replaced by another file while sluiced opened it; make sure "
                           "nothing else renames or creates it, and start sluiced again");
  }
  return fd;
}

Result<std::string> find_worker_binary() {
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) {
    int err = errno;
    return Err(err, "cannot find this binary (readlink /proc/self/exe): " + errno_text(err) +
                        "; is /proc mounted?");
  }
  std::string dir(self, static_cast<size_t>(n));
  dir.resize(dir.rfind('/') == std::string::npos ? 0 : dir.rfind('/'));
  // Next to sluiced (the build tree, a one-directory install), then where
  // the install step puts it, relative to sluiced so that a relocated
  // prefix works: from /usr/sbin, ../libexec/sluice.
  const std::string candidates[] = {dir + "/" + kWorkerProgram,
                                    dir + "/" + SLUICE_WORKER_RELDIR + "/" + kWorkerProgram};
  int err = 0;
  for (const std::string& path : candidates) {
    if (::access(path.c_str(), X_OK) == 0) return path;
    if (err == 0 || errno != ENOENT) err = errno;
  }
  return Err(err, std::string(kWorkerProgram) + " not found: " + candidates[0] + " nor " +
                      candidates[1] + ": " + errno_text(err) +
                      "; install it next to sluiced or with `cmake --install`");
}

HostScanFiles open_host_scan_files() {
  static constexpr const char* kFiles[wire::kWorkerFdScanCount] = {
      "/proc/self/net/tcp", "/proc/self/net/tcp6", "/proc/self/net/udp", "/proc/self/net/udp6"};
  HostScanFiles out;
  for (size_t i = 0; i < out.size(); ++i) {
    out[i].reset(::open(kFiles[i], O_RDONLY | O_CLOEXEC | O_NOCTTY));
    // tcp6 and udp6 are missing without IPv6; the worker says what else is.
    if (!out[i].valid() && errno != ENOENT) {
      LOG_WARN("cannot open %s for auto-scan of -T/-U: %s", kFiles[i], errno_text(errno).c_str());
    }
  }
  return out;
}

Result<WorkerProcess> launch_worker(const std::string& path, const WorkerArgs& args, int control_fd,
                                    int audit_fd, int policy_fd, int pesto_fd, int audit_tail_fd,
                                    const HostScanFiles& host_scan, const TargetNamespace* target,
                                    bool sibling) {
  const std::vector<std::string> argv = to_argv(args);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    int err = errno;
    return SysErr(err, "socketpair(SOCK_SEQPACKET) for the worker channel");
  }
  UniqueFd broker_end(sv[0]);
  UniqueFd worker_end(sv[1]);
  // Only the broker's end: the worker's end stays blocking for its start-up
  // Hello, and the worker sends with MSG_DONTWAIT afterwards.
  const int flags = ::fcntl(broker_end.get(), F_GETFL);
  if (flags < 0 || ::fcntl(broker_end.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    return SysErr(err, "fcntl(O_NONBLOCK) on the worker channel");
  }
  UniqueFd devnull(::open("/dev/null", O_RDWR | O_CLOEXEC | O_NOCTTY));
  if (!devnull.valid()) {
    int err = errno;
    return SysErr(err, "cannot open /dev/null for the worker's stdin");
  }
  auto log_fd = stderr_for_worker();
  if (!log_fd) return Err(log_fd.error().err, log_fd.error().message);
  // Everything the child needs is built before fork, so the child only makes
  // plain syscalls between fork and exec.
  std::vector<char*> exec_argv;
  for (const std::string& a : argv) exec_argv.push_back(const_cast<char*>(a.c_str()));
  exec_argv.push_back(nullptr);
  char* envp[] = {nullptr};  // an empty environment: nothing to inherit or parse

  // A sibling is a child of this process's parent (CLONE_PARENT): the
  // launcher starts workers that sluiced reaps and that die with sluiced.
  // Without CLONE_VM and with no new stack, clone returns in the child like
  // fork; the launcher is single-threaded.
  pid_t pid = sibling ? static_cast<pid_t>(::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr,
                                                     nullptr, nullptr, 0))
                      : ::fork();
  if (pid < 0) {
    int err = errno;
    return SysErr(err, "fork for the worker");
  }
  if (pid == 0) {
    exec_child(path.c_str(), exec_argv.data(), envp, devnull.get(), log_fd->get(), worker_end.get(),
               control_fd, audit_fd, policy_fd, pesto_fd, audit_tail_fd, host_scan, target);
  }
  WorkerProcess worker;
  worker.pid = pid;
  worker.channel = std::move(broker_end);
  worker.pidfd.reset(::pidfd_open(pid, 0));
  if (!worker.pidfd.valid()) {
    int err = errno;
    ::kill(pid, SIGKILL);  // not yet reaped, so the pid cannot have been recycled
    if (!sibling) ::waitpid(pid, nullptr, 0);
    return Err(err,
               "pidfd_open for the worker: " + errno_text(err) + " (needs Linux 5.3 or later)");
  }
  LOG_DEBUG("started %s as pid %d", path.c_str(), static_cast<int>(pid));
  return worker;
}

int poll_worker_exit(const WorkerProcess& worker, int expected_signal, EndLog log) {
  siginfo_t info = {};
  if (::waitid(P_PIDFD, static_cast<id_t>(worker.pidfd.get()), &info, WEXITED | WNOHANG) != 0) {
    LOG_ERROR("waitid for the worker: %s", errno_text(errno).c_str());
    return 1;
  }
  if (info.si_pid == 0) return -1;  // still running
  const bool quiet = log == EndLog::kCallerLogs;
  if (info.si_code == CLD_EXITED) {
    log_write(quiet                 ? LogLevel::kDebug
              : info.si_status == 0 ? LogLevel::kInfo
                                    : LogLevel::kError,
              __func__, "worker exited with status %d", info.si_status);
    return info.si_status;
  }
  const char* name = sigabbrev_np(info.si_status);
  log_write(quiet                               ? LogLevel::kDebug
            : info.si_status == expected_signal ? LogLevel::kInfo
                                                : LogLevel::kError,
            __func__, "worker was killed by signal %d (SIG%s)%s", info.si_status, name ? name : "?",
            info.si_status == SIGSYS ? ": a syscall outside its seccomp allowlist" : "");
  return 128 + info.si_status;
}

int stop_worker(const WorkerProcess& worker, StopMode mode, EndLog log) {
  int code = poll_worker_exit(worker, 0, log);
  if (code >= 0) return code;
  // EOF on the channel makes the worker stop by itself, and unlike a signal
  // it needs no permission over the worker's uid. A compromised worker
  // (kKill) gets SIGKILL first instead, and the channel is closed only if
  // the signal is refused.
  if (mode != StopMode::kKill) ::shutdown(worker.channel.get(), SHUT_RDWR);
  if (mode != StopMode::kKill) {
    if (wait_readable(worker.pidfd.get(), kWorkerStopTimeoutMs)) {
      code = poll_worker_exit(worker, 0, log);
      if (code >= 0) return code;
    }
    LOG_WARN("worker did not exit within %d ms; killing it", kWorkerStopTimeoutMs);
  }
  if (::pidfd_send_signal(worker.pidfd.get(), SIGKILL, nullptr, 0) != 0) {
    int err = errno;
    if (err == EPERM) {
      // Started as root, the worker runs as another uid and the broker holds
      // no CAP_KILL. Its PR_SET_PDEATHSIG(SIGKILL) ends it when sluiced exits.
      ::shutdown(worker.channel.get(), SHUT_RDWR);
      LOG_INFO("the worker runs as another user; it is killed when sluiced exits");
      return 1;
    }
    LOG_ERROR("cannot send SIGKILL to the worker: %s", errno_text(err).c_str());
  }
  // After SIGKILL only a task stuck in the kernel takes long; still bounded.
  wait_readable(worker.pidfd.get(), kWorkerStopTimeoutMs);
  code = poll_worker_exit(worker, SIGKILL, log);
  if (code < 0) {
    LOG_ERROR("worker (pid %d) did not die after SIGKILL; leaving it",
              static_cast<int>(worker.pid));
    return 1;
  }
  return code;
}

}  // namespace sluice
