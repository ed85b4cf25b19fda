// The commit benchmark (issue 4, section 6): what a table commit costs, and
// what it does to traffic, measured on the real sluiced and sluice-worker in
// a private user + network namespace that this binary enters itself.
//
//   1. Commit latency for 1, 100 and 10,000 changed ports: the client's wall
//      time from sending the request to reading its result, and the server's
//      own durationMicros.
//   2. The longest gap in a 1-byte echo ping-pong on a connection that is
//      established through sluice, while commits add and remove 10,000 ports;
//      next to the same ping-pong idle, over a direct connection, over a
//      direct connection during the same commits (CPU contention alone), and
//      through pasta (Debian's peer forwarder) when it is installed.
//   3. Refused and reset connections of a connect loop on a kept port during
//      1,000 commits, and commits per second; next to the same loop while
//      every commit re-binds the kept port (close, then bind: what pasta does
//      to every port on every update).
//
// `--ports N,M,...` measures 1 and 2 for those port counts instead (bench/memory
// uses it for 100, 1,000 and 10,000 ports).
//
// The output is Markdown on stdout (progress goes to stderr); bench/run adds
// the machine line. See docs/BENCHMARKS.md for what each number means.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_env.h"
#include "schema/codec.h"

namespace sluice::bench {
namespace {

// Ports of the private namespace. Nothing else listens there.
constexpr uint16_t kLatencyKept = 18080;  // scenario 1: the kept rule
constexpr uint16_t kEchoTarget = 18001;   // echo server behind sluice (and inside pasta)
constexpr uint16_t kEchoViaSluice = 18081;
constexpr uint16_t kEchoViaPasta = 18082;
constexpr uint16_t kEchoDirect = 18002;  // echo server reached without a forwarder
constexpr uint16_t kLoopTarget = 18000;  // accept-and-close target of the connect loop
constexpr uint16_t kLoopKept = 18180;    // the kept port the connect loop hits
constexpr uint16_t kLoopExtra = 18190;   // 18190/18191 alternate around it
constexpr uint16_t kRangeFirst = 20000;  // the changed ports: 20000 .. 20000 + N - 1

/// The big commit of the issue: 10,000 ports added, then removed.
constexpr size_t kBigPorts = 10000;
/// Limit: the most ports --ports takes. The range starts at kRangeFirst and
/// maps 20000 ports up, so its targets must stay at or below 65535.
constexpr size_t kMaxRangePorts = 65535 - kRangeFirst - 20000;
/// Limit: every control request must answer within 30 s; a 10,000-port
/// commit takes milliseconds, so this only catches a hung daemon.
constexpr int kControlTimeoutMs = 30000;
/// A gap window ends this long after the commit's result arrived, so work
/// the worker does after replying (closing released sockets) still counts.
constexpr int kWindowTailMs = 20;
/// Pause between the commits of scenario 2: longer than the window tail, so
/// windows never overlap.
constexpr int kPauseMs = 40;
/// A connect loop attempt slower than this lost its SYN (the kernel resends
/// it after 1 s) or met a stalled forwarder; on loopback one takes well under
/// a millisecond.
constexpr uint64_t kSlowAttemptMs = 200;
/// The goal of issue 4 for the longest stall of a 10,000-port commit.
constexpr double kStallGoalMs = 5.0;

/// Repetitions and durations; --quick shrinks them for a smoke run.
struct Options {
  std::string bin_dir = SLUICE_BIN_DIR;
  int latency_reps = 20;  // per port count and direction
  int stall_reps = 10;    // add+remove pairs of each stall_ports count under the ping-pong
  std::vector<size_t> latency_ports = {1, 100, kBigPorts};  // changed ports, part 1
  std::vector<size_t> stall_ports = {kBigPorts};            // changed ports, part 2
  int loop_commits = 1000;
  int idle_ms = 1000;  // idle ping-pong baselines
};

/// printf into a std::string.
std::string fmt(const char* format, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* format, ...) {
  char buf[512];  // one table row; vsnprintf cuts anything longer
  va_list ap;
  va_start(ap, format);
  vsnprintf(buf, sizeof(buf), format, ap);
  va_end(ap);
  return buf;
}

/// A HOST TCP rule listening on 127.0.0.1 (or `listen`) ports
/// `first`..`last`, forwarded to loopback port `to` onwards.
Rule loopback_rule(uint16_t first, uint16_t last, uint16_t to, const char* listen = "127.0.0.1") {
  Rule r;
  parse_addr(listen, &r.listen);
  r.first = first;
  r.last = last;
  r.to = to;
  return r;
}

/// The kept rule `kept` -> `to`, plus `extra` ports from kRangeFirst when
/// `extra` is not 0.
TableSet kept_plus_range(uint16_t kept, uint16_t to, size_t extra) {
  TableSet t;
  t.of(Pif::kHost).rules.push_back(loopback_rule(kept, kept, to));
  if (extra > 0) {
    auto last = static_cast<uint16_t>(kRangeFirst + extra - 1);
    // Mapped 20000 ports up, to loopback ports nothing forwards: mapping a
    // port onto itself would loop (the worker refuses that).
    t.of(Pif::kHost).rules.push_back(loopback_rule(kRangeFirst, last, kRangeFirst + 20000));
  }
  return t;
}

/// One commit and when it ran.
struct TimedCommit {
  control::CommitResult result;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
  /// The client's wall time of the commit, in ms.
  double client_ms() const { return static_cast<double>(end_ns - start_ns) / 1e6; }
  /// The server's own durationMicros, in ms.
  double server_ms() const { return static_cast<double>(result.duration_micros) / 1e3; }
};

/// Commits `tables` at `*generation` and advances it. Fails when the request
/// fails or the commit is not applied (with the first failure's message).
Result<TimedCommit> commit(ControlConnection& c, const TableSet& tables, uint64_t* generation) {
  control::CommitRequest req;
  req.tables = tables;
  req.expected_generation = *generation;
  req.comment = "commit_bench";
  TimedCommit t;
  t.start_ns = now_ns();
  Result<control::Response> r = c.call(control::Request{0, req});
  t.end_ns = now_ns();
  if (!r.ok()) return Err(r.error());
  auto* result = std::get_if<control::CommitResult>(&r->body);
  if (result == nullptr) return Err("the server answered a commit with something else");
  if (!result->applied) {
    return Err("commit refused: " + (result->failures.empty() ? std::string("no reason given")
                                                              : result->failures[0].message));
  }
  *generation = result->generation;
  t.result = *result;
  return t;
}

/// Connects a control client to `d` and reads the current generation.
Result<ControlConnection> control_at_generation(const Sluiced& d, uint64_t* generation) {
  Result<ControlConnection> c = d.connect(kControlTimeoutMs);
  if (!c.ok()) return c;
  Result<control::Response> r = c->call(control::Request{0, control::GetState{}});
  if (!r.ok()) return Err(r.error());
  auto* state = std::get_if<control::State>(&r->body);
  if (state == nullptr) return Err("the server answered getState with something else");
  *generation = state->generation;
  return c;
}

/// Formats a count with a comma every three digits ("10,000").
std::string thousands(size_t n) {
  std::string digits = std::to_string(n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

/// Formats port counts as "100, 1,000 and 10,000".
std::string port_list(const std::vector<size_t>& counts) {
  std::string out;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (i > 0) out += i + 1 == counts.size() ? " and " : ", ";
    out += thousands(counts[i]);
  }
  return out;
}

/// Formats a Summary of milliseconds as "median / max".
std::string med_max(const Summary& s) {
  return fmt("%.2f / %.2f", s.median, s.max);
}

// ---------------------------------------------------------------- 1. latency

/// Measures commit latency for o.latency_ports changed ports: from a table
/// with one kept rule, alternately add and remove a range of N ports. One
/// unmeasured add+remove pair first warms the daemon's allocations. Appends
/// a Markdown table to `out`.
Result<void> bench_latency(const Options& o, std::string* out) {
  Sluiced d;
  std::string spec = fmt("127.0.0.1/%u:%u", kLatencyKept, kLoopTarget);
  Result<void> started = d.start(o.bin_dir, {"-t", spec});
  if (!started.ok()) return started;
  uint64_t gen = 0;
  Result<ControlConnection> c = control_at_generation(d, &gen);
  if (!c.ok()) return Err(c.error());
  *out += "| changed ports | commit | reps | client ms, median / max | server ms, median / max |\n";
  *out += "|---:|---|---:|---:|---:|\n";
  for (size_t ports : o.latency_ports) {
    std::fprintf(stderr, "latency: %zu ports x %d\n", ports, o.latency_reps);
    TableSet base = kept_plus_range(kLatencyKept, kLoopTarget, 0);
    TableSet grown = kept_plus_range(kLatencyKept, kLoopTarget, ports);
    std::vector<double> client[2], server[2];  // [0] add, [1] remove
    for (int rep = -1; rep < o.latency_reps; ++rep) {
      Result<TimedCommit> add = commit(*c, grown, &gen);
      if (!add.ok()) return Err(add.error());
      Result<TimedCommit> remove = commit(*c, base, &gen);
      if (!remove.ok()) return Err(remove.error());
      if (add->result.opened != ports || remove->result.closed != ports || add->result.kept != 1 ||
          remove->result.kept != 1) {
        return Err(fmt("unexpected counts for %zu ports: opened %u, closed %u", ports,
                       add->result.opened, remove->result.closed));
      }
      if (rep < 0) continue;  // the warm-up pair
      client[0].push_back(add->client_ms());
      server[0].push_back(add->server_ms());
      client[1].push_back(remove->client_ms());
      server[1].push_back(remove->server_ms());
    }
    for (int op = 0; op < 2; ++op) {
      *out += fmt("| %s | %s | %d | %s | %s |\n", thousands(ports).c_str(),
                  op == 0 ? "add" : "remove", o.latency_reps,
                  med_max(summarize(client[op])).c_str(), med_max(summarize(server[op])).c_str());
    }
  }
  return Ok();
}

// ------------------------------------------------------------- 2. stall gaps

/// One line of the stall table.
struct GapRow {
  std::string path;
  std::string condition;
  size_t windows = 0;      // commit windows measured (0: one idle run)
  size_t round_trips = 0;  // echoes inside the measured windows
  Summary gap_ms;          // over every gap of the windows
  Summary commit_ms;       // client commit latency, when commits ran
  size_t failures = 0;     // ping-pong send/recv failures
};

/// Runs `pp` idle for `ms` and summarises every gap.
GapRow idle_row(PingPong& pp, const std::string& path, int ms) {
  std::fprintf(stderr, "ping-pong: %s, idle %d ms\n", path.c_str(), ms);
  pp.start();
  sleep_ms(ms);
  pp.stop();
  GapRow row{path, fmt("idle, %d ms", ms)};
  std::vector<uint64_t> gaps = pp.all_gaps();
  row.round_trips = gaps.size();
  row.gap_ms = summarize(to_ms(gaps));
  row.failures = pp.failures();
  return row;
}

/// Runs `pp` while `reps` pairs of commits add and then remove `ports`
/// ports on `d`, after one unmeasured warm-up pair. Fills `add` and `remove`
/// with the gaps inside the add and the remove windows.
Result<void> gaps_during_commits(const Sluiced& d, uint16_t kept, uint16_t to, PingPong& pp,
                                 size_t ports, int reps, GapRow* add, GapRow* remove) {
  uint64_t gen = 0;
  Result<ControlConnection> c = control_at_generation(d, &gen);
  if (!c.ok()) return Err(c.error());
  TableSet base = kept_plus_range(kept, to, 0);
  TableSet grown = kept_plus_range(kept, to, ports);
  std::vector<TimedCommit> commits[2];  // [0] add, [1] remove
  pp.start();
  sleep_ms(kPauseMs);
  for (int rep = -1; rep < reps; ++rep) {
    for (int op = 0; op < 2; ++op) {
      Result<TimedCommit> t = commit(*c, op == 0 ? grown : base, &gen);
      if (!t.ok()) {
        pp.stop();
        return Err(t.error());
      }
      if (rep >= 0) commits[op].push_back(*t);
      sleep_ms(kPauseMs);
    }
  }
  pp.stop();
  GapRow* rows[2] = {add, remove};
  for (int op = 0; op < 2; ++op) {
    std::vector<uint64_t> all;
    std::vector<double> latency;
    for (const TimedCommit& t : commits[op]) {
      std::vector<uint64_t> g =
          pp.gaps(t.start_ns, t.end_ns + static_cast<uint64_t>(kWindowTailMs) * 1000000ULL);
      all.insert(all.end(), g.begin(), g.end());
      latency.push_back(t.client_ms());
    }
    rows[op]->condition =
        fmt("commit %s %s ports", op == 0 ? "adding" : "removing", thousands(ports).c_str());
    rows[op]->windows = commits[op].size();
    rows[op]->round_trips = all.size();
    rows[op]->gap_ms = summarize(to_ms(all));
    rows[op]->commit_ms = summarize(latency);
    rows[op]->failures = pp.failures();
  }
  return Ok();
}

/// Sets up what pasta needs in this namespace (an interface with an address
/// and a default route; lo alone makes it refuse to start), then starts
/// pasta forwarding kEchoViaPasta to an echo server inside its own namespace:
/// this binary with --echo-server. Fails, and the pasta rows are left out,
/// when pasta or ip is missing or does not start.
Result<void> start_pasta(Child* pasta, const std::string& log) {
  if (run_quiet({"pasta", "--version"}, 5000) != 0) {
    return Err("pasta is not installed (apt-get install passt)");
  }
  const std::vector<std::vector<std::string>> setup = {
      {"ip", "link", "add", "sbv0", "type", "veth", "peer", "name", "sbv1"},
      {"ip", "addr", "add", "10.213.0.1/24", "dev", "sbv0"},
      {"ip", "link", "set", "sbv0", "up"},
      {"ip", "link", "set", "sbv1", "up"},
  };
  for (const auto& argv : setup) {
    if (run_quiet(argv, 5000) != 0) return Err("`ip` failed to set up a veth for pasta");
  }
  // Its gateway is never reached: pasta only needs a default route to pick
  // its "external" interface. It may fail while the veth has no carrier.
  run_quiet({"ip", "route", "add", "default", "via", "10.213.0.254", "dev", "sbv0"}, 5000);
  return pasta->start(
      {"pasta", "-f", "-q", "-4", "-t", fmt("%u:%u", kEchoViaPasta, kEchoTarget), "-u", "none",
       "-T", "none", "-U", "none", "--", self_exe(), "--echo-server", std::to_string(kEchoTarget)},
      log);
}

/// Appends one row of the stall table to `out`; `direct` is the row of the
/// direct connection in the same condition, for the ratio of maxima.
void append_gap_row(const GapRow& row, const GapRow& direct, std::string* out) {
  *out += fmt("| %s | %s | %zu | %zu | %.1f | %.1f | %.3f | %.1f | %s | %zu |\n", row.path.c_str(),
              row.condition.c_str(), row.windows, row.round_trips, row.gap_ms.median * 1e3,
              row.gap_ms.p99 * 1e3, row.gap_ms.max,
              direct.gap_ms.max > 0 ? row.gap_ms.max / direct.gap_ms.max : 0.0,
              row.windows > 0 ? med_max(row.commit_ms).c_str() : "—", row.failures);
}

/// Measures the ping-pong gaps: direct idle, through sluice idle and during
/// commits of each o.stall_ports count (10,000 ports by default), direct
/// during the same commits, and through pasta
/// idle. Appends a Markdown table and the goal line to `out`.
Result<void> bench_stall(const Options& o, std::string* out) {
  // Direct: an echo server reached without any forwarder.
  TargetServer direct_echo;
  Result<void> r = direct_echo.start(kEchoDirect, TargetServer::Mode::kEcho);
  if (!r.ok()) return r;
  // Limit: 5 s to get a first echo, which takes microseconds once the
  // listener is up; pasta gets 10 s, as it starts its namespace first.
  PingPong direct;
  if (r = direct.connect(kEchoDirect, 5000); !r.ok()) return r;
  GapRow direct_idle = idle_row(direct, "direct", o.idle_ms);

  // Through sluice: its own echo server behind the kept rule.
  TargetServer echo;
  if (r = echo.start(kEchoTarget, TargetServer::Mode::kEcho); !r.ok()) return r;
  Sluiced d;
  if (r = d.start(o.bin_dir, {"-t", fmt("127.0.0.1/%u:%u", kEchoViaSluice, kEchoTarget)});
      !r.ok()) {
    return r;
  }
  PingPong via;
  if (r = via.connect(kEchoViaSluice, 5000); !r.ok()) return r;
  GapRow sluice_idle = idle_row(via, "sluice", o.idle_ms);
  // Per port count: [0] sluice adding, [1] sluice removing, [2] direct
  // adding, [3] direct removing.
  std::vector<std::array<GapRow, 4>> during;
  for (size_t ports : o.stall_ports) {
    std::array<GapRow, 4> rows{GapRow{"sluice"}, GapRow{"sluice"}, GapRow{"direct"},
                               GapRow{"direct"}};
    std::fprintf(stderr, "ping-pong: sluice, %d x %zu-port add+remove\n", o.stall_reps, ports);
    r = gaps_during_commits(d, kEchoViaSluice, kEchoTarget, via, ports, o.stall_reps, &rows[0],
                            &rows[1]);
    if (!r.ok()) return r;
    // The same commits with the ping-pong on the direct connection: what the
    // commit's CPU use alone does to an unrelated connection on this machine.
    std::fprintf(stderr, "ping-pong: direct, %d x %zu-port add+remove\n", o.stall_reps, ports);
    r = gaps_during_commits(d, kEchoViaSluice, kEchoTarget, direct, ports, o.stall_reps, &rows[2],
                            &rows[3]);
    if (!r.ok()) return r;
    during.push_back(rows);
  }

  // Through pasta, idle only: Debian's pasta cannot change its table at run
  // time at all (no pesto), so there is no commit to stall it.
  char tmpl[] = "/tmp/sluice-bench-pasta-XXXXXX";
  int log_fd = mkstemp(tmpl);
  if (log_fd >= 0) close(log_fd);
  std::string pasta_note;
  GapRow pasta_idle;
  {
    Child pasta;
    Result<void> p = start_pasta(&pasta, tmpl);
    PingPong via_pasta;
    if (p.ok()) p = via_pasta.connect(kEchoViaPasta, 10000);
    if (p.ok()) {
      pasta_idle = idle_row(via_pasta, "pasta (Debian 12 passt)", o.idle_ms);
    } else {
      pasta_note = "pasta row left out: " + p.error().message + "\n\n";
      std::fprintf(stderr, "%s", pasta_note.c_str());
    }
  }
  unlink(tmpl);

  *out +=
      "| path | condition | windows | round trips | median gap µs | p99 gap µs | "
      "max gap ms | max ÷ direct max, same condition | commit ms, median / max | failures |\n";
  *out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  append_gap_row(direct_idle, direct_idle, out);
  append_gap_row(sluice_idle, direct_idle, out);
  if (pasta_note.empty()) append_gap_row(pasta_idle, direct_idle, out);
  for (const std::array<GapRow, 4>& rows : during) {
    append_gap_row(rows[2], rows[2], out);
    append_gap_row(rows[0], rows[2], out);
    append_gap_row(rows[3], rows[3], out);
    append_gap_row(rows[1], rows[3], out);
  }
  *out += "\n";
  for (size_t i = 0; i < during.size(); ++i) {
    double worst = std::max(during[i][0].gap_ms.max, during[i][1].gap_ms.max);
    *out += fmt("Longest ping-pong gap through sluice during a %s-port commit: %.3f ms",
                thousands(o.stall_ports[i]).c_str(), worst);
    // The goal of the issue is for 10,000 ports.
    if (o.stall_ports[i] == kBigPorts) {
      *out += fmt(" (goal < %.0f ms: %s)", kStallGoalMs, worst < kStallGoalMs ? "met" : "MISSED");
    }
    *out += ".\n";
  }
  *out += "\n";
  *out += pasta_note;
  return Ok();
}

// ------------------------------------------------------------ 3. connect loop

/// Counts of a connect loop.
struct LoopCounts {
  std::atomic<size_t> ok{0}, refused{0}, reset{0}, other{0};
  std::atomic<size_t> slow{0};  // attempts, of any outcome, longer than kSlowAttemptMs
  /// Every attempt finished so far, whatever its outcome.
  size_t total() const { return ok + refused + reset + other; }
};

/// Connects to 127.0.0.1:`port` in a loop until `stop`, and classifies each
/// attempt: accepted and closed by the target (ok), ECONNREFUSED (refused),
/// ECONNRESET at connect or read (reset), anything else (other).
void connect_loop(uint16_t port, const std::atomic<bool>* stop, LoopCounts* counts) noexcept {
  // Limit: 10 minutes, far beyond 1,000 commits; a hung daemon ends the loop.
  uint64_t deadline = now_ns() + 600'000'000'000ULL;
  while (!stop->load() && now_ns() < deadline) {
    uint64_t begin = now_ns();
    // Limit: 2 s per attempt, above the 1 s SYN retransmission, so a lost
    // SYN shows as a slow attempt rather than as a timeout.
    UniqueFd c = connect_local(port, 2000);
    int err = errno;
    if (now_ns() - begin > kSlowAttemptMs * 1000000ULL) counts->slow++;
    errno = err;
    if (!c.valid()) {
      (errno == ECONNREFUSED ? counts->refused
       : errno == ECONNRESET ? counts->reset
                             : counts->other)++;
      continue;
    }
    char b;
    ssize_t n = recv(c.get(), &b, 1, 0);  // EOF: the target accepted and closed
    if (n == 0) {
      counts->ok++;
    } else {
      (n < 0 && errno == ECONNRESET ? counts->reset : counts->other)++;
    }
  }
}

/// How the commits of a connect-loop row are paced.
enum class Pace {
  kInterleaved,  // after each commit, wait until one more attempt has finished
  kBackToBack,   // commit as fast as the daemon answers
};

/// Runs `commits` commits alternating `a` and `b` under a connect loop on
/// kLoopKept, paced by `pace`, and appends one table row named `what` to
/// `out`. `check` returns false for a result whose counts are not what the
/// row claims (then the row fails).
Result<void> loop_row(const Options& o, const std::string& what, Pace pace, const TableSet& a,
                      const TableSet& b, bool (*check)(const control::CommitResult&),
                      std::string* out, int commits = 0) {
  if (commits == 0) commits = o.loop_commits;
  std::fprintf(stderr, "connect loop: %s, %d commits\n", what.c_str(), commits);
  TargetServer target;
  Result<void> r = target.start(kLoopTarget, TargetServer::Mode::kAcceptAndClose);
  if (!r.ok()) return r;
  Sluiced d;
  if (r = d.start(o.bin_dir, {"-t", fmt("127.0.0.1/%u:%u", kLoopKept, kLoopTarget)}); !r.ok()) {
    return r;
  }
  uint64_t gen = 0;
  Result<ControlConnection> c = control_at_generation(d, &gen);
  if (!c.ok()) return Err(c.error());
  LoopCounts counts;
  std::atomic<bool> stop{false};
  std::thread prober([&] { connect_loop(kLoopKept, &stop, &counts); });
  uint64_t start = now_ns();
  int unexpected = 0;
  std::vector<double> latency;  // client ms of each commit
  Result<void> failed = Ok();
  for (int i = 0; i < commits; ++i) {
    Result<TimedCommit> t = commit(*c, i % 2 == 0 ? a : b, &gen);
    if (!t.ok()) {
      failed = Err(t.error());
      break;
    }
    if (!check(t->result)) ++unexpected;
    latency.push_back(t->client_ms());
    if (pace == Pace::kBackToBack) continue;
    // Limit: 2 s per wait; an attempt takes well under a millisecond.
    size_t seen = counts.total();
    uint64_t until = now_ns() + 2'000'000'000ULL;
    while (counts.total() == seen && now_ns() < until) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  double seconds = static_cast<double>(now_ns() - start) / 1e9;
  stop = true;
  prober.join();
  if (!failed.ok()) return failed;
  if (unexpected > 0) {
    return Err(fmt("%s: %d commits had unexpected counts", what.c_str(), unexpected));
  }
  *out += fmt("| %s | %s | %d | %.0f | %s | %zu | %.1f | %zu | %zu | %zu | %zu |\n", what.c_str(),
              pace == Pace::kInterleaved ? "interleaved" : "back to back", commits,
              commits / seconds, med_max(summarize(latency)).c_str(), counts.ok.load(),
              static_cast<double>(counts.total()) / commits, counts.refused.load(),
              counts.reset.load(), counts.other.load(), counts.slow.load());
  return Ok();
}

/// Measures the connect loop during hitless commits (the kept port stays,
/// another port comes and goes), interleaved and back to back; during
/// commits that rebind the probed port every time (0.0.0.0 and 127.0.0.1
/// alternate: the new listener shares the port until the old one closes);
/// and, for contrast, during commits that close the probed port and bind it
/// again (removed by one commit, added back by the next: what upstream
/// pasta does to every port on every update).
Result<void> bench_connect_loop(const Options& o, std::string* out) {
  *out +=
      "| commits | pace | count | commits/s | commit ms, median / max | connections ok | "
      "attempts per commit | refused | reset | other | connect > 200 ms |\n";
  *out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  TableSet a, b;
  a.of(Pif::kHost).rules = {loopback_rule(kLoopKept, kLoopKept, kLoopTarget),
                            loopback_rule(kLoopExtra, kLoopExtra, kLoopTarget)};
  b.of(Pif::kHost).rules = {loopback_rule(kLoopKept, kLoopKept, kLoopTarget),
                            loopback_rule(kLoopExtra + 1, kLoopExtra + 1, kLoopTarget)};
  auto hitless = [](const control::CommitResult& c) { return c.kept == 1 && c.opened == 1; };
  const char* what = "hitless: port kept, another added and removed";
  Result<void> r = loop_row(o, what, Pace::kInterleaved, a, b, hitless, out);
  if (!r.ok()) return r;
  if (r = loop_row(o, what, Pace::kBackToBack, a, b, hitless, out); !r.ok()) return r;
  TableSet wild, local;
  wild.of(Pif::kHost).rules = {loopback_rule(kLoopKept, kLoopKept, kLoopTarget, "0.0.0.0")};
  local.of(Pif::kHost).rules = {loopback_rule(kLoopKept, kLoopKept, kLoopTarget)};
  // Limit: a tenth of the commits (at least 20). Each rebind waits for the
  // listener it replaces to settle (kRebindSettleNs, up to a tick: 0.1 to
  // 0.35 s), so 1,000 would take minutes.
  r = loop_row(
      o, "rebind: the probed port moved between 0.0.0.0 and 127.0.0.1 every commit",
      Pace::kInterleaved, wild, local,
      [](const control::CommitResult& c) { return c.rebound == 1; }, out,
      std::max(20, o.loop_commits / 10));
  if (!r.ok()) return r;
  TableSet none;
  return loop_row(
      o, "contrast: the probed port closed, then bound again (one commit each)", Pace::kInterleaved,
      none, local, [](const control::CommitResult& c) { return c.closed == 1 || c.opened == 1; },
      out);
}

/// Prints the usage.
void usage() {
  std::fprintf(stderr,
               "usage: commit_bench [--quick] [--only latency|stall|loop] [--ports N,M,...]\n"
               "Runs the commit benchmark in a private user + network namespace and prints\n"
               "Markdown tables. --quick: few repetitions, for a smoke run; --only: one part;\n"
               "--ports: the changed port counts of the latency and stall parts (default\n"
               "1,100,10000 and 10000; each 1-%zu).\n",
               kMaxRangePorts);
}

/// Parses a comma-separated list of port counts, each 1..kMaxRangePorts,
/// into `*out`. Returns false, leaving `*out` alone, on anything else.
bool parse_ports(const char* text, std::vector<size_t>* out) {
  std::vector<size_t> counts;
  const char* p = text;
  // Limit: 16 counts; each one costs a sluiced run of several seconds.
  while (counts.size() < 16) {
    char* end = nullptr;
    errno = 0;
    unsigned long n = std::strtoul(p, &end, 10);
    if (end == p || errno != 0 || n == 0 || n > kMaxRangePorts) return false;
    counts.push_back(n);
    if (*end == '\0') {
      *out = counts;
      return true;
    }
    if (*end != ',') return false;
    p = end + 1;
  }
  return false;
}

}  // namespace
}  // namespace sluice::bench

/// Runs every part of the benchmark; exits 1 if one could not run. With
/// --echo-server PORT, serves as pasta's echo target instead.
int main(int argc, char** argv) {
  using namespace sluice::bench;
  if (argc == 3 && std::strcmp(argv[1], "--echo-server") == 0) {
    return echo_server_main(static_cast<uint16_t>(std::atoi(argv[2])));
  }
  Options o;
  std::string only;  // "", "latency", "stall" or "loop"
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      o.latency_reps = 3;
      o.stall_reps = 2;
      o.loop_commits = 100;
      o.idle_ms = 300;
    } else if (std::strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      only = argv[++i];
    } else if (std::strcmp(argv[i], "--ports") == 0 && i + 1 < argc) {
      if (!parse_ports(argv[++i], &o.latency_ports)) {
        usage();
        return 2;
      }
      o.stall_ports = o.latency_ports;
    } else {
      usage();
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  // Before any thread: unshare(CLONE_NEWUSER) needs a single-threaded process.
  sluice::Result<void> ns = enter_private_namespace();
  if (!ns.ok()) {
    std::fprintf(stderr, "commit_bench: %s\n", ns.error().message.c_str());
    return 1;
  }
  struct Part {
    const char* name;
    std::string title;
    sluice::Result<void> (*run)(const Options&, std::string*);
  };
  const Part parts[] = {
      {"latency", "Commit latency", bench_latency},
      {"stall",
       o.stall_ports == std::vector<size_t>{kBigPorts}
           ? std::string("Longest ping-pong gap during a 10,000-port commit")
           : "Longest ping-pong gap during commits of " + port_list(o.stall_ports) + " ports",
       bench_stall},
      {"loop", fmt("Connect loop on a kept port during %d commits", o.loop_commits),
       bench_connect_loop},
  };
  int failed = 0;
  for (const Part& part : parts) {
    if (!only.empty() && only != part.name) continue;
    std::string out;
    sluice::Result<void> r = part.run(o, &out);
    std::printf("### %s\n\n%s", part.title.c_str(), out.c_str());
    if (!r.ok()) {
      ++failed;
      std::printf("\n**not measured:** %s\n", r.error().message.c_str());
    }
    std::printf("\n");
    std::fflush(stdout);
  }
  return failed == 0 ? 0 : 1;
}
