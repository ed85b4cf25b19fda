// The worker's heartbeat to sluiced (schema/broker_wire.h WorkerStatus): the
// generation and listener count in force, once the initial commit is served,
// on every change and at least every kWorkerStatusIntervalMs. It runs as a
// ticker of the event loop, so it stops when the loop is wedged: sluiced then
// stops feeding systemd's watchdog (broker/sd_notify.h).
#pragma once

#include <cstdint>

#include "worker/event_loop.h"

namespace sluice {

class BrokerClient;
class CommitEngine;

/// Sends WorkerStatus from the loop's tick.
class StatusReporter final : public Ticker {
 public:
  /// Reports what `engine` serves through `broker`; silent until start().
  StatusReporter(EventLoop& loop, BrokerClient& broker, const CommitEngine& engine);

  /// Starts reporting (call once the initial commit is in force): sends the
  /// first report at once, before the worker logs that it is ready, or, when
  /// the channel is full, asks the loop for a tick at once to try again.
  void start() noexcept;
  /// Sends a WorkerStatus when the numbers changed or the interval passed.
  /// A report that finds the channel full is retried on the next tick.
  /// Needs `sendmsg`.
  void on_tick(uint64_t now_ns) noexcept override;

 private:
  EventLoop& loop_;
  BrokerClient& broker_;
  const CommitEngine& engine_;
  bool started_ = false;
  bool sent_once_ = false;
  uint64_t sent_at_ns_ = 0;
  uint64_t generation_ = 0;  // what the last report said
  uint32_t listeners_ = 0;
};

}  // namespace sluice
