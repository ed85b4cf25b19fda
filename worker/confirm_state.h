// Confirmed commits (sluicectl --confirm-within SECONDS, then --confirm): the
// pending-confirmation state machine of the commit engine. Pure: it keeps
// the state and the clock's deadlines, and says what to do; the engine
// (worker/commit_confirm.cc) queues the rollback, which is an ordinary commit
// of the tables before the confirmed one, driven by the event loop's tick (no
// thread, no timer fd: the worker's seccomp filter needs nothing new).
//
//            arm()                 due(now >= deadline)
//   None ------------> Pending ------------------------> RollingBack
//    ^                  |    ^                               |   |
//    |     confirm()    |    |  rollback_failed() (retry     |   |
//    +------------------+    |  after kRetryNs)              |   |
//    |                       +-------------------------------+   |
//    |                     rolled_back()                         |
//    +-----------------------------------------------------------+
//
// While the phase is not None, every other commit is refused (refusal()),
// as routers refuse a commit while a `commit confirmed` waits; a dry run and
// the rollback itself pass. A confirm in RollingBack is too late.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>

#include "schema/codec.h"

namespace sluice {

class ConfirmState {
 public:
  enum class Phase : uint8_t {
    kNone,         // no commit waits for confirmation
    kPending,      // a commit waits; the deadline runs
    kRollingBack,  // the deadline passed: the rollback is queued or runs
  };

  /// Limit: the wait before a rollback that failed (a port of the old tables
  /// taken meanwhile, say) is tried again. Long enough not to flood the log
  /// and the audit, short enough that the old tables come back soon.
  static constexpr uint64_t kRetryNs = 5'000'000'000ULL;

  /// What a confirmed commit left behind when it was applied.
  struct Armed {
    uint64_t generation = 0;           // the commit that waits
    uint64_t rollback_generation = 0;  // the generation before it
    TableSet rollback_tables;          // the tables of rollback_generation
    uint32_t seconds = 0;              // as the commit asked
    uint64_t deadline_ns = 0;          // monotonic
    int64_t deadline_unix_millis = 0;  // the same instant, for people
    struct ucred peer {};              // who committed it
  };

  /// Starts waiting for the confirmation of `armed.generation`. The phase
  /// must be None (the engine refuses other commits meanwhile): CHECK.
  void arm(Armed armed) noexcept;

  /// True once, when the deadline has passed at `now_ns` in Pending: the
  /// phase becomes RollingBack and the caller queues the rollback.
  bool due(uint64_t now_ns) noexcept;

  /// Confirms the commit that waits, if any; `generation` is the one in
  /// force. Pending -> None (confirmed). In None or RollingBack nothing
  /// changes, and the message says why: nothing waits (and, if the commit
  /// in force is an automatic rollback, which one), or the deadline passed.
  control::ConfirmResult confirm(uint64_t generation) noexcept;

  /// The rollback was applied as `generation` at `unix_millis`:
  /// RollingBack -> None; a late confirm will be told so.
  void rolled_back(uint64_t generation, int64_t unix_millis) noexcept;

  /// A worker that resumed rolled back generation `unconfirmed`, which
  /// waited for confirmation when the worker before it died, as
  /// `generation` at `unix_millis`. The phase stays None; a confirm is told
  /// what happened, and rollbacks() counts it.
  void rolled_back_at_resume(uint64_t unconfirmed, uint64_t generation,
                             int64_t unix_millis) noexcept;

  /// The rollback failed at `now_ns`: RollingBack -> Pending, due again
  /// kRetryNs later (still refusing other commits, still confirmable).
  void rollback_failed(uint64_t now_ns, int64_t unix_millis_now) noexcept;

  /// The confirmation that waits, as the state and the stats show it, at
  /// `now_ns`; nullopt in None.
  std::optional<control::PendingConfirm> view(uint64_t now_ns) const noexcept;

  /// The failure that refuses a commit arriving at `now_ns` while the phase
  /// is not None (names the generation that waits, its deadline and what to
  /// do); nullopt in None.
  std::optional<control::Failure> refusal(uint64_t now_ns) const;

  /// The audit comment of the rollback: "automatic rollback of generation
  /// N: not confirmed within S s; back to the tables of generation M".
  std::string rollback_comment() const;

  Phase phase() const noexcept { return phase_; }
  const Armed& armed() const noexcept { return armed_; }
  /// Rollbacks applied since the worker started.
  uint64_t rollbacks() const noexcept { return rollbacks_; }

 private:
  Phase phase_ = Phase::kNone;
  Armed armed_;
  uint64_t rollbacks_ = 0;
  // The last rollback, for a confirm that comes after it.
  uint64_t last_rolled_back_ = 0;  // the generation that was not confirmed
  uint64_t last_rollback_ = 0;     // the generation of its rollback; 0: none yet
  int64_t last_rollback_millis_ = 0;
  bool last_at_resume_ = false;  // the last rollback was a resumed worker's
};

}  // namespace sluice
