// sluicectl --stats --prometheus: the formatter's exact lines for a small
// table, label escaping, every family parsed back with the strict reader
// (tests/prometheus_check.h), and a mismatch of counters and tables refused.
#include <gtest/gtest.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "client/render_prometheus.h"
#include "schema/rules/table_edit.h"
#include "tests/client/edit_fixture.h"
#include "tests/prometheus_check.h"

namespace sluice {
namespace {

using test::parse_prometheus;
using test::PromText;

/// Stats for tables of one TCP rule (index 0) and one UDP rule (index 1).
control::Stats two_rule_stats() {
  control::Stats st;
  st.generation = 7;
  st.uptime_millis = 61500;
  st.listeners = 2;
  st.paused_listeners = 1;
  st.connections_active = 3;
  st.connection_limit = 4096;
  st.flows_active = 1;
  st.flow_limit = 8192;
  st.pipe_size = 65536;
  st.connect_timeout_seconds = 10;
  st.udp_idle_timeout_seconds = 180;
  st.audit_lines_lost = 2;
  st.log_lines_dropped = 5;
  st.connection_log = true;
  st.target_exited = true;
  st.audit_bytes_waiting = 5;
  st.commits_applied = 7;
  st.commits_rejected = 2;
  st.commits_dry_run = 1;
  st.commits_stale = 0;
  control::RuleStats tcp;
  tcp.text = "TCP [127.0.0.1]:8080 => 80";
  tcp.accepted = 10;
  tcp.active = 3;
  tcp.failed = 1;
  tcp.bytes_to_target = 1536;
  tcp.bytes_to_client = 4096;
  control::RuleStats udp;
  udp.rule = 1;
  udp.proto = Proto::kUdp;
  udp.text = "UDP [*]:53-54 => 5353-5354";
  udp.flows_active = 1;
  udp.flows_created = 5;
  udp.datagrams_to_target = 7;
  udp.datagrams_to_client = 6;
  udp.dropped = 1;
  udp.target_errors = 2;
  udp.bytes_to_target = 700;
  udp.bytes_to_client = 600;
  st.rules = {tcp, udp};
  return st;
}

/// The tables of two_rule_stats().
TableSet two_rule_tables() {
  return make({spec('t', "127.0.0.1/8080:80"), spec('u', "53-54:5353-5354")});
}

TEST(RenderPrometheus, EscapesLabelValues) {
  EXPECT_EQ(prometheus_label_value("plain-1.2"), "plain-1.2");
  EXPECT_EQ(prometheus_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  EXPECT_EQ(prometheus_label_value(std::string("x\x1b[31m\x7f\xc3\xa9", 9)), "x?[31m???");
  EXPECT_EQ(prometheus_label_value(""), "");
}

TEST(RenderPrometheus, ExactLinesOfOneRuleFamily) {
  auto text = render_prometheus(two_rule_stats(), two_rule_tables(), "0.1.0");
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_NE(text->find("# HELP sluice_rule_bytes_total Payload bytes forwarded by the rule, TCP "
                       "and UDP, by direction (to_target: from the client).\n"
                       "# TYPE sluice_rule_bytes_total counter\n"
                       "sluice_rule_bytes_total{pif=\"HOST\",proto=\"tcp\",listen=\"127.0.0.1\","
                       "ifname=\"\",ports=\"8080\",target=\"default:80\",direction=\"to_target\"} "
                       "1536\n"
                       "sluice_rule_bytes_total{pif=\"HOST\",proto=\"tcp\",listen=\"127.0.0.1\","
                       "ifname=\"\",ports=\"8080\",target=\"default:80\",direction=\"to_client\"} "
                       "4096\n"
                       "sluice_rule_bytes_total{pif=\"HOST\",proto=\"udp\",listen=\"*\","
                       "ifname=\"\",ports=\"53-54\",target=\"default:5353-5354\","
                       "direction=\"to_target\"} 700\n"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->find("sluice_worker_uptime_seconds 61.500\n"), std::string::npos);
  EXPECT_NE(text->find("sluice_build_info{version=\"0.1.0\"} 1\n"), std::string::npos);
}

TEST(RenderPrometheus, ParsesStrictlyWithEveryValue) {
  auto text = render_prometheus(two_rule_stats(), two_rule_tables(), "0.1.0");
  ASSERT_TRUE(text.ok()) << text.error().message;
  std::string error;
  auto parsed = parse_prometheus(*text, &error);
  ASSERT_TRUE(parsed.has_value()) << error << "\n" << *text;
  const PromText& p = *parsed;
  EXPECT_EQ(p.value("sluice_generation"), 7);
  EXPECT_EQ(p.value("sluice_listeners"), 2);
  EXPECT_EQ(p.value("sluice_listeners_paused"), 1);
  EXPECT_EQ(p.value("sluice_tcp_connections"), 3);
  EXPECT_EQ(p.value("sluice_tcp_connections_limit"), 4096);
  EXPECT_EQ(p.value("sluice_udp_flows"), 1);
  EXPECT_EQ(p.value("sluice_udp_flows_limit"), 8192);
  EXPECT_EQ(p.value("sluice_audit_lines_lost_total"), 2);
  EXPECT_EQ(p.value("sluice_log_lines_dropped_total"), 5);
  EXPECT_EQ(p.value("sluice_connection_log"), 1);
  EXPECT_EQ(p.value("sluice_target_exited"), 1);
  EXPECT_EQ(p.value("sluice_commits_total", {{"outcome", "applied"}}), 7);
  EXPECT_EQ(p.value("sluice_commits_total", {{"outcome", "rejected"}}), 2);
  EXPECT_EQ(p.value("sluice_commits_total", {{"outcome", "dry_run"}}), 1);
  EXPECT_EQ(p.value("sluice_commits_total", {{"outcome", "stale"}}), 0);
  EXPECT_EQ(p.value("sluice_rule_tcp_connections_accepted_total", {{"ports", "8080"}}), 10);
  EXPECT_EQ(p.value("sluice_rule_tcp_connections", {{"ports", "8080"}}), 3);
  EXPECT_EQ(p.value("sluice_rule_tcp_connect_failures_total", {{"ports", "8080"}}), 1);
  EXPECT_EQ(p.value("sluice_rule_udp_flows", {{"ports", "53-54"}}), 1);
  EXPECT_EQ(p.value("sluice_rule_udp_flows_created_total", {{"ports", "53-54"}}), 5);
  EXPECT_EQ(p.value("sluice_rule_udp_datagrams_total", {{"direction", "to_client"}}), 6);
  EXPECT_EQ(p.value("sluice_rule_udp_datagrams_dropped_total"), 1);
  EXPECT_EQ(p.value("sluice_rule_udp_target_errors_total", {{"ports", "53-54"}}), 2);
  EXPECT_EQ(p.value("sluice_rule_bytes_total", {{"proto", "udp"}, {"direction", "to_client"}}),
            600);
  // TCP families carry no UDP rule, and the other way round.
  EXPECT_FALSE(p.value("sluice_rule_tcp_connections", {{"proto", "udp"}}).has_value());
  EXPECT_FALSE(p.value("sluice_rule_udp_flows", {{"proto", "tcp"}}).has_value());
  // No auto-scan rule: no family for it at all.
  EXPECT_EQ(p.types.count("sluice_rule_scan_listening_ports"), 0u);
  // Every family has its help, and every counter ends in _total (the parser checks).
  for (const auto& [name, type] : p.types) EXPECT_EQ(p.helps.count(name), 1u) << name;
}

/// The whole text of the file at `path` under the source tree; "" when it
/// cannot be read.
std::string source_file(const std::string& path) {
  std::ifstream in(std::string(SLUICE_SOURCE_DIR) + "/" + path);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// Operators look a family up in sluicectl(1) and in OPERATIONS.md; a family
// the formatter gained without a word there is one nobody alerts on.
TEST(RenderPrometheus, EveryFamilyIsInTheManPageAndTheOperationsGuide) {
  control::Stats st = two_rule_stats();
  control::PendingConfirm pending;
  pending.generation = 8;
  pending.rollback_generation = 7;
  pending.deadline_unix_millis = 1700000000000;
  st.pending_confirm = pending;
  st.rules[1].scan_active = std::vector<control::PortRange>{{53, 53}};
  auto text = render_prometheus(st, two_rule_tables(), "0.1.0");
  ASSERT_TRUE(text.ok()) << text.error().message;
  std::string error;
  auto parsed = parse_prometheus(*text, &error);
  ASSERT_TRUE(parsed.has_value()) << error;
  const std::string man = source_file("docs/man/sluicectl.1");
  const std::string ops = source_file("docs/OPERATIONS.md");
  ASSERT_FALSE(man.empty());
  ASSERT_FALSE(ops.empty());
  // Every family the formatter can emit with these stats, the optional ones too.
  EXPECT_EQ(parsed->types.count("sluice_confirm_deadline_timestamp_seconds"), 1u);
  EXPECT_EQ(parsed->types.count("sluice_rule_scan_listening_ports"), 1u);
  for (const auto& [name, type] : parsed->types) {
    // A name is there when no longer name continues it (sluice_rule_udp_flows
    // inside sluice_rule_udp_flows_created_total does not count).
    auto named = [&name](const std::string& doc) {
      for (size_t at = doc.find(name); at != std::string::npos; at = doc.find(name, at + 1)) {
        const size_t end = at + name.size();
        if (end == doc.size() ||
            !(std::isalnum(static_cast<unsigned char>(doc[end])) || doc[end] == '_')) {
          return true;
        }
      }
      return false;
    };
    EXPECT_TRUE(named(man)) << name << " is not in docs/man/sluicectl.1 (--prometheus)";
    EXPECT_TRUE(named(ops)) << name << " is not in docs/OPERATIONS.md";
  }
}

TEST(RenderPrometheus, EmptyTablesStillParse) {
  control::Stats st;
  auto text = render_prometheus(st, TableSet{}, "v");
  ASSERT_TRUE(text.ok());
  std::string error;
  auto parsed = parse_prometheus(*text, &error);
  ASSERT_TRUE(parsed.has_value()) << error << "\n" << *text;
  EXPECT_EQ(parsed->value("sluice_generation"), 0);
  EXPECT_EQ(parsed->types.count("sluice_rule_bytes_total"), 0u);
}

TEST(RenderPrometheus, HostileVersionAndIfnameStayOneLine) {
  control::Stats st = two_rule_stats();
  st.rules.resize(1);
  TableSet tables = make({spec('t', "127.0.0.1%eth0/8080:80")});
  tables.of(Pif::kHost).rules[0].ifname = "e\"t\\h\n";  // as a hostile server might send
  auto text = render_prometheus(st, tables, "1.0\"}\nsluice_generation 99");
  ASSERT_TRUE(text.ok());
  std::string error;
  auto parsed = parse_prometheus(*text, &error);
  ASSERT_TRUE(parsed.has_value()) << error << "\n" << *text;
  EXPECT_EQ(parsed->value("sluice_generation"), 7);
  EXPECT_EQ(parsed->value("sluice_rule_tcp_connections", {{"ifname", "e\"t\\h\n"}}), 3);
  EXPECT_EQ(parsed->value("sluice_build_info", {{"version", "1.0\"}\\x0asluice_generation 99"}}),
            1);
}

TEST(RenderPrometheus, ScanRuleCountsItsListeningPorts) {
  control::Stats st = two_rule_stats();
  st.rules.resize(1);
  st.rules[0].scan_active = std::vector<control::PortRange>{{22, 22}, {8000, 8009}};
  auto text = render_prometheus(st, make({spec('t', "127.0.0.1/8080:80")}), "v");
  ASSERT_TRUE(text.ok());
  std::string error;
  auto parsed = parse_prometheus(*text, &error);
  ASSERT_TRUE(parsed.has_value()) << error;
  EXPECT_EQ(parsed->value("sluice_rule_scan_listening_ports"), 11);
}

TEST(RenderPrometheus, RefusesCountersOfAnotherTable) {
  control::Stats st = two_rule_stats();
  // Rule 1 of HOST is UDP in the stats, but the tables hold one TCP rule.
  auto text = render_prometheus(st, make({spec('t', "8080")}), "v");
  ASSERT_FALSE(text.ok());
  EXPECT_NE(text.error().message.find("HOST rule 1 match no rule of the tables of generation 7"),
            std::string::npos)
      << text.error().message;
  // Proto mismatch at the same index.
  st.rules.resize(1);
  st.rules[0].proto = Proto::kUdp;
  EXPECT_FALSE(render_prometheus(st, make({spec('t', "8080")}), "v").ok());
}

TEST(PrometheusCheck, RefusesWhatTheFormatForbids) {
  std::string error;
  auto bad = [&](const std::string& text) { return !parse_prometheus(text, &error).has_value(); };
  EXPECT_TRUE(bad("# TYPE a_total counter\na_total 1"));  // no final line feed
  EXPECT_TRUE(bad("a 1\n"));                              // no TYPE
  EXPECT_TRUE(bad("# TYPE a counter\na 1\n"));            // counter without _total
  EXPECT_TRUE(bad("# TYPE a gauge\n# TYPE b gauge\na 1\nb 1\na{x=\"1\"} 2\n"));
  EXPECT_TRUE(bad("# TYPE a gauge\na{x=\"1\\t\"} 1\n"));  // unknown escape
  EXPECT_TRUE(bad("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n"));
  EXPECT_TRUE(bad("# TYPE a gauge\na 1 1700000000\n"));
  EXPECT_TRUE(bad("# TYPE a gauge\na one\n"));
  EXPECT_TRUE(bad("# TYPE a gauge\n\na 1\n"));
  EXPECT_TRUE(bad("# TYPE a gauge\na{__x=\"1\"} 1\n"));
  EXPECT_FALSE(bad("# HELP a h\n# TYPE a gauge\na{x=\"q\\\"\\\\\\n\"} 1.5\n")) << error;
}

}  // namespace
}  // namespace sluice
