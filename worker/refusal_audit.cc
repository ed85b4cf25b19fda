// The bound on audit records of refused attempts (see refusal_audit.h).
#include "worker/refusal_audit.h"

namespace sluice {

bool RefusalAudit::take(uint64_t now_ns) noexcept {
  if (refilled_ns_ == 0 || tokens_ == kRefusalRecordBurst) {
    refilled_ns_ = now_ns;  // a full bucket starts its interval now
  } else if (now_ns > refilled_ns_) {
    const uint64_t earned = (now_ns - refilled_ns_) / kRefusalRecordIntervalNs;
    if (earned >= kRefusalRecordBurst - tokens_) {
      tokens_ = kRefusalRecordBurst;
      refilled_ns_ = now_ns;
    } else if (earned > 0) {
      tokens_ += static_cast<uint32_t>(earned);
      refilled_ns_ += earned * kRefusalRecordIntervalNs;
    }
  }
  if (tokens_ == 0) return false;
  --tokens_;
  return true;
}

std::optional<uint64_t> RefusalAudit::admit(const struct ucred& peer, uint64_t now_ns) noexcept {
  if (!take(now_ns)) {
    ++held_back_;
    last_ = peer;
    return std::nullopt;
  }
  const uint64_t before = held_back_;
  held_back_ = 0;
  return before;
}

std::optional<RefusalAudit::Summary> RefusalAudit::summary_due(uint64_t now_ns) noexcept {
  if (held_back_ == 0 || !take(now_ns)) return std::nullopt;
  Summary summary{held_back_, last_};
  held_back_ = 0;
  return summary;
}

}  // namespace sluice
