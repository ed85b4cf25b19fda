// Admission of identified control clients (see control_admission.h).
#include "worker/control_admission.h"

namespace sluice {

Admission decide_admission(const ControlLimits& limits, ControlAccess access,
                           const SessionCounts& counts) noexcept {
  if (access == ControlAccess::kNone) return Admission::kNoAccess;
  if (counts.sessions >= limits.max_clients) return Admission::kFull;
  if (access >= ControlAccess::kCommit) return Admission::kAdmit;
  // Read access only: within its own share, and its uid within its limit.
  const size_t shared = limits.max_clients > limits.reserved_commit_slots
                            ? limits.max_clients - limits.reserved_commit_slots
                            : 0;
  if (counts.readers_of_uid >= limits.max_reader_sessions_per_uid) return Admission::kUidFull;
  if (counts.readers >= shared) return Admission::kReadersFull;
  return Admission::kAdmit;
}

std::string busy_message(Admission decision, const ControlLimits& limits,
                         const SessionCounts& counts, uint32_t uid) {
  switch (decision) {
    case Admission::kFull:
      return "the server already has " + std::to_string(counts.sessions) +
             " control clients connected; retry later";
    case Admission::kReadersFull:
      return "the server already has " + std::to_string(counts.readers) +
             " control clients connected that may only read, the most it admits (" +
             std::to_string(limits.reserved_commit_slots) +
             " more are kept for users who may commit); retry later";
    case Admission::kUidFull:
      return "uid " + std::to_string(uid) + " already has " +
             std::to_string(counts.readers_of_uid) +
             " control connections, the most a user who may only read can hold at once; close "
             "one, or retry later";
    case Admission::kAdmit:
    case Admission::kNoAccess:
      break;
  }
  return "";
}

}  // namespace sluice
