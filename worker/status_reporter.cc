// The worker's heartbeat to sluiced (see status_reporter.h).
#include "worker/status_reporter.h"

#include "base/log.h"
#include "schema/broker_wire.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"

namespace sluice {

StatusReporter::StatusReporter(EventLoop& loop, BrokerClient& broker, const CommitEngine& engine)
    : loop_(loop), broker_(broker), engine_(engine) {}

void StatusReporter::start() noexcept {
  started_ = true;
  // The first report goes at once, before the worker logs that it is ready:
  // whoever acts on that line (an operator, a test killing the worker) may
  // count on sluiced knowing that this worker served, so that its death is
  // not taken for a failed start. Without room on the channel, the next
  // tick tries again.
  on_tick(monotonic_ns());
  if (!sent_once_) loop_.request_immediate_tick();
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
