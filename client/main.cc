// sluicectl: the unprivileged client of sluice, command-line compatible with
// pasta's pesto. The order of its steps is its security:
//   1. parse the command line, reading every --file (the sandbox has no open),
//      and parse every spec without the server's facts (a bad one is a usage
//      error, whether a server is there or not);
//   2. connect to the control socket;
//   3. sandbox itself (NO_NEW_PRIVS and a seccomp allowlist) before it reads
//      a byte from the server;
//   4. handshake, read the state, apply the edits to a copy of the tables,
//      validate them with the worker's own validator, show, commit, and retry
//      on a stale generation.
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/paths.h"
#include "base/strings.h"
#include "client/audit_verify.h"
#include "client/cli.h"
#include "client/control_client.h"
#include "client/render.h"
#include "client/render_prometheus.h"
#include "client/spec_context.h"
#include "policy/check_commit.h"
#include "policy/seccomp.h"
#include "schema/rules/table_edit.h"

namespace sluice {
namespace {

/// Exit codes, documented in sluicectl(1).
constexpr int kExitOk = 0;
constexpr int kExitRejected = 1;
constexpr int kExitUsage = 2;
constexpr int kExitConnection = 3;
constexpr int kExitStale = 4;

/// Limit: commit attempts when another client commits in between (stale
/// generation). Three rides out a burst of concurrent pushes; a table that
/// keeps changing needs a person to look, not a loop.
constexpr int kMaxCommitAttempts = 3;

/// Confines the client once its only socket is connected: stdio and malloc
/// set up so that they need no probing later (prepare_client_for_seccomp), no
/// new privileges, and a seccomp allowlist of what talking and printing need
/// (no open, no read). Fails with the step that failed.
Result<void> sandbox_client(bool verifier = false) {
  auto prepared = prepare_client_for_seccomp();
  if (!prepared) return prepared;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return SysErr("prctl(PR_SET_NO_NEW_PRIVS)");
  }
#ifdef SLUICE_SANITIZE
  // The sanitizer runtime makes syscalls outside the client's allowlist.
  (void)verifier;
  return Ok();
#else
  return install_seccomp(verifier ? verifier_seccomp_rules(getpid())
                                  : client_seccomp_rules(getpid()));
#endif
}

/// --verify-audit's confinement, once the log is open: moves it onto
/// kVerifierAuditFd and loads the verifier's allowlist (sandbox_client), so
/// that what a worker wrote is parsed with no open, socket or exec at hand.
/// Returns the descriptor to read.
Result<int> confine_verifier(int fd) {
  if (fd != kVerifierAuditFd && ::dup3(fd, kVerifierAuditFd, O_CLOEXEC) < 0) {
    return SysErr("dup3 of the audit log onto fd 9 (kVerifierAuditFd)");
  }
  auto sandboxed = sandbox_client(true);
  if (!sandboxed) return Err(sandboxed.error());
  return kVerifierAuditFd;
}

/// Writes `text` to stdout and flushes; returns false when that fails.
bool print_out(const std::string& text) {
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return false;
  }
  return std::fflush(stdout) == 0;
}

/// Writes "sluicectl: " + `message` as one line to stderr.
void print_err(const std::string& message) {
  std::fprintf(stderr, "sluicectl: %s\n", message.c_str());
}

/// One conversation with the server, after the handshake.
struct Session {
  ControlConnection& conn;
  const control::ServerHello& hello;
  const Plan& plan;
  const std::string& path;
};

/// Asks for the state. Fails (with the socket path in the message) on a
/// connection or protocol error, or an answer that is not a State.
Result<control::State> get_state(const Session& s) {
  control::Request request;
  request.body = control::GetState{};
  auto response = s.conn.call(request);
  if (!response) return Err(s.path + ": " + response.error().message);
  auto* state = std::get_if<control::State>(&response->body);
  if (state == nullptr) {
    return Err(s.path +
               ": the server answered getState with something else; use a sluicectl "
               "from the same release as sluiced");
  }
  return *state;
}

/// What sluicectl knows of the server for check_commit: its capabilities and
/// the tables its hello lists, and whether HOST rules connect in a target
/// namespace (then no target of theirs is one of sluice's listeners).
CommitFacts facts_of(const control::ServerHello& hello) {
  CommitFacts facts;
  facts.caps = hello.caps;
  facts.served = {false, false};
  for (const control::PifInfo& info : hello.pifs) {
    if (static_cast<size_t>(info.pif) < kPifCount)
      facts.served[static_cast<size_t>(info.pif)] = true;
  }
  facts.targets_share_namespace = !hello.target_namespace;
  return facts;
}

/// Lists the tables (text or JSON). Returns the exit status.
int list_tables(const Session& s) {
  auto state = get_state(s);
  if (!state) {
    print_err(state.error().message);
    return kExitConnection;
  }
  std::string text =
      s.plan.json ? render_state_json(*state, s.hello) : render_state(*state, s.hello);
  return print_out(text) ? kExitOk : kExitConnection;
}

/// Shows the last --history N commit attempts. Returns the exit status.
int show_history(const Session& s) {
  control::Request request;
  request.body = control::HistoryRequest{s.plan.history};
  auto response = s.conn.call(request);
  if (!response) {
    print_err(s.path + ": " + response.error().message);
    return kExitConnection;
  }
  auto* history = std::get_if<control::History>(&response->body);
  if (history == nullptr) {
    print_err(s.path +
              ": the server answered history with something else; use a sluicectl "
              "from the same release as sluiced");
    return kExitConnection;
  }
  std::string text = s.plan.json ? render_history_json(*history) : render_history(*history);
  return print_out(text) ? kExitOk : kExitConnection;
}

/// Limit: reads of the counters and the tables when a commit lands between
/// them (--stats --prometheus labels the counters with the tables of the same
/// generation). Three ride out a burst of commits; then the user tries again.
constexpr int kMaxStatsAttempts = 3;

/// Asks for the counters. Fails (with the socket path in the message) on a
/// connection or protocol error, or an answer that is not Stats.
Result<control::Stats> get_stats(const Session& s) {
  control::Request request;
  request.body = control::StatsRequest{};
  auto response = s.conn.call(request);
  if (!response) return Err(s.path + ": " + response.error().message);
  auto* stats = std::get_if<control::Stats>(&response->body);
  if (stats == nullptr) {
    return Err(s.path +
               ": the server answered stats with something else; use a sluicectl from the same "
               "release as sluiced");
  }
  return *stats;
}

/// Renders --stats --prometheus: the counters, labelled with the tables of
/// the same generation (read again when a commit landed in between, up to
/// kMaxStatsAttempts times). Fails with what went wrong.
Result<std::string> prometheus_text(const Session& s) {
  for (int attempt = 1;; ++attempt) {
    auto stats = get_stats(s);
    if (!stats) return Err(stats.error());
    auto state = get_state(s);
    if (!state) return Err(state.error());
    if (state->generation == stats->generation) {
      auto text = render_prometheus(*stats, state->tables, s.hello.server_version);
      if (text || attempt >= kMaxStatsAttempts) return text;
    } else if (attempt >= kMaxStatsAttempts) {
      return Err(s.path + ": the tables kept changing while the counters were read (generation " +
                 std::to_string(stats->generation) + ", then " + std::to_string(state->generation) +
                 "); run sluicectl --stats again");
    }
  }
}

/// Shows --stats: the counters of every rule, as text, JSON or the
/// Prometheus format. Returns the exit status.
int show_stats(const Session& s) {
  if (s.plan.prometheus) {
    auto text = prometheus_text(s);
    if (!text) {
      print_err(text.error().message);
      return kExitConnection;
    }
    return print_out(*text) ? kExitOk : kExitConnection;
  }
  auto stats = get_stats(s);
  if (!stats) {
    print_err(stats.error().message);
    return kExitConnection;
  }
  return print_out(s.plan.json ? render_stats_json(*stats) : render_stats(*stats))
             ? kExitOk
             : kExitConnection;
}

/// Confirms the commit that waits for confirmation (--confirm): prints what
/// the server says, on stdout when a commit was confirmed (exit 0), else on
/// stderr (exit 1: nothing waited, or the deadline had passed). With --json,
/// one object {"confirmed":B,"generation":N,"message":"..."} on stdout.
int confirm_commit(const Session& s) {
  control::Request request;
  request.body = control::ConfirmRequest{};
  auto response = s.conn.call(request);
  if (!response) {
    print_err(s.path + ": confirm: " + response.error().message);
    return kExitConnection;
  }
  auto* result = std::get_if<control::ConfirmResult>(&response->body);
  if (result == nullptr) {
    print_err(s.path +
              ": the server answered confirm with something else; use a sluicectl from the "
              "same release as sluiced");
    return kExitConnection;
  }
  const int status = result->confirmed ? kExitOk : kExitRejected;
  const std::string message = sanitize(result->message, control::kMaxTextBytes);
  if (s.plan.json) {
    JsonWriter w;
    w.begin_object();
    w.key("confirmed");
    w.boolean(result->confirmed);
    w.key("generation");
    w.number(result->generation);
    w.key("message");
    w.string(result->message);
    w.end_object();
    return print_out(w.str() + "\n") ? status : kExitConnection;
  }
  if (!result->confirmed) {
    print_err(message);
    return status;
  }
  return print_out(message + "\n") ? status : kExitConnection;
}

/// Prints the outcome of an edit that was not sent, or was answered: JSON
/// (one object on stdout), or the -s view on stdout. Returns false when
/// stdout fails.
bool report(const Session& s, const control::State& before, const TableSet& after,
            const control::CommitResult& result, bool unchanged) {
  if (s.plan.json) return print_out(render_edit_json(before, after, result, s.hello, unchanged));
  if (s.plan.show) return print_out(render_show(before, after, s.hello));
  return true;
}

/// Prints every failure ("sluicectl: KIND: MESSAGE") to stderr.
void print_failures(const std::vector<control::Failure>& failures) {
  for (const std::string& line : render_failures(failures)) print_err(line);
}

/// Applies the plan's edits to the server's tables, validates them and
/// commits them, re-reading the state and retrying on a stale generation.
/// Returns the exit status.
int edit_tables(const Session& s) {
  SpecContext ctx = spec_context(s.hello);
  uint64_t first_generation = 0;
  for (int attempt = 1;; ++attempt) {
    auto state = get_state(s);
    if (!state) {
      print_err(state.error().message);
      return kExitConnection;
    }
    if (attempt == 1) first_generation = state->generation;
    auto after = apply_edits(state->tables, s.plan.edits, ctx);
    if (!after) {
      print_err(after.error().message);
      return kExitRejected;
    }

    // The worker's target policy is not known here; the worker checks it.
    std::vector<control::Failure> issues = check_commit(*after, facts_of(s.hello), nullptr);
    control::CommitResult local;  // the answer when nothing is sent
    local.dry_run = s.plan.dry_run;
    local.generation = state->generation;
    local.digest = state->digest;
    if (!issues.empty()) {
      local.failures = issues;
      if (!report(s, *state, *after, local, false)) return kExitConnection;
      print_failures(local.failures);
      print_err("the edited tables are invalid (" + std::to_string(issues.size()) +
                (issues.size() == 1 ? " problem" : " problems") +
                "); nothing was sent, and generation " + std::to_string(state->generation) +
                " still serves");
      return kExitRejected;
    }
    // The same tables are sent again when some of their best-effort ports
    // do not listen: the commit tries those binds again, as pesto's does.
    if (*after == state->tables && state->unbound == 0) {
      if (!report(s, *state, *after, local, true)) return kExitConnection;
      if (!s.plan.json) {
        if (!print_out("no change: the tables already are what the edits ask for (generation " +
                       std::to_string(state->generation) + "); nothing was sent\n")) {
          return kExitConnection;
        }
      }
      return kExitOk;
    }

    control::Request request;
    request.body =
        control::CommitRequest{*after,         state->generation,        s.plan.dry_run,
                               s.plan.comment, s.plan.end_removed_flows, s.plan.confirm_within};
    auto response = s.conn.call(request);
    if (!response) {
      print_err(s.path + ": commit: " + response.error().message +
                (response.error().err == kServerRefused
                     ? "; nothing changed"
                     : "; whether the tables changed is unknown: run sluicectl to list them"));
      return kExitConnection;
    }
    auto* result = std::get_if<control::CommitResult>(&response->body);
    if (result == nullptr) {
      print_err(s.path +
                ": the server answered commit with something else; use a sluicectl "
                "from the same release as sluiced");
      return kExitConnection;
    }
    bool stale = false;
    for (const control::Failure& f : result->failures) {
      stale = stale || f.kind == control::FailureKind::kStale;
    }
    if (stale && attempt < kMaxCommitAttempts) {
      LOG_DEBUG("generation %llu is stale (attempt %d of %d); reading the tables again",
                static_cast<unsigned long long>(state->generation), attempt, kMaxCommitAttempts);
      continue;
    }

    if (!report(s, *state, *after, *result, false)) return kExitConnection;
    if (stale) {
      print_failures(result->failures);
      print_err("another client changed the tables concurrently: the generation moved on from " +
                std::to_string(first_generation) + " during each of " +
                std::to_string(kMaxCommitAttempts) +
                " attempts; nothing was applied; run sluicectl again (sluicectl --history "
                "shows who else commits)");
      return kExitStale;
    }
    if (!result->failures.empty()) {
      print_failures(result->failures);
      // The list stops at kMaxFailures; the count says how many in all.
      const size_t count = std::max<size_t>(result->failure_count, result->failures.size());
      print_err("the server rejected the tables (" + std::to_string(count) +
                (count == 1 ? " failure" : " failures") + "); nothing changed, and generation " +
                std::to_string(state->generation) + " still serves");
      return kExitRejected;
    }
    if (!result->applied && !result->dry_run) {
      print_err(s.path +
                ": the server neither applied nor rejected the tables; list them with "
                "sluicectl and report this as a bug");
      return kExitConnection;
    }
    for (const std::string& line : render_failures(result->warnings)) {
      print_err("warning: " + line);
    }
    if (!s.plan.json && !print_out(render_commit_summary(*result) + "\n")) return kExitConnection;
    if (!s.plan.json && s.plan.confirm_within != 0 && result->applied &&
        !print_out("waits for confirmation: run sluicectl --confirm within " +
                   std::to_string(s.plan.confirm_within) + " s, or the tables of generation " +
                   std::to_string(state->generation) +
                   " come back automatically; other commits are refused until then\n")) {
      return kExitConnection;
    }
    return kExitOk;
  }
}

/// Runs sluicectl; returns the exit status.
int run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  // Step 1: every --file is read here, before the sandbox.
  auto plan = parse_command_line(args, read_option_file);
  if (!plan) {
    print_err(plan.error().message);
    return kExitUsage;
  }
  if (plan->debug) log_set_level(LogLevel::kDebug);
  if (plan->action == Plan::Action::kHelp) {
    return print_out(usage_text()) ? kExitOk : kExitConnection;
  }
  if (plan->action == Plan::Action::kVerifyAudit) {
    // A file, no server: read and checked before (and without) any connection.
    AuditVerifyOptions options;
    options.allow_empty = plan->allow_empty;
    return run_verify_audit(plan->audit_path, plan->json, options, stdout, stderr,
                            confine_verifier);
  }
  if (plan->action == Plan::Action::kVersion) {
    return print_out(std::string("sluicectl ") + SLUICE_VERSION + "\n") ? kExitOk : kExitConnection;
  }
  // Before the connection, so that a mistyped or forgotten spec is not
  // reported as a connection problem. edit_tables parses the specs again
  // with the server's facts, which may refuse what only they decide.
  auto specs = check_specs(*plan);
  if (!specs) {
    print_err(specs.error().message);
    return kExitUsage;
  }
  std::string path = plan->path;
  if (path.empty()) {
    auto def = default_control_path();
    if (!def) {
      print_err(def.error().message);
      return kExitUsage;
    }
    path = *def;
  }

  // Step 2 and 3: connect, then confine, before reading anything.
  auto conn = ControlConnection::connect(path, plan->timeout_ms);
  if (!conn) {
    print_err(conn.error().message);
    return kExitConnection;
  }
  auto sandboxed = sandbox_client();
  if (!sandboxed) {
    print_err("cannot sandbox itself: " + sandboxed.error().message);
    return kExitConnection;
  }
  auto hello = conn->handshake();
  if (!hello) {
    print_err(path + ": " + hello.error().message);
    return kExitConnection;
  }
  LOG_DEBUG("server %s", sanitize(hello->server_version, 64).c_str());

  Session session{*conn, *hello, *plan, path};
  if (plan->history != 0) return show_history(session);
  if (plan->stats) return show_stats(session);
  if (plan->confirm) return confirm_commit(session);
  if (!plan->has_edits()) return list_tables(session);
  return edit_tables(session);
}

}  // namespace
}  // namespace sluice

/// Entry point: logs as "sluicectl" to stderr.
int main(int argc, char** argv) {
  sluice::log_init("sluicectl", 2, sluice::LogLevel::kWarn);
  return sluice::run(argc, argv);
}
