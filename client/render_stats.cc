// sluicectl --stats: the counters of every rule as text and as JSON.
#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/strings.h"
#include "client/render.h"

namespace sluice {
namespace {

/// Formats a byte count with a binary unit: "999 B", "1.5 KiB", "2.0 GiB".
std::string format_bytes(uint64_t bytes) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  size_t unit = 0;
  while (v >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    v /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f %s", v, kUnits[unit]);
  return buf;
}

/// Formats a duration in milliseconds as "45s", "12m03s", "5h07m", "3d04h".
std::string format_uptime(uint64_t millis) {
  uint64_t s = millis / 1000;
  char buf[48];
  if (s < 60) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "s", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
  } else if (s < 86400) {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "h%02" PRIu64 "m", s / 3600, (s % 3600) / 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%" PRIu64 "d%02" PRIu64 "h", s / 86400, (s % 86400) / 3600);
  }
  return buf;
}

/// Limit: port runs of one auto-scan rule shown in the text output; the rest
/// are counted ("and N more"), and --json lists them all. A `-t auto` rule
/// can have thousands, which would make one line of the listing unreadable.
constexpr size_t kMaxRunsShown = 32;

/// Formats the ports an auto-scan rule could not listen on, for the text
/// output: "auto-scan: bound there, not listening here: 80 (EACCES), 443
/// (refused by the bind policy); --json says why" (at most kMaxRunsShown).
std::string scan_failing_line(const std::vector<control::Failure>& failing) {
  std::string out = "auto-scan: bound there, not listening here: ";
  for (size_t i = 0; i < failing.size() && i < kMaxRunsShown; ++i) {
    const control::Failure& f = failing[i];
    if (i != 0) out += ", ";
    out +=
        std::to_string(f.port) + " (" +
        (f.kind == control::FailureKind::kPolicyDenied ? std::string("refused by the bind policy")
                                                       : errno_name(f.err)) +
        ")";
  }
  if (failing.size() > kMaxRunsShown) {
    out += ", and " + std::to_string(failing.size() - kMaxRunsShown) + " more";
  }
  return out + "; tried again at each scan, --json says why";
}

/// Formats the ports an auto-scan rule of `pif` listens on now, for the text
/// output: "listening on 22, 8080-8081", or that it listens on none: none of
/// its ports is bound now on the side it follows (the target namespace for
/// HOST, sluiced's side for SPLICE), or those bound could not be listened on
/// (in use on this side, the policy, the descriptor limit: the log says).
std::string scan_line(Pif pif, const std::vector<control::PortRange>& runs) {
  if (runs.empty()) {
    return std::string("auto-scan: listening on no port now: none of its ports is bound ") +
           (pif == Pif::kSplice ? "on sluiced's side" : "in the target namespace") +
           ", or those bound could not be listened on (sluiced's log says why)";
  }
  std::string out = "auto-scan: listening on ";
  for (size_t i = 0; i < runs.size() && i < kMaxRunsShown; ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(runs[i].first);
    if (runs[i].last != runs[i].first) out += "-" + std::to_string(runs[i].last);
  }
  if (runs.size() > kMaxRunsShown) {
    out +=
        ", and " + std::to_string(runs.size() - kMaxRunsShown) + " more runs (--json lists them)";
  }
  return out;
}

/// Writes the fields of one rule's counters into an open JSON object.
void rule_json(const control::RuleStats& r, JsonWriter* w) {
  w->key("pif");
  w->string(pif_name(r.pif));
  w->key("rule");
  w->number(r.rule);
  w->key("proto");
  w->string(r.proto == Proto::kTcp ? "tcp" : "udp");  // as the listing and Prometheus say it
  w->key("text");
  w->string(r.text);
  w->key("accepted");
  w->number(r.accepted);
  w->key("active");
  w->number(r.active);
  w->key("failed");
  w->number(r.failed);
  w->key("bytesToTarget");
  w->number(r.bytes_to_target);
  w->key("bytesToClient");
  w->number(r.bytes_to_client);
  w->key("flowsActive");
  w->number(r.flows_active);
  w->key("flowsCreated");
  w->number(r.flows_created);
  w->key("datagramsToTarget");
  w->number(r.datagrams_to_target);
  w->key("datagramsToClient");
  w->number(r.datagrams_to_client);
  w->key("dropped");
  w->number(r.dropped);
  w->key("loops");
  w->number(r.loops);
  w->key("pausedAtRuleLimit");
  w->number(r.paused_rule_limit);
  w->key("pausedAtGlobalLimit");
  w->number(r.paused_global_limit);
  w->key("refusedBySource");
  w->number(r.refused_source);
  w->key("closedIdle");
  w->number(r.closed_idle);
  w->key("targetErrors");
  w->number(r.target_errors);
  w->key("scanFailing");
  w->begin_array();
  for (const control::Failure& f : r.scan_failing) failure_json(f, w);
  w->end_array();
  w->key("scanActive");
  if (!r.scan_active) {
    w->null();
    return;
  }
  w->begin_array();
  for (const control::PortRange& run : *r.scan_active) {
    w->begin_object();
    w->key("first");
    w->number(run.first);
    w->key("last");
    w->number(run.last);
    w->end_object();
  }
  w->end_array();
}

/// Formats the TCP limits that divide the connections among rules and
/// sources: "TCP limits: fair share 8 per rule, 4 kept for the others; no
/// per-rule cap; 1024 per source (3 sources now); idle timeout off".
std::string limits_line(const control::Stats& stats) {
  std::string out =
      "TCP limits: fair share " + std::to_string(stats.connection_share) + " per rule";
  if (stats.connection_reserve != 0) {
    out += ", " + std::to_string(stats.connection_reserve) + " kept for the others";
  }
  out += "; ";
  out += stats.connection_limit_per_rule == 0
             ? std::string("no per-rule cap")
             : std::to_string(stats.connection_limit_per_rule) + " per rule at most";
  out += "; ";
  out += stats.connection_limit_per_source == 0
             ? std::string("no per-source limit")
             : std::to_string(stats.connection_limit_per_source) + " per source";
  out += " (" + std::to_string(stats.sources_active) + " source" +
         (stats.sources_active == 1 ? "" : "s") + " now); idle timeout ";
  out += stats.idle_timeout_seconds == 0 ? std::string("off")
                                         : std::to_string(stats.idle_timeout_seconds) + " s";
  return out + "\n";
}

/// Formats what the TCP limits did to one rule, ", 3 reset at the source
/// limit, 2 closed idle"; empty when they never acted (only a problem shows).
std::string limit_counts(const control::RuleStats& r) {
  std::string out;
  if (r.refused_source != 0) {
    out += ", " + std::to_string(r.refused_source) + " reset at the source limit";
  }
  if (r.closed_idle != 0) out += ", " + std::to_string(r.closed_idle) + " closed idle";
  if (r.paused_rule_limit != 0) {
    out += ", paused " + std::to_string(r.paused_rule_limit) + "x at the rule limit";
  }
  if (r.paused_global_limit != 0) {
    out += ", paused " + std::to_string(r.paused_global_limit) + "x at the global limit";
  }
  return out;
}

}  // namespace

OldRuleCounts old_rule_counts(const control::Stats& stats) {
  uint64_t connections = 0, flows = 0;
  for (const control::RuleStats& r : stats.rules) {
    connections += r.active;
    flows += r.flows_active;
  }
  OldRuleCounts old;
  old.connections =
      stats.connections_active > connections ? stats.connections_active - connections : 0;
  old.flows = stats.flows_active > flows ? stats.flows_active - flows : 0;
  return old;
}

std::string render_stats(const control::Stats& stats) {
  std::string out = "generation " + std::to_string(stats.generation) + ", up " +
                    format_uptime(stats.uptime_millis) + "; " + std::to_string(stats.listeners) +
                    " listening socket" + (stats.listeners == 1 ? "" : "s");
  if (stats.paused_listeners != 0) {
    out += " (" + std::to_string(stats.paused_listeners) + " paused at a limit)";
  }
  out += "; TCP connections " + std::to_string(stats.connections_active) + " of " +
         std::to_string(stats.connection_limit) + "; UDP flows " +
         std::to_string(stats.flows_active) + " of " + std::to_string(stats.flow_limit) + "\n";
  if (const OldRuleCounts old = old_rule_counts(stats); old.connections != 0 || old.flows != 0) {
    out +=
        "of them under rules no longer in force (a commit removed or changed them; each "
        "keeps the rule it started under until it ends, or a commit with "
        "--end-removed-flows ends it): " +
        std::to_string(old.connections) + " TCP connection" + (old.connections == 1 ? "" : "s") +
        ", " + std::to_string(old.flows) + " UDP flow" + (old.flows == 1 ? "" : "s") + "\n";
  }
  out += "pipes " + format_bytes(stats.pipe_size) + "; connect timeout " +
         std::to_string(stats.connect_timeout_seconds) + " s; UDP idle timeout " +
         std::to_string(stats.udp_idle_timeout_seconds) + " s\n";
  out += limits_line(stats);
  if (stats.pending_confirm) out += render_pending(*stats.pending_confirm);
  // Only a problem is shown: a healthy audit sink takes every line at once.
  if (stats.audit_lines_lost != 0 || stats.audit_bytes_waiting != 0) {
    out += "audit: " + std::to_string(stats.audit_lines_lost) + " line" +
           (stats.audit_lines_lost == 1 ? "" : "s") + " lost, " +
           format_bytes(stats.audit_bytes_waiting) +
           " waiting for the sink; check what reads the audit sink (--audit-log)\n";
  }
  if (stats.connection_log) out += "connection log: on (--log-connections)\n";
  if (stats.target_exited) {
    out +=
        "target namespace: the process sluiced --netns named has exited (the container "
        "stopped); connections through HOST rules are refused there. If the container started "
        "again, start sluiced again with its new PID\n";
  }
  if (stats.threads_accepted.size() > 1) {
    out += "data-path threads: " + std::to_string(stats.threads_accepted.size()) +
           "; TCP connections each served:";
    for (uint64_t n : stats.threads_accepted) out += " " + std::to_string(n);
    out += "\n";
  }
  if (stats.log_lines_dropped != 0) {
    out += "log: " + std::to_string(stats.log_lines_dropped) + " line" +
           (stats.log_lines_dropped == 1 ? "" : "s") +
           " dropped; check what reads sluiced's standard error (the journal, a pipe)\n";
  }
  bool any[kPifCount] = {};
  for (const control::RuleStats& r : stats.rules) any[static_cast<size_t>(r.pif)] = true;
  for (size_t p = 0; p < kPifCount; ++p) {
    const Pif pif = static_cast<Pif>(p);
    if (!any[p]) continue;
    out += std::string(pif_name(pif)) + "\n";
    for (const control::RuleStats& r : stats.rules) {
      if (r.pif != pif) continue;
      // Rule texts come from the server: sanitise before they reach a terminal.
      out += "    " + sanitize(r.text, control::kMaxTextBytes) + "\n        ";
      if (r.scan_active) out += scan_line(pif, *r.scan_active) + "\n        ";
      if (!r.scan_failing.empty()) out += scan_failing_line(r.scan_failing) + "\n        ";
      if (r.proto == Proto::kUdp) {
        out += "flows " + std::to_string(r.flows_active) + " active, " +
               std::to_string(r.flows_created) + " created; datagrams " +
               std::to_string(r.datagrams_to_target) + " to target, " +
               std::to_string(r.datagrams_to_client) + " to client, " + std::to_string(r.dropped) +
               " dropped";
        if (r.loops != 0) out += " (" + std::to_string(r.loops) + " as forwarding loops)";
        // Only a problem is shown: the target's side answered with an ICMP
        // error (nothing listens there, or no route), which UDP cannot pass on.
        if (r.target_errors != 0) {
          out += "; " + std::to_string(r.target_errors) + " target error" +
                 (r.target_errors == 1 ? "" : "s") + " (port closed or unreachable)";
        }
      } else {
        out += "connections " + std::to_string(r.accepted) + " accepted, " +
               std::to_string(r.active) + " active, " + std::to_string(r.failed) + " failed";
        // Only a problem is shown: a rule that never saw a loop says nothing.
        if (r.loops != 0) out += ", " + std::to_string(r.loops) + " reset as forwarding loops";
        out += limit_counts(r);
      }
      out += "; " + format_bytes(r.bytes_to_target) + " to target, " +
             format_bytes(r.bytes_to_client) + " to client\n";
    }
  }
  if (stats.rules.empty()) out += "(no rules)\n";
  // Shown after a reload only: what the policy in force no longer lets pass.
  if (stats.policy_reloads != 0) {
    out += "policy: reloaded " + std::to_string(stats.policy_reloads) + " time" +
           (stats.policy_reloads == 1 ? "" : "s") + "; ";
    if (stats.policy_failures.empty()) {
      out += "every rule in force passes it\n";
    } else {
      const bool one = stats.policy_failures.size() == 1;
      out += std::to_string(stats.policy_failures.size()) +
             (one ? " rule in force no longer passes (still forwarding; commit without it"
                  : " rules in force no longer pass (still forwarding; commit without them") +
             ", or change the policy):\n";
      for (const std::string& line : render_failures(stats.policy_failures)) {
        out += "    " + line + "\n";
      }
    }
  }
  return out;
}

std::string render_stats_json(const control::Stats& stats) {
  JsonWriter w;
  w.begin_object();
  w.key("generation");
  w.number(stats.generation);
  w.key("uptimeMillis");
  w.number(stats.uptime_millis);
  w.key("listeners");
  w.number(stats.listeners);
  w.key("pausedListeners");
  w.number(stats.paused_listeners);
  w.key("connectionsActive");
  w.number(stats.connections_active);
  w.key("connectionLimit");
  w.number(stats.connection_limit);
  w.key("flowsActive");
  w.number(stats.flows_active);
  w.key("flowLimit");
  w.number(stats.flow_limit);
  const OldRuleCounts old = old_rule_counts(stats);
  w.key("connectionsOfOldRules");
  w.number(old.connections);
  w.key("flowsOfOldRules");
  w.number(old.flows);
  w.key("pipeSize");
  w.number(stats.pipe_size);
  w.key("connectTimeoutSeconds");
  w.number(stats.connect_timeout_seconds);
  w.key("udpIdleTimeoutSeconds");
  w.number(stats.udp_idle_timeout_seconds);
  w.key("auditLinesLost");
  w.number(stats.audit_lines_lost);
  w.key("auditBytesWaiting");
  w.number(stats.audit_bytes_waiting);
  w.key("logLinesDropped");
  w.number(stats.log_lines_dropped);
  w.key("connectionLog");
  w.boolean(stats.connection_log);
  w.key("targetExited");
  w.boolean(stats.target_exited);
  w.key("threadsAccepted");
  w.begin_array();
  for (uint64_t n : stats.threads_accepted) w.number(n);
  w.end_array();
  w.key("idleTimeoutSeconds");
  w.number(stats.idle_timeout_seconds);
  w.key("connectionLimitPerRule");
  w.number(stats.connection_limit_per_rule);
  w.key("connectionLimitPerSource");
  w.number(stats.connection_limit_per_source);
  w.key("connectionShare");
  w.number(stats.connection_share);
  w.key("connectionReserve");
  w.number(stats.connection_reserve);
  w.key("sourcesActive");
  w.number(stats.sources_active);
  w.key("commitsApplied");
  w.number(stats.commits_applied);
  w.key("commitsRejected");
  w.number(stats.commits_rejected);
  w.key("commitsDryRun");
  w.number(stats.commits_dry_run);
  w.key("commitsStale");
  w.number(stats.commits_stale);
  w.key("rollbacks");
  w.number(stats.rollbacks);
  pending_json(stats.pending_confirm, &w);
  w.key("policyReloads");
  w.number(stats.policy_reloads);
  w.key("policyFailures");
  w.begin_array();
  for (const control::Failure& f : stats.policy_failures) failure_json(f, &w);
  w.end_array();
  w.key("rules");
  w.begin_array();
  for (const control::RuleStats& r : stats.rules) {
    w.begin_object();
    rule_json(r, &w);
    w.end_object();
  }
  w.end_array();
  w.end_object();
  return w.str() + "\n";
}

}  // namespace sluice
