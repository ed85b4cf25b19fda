// The control codec's statistics (see codec.h): a `stats` response's
// counters of every rule and of the data path, written and read. Split from
// codec.cc, whose helpers it shares through codec_internal.h.
#include <capnp/list.h>

#include <string>
#include <vector>

#include "schema/codec_internal.h"

namespace sluice::control::codec_detail {

/// Writes the counters of every rule.
void encode_stats(const Stats& st, cp::Stats::Builder out) {
  out.setGeneration(st.generation);
  out.setUptimeMillis(st.uptime_millis);
  out.setConnectionsActive(st.connections_active);
  out.setConnectionLimit(st.connection_limit);
  out.setFlowsActive(st.flows_active);
  out.setFlowLimit(st.flow_limit);
  out.setListeners(st.listeners);
  out.setPausedListeners(st.paused_listeners);
  out.setPipeSize(st.pipe_size);
  out.setConnectTimeoutSeconds(st.connect_timeout_seconds);
  out.setUdpIdleTimeoutSeconds(st.udp_idle_timeout_seconds);
  out.setAuditLinesLost(st.audit_lines_lost);
  out.setAuditBytesWaiting(st.audit_bytes_waiting);
  out.setIdleTimeoutSeconds(st.idle_timeout_seconds);
  out.setConnectionLimitPerRule(st.connection_limit_per_rule);
  out.setConnectionLimitPerSource(st.connection_limit_per_source);
  out.setConnectionShare(st.connection_share);
  out.setConnectionReserve(st.connection_reserve);
  out.setSourcesActive(st.sources_active);
  out.setCommitsApplied(st.commits_applied);
  out.setCommitsRejected(st.commits_rejected);
  out.setCommitsDryRun(st.commits_dry_run);
  out.setCommitsStale(st.commits_stale);
  out.setRollbacks(st.rollbacks);
  out.setPolicyReloads(st.policy_reloads);
  out.setLogLinesDropped(st.log_lines_dropped);
  out.setConnectionLog(st.connection_log);
  out.setTargetExited(st.target_exited);
  auto threads = out.initThreadsAccepted(static_cast<unsigned>(st.threads_accepted.size()));
  for (size_t i = 0; i < st.threads_accepted.size(); ++i) {
    threads.set(static_cast<unsigned>(i), st.threads_accepted[i]);
  }
  auto policy_failures = out.initPolicyFailures(static_cast<unsigned>(st.policy_failures.size()));
  for (size_t i = 0; i < st.policy_failures.size(); ++i) {
    encode_failure(st.policy_failures[i], policy_failures[static_cast<unsigned>(i)]);
  }
  if (st.pending_confirm) encode_pending(*st.pending_confirm, out.initPendingConfirm());
  auto rules = out.initRules(static_cast<unsigned>(st.rules.size()));
  for (size_t i = 0; i < st.rules.size(); ++i) {
    const RuleStats& r = st.rules[i];
    auto o = rules[static_cast<unsigned>(i)];
    o.setPif(static_cast<cp::Pif>(static_cast<uint16_t>(r.pif)));
    o.setProto(static_cast<cp::Proto>(static_cast<uint16_t>(r.proto)));
    o.setRule(r.rule);
    o.setText(r.text);
    o.setAccepted(r.accepted);
    o.setActive(r.active);
    o.setFailed(r.failed);
    o.setBytesToTarget(r.bytes_to_target);
    o.setBytesToClient(r.bytes_to_client);
    o.setFlowsActive(r.flows_active);
    o.setFlowsCreated(r.flows_created);
    o.setDatagramsToTarget(r.datagrams_to_target);
    o.setDatagramsToClient(r.datagrams_to_client);
    o.setDropped(r.dropped);
    o.setLoops(r.loops);
    o.setPausedAtRuleLimit(r.paused_rule_limit);
    o.setPausedAtGlobalLimit(r.paused_global_limit);
    o.setRefusedBySource(r.refused_source);
    o.setClosedIdle(r.closed_idle);
    o.setTargetErrors(r.target_errors);
    if (!r.scan_failing.empty()) {
      auto failing = o.initScanFailing(static_cast<unsigned>(r.scan_failing.size()));
      for (size_t k = 0; k < r.scan_failing.size(); ++k) {
        encode_failure(r.scan_failing[k], failing[static_cast<unsigned>(k)]);
      }
    }
    if (r.scan_active) {
      auto runs = o.initScanActive(static_cast<unsigned>(r.scan_active->size()));
      for (size_t k = 0; k < r.scan_active->size(); ++k) {
        runs[static_cast<unsigned>(k)].setFirst((*r.scan_active)[k].first);
        runs[static_cast<unsigned>(k)].setLast((*r.scan_active)[k].last);
      }
    }
  }
}

/// Reads an auto-scan rule's active ports: at most kMaxPortRuns runs, each
/// 1 <= first <= last, each after the one before; anything else is malformed.
std::vector<PortRange> decode_port_runs(capnp::List<cp::PortRange>::Reader in) {
  if (in.size() > kMaxPortRuns) throw DecodeError{"too many port runs"};
  std::vector<PortRange> out;
  out.reserve(in.size());
  for (auto run : in) {
    PortRange r{run.getFirst(), run.getLast()};
    if (r.first == 0 || r.first > r.last || (!out.empty() && r.first <= out.back().last)) {
      throw DecodeError{"port runs out of order"};
    }
    out.push_back(r);
  }
  return out;
}

/// Reads the counters of every rule (at most 2 * kMaxRulesPerTable).
Stats decode_stats(cp::Stats::Reader in) {
  Stats st;
  st.generation = in.getGeneration();
  st.uptime_millis = in.getUptimeMillis();
  st.connections_active = in.getConnectionsActive();
  st.connection_limit = in.getConnectionLimit();
  st.flows_active = in.getFlowsActive();
  st.flow_limit = in.getFlowLimit();
  st.listeners = in.getListeners();
  st.paused_listeners = in.getPausedListeners();
  st.pipe_size = in.getPipeSize();
  st.connect_timeout_seconds = in.getConnectTimeoutSeconds();
  st.udp_idle_timeout_seconds = in.getUdpIdleTimeoutSeconds();
  st.audit_lines_lost = in.getAuditLinesLost();
  st.audit_bytes_waiting = in.getAuditBytesWaiting();
  st.idle_timeout_seconds = in.getIdleTimeoutSeconds();
  st.connection_limit_per_rule = in.getConnectionLimitPerRule();
  st.connection_limit_per_source = in.getConnectionLimitPerSource();
  st.connection_share = in.getConnectionShare();
  st.connection_reserve = in.getConnectionReserve();
  st.sources_active = in.getSourcesActive();
  st.commits_applied = in.getCommitsApplied();
  st.commits_rejected = in.getCommitsRejected();
  st.commits_dry_run = in.getCommitsDryRun();
  st.commits_stale = in.getCommitsStale();
  st.rollbacks = in.getRollbacks();
  st.policy_reloads = in.getPolicyReloads();
  st.log_lines_dropped = in.getLogLinesDropped();
  st.connection_log = in.getConnectionLog();
  st.target_exited = in.getTargetExited();
  for (uint64_t n : in.getThreadsAccepted()) st.threads_accepted.push_back(n);
  auto policy_failures = in.getPolicyFailures();
  if (policy_failures.size() > kMaxFailures) throw DecodeError{"too many policy failures"};
  for (auto f : policy_failures) st.policy_failures.push_back(decode_failure(f));
  if (in.hasPendingConfirm()) st.pending_confirm = decode_pending(in.getPendingConfirm());
  auto rules = in.getRules();
  if (rules.size() > 2 * kMaxRulesPerTable) throw DecodeError{"stats for too many rules"};
  st.rules.reserve(rules.size());
  size_t failing_total = 0;  // scanFailing over all rules
  for (auto r : rules) {
    RuleStats o;
    o.pif = decode_pif(r.getPif());
    o.proto = decode_proto(r.getProto());
    o.rule = r.getRule();
    o.text = decode_text(r.getText(), kMaxTextBytes, "rule text");
    o.accepted = r.getAccepted();
    o.active = r.getActive();
    o.failed = r.getFailed();
    o.bytes_to_target = r.getBytesToTarget();
    o.bytes_to_client = r.getBytesToClient();
    o.flows_active = r.getFlowsActive();
    o.flows_created = r.getFlowsCreated();
    o.datagrams_to_target = r.getDatagramsToTarget();
    o.datagrams_to_client = r.getDatagramsToClient();
    o.dropped = r.getDropped();
    o.loops = r.getLoops();
    o.paused_rule_limit = r.getPausedAtRuleLimit();
    o.paused_global_limit = r.getPausedAtGlobalLimit();
    o.refused_source = r.getRefusedBySource();
    o.closed_idle = r.getClosedIdle();
    o.target_errors = r.getTargetErrors();
    if (r.hasScanActive()) o.scan_active = decode_port_runs(r.getScanActive());
    auto failing = r.getScanFailing();
    failing_total += failing.size();
    if (failing_total > kMaxFailures) throw DecodeError{"too many failing scan ports"};
    for (auto f : failing) o.scan_failing.push_back(decode_failure(f));
    st.rules.push_back(std::move(o));
  }
  return st;
}

}  // namespace sluice::control::codec_detail
