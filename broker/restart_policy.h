// When sluiced starts a new worker after one died, and when it gives up
// (docs/OPERATIONS.md "Worker restarts"). Pure bookkeeping on times passed
// in, so tests drive it without sleeping.
//
// The policy, like systemd's Restart= with a start limit:
//   - a worker that was serving when it died (it had reported its tables in
//     force) is replaced at once: waiting would only keep connections queued
//     in the kernel longer;
//   - a worker that died before it served (a failed restart) is replaced
//     at once the first time, then after kFirstBackoffMs: a worker that
//     cannot start must not spin;
//   - after kMaxFailedRestarts failed restarts in a row, sluiced gives up
//     and exits with an error: the workers die at start, and a listener
//     nobody serves only makes clients wait;
//   - when `count` workers have died within `seconds`, sluiced gives up and
//     exits with an error (--worker-restarts COUNT/SECONDS; 0 never restarts).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace sluice {

/// Limit: the delay before the second replacement in a row that must start
/// after one died before it served (the first is started at once). 100 ms:
/// long enough that a worker failing at once does not spin, short enough to
/// be unnoticeable once.
inline constexpr uint64_t kFirstBackoffMs = 100;
/// Limit: failed restarts in a row (replacement workers that died before
/// they served: they sent no WorkerStatus, so their tables never came into
/// force) after which sluiced gives up, whatever --worker-restarts says. 3:
/// a replacement that fails at start mostly fails for a reason the next one
/// meets too (the policy refuses both the tables it resumes and the initial
/// rules; a sandbox step the kernel refuses), and meanwhile the listeners in
/// sluiced's escrow queue connections nobody serves. Two more tries cover a
/// one-off (a worker killed as it started), and sluiced stops within about
/// a second instead of retrying for ever; the delays (0, then 100 ms) never
/// grow long enough to need a cap.
inline constexpr uint32_t kMaxFailedRestarts = 3;
static_assert(kMaxFailedRestarts >= 2 && kMaxFailedRestarts <= 8, "the back-off shift stays small");

/// --worker-restarts COUNT/SECONDS.
struct RestartLimit {
  /// Limit: worker deaths within `seconds` that make sluiced give up. 30 in
  /// a minute, one every two seconds: a worker that is killed or crashes now
  /// and then (each restart refuses nothing) is replaced every time, while a
  /// worker that dies as fast as it is started is given up on within
  /// seconds (its delays add up to about 30 s at most before the 30th).
  uint32_t count = 30;
  uint32_t seconds = 60;
};
/// Limit: the largest COUNT and SECONDS accepted (a day; 10,000 deaths).
inline constexpr uint32_t kMaxRestartCount = 10000;
inline constexpr uint32_t kMaxRestartSeconds = 86400;

/// Parses COUNT/SECONDS (COUNT 0..kMaxRestartCount, 0: never restart;
/// SECONDS 1..kMaxRestartSeconds). Fails with a usage message.
Result<RestartLimit> parse_restart_limit(std::string_view text);

/// Describes how a worker ended from poll_worker_exit()'s code: "exited
/// with status N", or "was killed by signal N (SIGNAME)", with what SIGSYS
/// means.
std::string describe_worker_end(int code);

/// Counts worker deaths and says when to start the next one.
class RestartPolicy {
 public:
  explicit RestartPolicy(RestartLimit limit) : limit_(limit) {}

  /// Why on_death() gave up.
  enum class GiveUp : uint8_t {
    kNo,            // it did not
    kTooMany,       // `count` deaths within `seconds` (or restarts are off)
    kFailedStarts,  // kMaxFailedRestarts replacements in a row died before they served
  };

  /// Records a worker's death at `now_ns` (monotonic); `served` says whether
  /// it had reported its tables in force. Returns the delay in ms before the
  /// next worker starts, or nothing when sluiced gives up (gave_up() says
  /// why). The count of deaths is checked first.
  std::optional<uint64_t> on_death(uint64_t now_ns, bool served);

  /// Workers started after a death so far.
  uint32_t restarts() const noexcept { return restarts_; }
  /// Deaths within the window at the last on_death().
  size_t recent() const noexcept { return deaths_.size(); }
  /// Workers in a row that died before they served, at the last on_death().
  uint32_t failed_in_a_row() const noexcept { return unserved_streak_; }
  /// Why the last on_death() gave up (kNo when it did not).
  GiveUp gave_up() const noexcept { return gave_up_; }
  const RestartLimit& limit() const noexcept { return limit_; }

 private:
  RestartLimit limit_;
  std::deque<uint64_t> deaths_;  // within the window, oldest first
  uint32_t unserved_streak_ = 0;
  uint32_t restarts_ = 0;
  GiveUp gave_up_ = GiveUp::kNo;
};

}  // namespace sluice
