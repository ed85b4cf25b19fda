// The worker's heartbeat to sluiced (see status_reporter.h).
#include "worker/status_reporter.h"

#include "schema/broker_wire.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"

namespace sluice {

StatusReporter::StatusReporter(EventLoop& loop, BrokerClient& broker, const CommitEngine& engine)
    : loop_(loop), broker_(broker), engine_(engine) {}

void StatusReporter::start() noexcept {
  started_ = true;
  loop_.request_immediate_tick();
}

void StatusReporter::on_tick(uint64_t now_ns) noexcept {
  if (!started_) return;
  const uint64_t generation = engine_.generation();
  const uint32_t listeners = static_cast<uint32_t>(engine_.listener_count());
  const uint64_t interval_ns = uint64_t{wire::kWorkerStatusIntervalMs} * 1000000ULL;
  if (sent_once_ && generation == generation_ && listeners == listeners_ &&
      now_ns - sent_at_ns_ < interval_ns) {
    return;
  }
  if (!broker_.report_status(generation, listeners)) return;
  sent_once_ = true;
  sent_at_ns_ = now_ns;
  generation_ = generation;
  listeners_ = listeners;
}

}  // namespace sluice
