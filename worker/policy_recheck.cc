// The re-check of the tables in force after a policy reload, and the
// engine's reload (see policy_recheck.h).
#include "worker/policy_recheck.h"

#include <unistd.h>

#include <cerrno>
#include <map>
#include <utility>

#include "base/log.h"
#include "worker/commit_acquisition.h"
#include "worker/commit_engine.h"

namespace sluice {

std::vector<control::Failure> recheck_policy(const TableSet& tables,
                                             std::span<const PlannedKey> keys,
                                             const BindPolicy& bind, const BrokerInfo& info,
                                             const TargetPolicy& target) {
  // Bind: every listener in force, judged as a new one would be.
  Acquisition acq =
      prepare_acquisition(std::vector<PlannedKey>(keys.begin(), keys.end()), bind, info);
  struct Denied {
    size_t first;  // index in acq.keys of the first refused listener
    size_t count = 0;
  };
  std::map<std::pair<Pif, uint32_t>, Denied> denied;  // ordered: table order, rule order
  for (size_t i = acq.asked; i < acq.keys.size(); ++i) {
    const KeyOrigin& o = acq.keys[i].origin;
    auto [it, fresh] = denied.try_emplace({o.pif, o.rule}, Denied{i});
    ++it->second.count;
  }
  std::vector<control::Failure> out;
  std::map<std::pair<Pif, uint32_t>, bool> reported;
  for (const auto& [where, d] : denied) {
    const auto& [pif, index] = where;
    if (index >= tables.of(pif).rules.size())
      continue;  // keys and tables disagree: a bug elsewhere
    control::Failure f;
    f.kind = control::FailureKind::kPolicyDenied;
    f.pif = pif;
    f.rule = static_cast<int32_t>(index);
    f.text = format_rule(tables.of(pif).rules[index]);
    f.port = acq.keys[d.first].key.port;
    f.err = EACCES;
    f.message = std::string(pif_name(pif)) + " rule " + std::to_string(index) + " (" + f.text +
                "), port " + std::to_string(f.port) +
                (d.count > 1 ? " and " + std::to_string(d.count - 1) + " more listener(s)" : "") +
                ": in force, but the reloaded bind policy would refuse it now: " +
                acq.policy_reason[d.first] +
                "; the rule keeps forwarding until a commit removes or changes it";
    out.push_back(std::move(f));
    reported[where] = true;
  }
  // Target: the same verdicts a commit of these tables would get.
  for (control::Failure& f : check_table_targets(target, tables)) {
    if (f.rule >= 0 && reported.count({f.pif, static_cast<uint32_t>(f.rule)}) != 0) continue;
    f.message = "in force, but the reloaded target policy would refuse it now: " + f.message +
                "; the rule keeps forwarding until a commit removes or changes it";
    out.push_back(std::move(f));
  }
  return out;
}

Result<PolicyFile> read_reloaded_policy(int fd, uint32_t length, const std::string& source) {
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading the reloaded policy text from sluiced");
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > length) break;
  }
  if (text.size() != length) {
    return Err("the reloaded policy text from sluiced is " + std::to_string(text.size()) +
               " bytes, not the " + std::to_string(length) + " it announced");
  }
  return parse_policy_text(text, source);
}

void CommitEngine::reload_policy(const PolicyFile& file, const struct ucred& peer) {
  set_policy(bind_policy_from_file(file), target_policy_from_file(file));
  ++policy_reloads_;
  // Scan ports the old policy denied are not retried by scans alone: the
  // next scan plans again, under the new lines.
  if (scan_.active) scan_.retry = true;
  std::vector<control::Failure> failures = policy_failures();
  for (const control::Failure& f : failures) LOG_WARN("policy reload: %s", f.message.c_str());
  LOG_INFO(
      "policy %s in force for the next commit: %zu bind, %zu target and %zu control line(s); "
      "%zu rule(s) in force no longer pass%s",
      file.source.c_str(), file.bind_rules.size(), file.target_rules.size(),
      file.control_rules.size(), failures.size(),
      failures.empty() ? "" : " (kept; see `sluicectl --stats`)");
  CommitRecord record;
  record.outcome = control::Outcome::kDryRun;
  record.dry_run = true;
  record.peer = peer;
  record.comment = "policy reload from " + file.source + ": the rules in force re-checked, " +
                   std::to_string(failures.size()) + " no longer pass (kept in force)";
  record.generation_before = record.generation_after = generation_;
  record.digest_before = record.digest_after = digest_;
  record.kept = static_cast<uint32_t>(installed_.size());
  record.failures = std::move(failures);
  record.failure_count = cut_failures(&record.failures);
  audit_.write(std::move(record));
}

void CommitEngine::reload_failed(const std::string& source, const std::string& error,
                                 const struct ucred& peer) {
  CommitRecord record;
  record.outcome = control::Outcome::kRejected;
  record.peer = peer;
  record.comment =
      "policy reload from " + source + " failed: the policy loaded before stays in force";
  record.generation_before = record.generation_after = generation_;
  record.digest_before = record.digest_after = digest_;
  record.kept = static_cast<uint32_t>(installed_.size());
  control::Failure f;
  f.kind = control::FailureKind::kInvalid;
  f.pif = Pif::kHost;
  f.message = "policy reload failed: " + error + "; fix the file and reload again";
  record.failures.push_back(std::move(f));
  audit_.write(std::move(record));
}

std::vector<control::Failure> CommitEngine::policy_failures() const {
  if (policy_reloads_ == 0) return {};
  std::vector<PlannedKey> keys;
  keys.reserve(installed_.size());
  for (const Installed& in : installed_) keys.push_back(PlannedKey{in.key, in.origin});
  return recheck_policy(tables_, keys, bind_policy_, info_, target_policy_);
}

}  // namespace sluice
