// When sluiced starts a new worker after one died, and when it gives up
// (docs/OPERATIONS.md "Worker restarts"). Pure bookkeeping on times passed
// in, so tests drive it without sleeping.
//
// The policy, like systemd's Restart= with a start limit:
//   - a worker that was serving when it died (it had reported its tables in
//     force) is replaced at once: waiting would only keep connections queued
//     in the kernel longer;
//   - a worker that died before it served is replaced after a delay that
//     doubles with each such death in a row, from kFirstBackoffMs up to
//     kMaxBackoffMs: a worker that cannot start must not spin;
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

/// Limit: the first delay before replacing a worker that died before it
/// served. 100 ms: long enough that a worker failing at once costs a few
/// starts a second at most, short enough to be unnoticeable once.
inline constexpr uint64_t kFirstBackoffMs = 100;
/// Limit: the longest delay. 5 s: a worker that keeps failing to start is
/// given up on (the count below) well before its delays grow long.
inline constexpr uint64_t kMaxBackoffMs = 5000;

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
/// with status N", or "was killed by signal N (SIGNAME)".
std::string describe_worker_end(int code);

/// Counts worker deaths and says when to start the next one.
class RestartPolicy {
 public:
  explicit RestartPolicy(RestartLimit limit) : limit_(limit) {}

  /// Records a worker's death at `now_ns` (monotonic); `served` says whether
  /// it had reported its tables in force. Returns the delay in ms before the
  /// next worker starts, or nothing when sluiced gives up.
  std::optional<uint64_t> on_death(uint64_t now_ns, bool served);

  /// Workers started after a death so far.
  uint32_t restarts() const noexcept { return restarts_; }
  /// Deaths within the window at the last on_death().
  size_t recent() const noexcept { return deaths_.size(); }
  const RestartLimit& limit() const noexcept { return limit_; }

 private:
  RestartLimit limit_;
  std::deque<uint64_t> deaths_;  // within the window, oldest first
  uint32_t unserved_streak_ = 0;
  uint32_t restarts_ = 0;
};

}  // namespace sluice
