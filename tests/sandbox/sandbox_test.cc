// enter_sandbox() end to end: a forked child runs gather_host_facts() and
// enter_sandbox(), reports on a pipe at a fixed fd below
// wire::kWorkerFirstFreeFd, and blocks in read() (allowed) until released.
// The parent then inspects it from outside through /proc: seccomp mode 2,
// NO_NEW_PRIVS, empty capability sets, its uid, new namespaces (but the same
// network namespace), an empty tmpfs root and no fd at or above
// wire::kWorkerFirstFreeFd except the epoll fd it asked to keep (which still
// works under the allowlist).
//
// Two variants:
//  - as the test runner (root in the initial user namespace here): stage 2
//    switches the child to 65534;
//  - inside a fresh user+network namespace where the runner is uid 0 mapped
//    to its outer uid: stage 2 is skipped, the rest must still work.
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>

#include "base/log.h"
#include "base/unique_fd.h"
#include "schema/broker_wire.h"
#include "worker/sandbox.h"

namespace sluice {
namespace {

/// Where the child writes its status ('K', or 'E' and a message) and where it
/// reads its release (EOF); both below wire::kWorkerFirstFreeFd.
constexpr int kStatusFd = 3;
constexpr int kReleaseFd = 4;
static_assert(kReleaseFd < wire::kWorkerFirstFreeFd);
/// An epoll fd made before the sandbox and kept through stage 1, as the
/// worker keeps its event loop's.
constexpr int kKeptEpollFd = 50;

/// Limit: how long the parent waits for the child to report, in ms.
constexpr int kReportTimeoutMs = 20000;

/// Reads a whole file; "" when it cannot be read.
std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

/// Returns the value of "Key:" in /proc/PID/status, or "?" when absent.
std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream in(status);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + ":", 0) == 0) {
      size_t v = line.find_first_not_of(" \t", key.size() + 1);
      return v == std::string::npos ? "" : line.substr(v);
    }
  }
  return "?";
}

/// The namespace link target of /proc/PID/ns/NAME, or "" when unreadable.
std::string ns_link(const std::string& pid, const char* name) {
  char buf[128];
  ssize_t n = readlink(("/proc/" + pid + "/ns/" + name).c_str(), buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

/// Waits up to kReportTimeoutMs for `pid` to exit, then kills it. Returns
/// true, with its wait status, when it exited by itself.
bool wait_bounded(pid_t pid, int* wstatus) {
  for (int waited_ms = 0; waited_ms < kReportTimeoutMs; waited_ms += 10) {
    pid_t r = waitpid(pid, wstatus, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return false;
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, wstatus, 0);
  return false;
}

/// In the forked child: moves the pipe ends to the fixed fds, enters the
/// sandbox, reports, waits for the release, exits. Never returns.
[[noreturn]] void sandboxed_child(int status_w, int release_r) {
  // dup to high numbers first, so that the dup2s below cannot clobber them.
  int s = fcntl(status_w, F_DUPFD_CLOEXEC, 100), r = fcntl(release_r, F_DUPFD_CLOEXEC, 100);
  if (s < 0 || r < 0 || dup2(s, kStatusFd) < 0 || dup2(r, kReleaseFd) < 0) _exit(90);
  // The other fixed numbers are the broker's to fill; stage 1 keeps them, so
  // nothing of the test process (a copy of the release pipe) may sit there.
  for (int fd = kReleaseFd + 1; fd < wire::kWorkerFirstFreeFd; ++fd) close(fd);
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0 || dup3(ep, kKeptEpollFd, O_CLOEXEC) < 0) _exit(91);
  log_init("sandbox-test-child", 2, LogLevel::kDebug);
  gather_host_facts();
  const int keep[] = {kKeptEpollFd};
  Result<void> entered = enter_sandbox(keep);
  if (!entered) {
    std::string msg = "E" + entered.error().message;
    (void)!write(kStatusFd, msg.data(), msg.size());
    _exit(1);
  }
  // The kept epoll fd works under the allowlist.
  epoll_event ev = {EPOLLIN, {}};
  if (epoll_ctl(kKeptEpollFd, EPOLL_CTL_ADD, kReleaseFd, &ev) != 0) {
    (void)!write(kStatusFd, "Eepoll_ctl on the kept epoll fd failed", 38);
    _exit(1);
  }
  (void)!write(kStatusFd, "K", 1);
  char c;
  while (read(kReleaseFd, &c, 1) > 0) {
  }
  _exit(0);
}

/// Forks a child into the sandbox and checks it from outside. Returns "" on
/// success, else every failed check. `expect_uid` is the child's uid as seen
/// here; `strict` requires the ptrace-guarded /proc entries (ns, root, fd) to
/// be readable, which holds for real root but not for root of a user namespace
/// (the child's mm belongs to the initial user namespace).
std::string check_sandboxed_child(unsigned expect_uid, bool strict) {
  int sp[2], rp[2];
  if (pipe2(sp, O_CLOEXEC) != 0 || pipe2(rp, O_CLOEXEC) != 0) return "pipe2 failed";
  UniqueFd status_r(sp[0]), status_w(sp[1]), release_r(rp[0]), release_w(rp[1]);
  pid_t child = fork();
  if (child < 0) return std::string("fork: ") + std::strerror(errno);
  if (child == 0) sandboxed_child(status_w.get(), release_r.get());
  status_w.reset();
  release_r.reset();

  std::string failures;
  auto fail = [&](const std::string& what) { failures += what + "\n"; };
  pollfd p = {status_r.get(), POLLIN, 0};
  char report[1024];
  ssize_t n =
      poll(&p, 1, kReportTimeoutMs) == 1 ? read(status_r.get(), report, sizeof(report)) : -1;
  const std::string pid = std::to_string(child);
  if (n == 1 && report[0] == 'K') {
    std::string status = slurp("/proc/" + pid + "/status");
    if (status_field(status, "Seccomp") != "2") fail("Seccomp is not 2:\n" + status);
    if (status_field(status, "NoNewPrivs") != "1") fail("NoNewPrivs is not 1");
    for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
      if (status_field(status, cap) != "0000000000000000") {
        fail(std::string(cap) + " is " + status_field(status, cap));
      }
    }
    std::string uid = std::to_string(expect_uid);
    if (status_field(status, "Uid") != uid + "\t" + uid + "\t" + uid + "\t" + uid) {
      fail("Uid is " + status_field(status, "Uid") + ", expected " + uid);
    }
    // Namespaces: new user/mnt/ipc/uts and pid for children; the same net.
    if (!ns_link(pid, "user").empty()) {
      for (const char* ns : {"user", "mnt", "ipc", "uts", "pid_for_children"}) {
        if (ns_link(pid, ns) == ns_link("self", ns)) fail(std::string("same ") + ns + " namespace");
      }
      if (ns_link(pid, "net") != ns_link("self", "net")) fail("the network namespace changed");
    } else if (strict) {
      fail("cannot read /proc/" + pid + "/ns");
    }
    // The root: an empty tmpfs.
    const std::string root = "/proc/" + pid + "/root";
    if (DIR* dir = opendir(root.c_str())) {
      while (dirent* e = readdir(dir)) {
        if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
          fail(std::string("root is not empty: ") + e->d_name);
        }
      }
      closedir(dir);
      struct statfs fs;
      if (statfs(root.c_str(), &fs) != 0 || fs.f_type != TMPFS_MAGIC) fail("root is not a tmpfs");
    } else if (strict) {
      fail("cannot open " + root + ": " + std::strerror(errno));
    }
    // Stage 1: nothing at or above kWorkerFirstFreeFd survived but the kept fd.
    const std::string fd_dir = "/proc/" + pid + "/fd";
    if (DIR* dir = opendir(fd_dir.c_str())) {
      while (dirent* e = readdir(dir)) {
        int fd = std::atoi(e->d_name);
        if (e->d_name[0] != '.' && fd >= wire::kWorkerFirstFreeFd && fd != kKeptEpollFd) {
          fail(std::string("fd ") + e->d_name + " survived stage 1");
        }
      }
      closedir(dir);
    } else if (strict) {
      fail("cannot open " + fd_dir);
    }
  } else if (n > 1 && report[0] == 'E') {
    fail("enter_sandbox failed: " + std::string(report + 1, static_cast<size_t>(n - 1)));
  } else {
    fail("the child did not report");
    kill(child, SIGKILL);
  }

  release_w.reset();  // EOF: the child's read() returns 0 and it exits
  int wstatus = 0;
  if (!wait_bounded(child, &wstatus)) {
    fail("the child did not exit when released (an inherited copy of the release pipe?)");
  } else if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    fail(WIFSIGNALED(wstatus) ? std::string("child killed by ") + strsignal(WTERMSIG(wstatus))
                              : "child exit " + std::to_string(WEXITSTATUS(wstatus)));
  }
  return failures;
}

TEST(Sandbox, GatherHostFacts) {
  HostFacts facts = gather_host_facts();
  unsigned first = 0, last = 0;
  std::istringstream(slurp("/proc/sys/net/ipv4/ip_local_port_range")) >> first >> last;
  EXPECT_EQ(facts.ephemeral_first, first);
  EXPECT_EQ(facts.ephemeral_last, last);
  EXPECT_TRUE(facts.ipv4);
}

TEST(Sandbox, EnterAsRunner) {
  unsigned expect_uid = getuid();
  if (getuid() == 0 && slurp("/proc/self/uid_map").find("4294967295") != std::string::npos) {
    expect_uid = 65534;  // root in the initial user namespace: stage 2 switches
  }
  EXPECT_EQ(check_sandboxed_child(expect_uid, getuid() == 0), "");
}

TEST(Sandbox, DiesWithItsParent) {
  // Stage 3 must survive the later stages: kill the sandboxed process's
  // parent and it must die by SIGKILL. This test process becomes a child
  // subreaper, so that it inherits the orphan and can read how it ended; it
  // also keeps the release pipe open, so the orphan cannot exit by itself.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  int sp[2], rp[2], pp[2];
  ASSERT_EQ(pipe2(sp, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(rp, O_CLOEXEC), 0);
  ASSERT_EQ(pipe2(pp, O_CLOEXEC), 0);
  UniqueFd status_r(sp[0]), status_w(sp[1]), release_r(rp[0]), release_w(rp[1]);
  UniqueFd pid_r(pp[0]), pid_w(pp[1]);
  pid_t middle = fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {
    pid_t sandboxed = fork();
    if (sandboxed == 0) sandboxed_child(status_w.get(), release_r.get());
    (void)!write(pid_w.get(), &sandboxed, sizeof(sandboxed));
    for (;;) pause();  // killed by the test
  }
  status_w.reset();
  release_r.reset();
  pid_w.reset();
  pid_t sandboxed = -1;
  ASSERT_EQ(read(pid_r.get(), &sandboxed, sizeof(sandboxed)),
            static_cast<ssize_t>(sizeof(sandboxed)));
  ASSERT_GT(sandboxed, 0);
  pollfd p = {status_r.get(), POLLIN, 0};
  char report = 0;
  ASSERT_EQ(poll(&p, 1, kReportTimeoutMs), 1);
  ASSERT_EQ(read(status_r.get(), &report, 1), 1);
  EXPECT_EQ(report, 'K');
  ASSERT_EQ(kill(middle, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(waitpid(middle, &wstatus, 0), middle);
  // The orphan is now ours; it must already be dying of PDEATHSIG.
  bool exited = wait_bounded(sandboxed, &wstatus);
  prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  ASSERT_TRUE(exited) << "the sandboxed process outlived its parent";
  EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL) << wstatus;
}

TEST(Sandbox, EnterInsideUserNamespace) {
  // A child of the test becomes uid 0 of a fresh user+network namespace (as
  // under `unshare -Urn`), then runs the same check: stage 2 is skipped.
  int rp[2];
  ASSERT_EQ(pipe2(rp, O_CLOEXEC), 0);
  UniqueFd result_r(rp[0]), result_w(rp[1]);
  const unsigned outer_uid = getuid(), outer_gid = getgid();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    std::string result;
    if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
      result = std::string("unshare: ") + std::strerror(errno);
    } else {
      std::ofstream("/proc/self/setgroups") << "deny";
      std::ofstream("/proc/self/uid_map") << "0 " << outer_uid << " 1";
      std::ofstream("/proc/self/gid_map") << "0 " << outer_gid << " 1";
      result = getuid() == 0 ? check_sandboxed_child(0, false) : "uid_map not written";
    }
    (void)!write(result_w.get(), result.data(), result.size());
    _exit(0);
  }
  result_w.reset();
  std::string result;
  char buf[4096];
  for (ssize_t n; (n = read(result_r.get(), buf, sizeof(buf))) > 0;) {
    result.append(buf, static_cast<size_t>(n));
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  EXPECT_TRUE(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  EXPECT_EQ(result, "");
}

}  // namespace
}  // namespace sluice
