// Empirical check of the client allowlist's output: the real glibc stdio and
// libstdc++ iostreams, first used after the filter is loaded, writing to each
// kind of stdout sluicectl may get (pipe, regular file, /dev/null, pty).
// glibc probes a stream when it allocates its buffer: newfstatat, plus
// ioctl(TCGETS) for a character device that is not a pty. The allowlist has
// neither; prepare_client_for_seccomp() gives the buffers before the filter,
// so all four must pass, and without it the first printf must die of SIGSYS.
// In sanitizer builds, LeakSanitizer is off once the filter is loaded (see
// __lsan_is_turned_off in policy/seccomp_table.cc).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "base/unique_fd.h"

namespace sluice {
namespace {

/// Runs the probe with `out` as its stdout (and stderr to /dev/null), and
/// returns its wait status; -1 when it could not be started. `arg`, when not
/// null, is passed to the probe ("--unprepared").
int run_probe_with_stdout(int out, const char* arg = nullptr) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0) _exit(96);
    execl(SLUICE_CLIENT_PROBE, "client_filter_probe", arg, static_cast<char*>(nullptr));
    _exit(95);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}

/// Drains `fd` (non-blocking) into a string.
std::string drain(int fd) {
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

/// Describes a wait status for failure messages.
std::string describe(int status) {
  if (status == -1) return "not started";
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

TEST(ClientStdio, Pipe) {
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  // The pipe holds 64 KiB by default; the probe writes far less.
  int status = run_probe_with_stdout(w.get());
  w.reset();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe(status);
  ASSERT_EQ(fcntl(r.get(), F_SETFL, O_NONBLOCK), 0);
  std::string out = drain(r.get());
  EXPECT_EQ(out.rfind("printf 42\ncout line\n262144\n", 0), 0u) << out.substr(0, 200);
  EXPECT_NE(out.find("\nend\n"), std::string::npos);
}

TEST(ClientStdio, UnpreparedStdoutIsKilled) {
  // The negative control: without prepare_client_for_seccomp(), glibc's first
  // printf fstats the pipe, which the allowlist does not grant.
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  int status = run_probe_with_stdout(w.get(), "--unprepared");
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) << describe(status);
}

TEST(ClientStdio, RegularFile) {
  char path[] = "/tmp/sluice-client-stdio-XXXXXX";
  UniqueFd file(mkstemp(path));
  ASSERT_TRUE(file.valid());
  unlink(path);
  int status = run_probe_with_stdout(file.get());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe(status);
  EXPECT_GT(lseek(file.get(), 0, SEEK_END), 20);
}

TEST(ClientStdio, DevNull) {
  // A character device that is not a pty: glibc adds ioctl(1, TCGETS).
  UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(null.valid());
  int status = run_probe_with_stdout(null.get());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe(status);
}

TEST(ClientStdio, Pty) {
  UniqueFd master(posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!master.valid() || grantpt(master.get()) != 0 || unlockpt(master.get()) != 0) {
    GTEST_SKIP() << "no pty available: " << std::strerror(errno);
  }
  UniqueFd slave(open(ptsname(master.get()), O_RDWR | O_NOCTTY | O_CLOEXEC));
  ASSERT_TRUE(slave.valid());
  ASSERT_EQ(fcntl(master.get(), F_SETFL, O_NONBLOCK), 0);
  // The probe writes ~300 bytes; the pty buffer holds several KiB, so it
  // cannot block before we drain.
  int status = run_probe_with_stdout(slave.get());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << describe(status);
  EXPECT_NE(drain(master.get()).find("printf 42"), std::string::npos);
}

}  // namespace
}  // namespace sluice
