// The kept-port prober of the hitless tests: while a test changes the tables
// (commits, scans, pesto updates), a thread connects to a port that stays in
// every table, over and over, and counts what happens to each connection. The
// bar is 0 refused and 0 reset.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace sluice::test {

class KeptPortProber {
 public:
  /// What the target behind the port does with a connection.
  enum class Target {
    kEcho,   // echoes: a probe sends one byte and must get it back
    kClose,  // accepts and closes: a probe must see EOF, not a reset
  };
  /// Starts probing 127.0.0.1:`port`. Bounded: at most 200,000 probes and
  /// `seconds` (60 by default), each connect and answer with a 10 s timeout.
  KeptPortProber(uint16_t port, Target target, int seconds = 60);
  /// Stops and joins the thread.
  ~KeptPortProber();
  KeptPortProber(const KeptPortProber&) = delete;
  KeptPortProber& operator=(const KeptPortProber&) = delete;
  /// Waits until one more probe succeeded than when called (at most 2 s), so
  /// that probes interleave with the changes of the test.
  void await_probe() const;
  /// Stops probing and joins the thread; the counts are final afterwards.
  void stop();
  /// Probes that went through.
  int ok() const { return ok_.load(); }
  /// Probes whose connect was refused (ECONNREFUSED).
  int refused() const { return refused_.load(); }
  /// Probes the connection of which was reset, closed early or answered
  /// wrongly.
  int reset() const { return reset_.load(); }
  /// Probes that got no answer within 10 s (a machine too busy to schedule
  /// the target): neither refused nor reset, so no test fails on them; tests
  /// report them.
  int slow() const { return slow_.load(); }

 private:
  /// The thread's loop.
  void run(uint16_t port, Target target, int seconds);

  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, refused_{0}, reset_{0}, slow_{0};
  std::thread thread_;
};

}  // namespace sluice::test
