// The validator's issues as control-protocol failures: the one conversion,
// used by sluicectl (to report before sending) and by the worker (to refuse a
// commit). Header-only so that policy/ itself links nothing of schema/.
#pragma once

#include <vector>

#include "policy/validate.h"
#include "schema/codec.h"

namespace sluice {

/// Converts validator issues into commit failures (kinds invalid, conflict,
/// capacity, policy-denied), naming each rule of `tables` in listing format.
inline std::vector<control::Failure> issues_as_failures(const std::vector<ValidationIssue>& issues,
                                                        const TableSet& tables) {
  std::vector<control::Failure> out;
  out.reserve(issues.size());
  for (const ValidationIssue& issue : issues) {
    control::Failure f;
    switch (issue.kind) {
      case IssueKind::kInvalid:
        f.kind = control::FailureKind::kInvalid;
        break;
      case IssueKind::kConflict:
        f.kind = control::FailureKind::kConflict;
        break;
      case IssueKind::kCapacity:
        f.kind = control::FailureKind::kCapacity;
        break;
      case IssueKind::kPolicyDenied:
        f.kind = control::FailureKind::kPolicyDenied;
        break;
    }
    f.pif = issue.pif;
    f.rule = issue.rule;
    f.port = issue.port;
    const Table& table = tables.of(issue.pif);
    if (issue.rule >= 0 && static_cast<size_t>(issue.rule) < table.rules.size()) {
      f.text = format_rule(table.rules[static_cast<size_t>(issue.rule)]);
    }
    f.message = issue.message;
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace sluice
