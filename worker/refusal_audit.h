// The bound on audit records of attempts refused before the commit engine:
// a commit, dry run or confirmation that the control policy refuses
// (control_session.cc), and a pesto update that is malformed or comes from a
// client that may only read (pesto_server.cc). Each is recorded like a
// refused commit (an audit line and a history entry, with the broker's
// view of the client's ids), but a client that may only read can repeat
// them as fast as it reconnects: a refused request closes its connection,
// and a new connection costs it one round trip to sluiced. So at most
// kRefusalRecordBurst such records are written at once, then one per
// kRefusalRecordIntervalNs; the attempts in between are counted, never
// dropped silently: the next record says how many came before it, and when
// no attempt follows, a summary record (the last client's ids) says it.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <optional>

namespace sluice {

/// Limit: records of refused attempts written at once. A person who tries a
/// command a few times, or a script that retries, is recorded attempt by
/// attempt; 10 covers that.
inline constexpr uint32_t kRefusalRecordBurst = 10;
/// Limit: after the burst, one record of a refused attempt per 10 s. A
/// flood then writes at most 8,640 lines a day (about 6 MiB), each naming
/// the client and how many attempts it stands for, instead of thousands of
/// lines a second: enough to see who tried and how often, too little to
/// fill the disk under the audit log.
inline constexpr uint64_t kRefusalRecordIntervalNs = 10'000'000'000ULL;

/// The token bucket and the count of the attempts it held back.
class RefusalAudit {
 public:
  /// One refused attempt by `peer` at `now_ns` (monotonic; never going
  /// back). Returns nothing when it is not to be recorded (it is counted),
  /// or the number of attempts held back since the last record, which this
  /// record must mention (0: none).
  std::optional<uint64_t> admit(const struct ucred& peer, uint64_t now_ns) noexcept;

  /// What a summary record says: how many attempts were held back, and the
  /// last of them.
  struct Summary {
    uint64_t held_back = 0;
    struct ucred last = {};
  };
  /// At a tick at `now_ns`: when attempts were held back and a record may be
  /// written now, returns them (and takes a token, and counts from zero).
  std::optional<Summary> summary_due(uint64_t now_ns) noexcept;

  /// Attempts held back and not mentioned in a record yet.
  uint64_t held_back() const noexcept { return held_back_; }

 private:
  /// Takes a token at `now_ns` if one is there, refilling first.
  bool take(uint64_t now_ns) noexcept;

  uint32_t tokens_ = kRefusalRecordBurst;
  uint64_t refilled_ns_ = 0;  // when the last token was added (0: not yet)
  uint64_t held_back_ = 0;
  struct ucred last_ = {};  // the last attempt held back
};

}  // namespace sluice
