// Confirmed commits in the commit engine (see worker/confirm_state.h): a
// commit with confirmWithinSeconds arms the confirmation once it applied;
// until `sluicectl --confirm` arrives, every other commit is refused; at the
// deadline (checked on the loop's tick, every 250 ms) the engine queues the
// rollback, an ordinary commit of the tables before the confirmed one, which
// is hitless, audited and in the history like any other.
#include "base/log.h"
#include "worker/commit_engine.h"

namespace sluice {

std::optional<control::Failure> CommitEngine::check_confirmation() noexcept {
  Active& a = *active_;
  const control::CommitRequest& req = a.job.request;
  if (a.job.rollback || req.dry_run) return std::nullopt;
  if (auto refused = confirm_.refusal(monotonic_ns())) return refused;
  // A confirmed commit keeps what it replaces, for its rollback.
  if (req.confirm_within_seconds != 0) a.tables_before = tables_;
  return std::nullopt;
}

void CommitEngine::note_confirmation(const CommitRecord& record) noexcept {
  Active& a = *active_;
  const bool applied = record.outcome == control::Outcome::kApplied;
  if (a.job.rollback) {
    if (applied) {
      LOG_WARN("%s: applied as generation %llu", record.comment.c_str(),
               static_cast<unsigned long long>(record.generation_after));
      confirm_.rolled_back(record.generation_after, record.unix_millis);
      return;
    }
    // The old tables could not come back (a port taken meanwhile, say): the
    // unconfirmed tables stay, other commits are still refused, and the
    // rollback is tried again.
    LOG_ERROR("%s: failed (%zu failure%s, first: %s); trying again in %llu s",
              record.comment.c_str(), record.failures.size(),
              record.failures.size() == 1 ? "" : "s",
              record.failures.empty() ? "none" : record.failures.front().message.c_str(),
              static_cast<unsigned long long>(ConfirmState::kRetryNs / 1000000000ULL));
    confirm_.rollback_failed(monotonic_ns(), realtime_millis());
    return;
  }
  const control::CommitRequest& req = a.job.request;
  if (!applied || req.dry_run || req.confirm_within_seconds == 0) return;
  ConfirmState::Armed armed;
  armed.generation = record.generation_after;
  armed.rollback_generation = record.generation_before;
  armed.rollback_tables = std::move(a.tables_before);
  armed.seconds = req.confirm_within_seconds;
  // The deadline counts from the moment the commit is in force.
  const uint64_t wait_ns = uint64_t{req.confirm_within_seconds} * 1000000000ULL;
  armed.deadline_ns = monotonic_ns() + wait_ns;
  armed.deadline_unix_millis = realtime_millis() + static_cast<int64_t>(wait_ns / 1000000ULL);
  armed.peer = a.job.peer;
  LOG_INFO(
      "generation %llu waits for confirmation within %u s (sluicectl --confirm), else "
      "the tables of generation %llu come back",
      static_cast<unsigned long long>(armed.generation), armed.seconds,
      static_cast<unsigned long long>(armed.rollback_generation));
  confirm_.arm(std::move(armed));
}

void CommitEngine::confirm_tick(uint64_t now_ns) noexcept {
  if (state_ == State::kStopped || !confirm_.due(now_ns)) return;
  const ConfirmState::Armed& armed = confirm_.armed();
  LOG_WARN(
      "generation %llu was not confirmed within %u s: rolling back to the tables of "
      "generation %llu",
      static_cast<unsigned long long>(armed.generation), armed.seconds,
      static_cast<unsigned long long>(armed.rollback_generation));
  Job job;
  job.request.tables = armed.rollback_tables;
  job.request.comment = confirm_.rollback_comment();
  // Recorded under the ids of whoever made the unconfirmed commit: the
  // rollback acts on their behalf, and the comment says it is automatic.
  job.peer = armed.peer;
  job.rollback = true;
  queue_.push_back(std::move(job));
  if (state_ == State::kIdle) fire(Event::kSubmitted);
}

control::ConfirmResult CommitEngine::confirm(const struct ucred& peer) noexcept {
  control::ConfirmResult result = confirm_.confirm(generation_);
  LOG_INFO("confirm from pid %d uid %u: %s", peer.pid, peer.uid, result.message.c_str());
  // Confirmed: a worker that resumes keeps these tables, no longer rolls back.
  if (result.confirmed) store_state();
  return result;
}

void CommitEngine::note_resume_rollback(uint64_t unconfirmed) noexcept {
  confirm_.rolled_back_at_resume(unconfirmed, generation_, realtime_millis());
}

std::optional<control::PendingConfirm> CommitEngine::pending_confirm() const noexcept {
  return confirm_.view(monotonic_ns());
}

}  // namespace sluice
