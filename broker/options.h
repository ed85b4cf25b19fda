// sluiced's command line. The administrator's argv is the only input the broker
// parses besides its policy file; the rule specs in it are NOT parsed here:
// they go to sluice-worker unchanged, which parses them inside its sandbox.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "broker/restart_policy.h"
#include "schema/worker_args.h"

namespace sluice {

/// The rule option used when none of -t/-u/-T/-U is given: -t, forwarding
/// 127.0.0.1:8080 to 127.0.0.1:8000 (documented in --help).
inline constexpr char kDefaultRuleOption = 't';
inline constexpr const char* kDefaultRuleSpec = "127.0.0.1/8080:8000";

/// The options sluiced runs with.
struct BrokerOptions {
  std::string control_path;              // -c; empty: default_control_path()
  std::vector<WorkerRuleArg> rule_args;  // -t/-u/-T/-U SPEC, unparsed, in command-line order
  std::string policy_path;               // --policy; empty: the default bind policy
  std::string audit_log_path;            // --audit-log; empty: a dup of stderr
  bool debug = false;                    // -d
  bool quiet = false;                    // -q
  bool log_connections = false;          // --log-connections
  uint32_t udp_flows = 0;                // --udp-flows; 0: the worker's default
  uint32_t udp_idle_timeout_s = 0;       // --udp-idle-timeout; 0: the worker's default
  uint32_t max_connections = 0;          // --max-connections; 0: the worker's default
  uint32_t connect_timeout_s = 0;        // --connect-timeout; 0: the worker's default
  uint32_t pipe_size = 0;                // --pipe-size; 0: the worker's default
  uint32_t data_threads = 0;             // --data-threads; 0: the worker's default
  // These three take 0 (off), so "not given" is an empty optional.
  std::optional<uint32_t> max_connections_per_rule;    // --max-connections-per-rule
  std::optional<uint32_t> max_connections_per_source;  // --max-connections-per-source
  std::optional<uint32_t> idle_timeout_s;              // --idle-timeout
  std::string netns;             // --netns PATH|PID, or a trailing PID; empty: none
  std::string userns;            // --userns PATH (only with a target namespace)
  std::string pesto_path;        // --pesto-socket PATH; empty: no pesto endpoint
  std::string worker_user;       // --worker-user NAME|UID[:GID]; empty: broker/worker_user.h
  RestartLimit worker_restarts;  // --worker-restarts COUNT/SECONDS
};

/// What main() should do after parsing.
enum class OptionsAction { kRun, kHelp, kVersion };

struct ParsedOptions {
  OptionsAction action = OptionsAction::kRun;
  BrokerOptions options;
};

/// Parses argv with getopt_long (re-entrant: resets optind, so tests may call
/// it repeatedly). Fails with a usage message on an unknown option, a missing
/// argument, a repeated option (other than the rule options), a limit out of
/// its range (schema/broker_wire.h), -d with -q, or any
/// non-option argument; main() prints it and exits 2.
Result<ParsedOptions> parse_broker_options(int argc, char* const* argv);

/// Writes the --help text to `out`.
void print_usage(std::FILE* out);

/// Returns the start-up arguments of the worker (schema/worker_args.h) for
/// `options`: its -d/-q, the --policy path (for the worker's messages), the
/// limits given (the others keep the worker's defaults) and the rule options,
/// carried unparsed; the default rule option when none was given (then
/// *used_default is set). Never fails: every value was checked when parsed.
WorkerArgs worker_args(const BrokerOptions& options, bool* used_default);

/// Returns to_argv(worker_args(options, used_default)): the argv the worker
/// is exec'd with, argv[0] included.
std::vector<std::string> worker_argv(const BrokerOptions& options, bool* used_default);

}  // namespace sluice
