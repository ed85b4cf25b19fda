// sluiced's command line (getopt_long).
#include "broker/options.h"

#include <getopt.h>
#include <sched.h>

#include <algorithm>
#include <cstring>
#include <string_view>

#include "base/strings.h"
#include "schema/worker_args.h"

namespace sluice {
namespace {

// Long-only options get values outside the char range.
enum LongOnly : int {
  kOptPolicy = 256,
  kOptAuditLog,
  kOptVersion,
  kOptUdpFlows,
  kOptUdpIdle,
  kOptMaxConnections,
  kOptConnectTimeout,
  kOptPipeSize,
  kOptNetns,
  kOptUserns,
  kOptPestoSocket,
  kOptRuleConnections,
  kOptSourceConnections,
  kOptIdleTimeout,
  kOptDataThreads,
  kOptWorkerUser,
  kOptWorkerRestarts,
  kOptLogConnections,
};

constexpr struct option kLongOptions[] = {
    {"control", required_argument, nullptr, 'c'},
    // pasta's long names of the rule options.
    {"tcp-ports", required_argument, nullptr, 't'},
    {"udp-ports", required_argument, nullptr, 'u'},
    {"tcp-ns", required_argument, nullptr, 'T'},
    {"udp-ns", required_argument, nullptr, 'U'},
    {"policy", required_argument, nullptr, kOptPolicy},
    {"audit-log", required_argument, nullptr, kOptAuditLog},
    {"udp-flows", required_argument, nullptr, kOptUdpFlows},
    {"udp-idle-timeout", required_argument, nullptr, kOptUdpIdle},
    {"max-connections", required_argument, nullptr, kOptMaxConnections},
    {"connect-timeout", required_argument, nullptr, kOptConnectTimeout},
    {"pipe-size", required_argument, nullptr, kOptPipeSize},
    {"max-connections-per-rule", required_argument, nullptr, kOptRuleConnections},
    {"max-connections-per-source", required_argument, nullptr, kOptSourceConnections},
    {"idle-timeout", required_argument, nullptr, kOptIdleTimeout},
    {"data-threads", required_argument, nullptr, kOptDataThreads},
    {"netns", required_argument, nullptr, kOptNetns},
    {"userns", required_argument, nullptr, kOptUserns},
    {"pesto-socket", required_argument, nullptr, kOptPestoSocket},
    {"worker-user", required_argument, nullptr, kOptWorkerUser},
    {"worker-restarts", required_argument, nullptr, kOptWorkerRestarts},
    {"log-connections", no_argument, nullptr, kOptLogConnections},
    {"debug", no_argument, nullptr, 'd'},
    {"quiet", no_argument, nullptr, 'q'},
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, kOptVersion},
    {nullptr, 0, nullptr, 0},
};
// Leading ':' makes getopt report a missing argument as ':' instead of '?',
// and (with opterr = 0) print nothing itself: the messages below say more.
constexpr const char kShortOptions[] = ":c:t:u:T:U:dqh";

/// Stores `value` into `slot`, refusing a second occurrence of `name`.
Result<void> set_once(std::string* slot, const char* name, const char* value) {
  if (!slot->empty()) return Err(std::string(name) + " given twice");
  if (value[0] == '\0') return Err(std::string(name) + " needs a non-empty argument");
  *slot = value;
  return Ok();
}

/// Stores the decimal number `value` into `slot`, within `limit`'s range
/// (schema/worker_args.h), refusing a second occurrence of `name`, a zero, a
/// sign, anything that is not a number, or a number below the limit's
/// minimum (`min_unit` names its unit in that message).
Result<void> set_limit_once(uint32_t* slot, const char* name, const char* value,
                            const WorkerLimit& limit, const char* min_unit = "") {
  if (*slot != 0) return Err(std::string(name) + " given twice");
  unsigned long n = 0;
  if (!parse_uint(value, limit.max, &n) || n < 1) {
    return Err(std::string(name) + " needs a number from " +
               std::to_string(std::max<uint64_t>(limit.min, 1)) + " to " +
               std::to_string(limit.max) + ", not \"" + sanitize(value, 32) + "\"");
  }
  if (n < limit.min) {
    return Err(std::string(name) + " needs at least " + std::to_string(limit.min) + min_unit);
  }
  *slot = static_cast<uint32_t>(n);
  return Ok();
}

/// The threads --data-threads auto gives: one per CPU sluiced may run on
/// (its affinity mask, which taskset and systemd's CPUAffinity= set), as
/// nginx's and HAProxy's `auto`; at most kDataThreadsLimit's maximum; 1 when
/// the mask cannot be read.
uint32_t auto_data_threads() noexcept {
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set) : 1;
  return static_cast<uint32_t>(std::clamp<int>(cpus, 1, static_cast<int>(kDataThreadsLimit.max)));
}

/// Stores --data-threads `value` into `slot`: a number within
/// kDataThreadsLimit, or `auto` (auto_data_threads), once.
Result<void> set_data_threads(uint32_t* slot, const char* value) {
  if (*slot != 0) return Err("--data-threads given twice");
  if (std::string_view(value) == "auto") {
    *slot = auto_data_threads();
    return Ok();
  }
  if (!set_limit_once(slot, "--data-threads", value, kDataThreadsLimit)) {
    return Err("--data-threads needs a number from 1 to " + std::to_string(kDataThreadsLimit.max) +
               ", or auto (one per CPU sluiced may run on), not \"" + sanitize(value, 32) + "\"");
  }
  return Ok();
}

/// Stores the decimal number `value` into `slot`, from 0 (off) to `limit`'s
/// maximum, refusing a second occurrence of the option and anything that is
/// not a number.
Result<void> set_off_limit_once(std::optional<uint32_t>* slot, const WorkerLimit& limit,
                                const char* value) {
  if (slot->has_value()) return Err(std::string(limit.option) + " given twice");
  unsigned long n = 0;
  if (!parse_uint(value, limit.max, &n)) {
    return Err(std::string(limit.option) + " needs a number from 0 (off) to " +
               std::to_string(limit.max) + ", not \"" + sanitize(value, 32) + "\"");
  }
  *slot = static_cast<uint32_t>(n);
  return Ok();
}

/// True when `text` is a non-empty run of decimal digits.
bool is_decimal(const char* text) {
  if (*text == '\0') return false;
  for (; *text != '\0'; ++text) {
    if (*text < '0' || *text > '9') return false;
  }
  return true;
}

/// Names the option getopt just rejected, for the error message: the short
/// option letter when there is one, else the argv word (a long option).
std::string rejected_option(int argc, char* const* argv) {
  const char* word = optind >= 1 && optind <= argc ? argv[optind - 1] : "";
  if (std::strncmp(word, "--", 2) == 0) return sanitize(word, 64);
  if (optopt > ' ' && optopt < 0x7f) return std::string("-") + static_cast<char>(optopt);
  return sanitize(word, 64);
}

}  // namespace

Result<ParsedOptions> parse_broker_options(int argc, char* const* argv) {
  ParsedOptions out;
  BrokerOptions& o = out.options;
  optind = 0;  // full re-initialisation of getopt's state (glibc)
  opterr = 0;
  bool restarts_given = false;
  for (;;) {
    int opt = getopt_long(argc, argv, kShortOptions, kLongOptions, nullptr);
    if (opt == -1) break;
    switch (opt) {
      case 'c':
        if (auto r = set_once(&o.control_path, "-c/--control", optarg); !r) return Err(r.error());
        break;
      case 't':
      case 'u':
      case 'T':
      case 'U':
        // Carried to the worker as text, in order; never parsed here.
        o.rule_args.push_back(WorkerRuleArg{static_cast<char>(opt), optarg});
        break;
      case kOptPolicy:
        if (auto r = set_once(&o.policy_path, "--policy", optarg); !r) return Err(r.error());
        break;
      case kOptAuditLog:
        if (auto r = set_once(&o.audit_log_path, "--audit-log", optarg); !r) {
          return Err(r.error());
        }
        break;
      case kOptUdpFlows:
        if (auto r = set_limit_once(&o.udp_flows, "--udp-flows", optarg, kUdpFlowsLimit); !r) {
          return Err(r.error());
        }
        break;
      case kOptUdpIdle:
        if (auto r = set_limit_once(&o.udp_idle_timeout_s, "--udp-idle-timeout", optarg,
                                    kUdpIdleTimeoutLimit);
            !r) {
          return Err(r.error());
        }
        break;
      case kOptMaxConnections:
        if (auto r = set_limit_once(&o.max_connections, "--max-connections", optarg,
                                    kTcpConnectionsLimit);
            !r) {
          return Err(r.error());
        }
        break;
      case kOptConnectTimeout:
        if (auto r = set_limit_once(&o.connect_timeout_s, "--connect-timeout", optarg,
                                    kConnectTimeoutLimit);
            !r) {
          return Err(r.error());
        }
        break;
      case kOptPipeSize:
        if (auto r = set_limit_once(&o.pipe_size, "--pipe-size", optarg, kPipeSizeLimit,
                                    " bytes (one page)");
            !r) {
          return Err(r.error());
        }
        break;
      case kOptRuleConnections:
        if (auto r = set_off_limit_once(&o.max_connections_per_rule, kRuleConnectionsLimit, optarg);
            !r) {
          return Err(r.error());
        }
        break;
      case kOptSourceConnections:
        if (auto r =
                set_off_limit_once(&o.max_connections_per_source, kSourceConnectionsLimit, optarg);
            !r) {
          return Err(r.error());
        }
        break;
      case kOptIdleTimeout:
        if (auto r = set_off_limit_once(&o.idle_timeout_s, kIdleTimeoutLimit, optarg); !r) {
          return Err(r.error());
        }
        break;
      case kOptDataThreads:
        if (auto r = set_data_threads(&o.data_threads, optarg); !r) return Err(r.error());
        break;
      case kOptNetns:
        if (auto r = set_once(&o.netns, "--netns", optarg); !r) return Err(r.error());
        break;
      case kOptUserns:
        if (auto r = set_once(&o.userns, "--userns", optarg); !r) return Err(r.error());
        break;
      case kOptPestoSocket:
        if (auto r = set_once(&o.pesto_path, "--pesto-socket", optarg); !r) {
          return Err(r.error());
        }
        break;
      case kOptWorkerUser:
        if (auto r = set_once(&o.worker_user, "--worker-user", optarg); !r) {
          return Err(r.error());
        }
        break;
      case kOptWorkerRestarts: {
        if (restarts_given) return Err("--worker-restarts given twice");
        restarts_given = true;
        auto limit = parse_restart_limit(optarg);
        if (!limit) return Err(limit.error());
        o.worker_restarts = *limit;
        break;
      }
      case kOptLogConnections:
        o.log_connections = true;
        break;
      case 'd':
        o.debug = true;
        break;
      case 'q':
        o.quiet = true;
        break;
      case 'h':
        out.action = OptionsAction::kHelp;
        return out;
      case kOptVersion:
        out.action = OptionsAction::kVersion;
        return out;
      case ':':
        return Err("option " + rejected_option(argc, argv) + " needs an argument");
      default: {
        std::string word = rejected_option(argc, argv);
        if (word.rfind("--", 0) == 0 && word.find('=') != std::string::npos) {
          return Err("option " + word.substr(0, word.find('=')) + " takes no argument");
        }
        return Err("unknown option " + word);
      }
    }
  }
  // pasta's form: one trailing PID names the target namespace.
  if (optind + 1 == argc && is_decimal(argv[optind]) && o.netns.empty()) {
    o.netns = argv[optind++];
  }
  if (optind < argc) {
    return Err("unexpected argument \"" + sanitize(argv[optind], 64) +
               "\" (sluiced takes options, and at most one trailing PID of the target "
               "namespace; rule specs go after -t/-u/-T/-U)");
  }
  if (!o.userns.empty() && o.netns.empty()) {
    return Err("--userns needs a target namespace: give --netns PATH|PID too");
  }
  if (o.debug && o.quiet) return Err("-d/--debug and -q/--quiet exclude each other");
  if (o.log_connections && o.quiet) {
    return Err(
        "--log-connections and -q/--quiet exclude each other: the connection log's lines are "
        "info lines, which -q leaves out");
  }
  return out;
}

void print_usage(std::FILE* out) {
  std::fprintf(out,
               "Usage: sluiced [OPTION]... [PID]\n"
               "The privileged broker of sluice: creates the control socket, starts sluice-worker\n"
               "and opens the listening sockets the worker asks for, within the bind policy.\n"
               "Runs in the foreground and logs to stderr; stop it with SIGTERM or SIGINT.\n"
               "\n"
               "  -c, --control PATH    control socket for sluicectl (default:\n"
               "                        /run/sluice/control.sock as root, else\n"
               "                        $XDG_RUNTIME_DIR/sluice/control.sock)\n"
               "  -t, -u, -T, -U SPEC   initial rules, as for sluicectl; repeatable, passed to\n"
               "                        sluice-worker unchanged and in order (pasta's long\n"
               "                        names: --tcp-ports, --udp-ports, --tcp-ns, --udp-ns).\n"
               "                        Without any, the\n"
               "                        default rule set is: -%c %s\n"
               "                        (forward 127.0.0.1:8080 to 127.0.0.1:8000);\n"
               "                        -t none starts with an empty table\n"
               "      --policy FILE     policy file: `bind allow|deny PROTOS PORTS ADDRS` lines\n"
               "                        (first match wins, no match = deny), `target` lines\n"
               "                        (where rules may forward) and `control` lines (who may\n"
               "                        commit; sluice-policy(5)). Without it: any address, the\n"
               "                        unprivileged ports, and of the privileged ones only\n"
               "                        the initial rules'. A port below\n"
               "                        net.ipv4.ip_unprivileged_port_start also needs\n"
               "                        CAP_NET_BIND_SERVICE (run as root, or setcap sluiced);\n"
               "                        SIGHUP reads FILE again (systemctl reload sluiced)\n"
               "      --audit-log FILE  append the audit records to FILE (default: stderr)\n"
               "      --udp-flows N     at most N UDP flows at once (1-%u, default %u); at\n"
               "                        the limit, datagrams of new clients are dropped\n"
               "      --udp-idle-timeout SECONDS\n"
               "                        end a UDP flow after SECONDS without a datagram\n"
               "                        (1-%u, default %u)\n"
               "      --max-connections N\n"
               "                        at most N TCP connections at once (1-%u, default\n"
               "                        %u); at the limit, listeners pause and resume\n"
               "      --max-connections-per-rule N\n"
               "                        at most N of them per rule (0-%u, default 0: none\n"
               "                        beyond the fair share: with several TCP rules, a\n"
               "                        rule past its share of the limit leaves a quarter\n"
               "                        of it to the others); at it, the rule's listeners\n"
               "                        pause and resume\n"
               "      --max-connections-per-source N\n"
               "                        at most N of them from one IPv4 address or IPv6\n"
               "                        /64 (0-%u, default %u; 0: off); further ones from\n"
               "                        it are reset\n"
               "      --idle-timeout SECONDS\n"
               "                        reset a TCP connection after SECONDS without a byte\n"
               "                        either way (0-%u, default 0: never)\n"
               "      --connect-timeout SECONDS\n"
               "                        reset the client when the target has not answered\n"
               "                        within SECONDS (1-%u, default %u)\n"
               "      --pipe-size BYTES splice pipe size (%u-%u, default %u), within half of\n"
               "                        fs.pipe-user-pages-soft\n"
               "      --data-threads N|auto\n"
               "                        TCP data-path threads (1-%u, default %u; auto: one\n"
               "                        per CPU sluiced may run on): each accepts new\n"
               "                        connections and serves them, one per core\n"
               "      --netns PATH|PID  target network namespace (a container's): HOST rules\n"
               "                        connect inside it, and their default target is its\n"
               "                        loopback; a PID may also be given as the last\n"
               "                        argument, as for pasta\n"
               "      --userns PATH     the user namespace that owns --netns (joined first; for\n"
               "                        a PID, its own is used when it is not sluiced's)\n"
               "      --pesto-socket PATH\n"
               "                        also serve pesto's protocol (v2) on PATH, so that the\n"
               "                        pesto binary (Podman, rootlesskit) edits the tables;\n"
               "                        each update is one commit, as from sluicectl\n"
               "      --worker-user NAME|UID[:GID]\n"
               "                        started as root: the user the sandboxed worker runs\n"
               "                        as (default: the user %s if it exists, else\n"
               "                        nobody, which other processes may share)\n"
               "      --worker-restarts COUNT/SECONDS\n"
               "                        replace a worker that dies (listeners and tables\n"
               "                        carry over; its connections are lost), and give up\n"
               "                        when COUNT die within SECONDS (default 30/60; 0/1:\n"
               "                        never replace, sluiced exits with the worker), or\n"
               "                        when 3 new workers in a row die before they serve\n"
               "      --log-connections one line for every TCP connection and UDP flow that\n"
               "                        ends (client address and port, rule, duration, bytes\n"
               "                        each way, how it ended) and every connection refused\n"
               "  -d, --debug           debug logging (also for the worker)\n"
               "  -q, --quiet           warnings and errors only (also for the worker)\n"
               "  -h, --help            show this help\n"
               "      --version         show the version\n"
               "\n"
               "Exit status: 0 after SIGTERM/SIGINT; 2 on a usage error; 1 on a start-up\n"
               "failure, a misbehaving worker, or when workers died too often\n"
               "(--worker-restarts) or new ones die at start; otherwise the worker's exit\n"
               "status (128+N when it was killed by signal N).\n",
               kDefaultRuleOption, kDefaultRuleSpec, kUdpFlowsMax, kUdpFlowsDefault,
               kUdpIdleTimeoutMaxS, kUdpIdleTimeoutDefaultS, kTcpConnectionsMax,
               kTcpConnectionsDefault, kRuleConnectionsMax, kSourceConnectionsMax,
               kSourceConnectionsDefault, kIdleTimeoutMaxS, kConnectTimeoutMaxS,
               kConnectTimeoutDefaultS, kPipeSizeMin, kPipeSizeMax, kPipeSizeDefault,
               kDataThreadsMax, kDataThreadsDefault, kWorkerUserName);
}

WorkerArgs worker_args(const BrokerOptions& options, bool* used_default) {
  WorkerArgs args;
  args.debug = options.debug;
  args.quiet = options.quiet;
  args.target_netns = !options.netns.empty();
  args.pesto = !options.pesto_path.empty();
  args.log_connections = options.log_connections;
  // Only for messages: the worker reads the text from kWorkerFdPolicy.
  args.policy_source = options.policy_path;
  // A limit that was not given (0) keeps the worker's default.
  if (options.udp_flows != 0) args.udp_flows = options.udp_flows;
  if (options.udp_idle_timeout_s != 0) args.udp_idle_timeout_s = options.udp_idle_timeout_s;
  if (options.max_connections != 0) args.max_connections = options.max_connections;
  if (options.connect_timeout_s != 0) args.connect_timeout_s = options.connect_timeout_s;
  if (options.pipe_size != 0) args.pipe_size = options.pipe_size;
  if (options.data_threads != 0) args.data_threads = options.data_threads;
  if (options.max_connections_per_rule) {
    args.max_connections_per_rule = *options.max_connections_per_rule;
  }
  if (options.max_connections_per_source) {
    args.max_connections_per_source = *options.max_connections_per_source;
  }
  if (options.idle_timeout_s) args.idle_timeout_s = *options.idle_timeout_s;
  *used_default = options.rule_args.empty();
  if (*used_default) {
    args.rules.push_back(WorkerRuleArg{kDefaultRuleOption, kDefaultRuleSpec});
  } else {
    args.rules = options.rule_args;
  }
  return args;
}

std::vector<std::string> worker_argv(const BrokerOptions& options, bool* used_default) {
  return to_argv(worker_args(options, used_default));
}

}  // namespace sluice
