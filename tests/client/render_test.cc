// Rendering: the listing format (checked by the integration tests too), the
// -s view and its +/- diff, commit summaries and failures, history, and the
// exact JSON shapes, parsed back with a strict reader.
#include <gtest/gtest.h>

#include <cerrno>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "base/strings.h"
#include "client/render.h"
#include "policy/validate.h"
#include "schema/rules/table_edit.h"
#include "tests/client/edit_fixture.h"
#include "tests/json_check.h"

namespace sluice {
namespace {

using test::JsonValue;
using test::parse_json;

/// A Hello serving HOST only (as the worker does today), all capabilities on.
control::ServerHello host_hello() {
  control::ServerHello hello;
  hello.pifs = {{Pif::kHost, "HOST"}};
  hello.ephemeral_first = 32768;
  hello.ephemeral_last = 60999;
  return hello;
}

/// A Hello serving both tables.
control::ServerHello both_hello() {
  control::ServerHello hello = host_hello();
  hello.pifs.push_back({Pif::kSplice, "SPLICE"});
  return hello;
}

/// A state of generation `gen` over `tables`, with its real digest.
control::State state_of(uint64_t gen, const TableSet& tables) {
  control::State s;
  s.generation = gen;
  s.tables = tables;
  s.digest = control::digest_tables(tables);
  return s;
}

TEST(RenderListing, PestoFormatGroupedByPif) {
  control::State s = state_of(3, make({spec('t', "127.0.0.1/18080:18000"), spec('t', "22-80:32-90"),
                                       spec('u', "0.0.0.0/53:192.0.2.5/5353")}));
  EXPECT_EQ(render_state(s, both_hello()), "generation 3, digest " + to_hex(s.digest) +
                                               "\n"
                                               "HOST\n"
                                               "    TCP [127.0.0.1]:18080 => 18000\n"
                                               "    TCP [*]:22-80 => 32-90\n"
                                               "    UDP [0.0.0.0]:53 => 192.0.2.5:5353\n"
                                               "SPLICE\n"
                                               "    (no rules)\n");
}

TEST(RenderListing, PifsOutsideTheHelloAreShownWhenTheyHaveRules) {
  TableSet t = make({spec('T', "3000")});
  EXPECT_EQ(render_tables(t, host_hello()),
            "HOST\n    (no rules)\nSPLICE\n    TCP [*]%lo:3000 => 3000\n");
  EXPECT_EQ(render_tables(TableSet{}, host_hello()), "HOST\n    (no rules)\n");
}

TEST(RenderDiff, MultisetDifferencePerPifInTableOrder) {
  TableSet before = make({spec('t', "80"), spec('t', "22"), spec('T', "3000")});
  TableSet after =
      make({spec('t', "22"), spec('t', "8080:80"), spec('t', "443"), spec('T', "3001")});
  EXPECT_EQ(render_diff(before, after, both_hello()),
            "- HOST TCP [*]:80 => 80\n"
            "+ HOST TCP [*]:8080 => 80\n"
            "+ HOST TCP [*]:443 => 443\n"
            "- SPLICE TCP [*]%lo:3000 => 3000\n"
            "+ SPLICE TCP [*]%lo:3001 => 3001\n");
  EXPECT_EQ(render_diff(before, before, both_hello()), "");
}

TEST(RenderDiff, RepeatedRulesCountOnce) {
  // A table with the same text twice (invalid, but rendering must not care).
  TableSet before = make({spec('t', "22")});
  before.of(Pif::kHost).rules.push_back(before.of(Pif::kHost).rules[0]);
  TableSet after = make({spec('t', "22")});
  EXPECT_EQ(render_diff(before, after, host_hello()), "- HOST TCP [*]:22 => 22\n");
  EXPECT_EQ(render_diff(after, before, host_hello()), "+ HOST TCP [*]:22 => 22\n");
}

TEST(RenderShow, BeforeAfterAndDiff) {
  control::State before = state_of(7, make({spec('t', "80")}));
  TableSet after = make({spec('t', "8080:80")});
  EXPECT_EQ(render_show(before, after, host_hello()), "before: generation 7, digest " +
                                                          to_hex(before.digest) +
                                                          "\nHOST\n    TCP [*]:80 => 80\n"
                                                          "after: digest " +
                                                          to_hex(control::digest_tables(after)) +
                                                          "\nHOST\n    TCP [*]:8080 => 80\n"
                                                          "diff:\n"
                                                          "- HOST TCP [*]:80 => 80\n"
                                                          "+ HOST TCP [*]:8080 => 80\n");
  EXPECT_NE(render_show(before, before.tables, host_hello()).find("diff:\n    (no change)\n"),
            std::string::npos);
}

TEST(RenderResult, Summaries) {
  control::CommitResult r;
  r.applied = true;
  r.generation = 4;
  r.kept = 1;
  r.opened = 2;
  r.digest[0] = 0xab;
  EXPECT_EQ(
      render_commit_summary(r),
      "applied: generation 4, kept 1, opened 2, closed 0, rebound 0; digest " + to_hex(r.digest));
  r.applied = false;
  r.dry_run = true;
  r.closed = 3;
  r.rebound = 1;
  EXPECT_EQ(render_commit_summary(r),
            "dry run: would keep 1, open 2, close 3, rebind 1; nothing changed");
}

TEST(RenderResult, FailuresAreKindAndSanitisedMessage) {
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.message = "port 80: EADDRINUSE\x1b[2J";
  control::Failure g;
  g.kind = control::FailureKind::kStale;
  g.message = "stale";
  EXPECT_EQ(render_failures({f, g}),
            (std::vector<std::string>{"bind-failed: port 80: EADDRINUSE\\x1b[2J",
                                      "stale-generation: stale"}));
}

// A range below the privileged port limit once printed one line per port
// (1,023 for -t 1-1023): consecutive ports of one rule that fail for the same
// reason are one line now. Another rule, another reason, a gap in the ports
// or a message that differs otherwise each start a line of their own.
TEST(RenderResult, ConsecutivePortsFailingForOneReasonAreOneLine) {
  auto denied = [](int32_t rule, uint16_t port) {
    control::Failure f;
    f.kind = control::FailureKind::kPolicyDenied;
    f.pif = Pif::kHost;
    f.rule = rule;
    f.port = port;
    f.err = EACCES;
    f.message = "HOST rule " + std::to_string(rule) + " (TCP [*]:1-1023 => 1-1023), port " +
                std::to_string(port) + ": port " + std::to_string(port) +
                " is below net.ipv4.ip_unprivileged_port_start (1024)";
    return f;
  };
  std::vector<control::Failure> failures;
  for (uint16_t port = 1; port <= 1023; ++port) failures.push_back(denied(0, port));
  failures.push_back(denied(1, 1024));  // another rule
  failures.push_back(denied(1, 1026));  // a gap
  failures.push_back(denied(1, 1027));
  control::Failure other = denied(1, 1028);
  other.message += "; and something else";  // another reason
  failures.push_back(other);
  EXPECT_EQ(render_failures(failures),
            (std::vector<std::string>{
                "policy-denied: HOST rule 0 (TCP [*]:1-1023 => 1-1023), port 1: port 1 is below "
                "net.ipv4.ip_unprivileged_port_start (1024); the same for ports 2-1023 (1023 "
                "ports in all)",
                "policy-denied: HOST rule 1 (TCP [*]:1-1023 => 1-1023), port 1024: port 1024 is "
                "below net.ipv4.ip_unprivileged_port_start (1024)",
                "policy-denied: HOST rule 1 (TCP [*]:1-1023 => 1-1023), port 1026: port 1026 is "
                "below net.ipv4.ip_unprivileged_port_start (1024); the same for port 1027 (2 "
                "ports in all)",
                "policy-denied: HOST rule 1 (TCP [*]:1-1023 => 1-1023), port 1028: port 1028 is "
                "below net.ipv4.ip_unprivileged_port_start (1024); and something else"}));
}

TEST(RenderResult, ValidatorFailuresNameTheirRule) {
  TableSet t = make({spec('t', "80")});
  t.of(Pif::kHost).rules.push_back(t.of(Pif::kHost).rules[0]);
  auto failures = validate_tables(t, ServerCaps{});
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].kind, control::FailureKind::kConflict);
  EXPECT_EQ(failures[0].pif, Pif::kHost);
  EXPECT_EQ(failures[0].rule, 1);
  EXPECT_EQ(failures[0].other_rule, 0);
  EXPECT_EQ(failures[0].text, "TCP [*]:80 => 80");
  std::vector<std::string> lines = render_failures(failures);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("is the same rule as rule 0"), std::string::npos) << lines[0];
  // A failure of a whole table names no rule.
  TableSet big;
  big.of(Pif::kHost).rules.assign(kMaxRulesPerTable + 1, t.of(Pif::kHost).rules[0]);
  auto f = validate_tables(big, ServerCaps{});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].kind, control::FailureKind::kCapacity);
  EXPECT_EQ(f[0].rule, -1);
  EXPECT_EQ(f[0].text, "");
}

TEST(RenderTime, Iso8601Utc) {
  EXPECT_EQ(format_utc_millis(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_utc_millis(1700000000123), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(format_utc_millis(951782400000), "2000-02-29T00:00:00.000Z");
  EXPECT_EQ(format_utc_millis(-1), "1969-12-31T23:59:59.999Z");
  // Against gmtime_r over a spread of times, 1900 to 2200.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 2000; ++i) {
    int64_t ms = static_cast<int64_t>(rng() % 9467280000000ull) - 2208988800000ll;
    time_t secs = static_cast<time_t>(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    ASSERT_NE(gmtime_r(&secs, &tm), nullptr);
    char want[64];
    std::snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(((ms % 1000) + 1000) % 1000));
    EXPECT_EQ(format_utc_millis(ms), want) << ms;
  }
}

/// A history of two entries.
control::History sample_history() {
  control::HistoryEntry a;
  a.sequence = 1;
  a.unix_millis = 1700000000123;
  a.pid = 42;
  a.uid = 1000;
  a.gid = 100;
  a.comment = "open \"web\"";
  a.outcome = control::Outcome::kApplied;
  a.generation_before = 1;
  a.generation_after = 2;
  a.added = {"HOST TCP [*]:443 => 443"};
  a.removed = {"HOST TCP [*]:80 => 80"};
  a.kept = 1;
  a.opened = 1;
  a.closed = 1;
  a.duration_micros = 1500;
  control::HistoryEntry b = a;
  b.sequence = 2;
  b.comment = "";
  b.outcome = control::Outcome::kRejected;
  b.generation_before = b.generation_after = 2;
  b.added = {"HOST TCP [*]:22 => 22"};
  b.removed = {};
  b.failures = 1;
  return control::History{{a, b}};
}

TEST(RenderHistory, OneLinePerEntryThenItsRules) {
  EXPECT_EQ(render_history(control::History{}), "(no commits yet)\n");
  EXPECT_EQ(render_history(sample_history()),
            "#1 2023-11-14T22:13:20.123Z applied pid 42 uid 1000 gid 100 generation 1->2, kept "
            "1, opened 1, closed 1, rebound 0, failures 0, 1.5 ms: \"open \"web\"\"\n"
            "    + HOST TCP [*]:443 => 443\n"
            "    - HOST TCP [*]:80 => 80\n"
            "#2 2023-11-14T22:13:20.123Z rejected pid 42 uid 1000 gid 100 generation 2->2, kept "
            "1, opened 1, closed 1, rebound 0, failures 1, 1.5 ms\n"
            "    + HOST TCP [*]:22 => 22\n");
}

TEST(RenderHistory, Json) {
  std::string text = render_history_json(sample_history());
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  ASSERT_EQ(v->type, JsonValue::Type::kArray);
  ASSERT_EQ(v->array.size(), 2u);
  const JsonValue& e = v->array[0];
  EXPECT_EQ(e.keys, (std::vector<std::string>{
                        "sequence", "time", "unixMillis", "outcome", "pid", "uid", "gid", "comment",
                        "generationBefore", "generationAfter", "added", "removed", "kept", "opened",
                        "closed", "rebound", "failures", "durationMicros"}));
  EXPECT_EQ(e.get("time")->string, "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(e.get("comment")->string, "open \"web\"");
  EXPECT_EQ(e.get("added")->array[0].string, "HOST TCP [*]:443 => 443");
  EXPECT_EQ(v->array[1].get("outcome")->string, "rejected");
  EXPECT_EQ(render_history_json(control::History{}), "[]\n");
}

/// Counters of a TCP and a UDP rule, as a server would report them.
control::Stats sample_stats() {
  control::Stats st;
  st.generation = 4;
  st.uptime_millis = 3723000;  // 1h02m03s
  st.listeners = 3;
  st.paused_listeners = 1;
  st.connections_active = 2;
  st.connection_limit = 4096;
  st.flows_active = 1;
  st.flow_limit = 8192;
  st.pipe_size = 256 * 1024;
  st.connect_timeout_seconds = 10;
  st.udp_idle_timeout_seconds = 180;
  st.connection_limit_per_source = 1024;
  st.connection_share = 2048;
  st.connection_reserve = 1024;
  st.sources_active = 1;
  control::RuleStats tcp;
  tcp.text = "TCP [127.0.0.1]:8080 => 8000";
  tcp.accepted = 10;
  tcp.active = 2;
  tcp.failed = 1;
  tcp.bytes_to_target = 1536;
  tcp.bytes_to_client = 3u << 20;
  control::RuleStats udp;
  udp.rule = 1;
  udp.proto = Proto::kUdp;
  udp.text = "UDP [*]:53 => 5353\x1b[31m";  // a hostile text is sanitised
  udp.flows_active = 1;
  udp.flows_created = 5;
  udp.datagrams_to_target = 7;
  udp.datagrams_to_client = 6;
  udp.dropped = 1;
  udp.bytes_to_target = 700;
  udp.bytes_to_client = 600;
  st.rules = {tcp, udp};
  return st;
}

TEST(RenderStats, TextShowsEachRuleWithItsCounters) {
  control::Stats st = sample_stats();
  std::string text = render_stats(st);
  EXPECT_EQ(text,
            "generation 4, up 1h02m; 3 listening sockets (1 paused at a limit); TCP connections "
            "2 of 4096; UDP flows 1 of 8192\n"
            "pipes 256.0 KiB; connect timeout 10 s; UDP idle timeout 180 s\n"
            "TCP limits: fair share 2048 per rule, 1024 kept for the others; no per-rule cap; "
            "1024 per source (1 source now); idle timeout off\n"
            "HOST\n"
            "    TCP [127.0.0.1]:8080 => 8000\n"
            "        connections 10 accepted, 2 active, 1 failed; 1.5 KiB to target, 3.0 MiB to "
            "client\n"
            "    UDP [*]:53 => 5353\\x1b[31m\n"
            "        flows 1 active, 5 created; datagrams 7 to target, 6 to client, 1 dropped; "
            "700 B to target, 600 B to client\n");
  // A UDP target that answers with ICMP errors shows; none shows nothing.
  st.rules[1].target_errors = 1;
  EXPECT_NE(render_stats(st).find("6 to client, 1 dropped; 1 target error (port closed or "
                                  "unreachable); 700 B to target"),
            std::string::npos)
      << render_stats(st);
  st.rules[1].target_errors = 3;
  EXPECT_NE(render_stats(st).find("; 3 target errors ("), std::string::npos) << render_stats(st);
  control::Stats empty;
  EXPECT_NE(render_stats(empty).find("(no rules)"), std::string::npos);
  control::Stats lossy = sample_stats();
  lossy.audit_lines_lost = 1;
  lossy.audit_bytes_waiting = 2048;
  EXPECT_NE(render_stats(lossy).find("audit: 1 line lost, 2.0 KiB waiting for the sink; "),
            std::string::npos)
      << render_stats(lossy);
  EXPECT_EQ(render_stats(lossy).find("connection log"), std::string::npos);
  EXPECT_EQ(render_stats(lossy).find("log: "), std::string::npos);
  EXPECT_EQ(render_stats(lossy).find("target namespace"), std::string::npos);
  lossy.target_exited = true;
  EXPECT_NE(render_stats(lossy).find("target namespace: the process sluiced --netns named has "
                                     "exited (the container stopped); connections through HOST "
                                     "rules are refused there. If the container started again, "
                                     "start sluiced again with its new PID\n"),
            std::string::npos)
      << render_stats(lossy);
  lossy.connection_log = true;
  lossy.log_lines_dropped = 12;
  EXPECT_NE(render_stats(lossy).find("connection log: on (--log-connections)\n"), std::string::npos)
      << render_stats(lossy);
  EXPECT_NE(render_stats(lossy).find("log: 12 lines dropped; check what reads sluiced's standard "
                                     "error"),
            std::string::npos)
      << render_stats(lossy);
}

TEST(RenderStats, TextShowsTheLimitsAndWhatTheyDidToEachRule) {
  control::Stats st = sample_stats();
  st.connection_limit_per_rule = 100;
  st.connection_limit_per_source = 0;
  st.connection_reserve = 0;
  st.sources_active = 3;
  st.idle_timeout_seconds = 300;
  st.rules[0].refused_source = 3;
  st.rules[0].closed_idle = 2;
  st.rules[0].paused_rule_limit = 5;
  st.rules[0].paused_global_limit = 1;
  std::string text = render_stats(st);
  EXPECT_NE(text.find("TCP limits: fair share 2048 per rule; 100 per rule at most; no per-source "
                      "limit (3 sources now); idle timeout 300 s\n"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("connections 10 accepted, 2 active, 1 failed, 3 reset at the source limit, "
                "2 closed idle, paused 5x at the rule limit, paused 1x at the global limit; "),
      std::string::npos)
      << text;
}

TEST(RenderStats, JsonHasEveryCounter) {
  std::string text = render_stats_json(sample_stats());
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  EXPECT_EQ(v->keys, (std::vector<std::string>{"generation",
                                               "uptimeMillis",
                                               "listeners",
                                               "pausedListeners",
                                               "connectionsActive",
                                               "connectionLimit",
                                               "flowsActive",
                                               "flowLimit",
                                               "connectionsOfOldRules",
                                               "flowsOfOldRules",
                                               "pipeSize",
                                               "connectTimeoutSeconds",
                                               "udpIdleTimeoutSeconds",
                                               "auditLinesLost",
                                               "auditBytesWaiting",
                                               "logLinesDropped",
                                               "connectionLog",
                                               "targetExited",
                                               "threadsAccepted",
                                               "idleTimeoutSeconds",
                                               "connectionLimitPerRule",
                                               "connectionLimitPerSource",
                                               "connectionShare",
                                               "connectionReserve",
                                               "sourcesActive",
                                               "commitsApplied",
                                               "commitsRejected",
                                               "commitsDryRun",
                                               "commitsStale",
                                               "rollbacks",
                                               "pendingConfirm",
                                               "policyReloads",
                                               "policyFailures",
                                               "rules"}));
  const JsonValue& rules = *v->get("rules");
  ASSERT_EQ(rules.array.size(), 2u);
  EXPECT_EQ(rules.array[0].keys, (std::vector<std::string>{"pif",
                                                           "rule",
                                                           "proto",
                                                           "text",
                                                           "accepted",
                                                           "active",
                                                           "failed",
                                                           "bytesToTarget",
                                                           "bytesToClient",
                                                           "flowsActive",
                                                           "flowsCreated",
                                                           "datagramsToTarget",
                                                           "datagramsToClient",
                                                           "dropped",
                                                           "loops",
                                                           "pausedAtRuleLimit",
                                                           "pausedAtGlobalLimit",
                                                           "refusedBySource",
                                                           "closedIdle",
                                                           "targetErrors",
                                                           "scanFailing",
                                                           "scanActive"}));
  EXPECT_EQ(rules.array[0].get("bytesToClient")->integer(), 3 << 20);
  EXPECT_EQ(rules.array[1].get("proto")->string, "udp");  // lower case, as in the listing
  EXPECT_EQ(rules.array[1].get("text")->string, "UDP [*]:53 => 5353\x1b[31m");
  EXPECT_EQ(rules.array[1].get("dropped")->integer(), 1);
}

TEST(RenderStats, DataThreadsShowWhatEachAccepted) {
  control::Stats st = sample_stats();
  st.threads_accepted = {1};  // one thread: nothing to compare, no line
  EXPECT_EQ(render_stats(st).find("data-path threads"), std::string::npos);
  st.threads_accepted = {1200, 1187};
  EXPECT_NE(render_stats(st).find("data-path threads: 2; TCP connections each served: 1200 1187\n"),
            std::string::npos)
      << render_stats(st);
  auto v = parse_json(render_stats_json(st));
  ASSERT_TRUE(v.has_value());
  const JsonValue* list = v->get("threadsAccepted");
  ASSERT_NE(list, nullptr);
  ASSERT_EQ(list->array.size(), 2u);
  EXPECT_EQ(list->array[1].integer(), 1187);
}

TEST(RenderStats, PolicyReloadShowsWhatNoLongerPasses) {
  control::Stats st = sample_stats();
  EXPECT_EQ(render_stats(st).find("policy:"), std::string::npos);  // no reload: nothing said
  st.policy_reloads = 1;
  EXPECT_NE(render_stats(st).find("policy: reloaded 1 time; every rule in force passes it\n"),
            std::string::npos)
      << render_stats(st);
  control::Failure f;
  f.kind = control::FailureKind::kPolicyDenied;
  f.rule = 0;
  f.text = "TCP [127.0.0.1]:80 => 8000";
  f.port = 80;
  f.err = 13;
  f.message = "HOST rule 0 (TCP [127.0.0.1]:80 => 8000), port 80: in force, but \x1b";
  st.policy_reloads = 2;
  st.policy_failures = {f};
  const std::string text = render_stats(st);
  EXPECT_NE(text.find("policy: reloaded 2 times; 1 rule in force no longer passes"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    policy-denied: HOST rule 0"), std::string::npos) << text;
  EXPECT_EQ(text.find('\x1b'), std::string::npos) << "server text is sanitised";
  auto v = parse_json(render_stats_json(st));
  ASSERT_TRUE(v.has_value());
  const JsonValue& failures = *v->get("policyFailures");
  ASSERT_EQ(failures.array.size(), 1u);
  EXPECT_EQ(failures.array[0].get("port")->number, "80");
}

TEST(RenderStats, ScanRulesShowThePortsListeningNow) {
  control::Stats st = sample_stats();
  control::RuleStats idle, busy;
  idle.rule = 2;
  idle.text = "TCP [*]:8000-8010 => 8000-8010 (auto-scan)";
  idle.scan_active = std::vector<control::PortRange>{};
  busy.rule = 3;
  busy.proto = Proto::kUdp;
  busy.text = "UDP [*]:1-1000 => 1-1000 (auto-scan)";
  busy.scan_active = std::vector<control::PortRange>{{22, 22}, {53, 55}};
  st.rules.push_back(idle);
  st.rules.push_back(busy);
  std::string text = render_stats(st);
  EXPECT_NE(text.find("    TCP [*]:8000-8010 => 8000-8010 (auto-scan)\n"
                      "        auto-scan: listening on no port now: none of its ports is bound "
                      "in the target namespace, or those bound could not be listened on "
                      "(sluiced's log says why)\n        connections 0 accepted"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("    UDP [*]:1-1000 => 1-1000 (auto-scan)\n"
                      "        auto-scan: listening on 22, 53-55\n        flows 0 active"),
            std::string::npos)
      << text;
  // Rules without auto-scan say nothing about it.
  EXPECT_EQ(text.find("auto-scan: "), text.find("auto-scan: listening on no port")) << text;

  // Thousands of runs: the first 32, then a count.
  control::RuleStats wide;
  wide.text = "TCP [*]:1-32767 => 1-32767 (best effort) (auto-scan)";
  wide.scan_active = std::vector<control::PortRange>{};
  for (uint16_t p = 1; p <= 200; p += 2) wide.scan_active->push_back({p, p});
  control::Stats many;
  many.rules = {wide};
  std::string long_text = render_stats(many);
  EXPECT_NE(long_text.find(", 63, and 68 more runs (--json lists them)\n"), std::string::npos)
      << long_text;
}

TEST(RenderStats, JsonScanActiveIsNullOrTheRuns) {
  control::Stats st = sample_stats();
  control::RuleStats busy;
  busy.text = "TCP [*]:1-1000 => 1-1000 (auto-scan)";
  busy.scan_active = std::vector<control::PortRange>{{22, 22}, {53, 55}};
  control::RuleStats idle = busy;
  idle.scan_active = std::vector<control::PortRange>{};
  st.rules.push_back(busy);
  st.rules.push_back(idle);
  std::string text = render_stats_json(st);
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  const JsonValue& rules = *v->get("rules");
  ASSERT_EQ(rules.array.size(), 4u);
  EXPECT_TRUE(rules.array[0].get("scanActive")->is_null());
  const JsonValue& runs = *rules.array[2].get("scanActive");
  ASSERT_EQ(runs.array.size(), 2u);
  EXPECT_EQ(runs.array[0].keys, (std::vector<std::string>{"first", "last"}));
  EXPECT_EQ(runs.array[1].get("first")->integer(), 53);
  EXPECT_EQ(runs.array[1].get("last")->integer(), 55);
  EXPECT_EQ(rules.array[3].get("scanActive")->type, JsonValue::Type::kArray);
  EXPECT_TRUE(rules.array[3].get("scanActive")->array.empty());
}

TEST(RenderJson, StateHasTheExactShape) {
  control::State s = state_of(5, make({spec('t', "127.0.0.1/8080:80")}));
  control::ServerHello hello = host_hello();
  hello.caps.udp = false;
  hello.caps.scan = false;
  EXPECT_EQ(render_state_json(s, hello),
            "{\"generation\":5,\"digest\":\"" + to_hex(s.digest) +
                "\",\"pendingConfirm\":null,\"pifs\":[{\"name\":\"HOST\",\"caps\":[\"IPv4\","
                "\"IPv6\",\"TCP\",\"IFNAME\"],"
                "\"rules\":[{\"proto\":\"tcp\",\"listen\":\"127.0.0.1\",\"ifname\":null,"
                "\"first\":8080,\"last\":8080,\"to\":80,\"target\":null,\"weak\":false,"
                "\"scan\":false,\"text\":\"TCP [127.0.0.1]:8080 => 80\"}]}]}\n");
}

TEST(RenderJson, RuleFieldsParseBack) {
  control::State s = state_of(
      1,
      make({spec('t', "%eth0/22"), spec('u', "0.0.0.0/1000-1010:192.0.2.5/2000-2010"),
            spec('t', "[::1]/5000:[::2]/6000"), spec('t', "8000-8001,auto"), spec('T', "40000")}));
  std::string text = render_state_json(s, both_hello());
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  EXPECT_EQ(v->keys, (std::vector<std::string>{"generation", "digest", "pendingConfirm", "pifs"}));
  EXPECT_EQ(v->get("generation")->integer(), 1);
  EXPECT_EQ(v->get("digest")->string, to_hex(s.digest));
  const auto& pifs = v->get("pifs")->array;
  ASSERT_EQ(pifs.size(), 2u);
  EXPECT_EQ(pifs[0].get("name")->string, "HOST");
  EXPECT_EQ(pifs[0].get("caps")->array.size(), 6u);
  const auto& rules = pifs[0].get("rules")->array;
  ASSERT_EQ(rules.size(), 4u);
  EXPECT_EQ(rules[0].keys, (std::vector<std::string>{"proto", "listen", "ifname", "first", "last",
                                                     "to", "target", "weak", "scan", "text"}));
  EXPECT_EQ(rules[0].get("listen")->string, "*");
  EXPECT_EQ(rules[0].get("ifname")->string, "eth0");
  EXPECT_TRUE(rules[0].get("target")->is_null());
  EXPECT_EQ(rules[1].get("proto")->string, "udp");
  EXPECT_EQ(rules[1].get("listen")->string, "0.0.0.0");
  EXPECT_TRUE(rules[1].get("ifname")->is_null());
  EXPECT_EQ(rules[1].get("first")->integer(), 1000);
  EXPECT_EQ(rules[1].get("last")->integer(), 1010);
  EXPECT_EQ(rules[1].get("to")->integer(), 2000);
  EXPECT_EQ(rules[1].get("target")->string, "192.0.2.5");
  EXPECT_EQ(rules[1].get("text")->string, "UDP [0.0.0.0]:1000-1010 => 192.0.2.5:2000-2010");
  EXPECT_EQ(rules[2].get("listen")->string, "::1");
  EXPECT_EQ(rules[2].get("target")->string, "::2");
  EXPECT_TRUE(rules[3].get("scan")->boolean);
  EXPECT_FALSE(rules[3].get("weak")->boolean);
  EXPECT_EQ(pifs[1].get("rules")->array[0].get("ifname")->string, "lo");
}

TEST(RenderJson, HostileTextStaysInsideItsString) {
  TableSet t;
  Rule r;
  r.dual_stack = true;
  r.ifname = "e\"}],\n\x01\xff";
  r.first = r.last = r.to = 22;
  t.of(Pif::kHost).rules.push_back(r);
  std::string text = render_state_json(state_of(1, t), host_hello());
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  EXPECT_EQ(v->get("pifs")->array[0].get("rules")->array[0].get("ifname")->string,
            "e\"}],\n\x01\xc3\xbf");  // the invalid byte comes back as U+00FF
}

TEST(RenderJson, EditReportHasBeforeAfterAndResult) {
  control::State before = state_of(2, make({spec('t', "80")}));
  TableSet after = make({spec('t', "80"), spec('t', "443")});
  control::CommitResult r;
  r.applied = false;
  r.generation = 2;
  r.digest = before.digest;
  r.duration_micros = 77;
  control::Failure f;
  f.kind = control::FailureKind::kBindFailed;
  f.pif = Pif::kHost;
  f.rule = 1;
  f.text = "TCP [*]:443 => 443";
  f.port = 443;
  f.err = EADDRINUSE;
  f.message = "HOST rule 1 (TCP [*]:443 => 443), port 443: bind failed";
  control::Failure g;
  g.kind = control::FailureKind::kCapacity;
  g.message = "whole table";
  r.failures = {f, g};
  std::string text = render_edit_json(before, after, r, host_hello(), false);
  auto v = parse_json(text);
  ASSERT_TRUE(v.has_value()) << text;
  EXPECT_EQ(v->keys, (std::vector<std::string>{"before", "after", "result"}));
  EXPECT_EQ(v->get("before")->get("generation")->integer(), 2);
  EXPECT_EQ(v->get("before")->get("pifs")->array[0].get("rules")->array.size(), 1u);
  const JsonValue* a = v->get("after");
  EXPECT_TRUE(a->get("generation")->is_null());
  EXPECT_EQ(a->get("digest")->string, to_hex(control::digest_tables(after)));
  EXPECT_EQ(a->get("pifs")->array[0].get("rules")->array.size(), 2u);
  const JsonValue* res = v->get("result");
  EXPECT_EQ(res->keys, (std::vector<std::string>{"applied", "dryRun", "unchanged", "generation",
                                                 "digest", "kept", "opened", "closed", "rebound",
                                                 "durationMicros", "failures", "warnings"}));
  EXPECT_FALSE(res->get("applied")->boolean);
  EXPECT_FALSE(res->get("unchanged")->boolean);
  EXPECT_EQ(res->get("durationMicros")->integer(), 77);
  const auto& failures = res->get("failures")->array;
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0].keys, (std::vector<std::string>{"pif", "rule", "text", "port", "errno",
                                                        "errnoName", "kind", "message"}));
  EXPECT_EQ(failures[0].get("pif")->string, "HOST");
  EXPECT_EQ(failures[0].get("rule")->integer(), 1);
  EXPECT_EQ(failures[0].get("port")->integer(), 443);
  EXPECT_EQ(failures[0].get("errno")->integer(), EADDRINUSE);
  EXPECT_EQ(failures[0].get("errnoName")->string, "EADDRINUSE");
  EXPECT_EQ(failures[0].get("kind")->string, "bind-failed");
  EXPECT_EQ(failures[0].get("text")->string, "TCP [*]:443 => 443");
  for (const char* key : {"rule", "text", "port", "errno", "errnoName"}) {
    EXPECT_TRUE(failures[1].get(key)->is_null()) << key;
  }
  EXPECT_EQ(failures[1].get("kind")->string, "capacity");
}

TEST(RenderJson, UnchangedEdit) {
  control::State before = state_of(9, make({spec('t', "80")}));
  control::CommitResult r;
  r.generation = 9;
  r.digest = before.digest;
  auto v = parse_json(render_edit_json(before, before.tables, r, host_hello(), true));
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(v->get("result")->get("unchanged")->boolean);
  EXPECT_EQ(v->get("result")->get("digest")->string, v->get("after")->get("digest")->string);
}

}  // namespace
}  // namespace sluice
