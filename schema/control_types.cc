// Names of the control protocol's enums, as shown to users and written to the
// audit log (see control_types.h).
#include "schema/control_types.h"

namespace sluice::control {

const char* failure_kind_name(FailureKind kind) noexcept {
  switch (kind) {
    case FailureKind::kInvalid:
      return "invalid";
    case FailureKind::kConflict:
      return "conflict";
    case FailureKind::kPolicyDenied:
      return "policy-denied";
    case FailureKind::kBindFailed:
      return "bind-failed";
    case FailureKind::kCapacity:
      return "capacity";
    case FailureKind::kStale:
      return "stale-generation";
    case FailureKind::kConfirmPending:
      return "confirm-pending";
  }
  return "unknown";
}

const char* outcome_name(Outcome outcome) noexcept {
  switch (outcome) {
    case Outcome::kApplied:
      return "applied";
    case Outcome::kRejected:
      return "rejected";
    case Outcome::kDryRun:
      return "dry-run";
    case Outcome::kStale:
      return "stale";
  }
  return "unknown";
}

const char* error_code_name(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::kMalformed:
      return "malformed";
    case ErrorCode::kUnsupportedVersion:
      return "unsupported-version";
    case ErrorCode::kUnknownRequest:
      return "unknown-request";
    case ErrorCode::kNotPermitted:
      return "not-permitted";
    case ErrorCode::kTooLarge:
      return "too-large";
    case ErrorCode::kOutOfOrder:
      return "out-of-order";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kBusy:
      return "busy";
  }
  return "unknown";
}

}  // namespace sluice::control
