// The worker's start-up arguments: the one message sluiced sends sluice-worker
// outside the broker channel, as its argv (the fds it inherits are in
// schema/broker_wire.h).
//
// sluiced fills a WorkerArgs from its own command line and execs the worker
// with to_argv(); the worker, inside its sandbox, turns its argv back into a
// WorkerArgs with parse_worker_args(). Both sides use the option words and the
// limits below, so nothing is spelled twice. The rule specs are carried as
// text: the broker never parses them, the worker does (client/spec_parser.h).
//
// The worker does not trust its argv more than it needs to: only sluiced
// starts it, but parse_worker_args() checks every word and every value against
// its range again, and refuses anything else with a one-line message.
//
// No Cap'n Proto here: this is part of sluice_model, which the broker links.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace sluice {

/// argv[0] of the worker, and the name of its binary next to sluiced.
inline constexpr const char* kWorkerProgram = "sluice-worker";

/// The option words of the worker's argv. Each one that takes a value is
/// followed by it as the next argv entry (never "--opt=value").
inline constexpr const char* kWorkerOptDebug = "-d";  // debug logging
inline constexpr const char* kWorkerOptQuiet = "-q";  // warnings and errors only
/// The worker was started inside sluiced's target network namespace
/// (--netns): HOST rules connect there, so their targets are not sluice's own.
inline constexpr const char* kWorkerOptTargetNetns = "--target-netns";
/// sluiced was given --pesto-socket: the worker serves pesto's protocol on
/// kWorkerFdPesto (schema/broker_wire.h); without it, that fd is /dev/null.
inline constexpr const char* kWorkerOptPesto = "--pesto";
/// sluiced was given --log-connections: a line for every TCP connection and
/// UDP flow that ends, and every connection refused (worker/conn_log.h).
inline constexpr const char* kWorkerOptLogConnections = "--log-connections";
inline constexpr const char* kWorkerOptPolicySource = "--policy-source";       // PATH, for messages
inline constexpr const char* kWorkerOptUdpFlows = "--udp-flows";               // N
inline constexpr const char* kWorkerOptUdpIdleTimeout = "--udp-idle-timeout";  // SECONDS
inline constexpr const char* kWorkerOptMaxConnections = "--max-connections";   // N
inline constexpr const char* kWorkerOptConnectTimeout = "--connect-timeout";   // SECONDS
inline constexpr const char* kWorkerOptPipeSize = "--pipe-size";               // BYTES
inline constexpr const char* kWorkerOptMaxConnectionsPerRule = "--max-connections-per-rule";  // N
inline constexpr const char* kWorkerOptMaxConnectionsPerSource =
    "--max-connections-per-source";                                     // N
inline constexpr const char* kWorkerOptIdleTimeout = "--idle-timeout";  // SECONDS
inline constexpr const char* kWorkerOptDataThreads = "--data-threads";  // N
/// With --target-netns: net.ipv4.ip_local_port_range of sluiced's namespace,
/// where HOST rules listen, read by sluiced (the worker, inside the target
/// namespace, would read the namespace's). The hello carries it, so that
/// `all` leaves out the host side's ephemeral ports, as pasta's does.
inline constexpr const char* kWorkerOptHostEphemeralFirst = "--host-ephemeral-first";  // PORT
inline constexpr const char* kWorkerOptHostEphemeralLast = "--host-ephemeral-last";    // PORT
/// The ids a worker started as real root switches to in its sandbox's stage 2
/// (worker/sandbox.h): sluiced's --worker-user, resolved by sluiced. Ignored
/// by a worker that is not root in the initial user namespace.
inline constexpr const char* kWorkerOptUid = "--worker-uid";  // UID
inline constexpr const char* kWorkerOptGid = "--worker-gid";  // GID
/// The ids sluiced runs as, as sluiced sees them (in its own user namespace):
/// what the audit log and the history record for the initial rules, and the
/// owner the default control policy admits. The worker cannot read them
/// itself when it joins a target namespace's user namespace, where sluiced's
/// user shows as another id (0 for a rootless container's owner).
inline constexpr const char* kWorkerOptSluicedUid = "--sluiced-uid";  // UID
inline constexpr const char* kWorkerOptSluicedGid = "--sluiced-gid";  // GID
/// The rule option letters, each followed by one SPEC, as for sluicectl: -t
/// and -u fill the HOST table, -T and -U the SPLICE table.
inline constexpr std::string_view kWorkerRuleOptions = "tuTU";

// ---- UDP limits (--udp-flows, --udp-idle-timeout) ----

/// Limit: concurrent UDP flows by default. Each flow holds one socket toward
/// its target, so 4096 flows next to 10,000 listeners and the TCP path's
/// connections stay within the 20,000-descriptor limit of the hosts sluice
/// targets; conntrack pays no descriptors and can afford more entries.
inline constexpr uint32_t kUdpFlowsDefault = 4096;
/// Limit: the fewest --udp-flows, one: zero flows would forward no datagram
/// at all (a table without -u rules says that).
inline constexpr uint32_t kUdpFlowsMin = 1;
/// Limit: the most --udp-flows accepts: fs.nr_open's default (1,048,576), the
/// most descriptors one process may ever hold, so a larger table could never
/// give every flow its socket.
inline constexpr uint32_t kUdpFlowsMax = 1u << 20;
/// Limit: a flow ends after this long without a datagram either way. 180 s
/// was conntrack's UDP stream timeout (nf_conntrack_udp_timeout_stream) until
/// Linux 5.0 lowered it to 120 s; keeping the longer value means a flow never
/// expires before the conntrack and NAT state along its path would, so a
/// stream whose peers exchange a datagram every two minutes keeps its flow,
/// and with it the source port the target may key its session on. An idle
/// flow costs one socket.
inline constexpr uint32_t kUdpIdleTimeoutDefaultS = 180;
/// Limit: the shortest --udp-idle-timeout, one second (the option's unit);
/// zero would end every flow before its reply could arrive.
inline constexpr uint32_t kUdpIdleTimeoutMinS = 1;
/// Limit: the longest --udp-idle-timeout, one day. A flow idle longer than
/// that is a leaked socket, not a session.
inline constexpr uint32_t kUdpIdleTimeoutMaxS = 86400;

// ---- TCP limits (--max-connections, --connect-timeout, --pipe-size) ----

/// Limit: concurrent TCP connections by default. Each takes two sockets and,
/// while bytes are in flight, up to two pipes (four fds); 4096 stays well
/// inside a 20,000-descriptor limit together with 10,000 listeners and the
/// UDP flows.
inline constexpr uint32_t kTcpConnectionsDefault = 4096;
/// Limit: the fewest --max-connections, one: with zero every listener would
/// stay paused forever.
inline constexpr uint32_t kTcpConnectionsMin = 1;
/// Limit: the most --max-connections accepts: four descriptors per
/// connection within fs.nr_open's default of 1,048,576.
inline constexpr uint32_t kTcpConnectionsMax = 1u << 18;
/// Limit: a target that has not completed the handshake after this long gets
/// its client reset. 10 s is past any loopback or LAN answer and several SYN
/// retransmissions (1, 3, 7 s), far below the kernel's own ~127 s, which
/// would hold a connection slot and leave the client hanging for two minutes.
inline constexpr uint32_t kConnectTimeoutDefaultS = 10;
/// Limit: the shortest --connect-timeout, one second (the option's unit);
/// zero would reset every client before its target could answer.
inline constexpr uint32_t kConnectTimeoutMinS = 1;
/// Limit: the longest --connect-timeout, ten minutes; a client that waits
/// longer for a handshake has long given up.
inline constexpr uint32_t kConnectTimeoutMaxS = 600;
/// Limit: bytes per splice pipe by default. 256 KiB moves a loopback stream
/// in 4x fewer splice calls than the kernel's 64 KiB pipe (measured in
/// bench/peers: about 40% less CPU per Gbit with larger pipes). Pipes above
/// the default size are only made while they fit in half of the user's
/// fs.pipe-user-pages-soft, so they never push the user's other pipes into
/// the shrunken one-page regime; beyond that they keep the kernel's size.
inline constexpr uint32_t kPipeSizeDefault = 256 * 1024;
/// Limit: the smallest --pipe-size, one page, the smallest pipe the kernel
/// makes (F_SETPIPE_SZ rounds up to it).
inline constexpr uint32_t kPipeSizeMin = 4096;
/// Limit: the largest --pipe-size, fs.pipe-max-size's default (1 MiB), the
/// most an unprivileged process may ask F_SETPIPE_SZ for.
inline constexpr uint32_t kPipeSizeMax = 1u << 20;

// ---- TCP fairness (--max-connections-per-rule, --max-connections-per-source,
// --idle-timeout; the accounting is in worker/conn_limits.h) ----

/// Limit: no cap per rule beyond its fair share by default (0). The share
/// already keeps a quarter of --max-connections from any one rule while other
/// rules exist, and lets a rule that is alone use the whole limit, as before;
/// a fixed default cap would cut a single busy rule short for nothing.
inline constexpr uint32_t kRuleConnectionsDefault = 0;
/// Limit: the most --max-connections-per-rule accepts, the most
/// --max-connections does (a larger cap could never be reached).
inline constexpr uint32_t kRuleConnectionsMax = kTcpConnectionsMax;
/// Limit: concurrent TCP connections of one source (an IPv4 address, an IPv6
/// /64) by default, across all rules: a quarter of the default
/// --max-connections, so one client can hold at most a quarter of the slots.
/// Generous for one real client (a browser opens 6 per host, a connection
/// pool tens); clients behind one NAT or on this host share it, which is why
/// 0 turns it off.
inline constexpr uint32_t kSourceConnectionsDefault = 1024;
/// Limit: the most --max-connections-per-source accepts, the most
/// --max-connections does.
inline constexpr uint32_t kSourceConnectionsMax = kTcpConnectionsMax;
/// Limit: TCP connections are never ended for idleness by default (0).
/// sluice stands in for pasta and rootlesskit, which never cut an idle
/// connection: SSH sessions and database pools sit idle for hours, and
/// keepalive (on for both sides) already frees a connection whose peer
/// vanished. The fair share and the per-source limit keep idle connections of
/// one rule or client from starving the others without it.
inline constexpr uint32_t kIdleTimeoutDefaultS = 0;
/// Limit: the longest --idle-timeout, a week: a connection idle longer than
/// that is a session the operator wants kept, and 0 says so.
inline constexpr uint32_t kIdleTimeoutMaxS = 7 * 86400;

// ---- Data-path threads (--data-threads; worker/data_thread.h) ----

/// Limit: one data-path thread by default, the worker's main one. A second
/// thread lets a forwarder use a second core for new connections (about a
/// fifth more per second than a relay with one thread, on two cores shared
/// with the clients and servers, docs/BENCHMARKS.md), at the price of a
/// lock per connection and a thread the administrator may not expect on a
/// small host; the operator who wants it says so (a number, or sluiced's
/// `auto`: one per CPU it may run on).
inline constexpr uint32_t kDataThreadsDefault = 1;
/// Limit: the most --data-threads. A thread serves about one core's worth of
/// new connections; beyond the cores a machine gives a forwarder they only
/// contend. 16 bounds what the option can cost: five descriptors and a stack
/// per thread.
inline constexpr uint32_t kDataThreadsMax = 16;

// ---- The worker's user (--worker-uid, --worker-gid) ----

/// The ids a root-started worker runs as when sluiced finds no dedicated
/// user: nobody/nogroup on Debian. Other processes may share them (and could
/// then signal the worker), which is why sluiced prefers the user
/// kWorkerUserName when it exists and warns when it does not.
inline constexpr uint32_t kWorkerIdFallback = 65534;
/// The dedicated system user sluiced looks up when --worker-user is not
/// given; the install step (sysusers.d) creates it.
inline constexpr const char* kWorkerUserName = "sluice";
/// Limit: a worker id is never 0 (root, the one id the switch must leave)
/// and never 4294967295 ((uid_t)-1, which setresuid reads as "unchanged").
inline constexpr uint32_t kWorkerIdMin = 1;
inline constexpr uint32_t kWorkerIdMax = 4294967294u;

/// One rule option of the worker's argv: an option letter and its spec,
/// carried as the administrator typed it.
struct WorkerRuleArg {
  char option = 't';  // one of kWorkerRuleOptions
  std::string spec;   // unparsed rule text; may be empty (the worker's parser refuses it)

  bool operator==(const WorkerRuleArg&) const = default;
};

/// Everything sluice-worker is started with, besides its fds. The limits hold
/// the values in force: a limit sluiced was not given keeps its default.
struct WorkerArgs {
  bool debug = false;            // -d: debug logging
  bool quiet = false;            // -q: warnings and errors only (never with debug)
  bool target_netns = false;     // --target-netns: started inside sluiced's --netns
  bool pesto = false;            // --pesto: serve pesto's protocol on kWorkerFdPesto
  bool log_connections = false;  // --log-connections: the connection log
  /// --policy-source: sluiced's --policy path, only to name the policy in
  /// messages (its text arrives on fd 6); empty: the default policy.
  std::string policy_source;
  uint32_t udp_flows = kUdpFlowsDefault;                            // --udp-flows
  uint32_t udp_idle_timeout_s = kUdpIdleTimeoutDefaultS;            // --udp-idle-timeout
  uint32_t max_connections = kTcpConnectionsDefault;                // --max-connections
  uint32_t connect_timeout_s = kConnectTimeoutDefaultS;             // --connect-timeout
  uint32_t pipe_size = kPipeSizeDefault;                            // --pipe-size
  uint32_t max_connections_per_rule = kRuleConnectionsDefault;      // 0: the fair share only
  uint32_t max_connections_per_source = kSourceConnectionsDefault;  // 0: off
  uint32_t idle_timeout_s = kIdleTimeoutDefaultS;                   // 0: never
  uint32_t data_threads = kDataThreadsDefault;                      // --data-threads
  uint32_t host_ephemeral_first = 0;        // --host-ephemeral-first; 0: not given
  uint32_t host_ephemeral_last = 0;         // --host-ephemeral-last; 0: not given
  uint32_t worker_uid = kWorkerIdFallback;  // --worker-uid
  uint32_t worker_gid = kWorkerIdFallback;  // --worker-gid
  uint32_t sluiced_uid = 0;                 // --sluiced-uid
  uint32_t sluiced_gid = 0;                 // --sluiced-gid
  std::vector<WorkerRuleArg> rules;         // -t/-u/-T/-U, in order

  bool operator==(const WorkerArgs&) const = default;
};

/// One numeric limit of WorkerArgs: its option word, range and default, and
/// the field that holds it.
struct WorkerLimit {
  const char* option;           // kWorkerOpt*
  uint32_t min;                 // smallest value accepted
  uint32_t max;                 // largest value accepted
  uint32_t fallback;            // the value when the option is absent
  uint32_t WorkerArgs::*field;  // where WorkerArgs keeps it
};

/// Each numeric limit with its option word, for the broker's checks and the
/// worker's.
inline constexpr WorkerLimit kUdpFlowsLimit = {kWorkerOptUdpFlows, kUdpFlowsMin, kUdpFlowsMax,
                                               kUdpFlowsDefault, &WorkerArgs::udp_flows};
inline constexpr WorkerLimit kUdpIdleTimeoutLimit = {kWorkerOptUdpIdleTimeout, kUdpIdleTimeoutMinS,
                                                     kUdpIdleTimeoutMaxS, kUdpIdleTimeoutDefaultS,
                                                     &WorkerArgs::udp_idle_timeout_s};
inline constexpr WorkerLimit kTcpConnectionsLimit = {kWorkerOptMaxConnections, kTcpConnectionsMin,
                                                     kTcpConnectionsMax, kTcpConnectionsDefault,
                                                     &WorkerArgs::max_connections};
inline constexpr WorkerLimit kConnectTimeoutLimit = {kWorkerOptConnectTimeout, kConnectTimeoutMinS,
                                                     kConnectTimeoutMaxS, kConnectTimeoutDefaultS,
                                                     &WorkerArgs::connect_timeout_s};
inline constexpr WorkerLimit kPipeSizeLimit = {kWorkerOptPipeSize, kPipeSizeMin, kPipeSizeMax,
                                               kPipeSizeDefault, &WorkerArgs::pipe_size};

inline constexpr WorkerLimit kRuleConnectionsLimit = {kWorkerOptMaxConnectionsPerRule, 0,
                                                      kRuleConnectionsMax, kRuleConnectionsDefault,
                                                      &WorkerArgs::max_connections_per_rule};
inline constexpr WorkerLimit kSourceConnectionsLimit = {
    kWorkerOptMaxConnectionsPerSource, 0, kSourceConnectionsMax, kSourceConnectionsDefault,
    &WorkerArgs::max_connections_per_source};
inline constexpr WorkerLimit kIdleTimeoutLimit = {
    kWorkerOptIdleTimeout, 0, kIdleTimeoutMaxS, kIdleTimeoutDefaultS, &WorkerArgs::idle_timeout_s};
inline constexpr WorkerLimit kDataThreadsLimit = {kWorkerOptDataThreads, 1, kDataThreadsMax,
                                                  kDataThreadsDefault, &WorkerArgs::data_threads};

/// The host side's ephemeral range (not limits, but numbers with a range):
/// a port, 0 when sluiced did not send it.
inline constexpr WorkerLimit kHostEphemeralFirst = {kWorkerOptHostEphemeralFirst, 0, 65535, 0,
                                                    &WorkerArgs::host_ephemeral_first};
inline constexpr WorkerLimit kHostEphemeralLast = {kWorkerOptHostEphemeralLast, 0, 65535, 0,
                                                   &WorkerArgs::host_ephemeral_last};

/// The worker's user: ids with a range, like the limits.
inline constexpr WorkerLimit kWorkerUid = {kWorkerOptUid, kWorkerIdMin, kWorkerIdMax,
                                           kWorkerIdFallback, &WorkerArgs::worker_uid};
inline constexpr WorkerLimit kWorkerGid = {kWorkerOptGid, kWorkerIdMin, kWorkerIdMax,
                                           kWorkerIdFallback, &WorkerArgs::worker_gid};

/// sluiced's own ids: any id but (uid_t)-1; 0 (root) is the default.
inline constexpr WorkerLimit kSluicedUid = {kWorkerOptSluicedUid, 0, kWorkerIdMax, 0,
                                            &WorkerArgs::sluiced_uid};
inline constexpr WorkerLimit kSluicedGid = {kWorkerOptSluicedGid, 0, kWorkerIdMax, 0,
                                            &WorkerArgs::sluiced_gid};

/// The numeric limits, in the order to_argv() writes them.
inline constexpr WorkerLimit kWorkerLimits[] = {kUdpFlowsLimit,
                                                kUdpIdleTimeoutLimit,
                                                kTcpConnectionsLimit,
                                                kConnectTimeoutLimit,
                                                kPipeSizeLimit,
                                                kRuleConnectionsLimit,
                                                kSourceConnectionsLimit,
                                                kIdleTimeoutLimit,
                                                kDataThreadsLimit,
                                                kHostEphemeralFirst,
                                                kHostEphemeralLast,
                                                kWorkerUid,
                                                kWorkerGid,
                                                kSluicedUid,
                                                kSluicedGid};

/// Returns "--udp-flows needs a number from 1 to 1048576, not "0"": the
/// message for `value` (sanitised and cut) outside `limit`'s range.
std::string worker_limit_error(const WorkerLimit& limit, std::string_view value);

/// Checks a filled WorkerArgs: -d and -q not both, every limit within its
/// range, every rule option one of kWorkerRuleOptions, and no NUL byte in a
/// spec or the policy source (argv strings cannot carry one). Returns the
/// first problem as a one-line message.
Result<void> check_worker_args(const WorkerArgs& args);

/// Returns the worker's argv, argv[0] (kWorkerProgram) included:
/// [-d|-q] [--policy-source PATH] [LIMIT N]... [-t|-u|-T|-U SPEC]..., with
/// the limits in kWorkerLimits order and the rules in theirs. A limit at its
/// default and an empty policy source are left out. CHECKs that
/// check_worker_args() accepts `args`: the broker checked every value when it
/// parsed its own command line, so anything else is a bug.
std::vector<std::string> to_argv(const WorkerArgs& args);

/// Parses the worker's argv (argv[0] included, and skipped) into a
/// WorkerArgs; a limit that is absent keeps its default. Fails with a one-line
/// message on an unknown word, an option without its value, a number outside
/// its range, an option other than a rule option given twice, an empty
/// policy source, or -d with -q. parse_worker_args(to_argv(a)) == a for every
/// `a` that check_worker_args() accepts.
Result<WorkerArgs> parse_worker_args(const std::vector<std::string>& argv);

/// The same, from main()'s argc and argv.
Result<WorkerArgs> parse_worker_args(int argc, const char* const* argv);

}  // namespace sluice
