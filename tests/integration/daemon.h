// Test harness: runs the real sluiced (which starts the real sluice-worker)
// and sluicectl as child processes, with bounded waits everywhere.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

namespace sluice::test {

/// Path of a binary in the build's bin directory.
std::string bin(const std::string& name);

/// The result of running a command to completion.
struct RunResult {
  int status = -1;  // exit code, or 128 + signal
  std::string out;  // stdout
  std::string err;  // stderr
};

/// Runs `argv` to completion (at most `timeout_ms`, then SIGKILL) and captures
/// its output.
RunResult run_command(const std::vector<std::string>& argv, int timeout_ms = 20000);

/// A running sluiced with its own temporary control socket and log file.
class Daemon {
 public:
  Daemon();
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  /// Starts sluiced with `args` plus `-c <socket>`. With `drop_bind_cap`, the
  /// child first removes CAP_NET_BIND_SERVICE from its bounding set, so the
  /// broker runs without it. Does not wait.
  void start(const std::vector<std::string>& args, bool drop_bind_cap = false);
  /// Waits until sluicectl gets an answer (at most `timeout_ms`). Returns
  /// false if the daemon exited or never answered.
  bool wait_ready(int timeout_ms = 10000);
  /// Waits for the daemon to exit (at most `timeout_ms`); returns its status
  /// as in RunResult, or -1 on timeout.
  int wait_exit(int timeout_ms = 10000);
  /// Sends `sig` to sluiced.
  void signal(int sig);
  /// Returns the worker's pid (the broker's child named sluice-worker), or -1.
  pid_t worker_pid() const;
  /// Returns the worker launcher's pid (the broker's child named
  /// sluice-launcher, broker/worker_launcher.h), or -1.
  pid_t launcher_pid() const;
  /// Returns the namespace helper's pid (with --netns: the broker's child
  /// that is a fork of sluiced), or -1.
  pid_t helper_pid() const;
  /// Runs sluicectl against this daemon's socket with extra `args`.
  RunResult ctl(const std::vector<std::string>& args = {});
  /// Everything sluiced and the worker logged so far.
  std::string log() const;
  /// Makes the next start() give sluiced `fd` (not owned) as its stdout and
  /// stderr instead of the log file; log() is then empty.
  void use_stderr(int fd) { stderr_fd_ = fd; }

  /// Makes the next start() run `setup` in the child after fork, once its
  /// stdout and stderr are in place and before exec: what a service manager
  /// does there (environment, fds from 3 on). `setup` must only make
  /// async-signal-safe calls, setenv and dup2.
  void set_child_setup(std::function<void()> setup) { child_setup_ = std::move(setup); }

  pid_t pid() const { return pid_; }
  const std::string& socket_path() const { return socket_; }
  /// A path for sluiced's --pesto-socket in the daemon's own directory
  /// (removed with it).
  std::string pesto_path() const { return dir_ + "/pesto.sock"; }

 private:
  std::string dir_, socket_, log_path_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
  int stderr_fd_ = -1;
  std::function<void()> child_setup_;
};

/// A policy file in a temporary directory, removed with the object.
class PolicyFileFixture {
 public:
  /// Writes `text` to a new file, readable by everybody (sluiced reads it
  /// before it drops anything).
  explicit PolicyFileFixture(const std::string& text);
  ~PolicyFileFixture();
  PolicyFileFixture(const PolicyFileFixture&) = delete;
  PolicyFileFixture& operator=(const PolicyFileFixture&) = delete;
  const std::string& path() const { return path_; }
  /// Replaces the file's text as an editor does: a new file renamed over it.
  void rewrite(const std::string& text);

 private:
  std::string dir_, path_;
};

/// True in the SLUICE_TEST_NS=net run: real root in a network namespace
/// only, where other uids exist and the worker switches to 65534; in the
/// user-namespace run only one uid is mapped.
bool real_root_run();

/// Counts the occurrences of `needle` in `text`.
size_t count_of(const std::string& text, const std::string& needle);

/// Waits (at most 10 s) until the daemon's log holds `needle` at least
/// `count` times. Returns whether it did.
bool wait_for_log(const Daemon& d, const std::string& needle, size_t count = 1);

/// Expects one connection through 127.0.0.1:`port` to reach
/// `target_listener` (within 5 s each way), naming `d`'s log when not.
void expect_forwarding(int target_listener, uint16_t port, const Daemon& d);

/// Reads the whole file at `path`; "" when it cannot be opened.
std::string slurp(const std::string& path);

/// Reads /proc/PID/status and returns the value of `field` ("CapEff"), or "".
std::string proc_status_field(pid_t pid, const std::string& field);
/// Reads /proc/PID/stat and returns field `n` as proc(5) numbers them (3 is
/// the state, 14 utime, 15 stime), or "" when there is no such process or
/// field. The command name (field 2) may hold spaces and parentheses, so
/// the fields are counted from the last ')'.
std::string proc_stat_field(pid_t pid, int n);

}  // namespace sluice::test
