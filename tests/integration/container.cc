#include "tests/integration/container.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>

#include "tests/integration/daemon.h"

namespace sluice::test {

Container::Container(const std::vector<std::string>& args, uid_t owner) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
  std::vector<std::string> argv = {bin("sluice_test_container")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (std::string& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    if (owner != kTestUser) {
      const gid_t group = static_cast<gid_t>(owner);
      if (setgroups(0, nullptr) != 0 || setresgid(group, group, group) != 0 ||
          setresuid(owner, owner, owner) != 0) {
        _exit(126);
      }
    }
    execv(c[0], c.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  stdin_ = in[1];
  stdout_ = out[0];
  child_ = pid;
  // Bounded: 10 s to start.
  const std::string line = pid > 0 ? read_line(10000) : "";
  if (std::sscanf(line.c_str(), "ready %d", &pid_) != 1) pid_ = -1;
}

std::string Container::read_line(int timeout_ms) {
  // One byte at a time: nothing after the newline is taken from the pipe.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (line.size() < 256) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    struct pollfd p = {stdout_, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1) return "";
    char c;
    if (read(stdout_, &c, 1) != 1) return "";
    if (c == '\n') return line;
    line += c;
  }
  return "";
}

std::string Container::command(const std::string& line) {
  if (stdin_ < 0) return "";
  const std::string text = line + "\n";
  // A container that died must not take the test with it: SIGPIPE is held
  // back during the write, and one it raised is taken off again.
  sigset_t pipe_signal, old;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_signal, &old);
  const ssize_t n = write(stdin_, text.data(), text.size());
  if (n < 0 && errno == EPIPE) {
    const struct timespec none = {0, 0};
    sigtimedwait(&pipe_signal, nullptr, &none);
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (n != static_cast<ssize_t>(text.size())) return "";
  return read_line(5000);
}

Container::~Container() {
  if (stdin_ >= 0) close(stdin_);  // it exits when its stdin closes
  if (stdout_ >= 0) close(stdout_);
  if (child_ > 0) {
    for (int i = 0; i < 100; ++i) {
      if (waitpid(child_, nullptr, WNOHANG) == child_) return;
      usleep(20000);
    }
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
}

std::string link_to(const Container& box, const std::string& name, const std::string& here,
                    const std::string& there) {
  const std::string pid = std::to_string(box.pid());
  const std::vector<std::vector<std::string>> steps = {
      {"/sbin/ip", "link", "add", name + "h", "type", "veth", "peer", "name", name + "c", "netns",
       pid},
      {"/sbin/ip", "addr", "add", here, "dev", name + "h"},
      {"/sbin/ip", "link", "set", name + "h", "up"},
      {"/usr/bin/nsenter", "-t", pid, "-n", "/sbin/ip", "addr", "add", there, "dev", name + "c"},
      {"/usr/bin/nsenter", "-t", pid, "-n", "/sbin/ip", "link", "set", name + "c", "up"},
  };
  for (const auto& argv : steps) {
    RunResult r = run_command(argv);
    if (r.status != 0) {
      std::string line;
      for (const std::string& a : argv) line += a + " ";
      return line + "failed: " + r.err;
    }
  }
  return "";
}

}  // namespace sluice::test
