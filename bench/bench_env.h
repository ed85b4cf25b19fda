// The benchmarks' environment: a private user + network namespace, the real
// sluiced (which starts the real sluice-worker) and pasta as child processes,
// small TCP servers and clients, a ping-pong that timestamps every echo, and
// summary statistics. No gtest and no exceptions: benchmarks are not tests,
// and every failure is a Result or a count that the report shows.
//
// Every wait and every loop here is bounded in count and in time, so a broken
// daemon makes a benchmark fail, never hang.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "client/control_client.h"

namespace sluice::bench {

/// Returns CLOCK_MONOTONIC in nanoseconds.
uint64_t now_ns() noexcept;

/// Sleeps for `ms` milliseconds.
void sleep_ms(int ms) noexcept;

/// Enters a new user namespace, as uid and gid 0 mapped to the caller's ids,
/// and a new network namespace with lo brought up, as `unshare -Urn` would.
/// Must run before any thread exists: unshare(CLONE_NEWUSER) refuses a
/// multithreaded process. Fails with a message naming the step.
Result<void> enter_private_namespace();

/// Runs `argv` (argv[0] is looked up in PATH) with its output discarded, for
/// at most `timeout_ms`, then kills it. Returns the exit status, 128 + signal,
/// or -1 on a timeout or when it could not be started.
int run_quiet(const std::vector<std::string>& argv, int timeout_ms);

/// Returns the absolute path of this executable (/proc/self/exe).
std::string self_exe();

/// A child process with its output in a log file; stopped with SIGTERM, then
/// SIGKILL after a bounded wait, when it is destroyed.
class Child {
 public:
  Child() = default;
  /// Stops the child if it still runs.
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  /// Starts `argv` (argv[0] is looked up in PATH) with stdout and stderr
  /// appended to `log_path`. Fails when fork fails; a failed exec shows as
  /// exit status 127.
  Result<void> start(const std::vector<std::string>& argv, const std::string& log_path);
  /// True while the child has not exited (reaps it when it has).
  bool running();
  /// Sends SIGTERM, waits up to `timeout_ms`, then SIGKILLs. Returns the
  /// exit status as run_quiet() does.
  int stop(int timeout_ms = 5000);
  /// The child's pid, or -1 before start().
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
};

/// A running sluiced, with its own temporary directory for the control
/// socket, the log and the audit log.
class Sluiced {
 public:
  /// Creates the temporary directory; start() runs the daemon.
  Sluiced();
  /// Stops the daemon (SIGTERM, then SIGKILL) and removes its files.
  ~Sluiced();
  Sluiced(const Sluiced&) = delete;
  Sluiced& operator=(const Sluiced&) = delete;

  /// Starts `bin_dir`/sluiced with `rule_args` (sluicectl specs such as
  /// {"-t", "127.0.0.1/18080:18000"}), quiet, auditing to a file, and waits
  /// until its control socket completes a handshake (at most 10 s).
  Result<void> start(const std::string& bin_dir, const std::vector<std::string>& rule_args);
  /// Connects a greeted control client. `timeout_ms` bounds every request.
  Result<ControlConnection> connect(int timeout_ms) const;
  /// The last `bytes` bytes of what sluiced and the worker logged.
  std::string log_tail(size_t bytes = 2000) const;

 private:
  std::string dir_, socket_, log_, audit_;
  Child child_;
};

/// Listens on 127.0.0.1:`port` (TCP, SO_REUSEADDR, backlog 1024 so that a
/// connect loop never overflows it). Fails with the errno text.
Result<UniqueFd> listen_local(uint16_t port);
/// Connects to 127.0.0.1:`port` with TCP_NODELAY and send and receive
/// timeouts of `timeout_ms`. Returns an empty UniqueFd with errno set on
/// failure.
UniqueFd connect_local(uint16_t port, int timeout_ms);

/// An in-process TCP target: a thread that accepts on 127.0.0.1:`port` and
/// either echoes every byte back (one connection at a time) or closes every
/// connection at once (the target of a connect loop).
class TargetServer {
 public:
  enum class Mode { kEcho, kAcceptAndClose };
  TargetServer() = default;
  /// Stops the thread and closes the listener.
  ~TargetServer();
  TargetServer(const TargetServer&) = delete;
  TargetServer& operator=(const TargetServer&) = delete;

  /// Listens and starts the thread. Fails when the port cannot be bound.
  Result<void> start(uint16_t port, Mode mode);
  /// Stops the thread (it notices within one poll interval) and joins it.
  void stop();

 private:
  /// The thread's body: accept (and echo or close) until stopped.
  void serve() noexcept;

  UniqueFd listen_;
  Mode mode_ = Mode::kEcho;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// Serves as an echo target inside pasta's namespace: `self --echo-server
/// PORT` listens on 127.0.0.1:PORT and echoes each connection until one that
/// carried data ends, at most 60 s. Returns the process exit code.
int echo_server_main(uint16_t port);

/// A client that sends one byte and waits for its echo, as fast as it can,
/// in a thread, and timestamps every echo received.
///
/// A gap is the time between two consecutive echoes. When the forwarder's
/// event loop is blocked, the byte in flight waits, and the gap that contains
/// the block grows by its length; the longest gap is therefore an upper bound
/// of the longest stall (plus one round trip). A window [from, to] collects
/// every gap whose interval overlaps it:
///
///     echoes    |    |    |    |              |    |
///     window      [from=========to]
///     counted   ^----^----^----^--------------^
///
/// so a stall that starts inside the window counts whole, even when it ends
/// after it. Timestamps go into a vector allocated (and touched) before the
/// run, so the ping-pong thread neither allocates nor faults pages.
class PingPong {
 public:
  PingPong() = default;
  /// Stops the thread; the connection closes with the object.
  ~PingPong();
  PingPong(const PingPong&) = delete;
  PingPong& operator=(const PingPong&) = delete;

  /// Connects to 127.0.0.1:`port` and checks that one byte comes back,
  /// retrying for at most `timeout_ms` (a forwarder may still be starting).
  Result<void> connect(uint16_t port, int timeout_ms);
  /// Starts the ping-pong thread; clears the timestamps of a previous run.
  void start();
  /// Stops and joins the thread.
  void stop();

  /// Gaps (ns) between consecutive echoes whose interval overlaps
  /// [from_ns, to_ns]: a stall that began inside the window counts whole.
  /// Call only between stop() and the next start().
  std::vector<uint64_t> gaps(uint64_t from_ns, uint64_t to_ns) const;
  /// Every gap of the last run.
  std::vector<uint64_t> all_gaps() const;
  /// Round trips completed in the last run.
  size_t round_trips() const { return count_; }
  /// Sends or receives that failed (timeout, reset, EOF) in the last run.
  size_t failures() const { return failures_; }

 private:
  /// The thread's body.
  void run() noexcept;

  UniqueFd fd_;
  std::vector<uint64_t> stamps_;  // [0] is the start; then one per echo
  size_t count_ = 0;
  size_t failures_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// Summary of a sample: count, median, 99th percentile and maximum.
struct Summary {
  size_t n = 0;
  double median = 0;
  double p99 = 0;
  double max = 0;
};

/// Summarises `values` (sorted here; empty gives all zeros).
Summary summarize(std::vector<double> values);
/// Converts nanosecond values to milliseconds.
std::vector<double> to_ms(const std::vector<uint64_t>& ns);

}  // namespace sluice::bench
