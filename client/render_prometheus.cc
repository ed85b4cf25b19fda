// sluicectl --stats --prometheus (see render_prometheus.h).
#include "client/render_prometheus.h"

#include <cinttypes>
#include <cstdio>
#include <string>
#include <vector>

#include "base/strings.h"
#include "client/render.h"

namespace sluice {
namespace {

/// Limit: bytes of a label value taken from the server (the version string).
/// Rule fields are short by construction; a version is one word.
constexpr size_t kMaxLabelBytes = 128;

/// Which rules a per-rule family has samples for.
enum class RuleKind { kAny, kTcp, kUdp, kScan };

/// One per-rule metric family: its name, type, help, which rules it covers,
/// and how to read its one sample (or its two, with a "direction" label:
/// `value` gives to_target, `value2` to_client).
struct RuleFamily {
  const char* name;
  const char* type;
  const char* help;
  RuleKind kind;
  uint64_t (*value)(const control::RuleStats& r);
  uint64_t (*value2)(const control::RuleStats& r);  // nullptr: no direction label
};

/// Returns the number of ports an auto-scan rule listens on now.
uint64_t scan_ports(const control::RuleStats& r) {
  uint64_t n = 0;
  if (r.scan_active) {
    for (const control::PortRange& run : *r.scan_active) n += run.last - run.first + 1u;
  }
  return n;
}

/// The per-rule families, in the order they are written.
const RuleFamily kRuleFamilies[] = {
    {"sluice_rule_tcp_connections_accepted_total", "counter",
     "TCP connections accepted by the rule since it entered the tables.", RuleKind::kTcp,
     [](const control::RuleStats& r) { return r.accepted; }, nullptr},
    {"sluice_rule_tcp_connections", "gauge", "TCP connections of the rule open now.",
     RuleKind::kTcp, [](const control::RuleStats& r) { return r.active; }, nullptr},
    {"sluice_rule_tcp_connect_failures_total", "counter",
     "TCP connections of the rule whose target could not be reached.", RuleKind::kTcp,
     [](const control::RuleStats& r) { return r.failed; }, nullptr},
    {"sluice_rule_udp_flows", "gauge", "UDP flows of the rule open now.", RuleKind::kUdp,
     [](const control::RuleStats& r) { return r.flows_active; }, nullptr},
    {"sluice_rule_udp_flows_created_total", "counter", "UDP flows the rule created.",
     RuleKind::kUdp, [](const control::RuleStats& r) { return r.flows_created; }, nullptr},
    {"sluice_rule_udp_datagrams_total", "counter",
     "UDP datagrams forwarded by the rule, by direction (to_target: from the client).",
     RuleKind::kUdp, [](const control::RuleStats& r) { return r.datagrams_to_target; },
     [](const control::RuleStats& r) { return r.datagrams_to_client; }},
    {"sluice_rule_udp_datagrams_dropped_total", "counter",
     "UDP datagrams of the rule dropped (flow limit, full socket buffers).", RuleKind::kUdp,
     [](const control::RuleStats& r) { return r.dropped; }, nullptr},
    {"sluice_rule_udp_target_errors_total", "counter",
     "ICMP errors the rule's UDP target answered with (port closed, unreachable).", RuleKind::kUdp,
     [](const control::RuleStats& r) { return r.target_errors; }, nullptr},
    {"sluice_rule_bytes_total", "counter",
     "Payload bytes forwarded by the rule, TCP and UDP, by direction (to_target: from the "
     "client).",
     RuleKind::kAny, [](const control::RuleStats& r) { return r.bytes_to_target; },
     [](const control::RuleStats& r) { return r.bytes_to_client; }},
    {"sluice_rule_loops_total", "counter",
     "Traffic of the rule that came from sluice itself, a forwarding loop (TCP connections "
     "reset, UDP datagrams dropped).",
     RuleKind::kAny, [](const control::RuleStats& r) { return r.loops; }, nullptr},
    {"sluice_rule_tcp_pauses_rule_limit_total", "counter",
     "Times a listener of the rule paused at the rule's limit (its fair share or "
     "--max-connections-per-rule).",
     RuleKind::kTcp, [](const control::RuleStats& r) { return r.paused_rule_limit; }, nullptr},
    {"sluice_rule_tcp_pauses_global_limit_total", "counter",
     "Times a listener of the rule paused at the global limit (--max-connections).", RuleKind::kTcp,
     [](const control::RuleStats& r) { return r.paused_global_limit; }, nullptr},
    {"sluice_rule_tcp_source_limit_resets_total", "counter",
     "TCP connections of the rule reset at the per-source limit "
     "(--max-connections-per-source).",
     RuleKind::kTcp, [](const control::RuleStats& r) { return r.refused_source; }, nullptr},
    {"sluice_rule_tcp_idle_resets_total", "counter",
     "TCP connections of the rule reset by the idle timeout (--idle-timeout).", RuleKind::kTcp,
     [](const control::RuleStats& r) { return r.closed_idle; }, nullptr},
    {"sluice_rule_scan_listening_ports", "gauge",
     "Ports an auto-scan rule listens on now (bound in the target namespace).", RuleKind::kScan,
     scan_ports, nullptr},
    {"sluice_rule_scan_failing_ports", "gauge",
     "Ports an auto-scan rule could not listen on at the last try, though bound on the side it "
     "follows (in use here, the bind policy, the privileged port limit).",
     RuleKind::kScan, [](const control::RuleStats& r) { return uint64_t{r.scan_failing.size()}; },
     nullptr},
};

/// Writes the # HELP and # TYPE lines of a family. Help texts are ours: no
/// backslash or line feed to escape.
void family_header(std::string* out, const char* name, const char* type, const char* help) {
  *out += "# HELP ";
  *out += name;
  *out += ' ';
  *out += help;
  *out += "\n# TYPE ";
  *out += name;
  *out += ' ';
  *out += type;
  *out += '\n';
}

/// Writes one sample: NAME{LABELS} VALUE, LABELS already escaped and joined
/// ("" for none).
void sample(std::string* out, const char* name, const std::string& labels, const std::string& v) {
  *out += name;
  if (!labels.empty()) *out += "{" + labels + "}";
  *out += ' ';
  *out += v;
  *out += '\n';
}

/// Writes a family of one unlabelled sample.
void single(std::string* out, const char* name, const char* type, const char* help, uint64_t v) {
  family_header(out, name, type, help);
  sample(out, name, "", std::to_string(v));
}

/// Returns `key="escaped value"`.
std::string label(const char* key, std::string_view value) {
  return std::string(key) + "=\"" + prometheus_label_value(value) + "\"";
}

/// Returns the labels that name one rule: pif, proto, listen, ifname, ports
/// and target. They are unique within a table set: two rules with equal
/// protocol, address and ports would conflict.
std::string rule_labels(Pif pif, const Rule& rule) {
  std::string ports = std::to_string(rule.first);
  if (rule.last != rule.first) ports += "-" + std::to_string(rule.last);
  std::string target = is_default_target(rule.target) ? "default" : format_addr(rule.target);
  target += ":" + std::to_string(rule.to);
  if (rule.last != rule.first) target += "-" + std::to_string(rule.to + (rule.last - rule.first));
  return label("pif", pif_name(pif)) + "," +
         label("proto", rule.proto == Proto::kTcp ? "tcp" : "udp") + "," +
         label("listen", rule.dual_stack ? "*" : format_addr(rule.listen)) + "," +
         label("ifname", rule.ifname) + "," + label("ports", ports) + "," + label("target", target);
}

/// True when family `f` has samples for a rule of protocol `proto`.
bool covers(const RuleFamily& f, const control::RuleStats& r) {
  switch (f.kind) {
    case RuleKind::kAny:
      return true;
    case RuleKind::kTcp:
      return r.proto == Proto::kTcp;
    case RuleKind::kUdp:
      return r.proto == Proto::kUdp;
    case RuleKind::kScan:
      return r.scan_active.has_value();
  }
  return false;
}

}  // namespace

std::string prometheus_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else if (u < 0x20 || u >= 0x7f) {
      out += '?';
    } else {
      out += c;
    }
  }
  return out;
}

Result<std::string> render_prometheus(const control::Stats& stats, const TableSet& tables,
                                      std::string_view server_version) {
  // The labels of every rule, in the order of the stats.
  std::vector<std::string> labels;
  labels.reserve(stats.rules.size());
  for (const control::RuleStats& r : stats.rules) {
    const Table& table = tables.of(r.pif);
    if (r.rule >= table.rules.size() || table.rules[r.rule].proto != r.proto) {
      return Err("the counters of " + std::string(pif_name(r.pif)) + " rule " +
                 std::to_string(r.rule) + " match no rule of the tables of generation " +
                 std::to_string(stats.generation) + "; try again");
    }
    labels.push_back(rule_labels(r.pif, table.rules[r.rule]));
  }

  std::string out;
  family_header(&out, "sluice_build_info", "gauge",
                "The version of the sluice worker that answered (always 1).");
  sample(&out, "sluice_build_info", label("version", sanitize(server_version, kMaxLabelBytes)),
         "1");
  single(&out, "sluice_generation", "gauge",
         "The generation of the tables in force; every applied commit adds one.", stats.generation);
  char uptime[32];
  std::snprintf(uptime, sizeof(uptime), "%" PRIu64 ".%03" PRIu64, stats.uptime_millis / 1000,
                stats.uptime_millis % 1000);
  family_header(&out, "sluice_worker_uptime_seconds", "gauge",
                "Seconds since the worker started (its counters start then).");
  sample(&out, "sluice_worker_uptime_seconds", "", uptime);
  single(&out, "sluice_listeners", "gauge", "Listening sockets in force.", stats.listeners);
  single(&out, "sluice_listeners_paused", "gauge",
         "Listening sockets not accepting now because a limit was reached.",
         stats.paused_listeners);
  single(&out, "sluice_tcp_connections", "gauge", "TCP connections open now.",
         stats.connections_active);
  single(&out, "sluice_tcp_connections_limit", "gauge",
         "The most TCP connections open at once (sluiced --max-connections).",
         stats.connection_limit);
  single(&out, "sluice_udp_flows", "gauge", "UDP flows open now.", stats.flows_active);
  const OldRuleCounts old = old_rule_counts(stats);
  single(&out, "sluice_tcp_connections_of_old_rules", "gauge",
         "TCP connections open now under rules no longer in force (removed or changed by a "
         "commit).",
         old.connections);
  single(&out, "sluice_udp_flows_of_old_rules", "gauge",
         "UDP flows open now under rules no longer in force (removed or changed by a commit).",
         old.flows);
  single(&out, "sluice_udp_flows_limit", "gauge",
         "The most UDP flows open at once (sluiced --udp-flows).", stats.flow_limit);
  single(&out, "sluice_pipe_size_bytes", "gauge", "Bytes per splice pipe (--pipe-size).",
         stats.pipe_size);
  single(&out, "sluice_connect_timeout_seconds", "gauge",
         "A TCP target's handshake deadline (--connect-timeout).", stats.connect_timeout_seconds);
  single(&out, "sluice_udp_idle_timeout_seconds", "gauge",
         "A UDP flow ends after this long idle (--udp-idle-timeout).",
         stats.udp_idle_timeout_seconds);
  single(&out, "sluice_tcp_idle_timeout_seconds", "gauge",
         "A TCP connection idle this long is reset (--idle-timeout); 0: off.",
         stats.idle_timeout_seconds);
  single(&out, "sluice_tcp_connections_limit_per_rule", "gauge",
         "The most TCP connections of one rule (--max-connections-per-rule); 0: its share only.",
         stats.connection_limit_per_rule);
  single(&out, "sluice_tcp_connections_limit_per_source", "gauge",
         "The most TCP connections from one source (--max-connections-per-source); 0: off.",
         stats.connection_limit_per_source);
  single(&out, "sluice_tcp_connections_share", "gauge",
         "TCP connection slots each rule may always use now (its fair share).",
         stats.connection_share);
  single(&out, "sluice_tcp_connections_reserve", "gauge",
         "Free TCP connection slots a rule past its share may not take.", stats.connection_reserve);
  single(&out, "sluice_tcp_sources", "gauge",
         "Sources (IPv4 addresses, IPv6 /64 prefixes) holding TCP connections now.",
         stats.sources_active);
  single(&out, "sluice_audit_lines_lost_total", "counter",
         "Audit lines not written whole (sink errors, full backlog).", stats.audit_lines_lost);
  single(&out, "sluice_audit_waiting_bytes", "gauge",
         "Audit bytes waiting for a sink that pushes back.", stats.audit_bytes_waiting);
  single(&out, "sluice_log_lines_dropped_total", "counter",
         "Lines of the worker's log dropped because its standard error was not read fast enough.",
         stats.log_lines_dropped);
  single(&out, "sluice_connection_log", "gauge",
         "1 when the connection log (--log-connections) is on, else 0.",
         stats.connection_log ? 1 : 0);
  single(&out, "sluice_target_exited", "gauge",
         "1 once the process sluiced --netns PID named has exited (the container stopped), "
         "else 0.",
         stats.target_exited ? 1 : 0);

  family_header(&out, "sluice_commits_total", "counter",
                "Commit attempts since the worker started, by outcome (pesto updates included).");
  sample(&out, "sluice_commits_total", label("outcome", "applied"),
         std::to_string(stats.commits_applied));
  sample(&out, "sluice_commits_total", label("outcome", "rejected"),
         std::to_string(stats.commits_rejected));
  sample(&out, "sluice_commits_total", label("outcome", "dry_run"),
         std::to_string(stats.commits_dry_run));
  sample(&out, "sluice_commits_total", label("outcome", "stale"),
         std::to_string(stats.commits_stale));
  single(&out, "sluice_confirm_rollbacks_total", "counter",
         "Automatic rollbacks of commits not confirmed in time (sluicectl --confirm-within).",
         stats.rollbacks);
  single(&out, "sluice_confirm_pending", "gauge",
         "1 while a commit waits for sluicectl --confirm, else 0.", stats.pending_confirm ? 1 : 0);
  if (stats.pending_confirm) {
    const control::PendingConfirm& p = *stats.pending_confirm;
    single(&out, "sluice_confirm_pending_generation", "gauge",
           "The generation that waits for confirmation.", p.generation);
    char deadline[48];
    std::snprintf(deadline, sizeof(deadline), "%" PRId64 ".%03" PRId64,
                  p.deadline_unix_millis / 1000, p.deadline_unix_millis % 1000);
    family_header(&out, "sluice_confirm_deadline_timestamp_seconds", "gauge",
                  "When the commit that waits is rolled back unless confirmed (Unix time).");
    sample(&out, "sluice_confirm_deadline_timestamp_seconds", "", deadline);
  }

  for (const RuleFamily& f : kRuleFamilies) {
    bool header = false;
    for (size_t i = 0; i < stats.rules.size(); ++i) {
      const control::RuleStats& r = stats.rules[i];
      if (!covers(f, r)) continue;
      if (!header) family_header(&out, f.name, f.type, f.help);
      header = true;
      if (f.value2 == nullptr) {
        sample(&out, f.name, labels[i], std::to_string(f.value(r)));
      } else {
        sample(&out, f.name, labels[i] + "," + label("direction", "to_target"),
               std::to_string(f.value(r)));
        sample(&out, f.name, labels[i] + "," + label("direction", "to_client"),
               std::to_string(f.value2(r)));
      }
    }
  }
  return out;
}

}  // namespace sluice
