// sluice-worker: the sandboxed half of sluice. Started only by sluiced, with
// its fds at the fixed numbers of schema/broker_wire.h and its start-up
// arguments (initial rules, limits) as argv, declared in schema/worker_args.h.
// It enters its sandbox before it reads any input, then serves the data path
// and the control socket in one event loop.
#include <malloc.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/strings.h"
#include "policy/policy_file.h"
#include "schema/broker_wire.h"
#include "schema/codec.h"
#include "schema/frame.h"
#include "schema/rules/spec_parser.h"
#include "schema/worker_args.h"
#include "worker/audit.h"
#include "worker/audit_tail.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"
#include "worker/control_server.h"
#include "worker/data_thread.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"
#include "worker/pesto_server.h"
#include "worker/policy_recheck.h"
#include "worker/port_scan.h"
#include "worker/sandbox.h"
#include "worker/socket_pool.h"
#include "worker/state_store.h"
#include "worker/status_reporter.h"
#include "worker/udp_forwarder.h"

namespace sluice {
namespace {

/// Builds the initial tables: each spec appends its rules to its pif's table,
/// in the order given (the tables start empty, so this is pesto's "replace").
Result<TableSet> build_tables(const std::vector<WorkerRuleArg>& specs, const HostFacts& facts) {
  SpecContext ctx;
  ctx.ephemeral_first = facts.ephemeral_first;
  ctx.ephemeral_last = facts.ephemeral_last;
  ctx.ipv4 = facts.ipv4;
  ctx.ipv6 = facts.ipv6;
  TableSet tables;
  for (const WorkerRuleArg& spec : specs) {
    auto rules = parse_spec(spec.option, spec.spec, ctx);
    if (!rules) return Err(rules.error());
    auto& table = tables.of(option_pif(spec.option)).rules;
    table.insert(table.end(), rules->begin(), rules->end());
  }
  return tables;
}

/// Reads the policy text sluiced put on kWorkerFdPolicy (from its start to
/// EOF, at most kMaxPolicyFileBytes) and parses it; `source` names it in
/// messages. From its start, with pread: the file's offset is shared with
/// sluiced and every worker before, and one that a process holding a copy
/// moved would otherwise make this worker parse a cut policy (fewer
/// `target` lines). Needs `pread64` on that fd.
Result<PolicyFile> read_policy(const std::string& source) {
  std::string text;
  char buf[8192];
  for (;;) {
    ssize_t n = ::pread(wire::kWorkerFdPolicy, buf, sizeof(buf), static_cast<off_t>(text.size()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("reading the policy text from sluiced");
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxPolicyFileBytes) return Err("the policy text from sluiced is too large");
  }
  ::close(wire::kWorkerFdPolicy);
  return parse_policy_text(text, source);
}

/// The greeting every control client receives: SPLICE is listed among the
/// pifs only where it is served (`splice`: sluiced has a target namespace).
control::ServerHello make_hello(const HostFacts& facts, const ServerCaps& caps,
                                bool target_namespace, bool splice) {
  control::ServerHello hello;
  hello.server_version = std::string("sluice-worker ") + SLUICE_VERSION;
  hello.caps = caps;
  hello.rules_per_table = kMaxRulesPerTable;
  hello.listeners_per_table = kMaxListenersPerTable;
  hello.message_bytes = kMaxControlMessageBytes;
  hello.pifs = {control::PifInfo{Pif::kHost, pif_name(Pif::kHost)}};
  if (splice) hello.pifs.push_back(control::PifInfo{Pif::kSplice, pif_name(Pif::kSplice)});
  hello.ephemeral_first = facts.ephemeral_first;
  hello.ephemeral_last = facts.ephemeral_last;
  hello.target_namespace = target_namespace;
  return hello;
}

/// Answers a person who runs sluice-worker by hand: --version prints the
/// version, --help and a start without sluiced's channel (a SOCK_SEQPACKET
/// socket on kWorkerFdBroker) say to run sluiced. Returns the exit status
/// (0, or 2 without the channel), or -1 when sluiced started it. Runs before
/// the sandbox; needs `getsockopt`.
int run_by_hand(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("sluice-worker %s\n", SLUICE_VERSION);
    return 0;
  }
  const bool help = argc == 2 && std::strcmp(argv[1], "--help") == 0;
  int type = 0;
  socklen_t len = sizeof(type);
  if (!help && ::getsockopt(wire::kWorkerFdBroker, SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
      type == SOCK_SEQPACKET) {
    return -1;
  }
  std::fprintf(stderr,
               "sluice-worker is started by sluiced, which hands it its descriptors (its "
               "channel to sluiced on fd %d) and its arguments; run sluiced instead (sluiced "
               "--help, man sluiced)\n",
               wire::kWorkerFdBroker);
  return help ? 0 : 2;
}

/// Runs the worker; returns the process exit status.
int run(int argc, char** argv) {
  // argv comes from sluiced. Its words are split and its numbers checked
  // here, before the sandbox, because stage 2 needs the worker's ids; the
  // rule specs in it stay text until the sandbox is up (build_tables below).
  std::vector<std::string> raw(argv, argv + argc);
  auto args = parse_worker_args(raw);
  if (!args) {
    LOG_ERROR("start-up arguments: %s", args.error().message.c_str());
    return 2;
  }
  if (args->debug) log_set_level(LogLevel::kDebug);
  if (args->quiet) log_set_level(LogLevel::kWarn);
  // Auto-scan reads both sides' /proc/net tables (worker/port_scan.h):
  // sluiced's side's first, from the fixed fds sluiced put them on, before
  // anything is opened that could take one of those numbers; then the target
  // namespace's own, opened onto their fixed fds while open is allowed.
  std::optional<PortScanner> host_scanner;
  std::optional<PortScanner> scanner;
  if (args->target_netns) {
    host_scanner = PortScanner::adopt(wire::kWorkerFdHostScanFirst, "sluiced's side");
    scanner = PortScanner::open_pinned(wire::kWorkerFdScanFirst);
  }
  // A peer that vanishes must surface as EPIPE from splice/send, never as a
  // signal that kills the data path. Set before the filter: no rt_sigaction after.
  signal(SIGPIPE, SIG_IGN);

  HostFacts facts = gather_host_facts();
  // The key of the UDP flow table's hash, drawn while getrandom is still
  // allowed: senders must not be able to choose colliding keys.
  uint64_t seed[2] = {0, 0};
  if (getrandom(seed, sizeof(seed), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(seed))) {
    seed[0] = monotonic_ns() ^ (static_cast<uint64_t>(getpid()) << 32);
    seed[1] = reinterpret_cast<uintptr_t>(&seed) ^ 0x9E3779B97F4A7C15ULL;
    LOG_WARN("getrandom failed; the UDP flow table's hash key is not secret");
  }
  // The initial rules come from sluiced's command line: audit them as sluiced's
  // (its pid, and the ids it runs as, which sluiced sent: the worker's own
  // may be another user namespace's view, and the sandbox changes them).
  struct ucred sluiced_cred = {getppid(), args->sluiced_uid, args->sluiced_gid};
  // The audit log's last line, as bytes, while fstat and pread are still
  // allowed (the filter has no fstat, and pread64 only on the auto-scan fds);
  // parsed only inside the sandbox. The descriptor is closed at once: nothing
  // else of the file is ever read.
  const AuditTailBytes audit_tail = read_audit_tail(wire::kWorkerFdAuditTail, wire::kWorkerFdAudit);
  ::close(wire::kWorkerFdAuditTail);
  // The run's id, while getrandom is still allowed. It names the run; nothing
  // depends on it being secret, so a clock-based id will do if getrandom fails.
  AuditRunStart run_start;
  if (getrandom(run_start.run.data(), run_start.run.size(), GRND_NONBLOCK) !=
      static_cast<ssize_t>(run_start.run.size())) {
    const uint64_t parts[2] = {monotonic_ns(), static_cast<uint64_t>(getpid())};
    static_assert(sizeof(parts) == kAuditRunIdBytes);
    std::memcpy(run_start.run.data(), parts, sizeof(parts));
  }
  run_start.pid = sluiced_cred.pid;
  run_start.uid = sluiced_cred.uid;
  run_start.gid = sluiced_cred.gid;
  auto loop = EventLoop::create();
  if (!loop) {
    LOG_ERROR("%s", loop.error().message.c_str());
    return 1;
  }
  std::vector<int> keep = {(*loop)->fd(), (*loop)->timer_fd()};
  for (const std::optional<PortScanner>* s : {&scanner, &host_scanner}) {
    if (!*s) continue;
    for (int fd : (*s)->fds()) {
      if (fd >= 0) keep.push_back(fd);
    }
  }
  // The data-path threads beyond this one (--data-threads), and the mailbox
  // they post to: made now, since the sandbox allows neither epoll_create1
  // nor eventfd2, and started between its last two stages. A started thread
  // is never freed: it waits on its object's eventfd until the process exits.
  std::vector<DataThread*> threads;
  std::unique_ptr<Mailbox> inbox;
  bool threads_started = false;
  struct ThreadsOwner {
    std::vector<DataThread*>& threads;
    const bool& started;
    ~ThreadsOwner() {
      if (started) return;
      for (DataThread* t : threads) delete t;
    }
  } threads_owner{threads, threads_started};
  if (args->data_threads > 1) {
    // One malloc arena for every thread. A thread's own arena is made of
    // mmap'd heaps, and glibc's trimming of such a heap opens
    // /proc/sys/vm/overcommit_memory, and its ninth arena asks
    // sched_getaffinity: the filter allows neither, and would kill the
    // worker under load or at start. Each thread keeps its tcache, so small
    // allocations still take no lock. (The sanitizers' allocator replaces
    // glibc's, and refuses the option: it makes no arenas.)
#ifndef SLUICE_SANITIZE
    if (mallopt(M_ARENA_MAX, 1) != 1) {
      LOG_ERROR("mallopt(M_ARENA_MAX, 1) failed: the data-path threads cannot start safely");
      return 1;
    }
#endif
    auto box = Mailbox::create(**loop);
    if (!box) {
      LOG_ERROR("%s", box.error().message.c_str());
      return 1;
    }
    inbox = std::move(*box);
    keep.push_back(inbox->fd());
    for (uint32_t i = 1; i < args->data_threads; ++i) {
      auto t = DataThread::create();
      if (!t) {
        LOG_ERROR("%s", t.error().message.c_str());
        return 1;
      }
      for (int fd : (*t)->fds()) keep.push_back(fd);
      threads.push_back(t->release());
    }
  }
  // Without other threads, no hook: the sandbox keeps its PID namespace
  // stage (enter_sandbox).
  std::function<Result<void>()> start_threads;
  if (!threads.empty()) {
    start_threads = [&]() -> Result<void> {
      for (DataThread* t : threads) {
        auto started = t->start();
        if (!started) return started;
        threads_started = true;
      }
      return Ok();
    };
  }
  auto sandboxed =
      enter_sandbox(keep, WorkerIds{args->worker_uid, args->worker_gid}, start_threads);
  if (!sandboxed) {
    LOG_ERROR("cannot enter the sandbox: %s", sandboxed.error().message.c_str());
    return 1;
  }

  // The run's start record comes first, before anything is served or a rule
  // parsed: it links this run to the log's last line, or says why it cannot.
  AuditLog audit(wire::kWorkerFdAudit);
  run_start.link = link_audit_tail(audit_tail);
  audit.start(run_start);
  if (run_start.link.tail == AuditTail::kUnreadable) {
    LOG_WARN("audit log: run %s cannot link to the lines before it: %s; its start record says so",
             audit_run_hex(run_start.run).c_str(), run_start.link.error.c_str());
  } else {
    LOG_DEBUG("audit log: run %s starts (tail %s)", audit_run_hex(run_start.run).c_str(),
              std::string(audit_tail_name(run_start.link.tail)).c_str());
  }

  auto policy =
      read_policy(args->policy_source.empty() ? "the default policy" : args->policy_source);
  if (!policy) {
    LOG_ERROR("policy: %s", policy.error().message.c_str());
    return 1;
  }
  if (args->host_ephemeral_first != 0 && args->host_ephemeral_first <= args->host_ephemeral_last) {
    // Inside a target namespace, /proc showed the namespace's range; HOST
    // rules listen on sluiced's side, whose range sluiced sent.
    facts.ephemeral_first = static_cast<uint16_t>(args->host_ephemeral_first);
    facts.ephemeral_last = static_cast<uint16_t>(args->host_ephemeral_last);
  } else if (args->host_ephemeral_first != 0 || args->host_ephemeral_last != 0) {
    LOG_WARN("the host side's ephemeral range %u-%u from sluiced is not a range; using %u-%u",
             args->host_ephemeral_first, args->host_ephemeral_last, facts.ephemeral_first,
             facts.ephemeral_last);
  }
  auto tables = build_tables(args->rules, facts);
  if (!tables) {
    LOG_ERROR("initial rules: %s", tables.error().message.c_str());
    return 1;
  }

  // Hello, then the initial rules' privileged ports, before anything from a
  // peer is read: the broker admits that declaration only now, once
  // (schema/broker_wire.h InitialPortsMsg).
  BrokerClient broker(**loop, UniqueFd(wire::kWorkerFdBroker));
  auto info = broker.hello(*tables);
  if (!info) {
    LOG_ERROR("%s", info.error().message.c_str());
    return 1;
  }
  // After a crash: the dead worker's listeners and its last tables, which
  // sluiced kept. The blob is untrusted input: decoded here, then committed
  // through the same checks and policy as any commit.
  std::optional<control::StateBlob> resumed_state;
  std::vector<std::pair<ListenerKey, UniqueFd>> adopted;
  if (info->resume) {
    auto resumed = broker.resume();
    if (!resumed) {
      LOG_ERROR("taking over from the worker that died: %s", resumed.error().message.c_str());
      return 1;
    }
    adopted = std::move(resumed->listeners);
    if (resumed->refused > 0) {
      LOG_INFO("%zu listener%s from sluiced no longer listen%s; closed", resumed->refused,
               resumed->refused == 1 ? "" : "s", resumed->refused == 1 ? "s" : "");
    }
    if (resumed->blob.valid()) {
      auto words = read_blob(resumed->blob.get(), resumed->blob_bytes);
      auto blob = words ? control::decode_state_blob(words->data(), resumed->blob_bytes)
                        : Result<control::StateBlob>(Err(words.error()));
      if (blob) {
        resumed_state = std::move(*blob);
      } else {
        LOG_ERROR(
            "the state blob of the worker that died is refused: %s; starting from the initial "
            "rules of the sluiced command line",
            blob.error().message.c_str());
      }
    }
    std::string what = ", no tables (the initial rules apply)";
    if (resumed_state && resumed_state->unconfirmed) {
      what = ", tables of generation " + std::to_string(resumed_state->generation) +
             ", which still waited for confirmation: its pending confirmation ends with the "
             "worker that died, and the tables of generation " +
             std::to_string(resumed_state->unconfirmed->rollback_generation) +
             " come back at once (an automatic rollback)";
    } else if (resumed_state) {
      what = ", tables of generation " + std::to_string(resumed_state->generation);
    }
    LOG_INFO("taking over from a worker that died: %zu listener%s%s", adopted.size(),
             adopted.size() == 1 ? "" : "s", what.c_str());
  }

  // SPLICE is served where sluiced says it is (a target namespace and its
  // namespace helper); auto-scan exactly when the worker can read the side
  // each served table follows: the target namespace for HOST, sluiced's side
  // for SPLICE. SCAN is one bit for every table the hello lists.
  ServerCaps caps;
  caps.ipv4 = facts.ipv4;
  caps.ipv6 = facts.ipv6;
  caps.udp = true;
  caps.scan = scanner.has_value() && (!info->splice_served || host_scanner.has_value());
  if (scanner && info->splice_served && !host_scanner) {
    LOG_WARN("auto-scan is off for every table: sluiced's side cannot be read (see above)");
  }
  ForwarderLimits tcp_limits;
  tcp_limits.max_connections = args->max_connections;
  tcp_limits.max_connections_per_rule = args->max_connections_per_rule;
  tcp_limits.max_connections_per_source = args->max_connections_per_source;
  tcp_limits.idle_timeout_ns = uint64_t{args->idle_timeout_s} * 1000000000ULL;
  tcp_limits.hash_seed[0] = seed[0];
  tcp_limits.hash_seed[1] = seed[1];
  tcp_limits.connect_timeout_ns = uint64_t{args->connect_timeout_s} * 1000000000ULL;
  tcp_limits.pipe_size = args->pipe_size;
  tcp_limits.pipe_pages_budget = facts.pipe_user_pages_soft / 2;
  tcp_limits.log_connections = args->log_connections;
  // Each data-path thread keeps its own pipes: the budget and the pool are
  // divided among them.
  tcp_limits.pipe_pages_budget /= args->data_threads;
  tcp_limits.max_idle_pipes = std::max<size_t>(1, tcp_limits.max_idle_pipes / args->data_threads);
  ConnShare conn_share(seed[0], seed[1]);
  Forwarder forwarder(**loop, tcp_limits, &conn_share);
  if (inbox) {
    conn_share.wake_main = [box = inbox.get(), f = &forwarder] {
      box->post([f] { f->wake_parked(); });
    };
  }
  (*loop)->add_ticker(&forwarder);
  for (DataThread* t : threads) t->serve(tcp_limits, &conn_share, &forwarder, inbox.get());
  if (!threads.empty()) {
    // Before set_data_threads shares a listener (worker/data_thread.cc).
    forwarder.set_inbox(inbox.get());
    conn_share.forwarders.push_back(&forwarder);
    for (DataThread* t : threads) conn_share.forwarders.push_back(t->forwarder());
  }
  // Whichever way run() returns, the threads stop before what they share
  // (conn_share, forwarder) is destroyed.
  struct ThreadsStopper {
    std::vector<DataThread*>& threads;
    ~ThreadsStopper() {
      for (DataThread* t : threads) t->stop();
    }
  } threads_stopper{threads};
  UdpLimits udp_limits;
  udp_limits.max_flows = args->udp_flows;
  udp_limits.idle_timeout_s = args->udp_idle_timeout_s;
  udp_limits.log_flows = args->log_connections;
  udp_limits.hash_seed[0] = seed[0];
  udp_limits.hash_seed[1] = seed[1];
  // On the heap: its batch headers take about 12 KiB.
  auto udp = std::make_unique<UdpForwarder>(**loop, udp_limits);
  (*loop)->add_ticker(udp.get());
  // SPLICE rules connect to sluiced's side through sockets sluiced makes.
  SocketPool host_sockets(broker, facts.ipv4, facts.ipv6);
  if (info->splice_served) {
    forwarder.set_host_sockets(&host_sockets);
    udp->set_host_sockets(&host_sockets);
    host_sockets.set_on_refilled([&forwarder, udp = udp.get()](int family, Proto proto) {
      if (proto == Proto::kTcp) forwarder.host_sockets_ready(family);
      if (proto == Proto::kUdp) udp->host_sockets_ready();
    });
  }
  // After set_host_sockets: which rules the threads may serve depends on it.
  forwarder.set_data_threads(threads);
  audit.attach(loop->get());
  CommitEngine engine(**loop, forwarder, *udp, broker, *info, caps, audit);
  engine.set_policy(bind_policy_from_file(*policy), target_policy_from_file(*policy));
  engine.set_fd_limit(facts.fd_limit);
  udp->set_descriptor_room([&engine] { return engine.fd_use().room(); });
  if (FdUse idle{facts.fd_limit};
      facts.fd_limit != 0 && args->udp_flows + kFlowListenerHeadroom > idle.room()) {
    LOG_WARN(
        "--udp-flows %u is more than the worker's RLIMIT_NOFILE (%llu) leaves for flows "
        "(about %llu, less as listeners and connections come): past that, datagrams from new "
        "clients are dropped; raise sluiced's LimitNOFILE= or ulimit -n, or lower --udp-flows",
        static_cast<unsigned>(args->udp_flows), static_cast<unsigned long long>(facts.fd_limit),
        static_cast<unsigned long long>(
            idle.room() > kFlowListenerHeadroom ? idle.room() - kFlowListenerHeadroom : 0));
  }
  engine.set_target_namespace(args->target_netns);
  engine.set_scanner(scanner ? &*scanner : nullptr);
  engine.set_host_scanner(host_scanner ? &*host_scanner : nullptr);
  engine.start();
  engine.adopt(std::move(adopted));
  if (info->resume) engine.begin_takeover();
  // The heartbeat to sluiced, from the initial commit on (readiness and the
  // systemd watchdog, schema/broker_wire.h WorkerStatus).
  StatusReporter reporter(**loop, broker, engine);
  (*loop)->add_ticker(&reporter);
  // The end of the broker channel (EOF, a failed send, a malformed reply)
  // stops the engine and the loop: there is no safe way on without sluiced.
  if (auto ok = broker.start([&engine](const BrokerLoss& loss) { engine.on_broker_lost(loss); });
      !ok) {
    LOG_ERROR("broker channel: %s", ok.error().message.c_str());
    return 1;
  }
  ControlServer control(**loop, UniqueFd(wire::kWorkerFdControl), engine,
                        make_hello(facts, caps, args->target_netns, info->splice_served),
                        ControlLimits{}, broker,
                        control_policy_from_file(*policy, sluiced_cred.uid));
  // SIGHUP in sluiced: the reloaded policy, parsed as at start, applies to
  // the next commit and the next client; the tables in force are re-checked.
  const std::string policy_source =
      args->policy_source.empty() ? "the default policy" : args->policy_source;
  broker.on_policy_reload([&](UniqueFd text, uint32_t length) {
    // What fails here, sluiced already put in force: the worker keeps the
    // policy it had, says so, and audits it.
    auto file = text.valid()
                    ? read_reloaded_policy(text.get(), length, policy_source)
                    : Result<PolicyFile>(
                          Err(EMFILE,
                              "the reloaded policy text from sluiced did not arrive: the worker's "
                              "descriptor table is full (RLIMIT_NOFILE); forward fewer ports or "
                              "raise the limit, then reload again"));
    if (!file) {
      LOG_ERROR("policy reload: %s; the policy loaded before stays in force",
                file.error().message.c_str());
      engine.reload_failed(policy_source, file.error().message, sluiced_cred);
      return;
    }
    engine.reload_policy(*file, sluiced_cred);
    control.set_policy(control_policy_from_file(*file, sluiced_cred.uid));
  });
  // A SIGHUP whose reload failed in sluiced: audited as well.
  broker.on_policy_failed(
      [&](const std::string& error) { engine.reload_failed(policy_source, error, sluiced_cred); });
  // The process --netns named has exited (sluiced logged it): --stats says so.
  broker.on_target_exited([&] { engine.set_target_exited(); });
  // pesto's protocol on --pesto-socket, served once the initial rules are in
  // force, like the control socket; without it, fd 7 is /dev/null.
  std::unique_ptr<PestoServer> pesto;
  if (args->pesto) {
    pesto = std::make_unique<PestoServer>(**loop, UniqueFd(wire::kWorkerFdPesto), engine, broker);
  } else {
    ::close(wire::kWorkerFdPesto);
  }

  // The initial rules are the first commit, through the same engine as every
  // later one; the control socket is served only once they are in force.
  int status = 0;
  control::CommitRequest initial;
  initial.tables = *tables;
  initial.comment = "initial rules from the sluiced command line";
  bool resuming = resumed_state.has_value();
  // A commit that waited for confirmation does not outlive its worker: the
  // tables it replaced are resumed instead, as its automatic rollback (a new
  // generation, as a rollback at the deadline makes).
  std::optional<uint64_t> unconfirmed;
  if (resuming && resumed_state->unconfirmed) {
    control::StateBlob::Unconfirmed& u = *resumed_state->unconfirmed;
    unconfirmed = resumed_state->generation;
    initial.tables = std::move(u.rollback_tables);
    initial.comment = std::string(kAuditRollbackComment) + std::to_string(*unconfirmed) +
                      ": its worker died while it waited for confirmation (within " +
                      std::to_string(u.seconds) + " s); back to the tables of generation " +
                      std::to_string(u.rollback_generation) + " (from sluiced's state blob)";
    engine.resume_at(*unconfirmed + 1);
  } else if (resuming) {
    initial.tables = std::move(resumed_state->tables);
    initial.comment = std::string(kAuditResumeComment) + std::to_string(resumed_state->generation) +
                      " (from sluiced's state blob)";
    engine.resume_at(resumed_state->generation);
  }
  std::function<void(const control::CommitResult&)> on_initial;
  on_initial = [&](const control::CommitResult& result) {
    if (!result.applied && resuming) {
      // The blob came from a worker that may have been compromised: its
      // tables get no more trust than a client's commit.
      resuming = false;
      for (const control::Failure& f : result.failures) {
        LOG_ERROR("resumed tables: %s: %s", control::failure_kind_name(f.kind), f.message.c_str());
      }
      LOG_ERROR(
          "the tables of the worker that died%s are refused; starting from the initial rules of "
          "the sluiced command line",
          unconfirmed ? " (those before its unconfirmed commit)" : "");
      unconfirmed.reset();
      engine.resume_at(std::nullopt);
      control::CommitRequest fallback;
      fallback.tables = *tables;
      fallback.comment =
          "initial rules from the sluiced command line (the resumed tables were "
          "refused)";
      engine.submit(std::move(fallback), sluiced_cred, on_initial);
      return;
    }
    if (!result.applied) {
      for (const control::Failure& f : result.failures) {
        LOG_ERROR("initial rules: %s: %s", control::failure_kind_name(f.kind), f.message.c_str());
      }
      LOG_ERROR("no rule was applied (%zu failure%s)%s; fix the %s and start sluiced again",
                result.failures.size(), result.failures.size() == 1 ? "" : "s",
                info->resume ? ": neither the resumed tables nor the initial rules pass the "
                               "checks and the policy"
                             : "",
                info->resume ? "policy file or the rules," : "rules");
      status = 1;
      (*loop)->stop();
      return;
    }
    if (unconfirmed) engine.note_resume_rollback(*unconfirmed);
    for (const Rule& rule : engine.tables().of(Pif::kHost).rules) {
      LOG_INFO("forwarding %s", format_rule(rule).c_str());
    }
    for (const Rule& rule : engine.tables().of(Pif::kSplice).rules) {
      LOG_INFO("forwarding SPLICE %s (inside the target namespace, to this side)",
               format_rule(rule).c_str());
    }
    if (auto started = control.start(); !started) {
      LOG_ERROR("control socket: %s", started.error().message.c_str());
      status = 1;
      (*loop)->stop();
      return;
    }
    if (pesto) {
      if (auto started = pesto->start(); !started) {
        LOG_ERROR("pesto socket: %s", started.error().message.c_str());
        status = 1;
        (*loop)->stop();
        return;
      }
    }
    reporter.start();
    LOG_INFO("ready: %zu listener%s, generation %llu", engine.listener_count(),
             engine.listener_count() == 1 ? "" : "s",
             static_cast<unsigned long long>(engine.generation()));
  };
  engine.submit(std::move(initial), sluiced_cred, on_initial);
  // The loop ticks every EventLoop::kDefaultTickMs.
  (*loop)->run();
  // What is still open closes with the forwarders: the connection log says
  // so first.
  forwarder.log_open_connections();
  udp->log_open_flows();
  if (!audit.flush()) {
    LOG_WARN(
        "%zu bytes of audit lines were never taken by the audit sink (its reader stopped); "
        "the audit chain will end before them",
        audit.pending_bytes());
  }
  return status;
}

}  // namespace
}  // namespace sluice

/// Entry point: logs as "sluice-worker" to stderr (fd 2, set up by sluiced).
int main(int argc, char** argv) {
  sluice::log_init("sluice-worker", 2, sluice::LogLevel::kInfo);
  // sluiced gave its stderr a non-blocking description of its own when it is
  // a pipe or a terminal (broker/isolation.h, unblock_log); a socket (the
  // journal's stream) is shared, so the worker's lines go out with
  // MSG_DONTWAIT instead: a journal that falls behind (the connection log
  // at full rate) drops lines rather than stopping forwarding. The sandbox
  // allows `sendto` with any flags.
  struct stat st;
  if (fstat(2, &st) == 0 && S_ISSOCK(st.st_mode)) sluice::log_set_socket_sink(true);
  if (int status = sluice::run_by_hand(argc, argv); status >= 0) return status;
  return sluice::run(argc, argv);
}
