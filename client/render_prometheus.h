// sluicectl --stats --prometheus: the stats reply in the Prometheus text
// exposition format, version 0.0.4, for node_exporter's textfile collector
// (docs/OPERATIONS.md). Pure: built from one stats reply and the tables of the
// same generation (for the rules' labels), unit-tested in
// tests/client/render_prometheus_test.cc and checked with a real parser
// (promtool) by tests/integration/prometheus_test.cc.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"
#include "schema/codec.h"

namespace sluice {

/// The media type of what render_prometheus writes, for documentation and
/// for anyone serving the file over HTTP.
inline constexpr const char* kPrometheusContentType = "text/plain; version=0.0.4";

/// Escapes a label value for the text format: backslash, double quote and
/// line feed become \\, \" and \n. Bytes that are no printable ASCII (other
/// control characters, and anything >= 0x7f) become '?', so that a hostile
/// server's bytes can neither break the line nor make invalid UTF-8.
std::string prometheus_label_value(std::string_view value);

/// Renders `stats` in the text exposition format: every metric family with
/// its `# HELP` and `# TYPE` lines, its samples grouped under them, names
/// `sluice_*` in base units, counters ending in `_total`:
///   - the worker: generation, uptime, server version (sluice_build_info);
///   - listeners in force and paused at a limit; TCP connections and UDP
///     flows with their limits; pipe size and timeouts; the audit sink;
///   - commit attempts by outcome (applied, rejected, dry_run, stale);
///     automatic rollbacks; whether a commit waits for confirmation, and
///     while one does, its generation and deadline;
///   - per rule, with labels pif, proto, listen ("*" for dual-stack), ifname,
///     ports ("80" or "8000-8010") and target ("default", or the address
///     and the first target port): TCP connections accepted, active and
///     failed; UDP flows active and created, datagrams each way and dropped;
///     bytes each way; forwarding loops; for an auto-scan rule, the ports it
///     listens on now.
/// The labels come from `tables`, which must be the tables of
/// stats.generation (read in the same session). Fails, naming the rule, when
/// a rule of the stats is not in `tables` with the same protocol (the caller
/// reads both again).
Result<std::string> render_prometheus(const control::Stats& stats, const TableSet& tables,
                                      std::string_view server_version);

}  // namespace sluice
