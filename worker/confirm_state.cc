// The pending-confirmation state machine (see confirm_state.h).
#include "worker/confirm_state.h"

#include "base/log.h"
#include "schema/audit_line.h"

namespace sluice {
namespace {

/// Returns whole seconds from `now_ns` to `deadline_ns`, rounded up; 0 when
/// it has passed.
uint64_t seconds_left(uint64_t now_ns, uint64_t deadline_ns) noexcept {
  if (now_ns >= deadline_ns) return 0;
  return (deadline_ns - now_ns + 999'999'999ULL) / 1'000'000'000ULL;
}

}  // namespace

void ConfirmState::arm(Armed armed) noexcept {
  CHECK(phase_ == Phase::kNone);
  armed_ = std::move(armed);
  phase_ = Phase::kPending;
}

bool ConfirmState::due(uint64_t now_ns) noexcept {
  if (phase_ != Phase::kPending || now_ns < armed_.deadline_ns) return false;
  phase_ = Phase::kRollingBack;
  return true;
}

control::ConfirmResult ConfirmState::confirm(uint64_t generation) noexcept {
  control::ConfirmResult out;
  out.generation = generation;
  switch (phase_) {
    case Phase::kPending:
      out.confirmed = true;
      out.generation = armed_.generation;
      out.message = "confirmed generation " + std::to_string(armed_.generation) +
                    ": it stays in force, and the rollback to the tables of generation " +
                    std::to_string(armed_.rollback_generation) + " is cancelled";
      phase_ = Phase::kNone;
      armed_ = Armed{};
      return out;
    case Phase::kRollingBack:
      out.message = "too late: generation " + std::to_string(armed_.generation) +
                    " was not confirmed by " + audit_time_text(armed_.deadline_unix_millis) +
                    ", and its automatic rollback to the tables of generation " +
                    std::to_string(armed_.rollback_generation) +
                    " is under way; see sluicectl --history, then commit the edit again";
      return out;
    case Phase::kNone:
      break;
  }
  if (last_rollback_ != 0 && last_rollback_ == generation) {
    out.message = "nothing to confirm: generation " + std::to_string(last_rolled_back_) +
                  (last_at_resume_ ? " still waited for confirmation when its worker died, and"
                                   : " was not confirmed in time and") +
                  " was rolled back at " + audit_time_text(last_rollback_millis_) +
                  " (generation " + std::to_string(last_rollback_) +
                  " is in force); commit the edit again if it is still wanted";
  } else {
    out.message = "nothing to confirm: no commit waits for confirmation (generation " +
                  std::to_string(generation) + " is in force)";
  }
  return out;
}

void ConfirmState::rolled_back(uint64_t generation, int64_t unix_millis) noexcept {
  CHECK(phase_ == Phase::kRollingBack);
  last_rolled_back_ = armed_.generation;
  last_rollback_ = generation;
  last_rollback_millis_ = unix_millis;
  last_at_resume_ = false;
  ++rollbacks_;
  phase_ = Phase::kNone;
  armed_ = Armed{};
}

void ConfirmState::rolled_back_at_resume(uint64_t unconfirmed, uint64_t generation,
                                         int64_t unix_millis) noexcept {
  last_rolled_back_ = unconfirmed;
  last_rollback_ = generation;
  last_rollback_millis_ = unix_millis;
  last_at_resume_ = true;
  ++rollbacks_;
}

void ConfirmState::rollback_failed(uint64_t now_ns, int64_t unix_millis_now) noexcept {
  CHECK(phase_ == Phase::kRollingBack);
  armed_.deadline_ns = now_ns + kRetryNs;
  armed_.deadline_unix_millis = unix_millis_now + static_cast<int64_t>(kRetryNs / 1'000'000ULL);
  phase_ = Phase::kPending;
}

std::optional<control::PendingConfirm> ConfirmState::view(uint64_t now_ns) const noexcept {
  if (phase_ == Phase::kNone) return std::nullopt;
  control::PendingConfirm p;
  p.generation = armed_.generation;
  p.rollback_generation = armed_.rollback_generation;
  p.deadline_unix_millis = armed_.deadline_unix_millis;
  p.remaining_millis = now_ns >= armed_.deadline_ns ? 0 : (armed_.deadline_ns - now_ns) / 1'000'000;
  p.pid = armed_.peer.pid;
  p.uid = armed_.peer.uid;
  return p;
}

std::optional<control::Failure> ConfirmState::refusal(uint64_t now_ns) const {
  if (phase_ == Phase::kNone) return std::nullopt;
  control::Failure f;
  f.kind = control::FailureKind::kConfirmPending;
  f.pif = Pif::kHost;
  if (phase_ == Phase::kRollingBack) {
    f.message = "generation " + std::to_string(armed_.generation) +
                " was not confirmed by its deadline, " +
                audit_time_text(armed_.deadline_unix_millis) +
                ", and is being rolled back to the tables of generation " +
                std::to_string(armed_.rollback_generation) +
                "; commit again once the rollback is in force (sluicectl --history shows it)";
    return f;
  }
  f.message = "generation " + std::to_string(armed_.generation) + " (committed by uid " +
              std::to_string(armed_.peer.uid) + " pid " + std::to_string(armed_.peer.pid) +
              ") waits for confirmation until " + audit_time_text(armed_.deadline_unix_millis) +
              " (" + std::to_string(seconds_left(now_ns, armed_.deadline_ns)) +
              " s left); no other commit is taken meanwhile: confirm it with sluicectl "
              "--confirm, or wait for its automatic rollback to the tables of generation " +
              std::to_string(armed_.rollback_generation) + ", then commit again";
  return f;
}

std::string ConfirmState::rollback_comment() const {
  return std::string(kAuditRollbackComment) + std::to_string(armed_.generation) +
         ": not confirmed within " + std::to_string(armed_.seconds) +
         " s; back to the tables of generation " + std::to_string(armed_.rollback_generation);
}

}  // namespace sluice
