// Rendering for sluicectl: the tables in pesto's listing format, the -s diff,
// commit results and history as text, and the same as JSON (--json). Text
// from the server (rule texts, messages, comments) is sanitised for a
// terminal, or escaped in JSON, so a hostile peer cannot inject control
// sequences or break the JSON.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/json.h"
#include "policy/validate.h"
#include "schema/codec.h"

namespace sluice {

/// Renders the state as text:
///   generation 3, digest 5d1c...e9
///   HOST
///       TCP [*]:22-80 => 32-90
///       UDP [0.0.0.0]:53 => 192.0.2.5:5353
///   SPLICE
///       (no rules)
/// Shows the pifs of the Hello, in its order, then any other pif that has
/// rules (none from a correct server), so that no rule is ever hidden.
std::string render_state(const control::State& state, const control::ServerHello& hello);

/// Returns the line a listing shows while a commit waits for confirmation:
///   "pending confirmation: generation 5 rolls back to the tables of
///    generation 4 at 2026-07-01T12:00:30.000Z (in 27 s) unless sluicectl
///    --confirm arrives (committed by uid 1000 pid 42)\n"
/// (render_confirm.cc).
std::string render_pending(const control::PendingConfirm& pending);

/// Writes "pendingConfirm": null, or an object with generation,
/// rollbackGeneration, deadline (ISO 8601 UTC), deadlineUnixMillis,
/// remainingMillis, pid and uid, into an open JSON object
/// (render_confirm.cc).
void pending_json(const std::optional<control::PendingConfirm>& pending, JsonWriter* w);

/// Renders the tables alone, as render_state does after its first line.
std::string render_tables(const TableSet& tables, const control::ServerHello& hello);

/// Renders the difference of two table sets as lines "- HOST TCP [*]:80 => 80"
/// (in `before`, not in `after`) and "+ HOST ..." (the reverse): per pif, the
/// multiset difference of rule texts, removals then additions, each in table
/// order. Returns "" when the tables render the same.
std::string render_diff(const TableSet& before, const TableSet& after,
                        const control::ServerHello& hello);

/// Renders -s: "before: " + the state, "after: digest HEX" + the tables, and
/// "diff:" with render_diff's lines (or "    (no change)").
std::string render_show(const control::State& before, const TableSet& after,
                        const control::ServerHello& hello);

/// Returns one line for a result without failures:
///   "applied: generation 4, kept 1, opened 2, closed 0, rebound 0; digest HEX"
///   "dry run: would keep 1, open 2, close 0, rebind 0; nothing changed"
/// A rebound port needs no note: it never stops listening.
std::string render_commit_summary(const control::CommitResult& result);

/// Writes one failure as a JSON object (pif, rule, text, port, errno,
/// errnoName, kind, message, ...) into `w`, as a commit's --json does.
void failure_json(const control::Failure& f, JsonWriter* w);

/// Returns one line per failure, "KIND: MESSAGE" (kind as failure_kind_name),
/// each sanitised; the caller prefixes "sluicectl: ". A run of failures of
/// consecutive ports of one rule that say the same but for the port is one
/// line: the first one's, then "; the same for ports A-B (N ports in all)".
std::vector<std::string> render_failures(const std::vector<control::Failure>& failures);

/// Formats milliseconds since the Unix epoch as ISO 8601 UTC with
/// milliseconds, "2026-07-01T12:00:00.123Z". Pure arithmetic: it reads no
/// time zone file (the client runs under seccomp without open).
std::string format_utc_millis(int64_t unix_millis);

/// Renders history entries as text, oldest first as given: one line per
/// entry (sequence, time, outcome, pid/uid/gid, generations, counts,
/// duration, comment), then its rule lines indented, "+ " added and "- "
/// removed. "(no commits yet)" when empty.
std::string render_history(const control::History& history);

/// Returns the --json listing: one object
///   {"generation":N,"digest":"HEX","pifs":[{"name":"HOST","caps":[...],
///    "rules":[{"proto":"tcp","listen":"*","ifname":null,"first":P,"last":P,
///              "to":P,"target":null,"weak":false,"scan":false,"text":"..."}]}]}
/// "caps" lists the server's capabilities that are on (IPv4, IPv6, TCP, UDP,
/// SCAN, IFNAME); "listen" is "*" for dual-stack, else the address;
/// "target" is null for the default target.
std::string render_state_json(const control::State& state, const control::ServerHello& hello);

/// Returns the --json report of an edit:
///   {"before":<state>,"after":<tables, "generation":null, "digest" computed
///    locally>,"result":{"applied":B,"dryRun":B,"unchanged":B,"generation":N,
///    "digest":"HEX","kept":N,"opened":N,"closed":N,"rebound":N,
///    "durationMicros":N,"failures":[{"pif":"HOST","rule":I|null,
///    "text":"..."|null,"port":P|null,"errno":N|null,"errnoName":"..."|null,
///    "kind":"bind-failed","message":"..."}]}}
/// `unchanged` says the edit left the tables as they were and nothing was sent.
std::string render_edit_json(const control::State& before, const TableSet& after,
                             const control::CommitResult& result, const control::ServerHello& hello,
                             bool unchanged);

/// Returns --history --json: an array of objects with the fields of
/// HistoryEntry in camelCase, plus "time" (format_utc_millis).
std::string render_history_json(const control::History& history);

/// TCP connections and UDP flows open under rules no longer in force: a
/// commit removed or changed their rule (a new target is a new rule), and
/// they keep the rule they started under until they end, counted in the
/// totals but in no rule of the tables. The totals less the rules' own
/// counts; 0 when the rules count more (never, from one reply).
struct OldRuleCounts {
  uint64_t connections = 0;
  uint64_t flows = 0;
};

/// Returns the OldRuleCounts of `stats`. (render_stats.cc)
OldRuleCounts old_rule_counts(const control::Stats& stats);

/// Renders --stats as text: a summary line (generation, uptime, listening
/// sockets and how many are paused at a limit, connections and flows against
/// their limits), then per pif each rule in listing format with its counters
/// on the next line (connections for TCP, flows and datagrams for UDP, bytes
/// for both). Rule texts are sanitised. (render_stats.cc)
std::string render_stats(const control::Stats& stats);

/// Renders --stats --json: one object with the summary fields and "rules", an
/// array of objects with every RuleStats field in camelCase, "pif" and
/// "proto" as names. (render_stats.cc)
std::string render_stats_json(const control::Stats& stats);

}  // namespace sluice
