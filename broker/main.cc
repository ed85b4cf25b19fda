// sluiced: the privileged broker. Start-up in order: options, inherited fds,
// policy file, audit fd, control socket, worker; then its own isolation
// stages (isolation.h); then the loop that answers the worker (serve.h,
// broker_host.h) until a signal, sluiced giving up on its workers, or a
// request it does not permit.
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "base/log.h"
#include "base/strings.h"
#include "broker/broker_host.h"
#include "broker/control_socket.h"
#include "broker/fd_store.h"
#include "broker/isolation.h"
#include "broker/namespace_helper.h"
#include "broker/options.h"
#include "broker/policy_reader.h"
#include "broker/port_holders.h"
#include "broker/restart_policy.h"
#include "broker/sd_notify.h"
#include "broker/serve.h"
#include "broker/service_adoption.h"
#include "broker/socket_activation.h"
#include "broker/worker_launch.h"
#include "broker/worker_launcher.h"
#include "broker/worker_user.h"
#include "policy/policy_file.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// Limit: log lines below kError that sluiced writes at once, then per
/// second (security review item 15). At the info level it writes about ten
/// lines at start and a few at exit, well within the burst; lines per
/// request come only from a denied request (a compromised worker could ask
/// for denied ports without end) or from -d. Ten a second, about 1 KiB,
/// keeps such a flood from filling a disk or a journal; the lines held back
/// are counted in a notice. Errors are never held back: sluiced writes them
/// as it stops.
constexpr uint32_t kLogBurst = 50;
constexpr uint32_t kLogPerSecond = 10;

/// Blocks SIGTERM, SIGINT, SIGCHLD and SIGHUP (reload the policy) and returns
/// a signalfd for them, so that
/// they are handled in the loop (and, blocked from the start, never lost or
/// handled halfway through start-up). SIGPIPE is ignored: a log write to a
/// closed stderr pipe must not kill the broker (replies use MSG_NOSIGNAL).
/// The worker gets both reset before exec. Fails with the errno.
Result<UniqueFd> take_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGCHLD);
  sigaddset(&mask, SIGHUP);
  if (::sigprocmask(SIG_BLOCK, &mask, nullptr) != 0) {
    int err = errno;
    return SysErr(err, "sigprocmask");
  }
  ::signal(SIGPIPE, SIG_IGN);
  UniqueFd fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, "signalfd");
  }
  return fd;
}

/// The audit sink the worker writes to, and the same file read-only for the
/// worker to link its run to the log's last line (schema/broker_wire.h
/// kWorkerFdAudit, kWorkerFdAuditTail).
struct AuditFds {
  UniqueFd sink;
  UniqueFd tail;  // invalid when the sink is stderr: the worker gets /dev/null
};

/// Opens the audit sink: --audit-log FILE (append-only, created 0600, checked
/// by open_audit_log()) and the same file read-only (open_audit_tail()), else
/// stderr as stderr_for_worker() gives it (non-blocking when it is a pipe or a
/// terminal), with no tail to read. sluiced reads neither. Fails with the
/// path and what to do.
Result<AuditFds> open_audit_fds(const std::string& path) {
  AuditFds fds;
  if (path.empty()) {
    auto fd = stderr_for_worker();
    if (!fd) return Err(fd.error().err, "audit records: " + fd.error().message);
    fds.sink = std::move(*fd);
    return fds;
  }
  auto sink = open_audit_log(path);
  if (!sink) return Err(sink.error());
  auto tail = open_audit_tail(path, *sink);
  if (!tail) return Err(tail.error());
  fds.sink = std::move(*sink);
  fds.tail = std::move(*tail);
  return fds;
}

/// The administrator's policy as the broker enforces it, and its text for the
/// worker (schema/broker_wire.h kWorkerFdPolicy).
struct LoadedPolicy {
  BindPolicy bind;
  ControlPolicy control;
  UniqueFd text;  // a sealed, read-only memfd holding the file's text
};

/// Loads the --policy file (or the default policy) for the bind and control
/// checks and its text for the worker. The kernel facts are filled in later.
/// Fails with the file's error.
Result<LoadedPolicy> load_policy(const std::string& path) {
  LoadedPolicy loaded;
  loaded.control.owner_uid = ::getuid();
  PolicyFile file;
  if (path.empty()) {
    LOG_DEBUG(
        "no --policy: default policy (bind: unprivileged ports on any address, and the "
        "privileged ports of the initial rules; any target; control by uid %u and root)",
        loaded.control.owner_uid);
  } else {
    const NameResolver resolver = resolve_system_name;
    auto parsed = load_policy_file(path, &resolver);
    if (!parsed) return Err(parsed.error());
    file = std::move(*parsed);
    LOG_INFO("policy %s: %zu bind, %zu target and %zu control line(s); first match wins",
             path.c_str(), file.bind_rules.size(), file.target_rules.size(),
             file.control_rules.size());
    loaded.bind = bind_policy_from_file(file);
    loaded.control = control_policy_from_file(file, loaded.control.owner_uid);
  }
  auto text = policy_memfd(file.text);
  if (!text) return Err(text.error());
  loaded.text = std::move(*text);
  return loaded;
}

/// Everything after the control socket exists: worker, isolation, loop.
/// Returns the exit code; the caller removes the socket file afterwards.
int run_with_socket(const BrokerOptions& options, LoadedPolicy loaded, ControlSocket& control,
                    ControlSocket* pesto, UniqueFd signals, AuditFds audit, TargetNamespace* target,
                    UniqueFd notify_fd, uint64_t watchdog_usec, StoredFds stored) {
  BindPolicy& policy = loaded.bind;
  auto worker_path = find_worker_binary();
  if (!worker_path) {
    LOG_ERROR("%s", worker_path.error().message.c_str());
    return kExitFailure;
  }
  bool used_default = false;
  WorkerArgs args = worker_args(options, &used_default);
  // Who sluiced is, as it sees itself: the worker may join a user namespace
  // where it would read another id (worker_args.h).
  args.sluiced_uid = ::getuid();
  args.sluiced_gid = ::getgid();
  // The worker's ids: switched to in its stage 2, only when sluiced is real
  // root in the initial user namespace (otherwise it keeps sluiced's user).
  if (root_in_initial_user_namespace()) {
    auto user = resolve_worker_user(options.worker_user, lookup_system_user);
    if (!user) {
      LOG_ERROR("%s", user.error().message.c_str());
      return kExitFailure;
    }
    args.worker_uid = user->uid;
    args.worker_gid = user->gid;
    if (user->shared_fallback) {
      LOG_WARN("the worker runs as %s", user->description.c_str());
    } else {
      LOG_INFO("the worker runs as %s", user->description.c_str());
    }
  } else if (!options.worker_user.empty()) {
    LOG_ERROR(
        "--worker-user %s: sluiced is not real root, so its worker runs as sluiced's own user; "
        "leave --worker-user out, or start sluiced as root",
        sanitize(options.worker_user, 64).c_str());
    return kExitFailure;
  }
  // With a target namespace, the worker runs inside it and would read the
  // namespace's ephemeral range; HOST rules listen here, so it gets ours.
  if (target != nullptr) {
    read_local_port_range(&args.host_ephemeral_first, &args.host_ephemeral_last);
  }
  if (used_default) {
    LOG_INFO(
        "no -t/-u/-T/-U given: using the default rule set -%c %s (forward 127.0.0.1:8080 "
        "to 127.0.0.1:8000); pass -t none for an empty table",
        kDefaultRuleOption, kDefaultRuleSpec);
  }
  // Stage 2, before the fork so that the worker inherits the raised limit.
  if (auto ok = raise_nofile_limit(); !ok) LOG_WARN("%s", ok.error().message.c_str());
  // Stage 3, while /proc is reachable (the seccomp filter has no open).
  policy.unprivileged_port_start = read_unprivileged_port_start();

  // The namespace helper is forked first, while sluiced still holds its
  // capabilities and the namespace files (joining needs both), and before the
  // worker exists: a helper that cannot start is one line and exit 1.
  std::optional<NamespaceHelper> helper;
  if (target != nullptr) {
    auto started = start_namespace_helper(*target);
    if (!started) {
      LOG_ERROR("%s", started.error().message.c_str());
      return kExitFailure;
    }
    helper = std::move(*started);
    LOG_DEBUG("namespace helper pid %d: CAP_NET_BIND_SERVICE %s there, unprivileged_port_start %u",
              static_cast<int>(helper->pid), helper->has_bind_cap ? "held" : "not held",
              helper->unprivileged_port_start);
  }
  // The policy reader too (policy_reader.h), only with --policy: its
  // namespaces may need CAP_SYS_ADMIN, and its NSS needs what sluiced's
  // filter does not admit.
  std::optional<PolicyReader> reader;
  if (!options.policy_path.empty()) {
    auto started = start_policy_reader(options.policy_path);
    if (!started) {
      LOG_ERROR("%s", started.error().message.c_str());
      return kExitFailure;
    }
    reader = std::move(*started);
    LOG_DEBUG("policy reader pid %d: SIGHUP re-reads %s", static_cast<int>(reader->pid),
              options.policy_path.c_str());
  }
  // Workers are started by the launcher (broker/worker_launcher.h), forked
  // BEFORE the broker drops its capabilities and loads its filter: started
  // as root, a worker needs CAP_SETUID/CAP_SETGID to switch to an
  // unprivileged user (its first stages drop everything else), and a seccomp
  // filter would be inherited and forbids execve. The launcher cuts its own
  // capabilities at once to what every worker's start needs (CAP_SETUID and
  // CAP_SETGID as real root), so that sluiced can replace a worker that
  // dies. SPLICE auto-scan rules follow what is bound on this side: sluiced
  // opens its own /proc/net tables for the worker, which reads them; sluiced
  // does not.
  LaunchSet set;
  set.path = *worker_path;
  set.args = args;
  if (target != nullptr) set.host_scan = open_host_scan_files();
  set.control = std::move(control.listen_fd);
  if (pesto != nullptr) set.pesto = std::move(pesto->listen_fd);
  set.audit = std::move(audit.sink);
  set.audit_tail = std::move(audit.tail);
  // sluiced keeps no namespace fd: the launcher and its workers hold them.
  const pid_t target_pid = target != nullptr ? target->pid : 0;
  if (target != nullptr) set.target = std::move(*target);
  auto started_launcher = start_worker_launcher(std::move(set));
  if (!started_launcher) {
    LOG_ERROR("%s", started_launcher.error().message.c_str());
    return kExitFailure;
  }
  // The target process's pidfd, to say when the container stops: opened
  // after the last fork (the namespace helper, the launcher), so that it is
  // sluiced's alone. A PID recycled since the namespace was opened, moments
  // ago, is a risk only for that message. Not fatal.
  UniqueFd target_process;
  if (target_pid > 0) {
    target_process.reset(static_cast<int>(::syscall(SYS_pidfd_open, target_pid, 0)));
  }
  const bool watch_target = target_process.valid();
  if (!watch_target) target_process.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  // The socket tables a rebind reads before it shares its port
  // (broker/port_holders.h), opened here, after the last fork, so that they
  // are sluiced's alone: its own side's, and the target namespace's through
  // the helper, which lives there (the kernel binds a table to the namespace
  // of the process it was opened through).
  SocketTables host_tables = open_socket_tables("/proc/self/net");
  SocketTables target_tables =
      helper ? open_socket_tables("/proc/" + std::to_string(helper->pid) + "/net")
             : no_socket_tables("sluiced has no target namespace");
  if (helper) {
    // By PID: the helper must still be the process that number names, or
    // the tables could be another namespace's. It is sluiced's child, so
    // its number is not reused before sluiced reaps it; its pidfd says
    // whether it exited (then sluiced stops at its first poll anyway).
    struct pollfd exited = {helper->pidfd.get(), POLLIN, 0};
    if (::poll(&exited, 1, 0) != 0) {
      target_tables = no_socket_tables("the namespace helper exited before its tables were read");
    }
  }
  for (const SocketTables* side : {&host_tables, &target_tables}) {
    if (side->error.empty() || (side == &target_tables && !helper)) continue;
    LOG_WARN(
        "%s; rebinds on that side fail with EADDRINUSE (to move a rule to another "
        "address of its port, remove it in one change and add it in the next: the port is "
        "closed in between)",
        side->error.c_str());
  }
  WorkerLauncher launcher = std::move(*started_launcher);
  // The policy text stays here (on broker_fd::kPolicyText once placed, where a
  // reload replaces it): every worker gets the one in force.
  auto launched = launch_through(launcher.channel.get(), loaded.text.get(), 1);
  if (!launched) {
    LOG_ERROR("%s", launched.error().message.c_str());
    return kExitFailure;
  }
  WorkerProcess worker = std::move(*launched);

  auto has_bind_cap = drop_capabilities();  // stage 4
  if (!has_bind_cap) {
    LOG_ERROR("%s", has_bind_cap.error().message.c_str());
    stop_worker(worker, StopMode::kKill);
    return kExitFailure;
  }
  policy.has_bind_cap = *has_bind_cap;
  // Without a pesto socket, /dev/null holds its directory's number: a fixed
  // table of fds, and unlinkat there fails (ENOTDIR).
  UniqueFd no_pesto_dir;
  if (pesto == nullptr) no_pesto_dir.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd& pesto_dir = pesto != nullptr ? pesto->dir_fd : no_pesto_dir;
  if (!pesto_dir.valid()) {
    LOG_ERROR("cannot open /dev/null: %s", errno_text(errno).c_str());
    stop_worker(worker, StopMode::kKill);
    return kExitFailure;
  }
  // Without --netns, /dev/null holds the helper's numbers too.
  UniqueFd no_helper_channel, no_helper_pidfd;
  if (!helper) {
    no_helper_channel.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    no_helper_pidfd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  // Without NOTIFY_SOCKET, /dev/null holds its number (sendto there fails).
  if (!notify_fd.valid()) notify_fd.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const bool notify = watchdog_usec != UINT64_MAX;
  // Without --policy, /dev/null holds the policy reader's number.
  UniqueFd no_reader;
  if (!reader) no_reader.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd& reader_channel = reader ? reader->channel : no_reader;
  UniqueFd& helper_channel = helper ? helper->channel : no_helper_channel;
  UniqueFd& helper_pidfd = helper ? helper->pidfd : no_helper_pidfd;
  bool tables_valid = true;
  for (const SocketTables* side : {&host_tables, &target_tables}) {
    for (const UniqueFd& file : side->files) tables_valid = tables_valid && file.valid();
  }
  if (!helper_channel.valid() || !helper_pidfd.valid() || !notify_fd.valid() ||
      !reader_channel.valid() || !target_process.valid() || !tables_valid) {
    LOG_ERROR("cannot open /dev/null: %s", errno_text(errno).c_str());
    stop_worker(worker, StopMode::kKill);
    return kExitFailure;
  }
  const FdPlacement placements[] = {{&worker.channel, broker_fd::kChannel},
                                    {&signals, broker_fd::kSignal},
                                    {&worker.pidfd, broker_fd::kWorker},
                                    {&control.dir_fd, broker_fd::kControlDir},
                                    {&pesto_dir, broker_fd::kPestoDir},
                                    {&helper_channel, broker_fd::kHelperChannel},
                                    {&helper_pidfd, broker_fd::kHelper},
                                    {&notify_fd, broker_fd::kNotify},
                                    {&reader_channel, broker_fd::kPolicyReader},
                                    {&loaded.text, broker_fd::kPolicyText},
                                    {&launcher.channel, broker_fd::kLauncherChannel},
                                    {&launcher.pidfd, broker_fd::kLauncher},
                                    {&target_process, broker_fd::kTarget},
                                    {&host_tables.files[0], broker_fd::kSocketTables},
                                    {&host_tables.files[1], broker_fd::kSocketTables + 1},
                                    {&host_tables.files[2], broker_fd::kSocketTables + 2},
                                    {&host_tables.files[3], broker_fd::kSocketTables + 3},
                                    {&target_tables.files[0], broker_fd::kTargetSocketTables},
                                    {&target_tables.files[1], broker_fd::kTargetSocketTables + 1},
                                    {&target_tables.files[2], broker_fd::kTargetSocketTables + 2},
                                    {&target_tables.files[3], broker_fd::kTargetSocketTables + 3}};
  auto placed = place_fds(placements);                         // stage 5
  auto filtered = placed ? install_broker_seccomp() : placed;  // stage 6, last
  if (!filtered) {
    LOG_ERROR("isolating the broker: %s", filtered.error().message.c_str());
    stop_worker(worker, StopMode::kKill);
    return kExitFailure;
  }
  LOG_DEBUG("isolated: CAP_NET_BIND_SERVICE %s, unprivileged_port_start %u, seccomp loaded",
            policy.has_bind_cap ? "held" : "not held", policy.unprivileged_port_start);

  BrokerHost host(std::move(policy), std::move(loaded.control));
  host.set_socket_tables(std::move(host_tables), std::move(target_tables));
  if (helper) {
    host.serve_splice(broker_fd::kHelperChannel, helper->has_bind_cap,
                      helper->unprivileged_port_start, static_cast<int>(helper->pid));
  }
  Notifier notifier(notify ? broker_fd::kNotify : -1, notify ? watchdog_usec : 0, ::getpid());
  host.set_state_staging_fd(broker_fd::kStateStaging, broker_fd::kFirstFree);
  PolicyReloader reloader(reader ? broker_fd::kPolicyReader : -1, options.policy_path);
  if (!adopt_stored(host, std::move(stored), notify)) {
    stop_worker(worker, StopMode::kKill);
    return kExitFailure;
  }
  // The heap the start-up freed (the filter's build above all) goes back to
  // the kernel: about 90 KiB of sluiced's resident memory for its whole life.
  ::malloc_trim(0);
  RestartPolicy restarts(options.worker_restarts);
  Serving serving{&worker,           helper ? &*helper : nullptr,
                  &signals,          &launcher.pidfd,
                  &launcher.channel, &loaded.text,
                  control.path,      pesto != nullptr ? pesto->path : "",
                  &notifier,         &restarts,
                  &reloader,         watch_target,
                  options.netns};
  const int code = serve(host, serving);
  if (helper) stop_namespace_helper(*helper);
  return code;
}

/// Runs sluiced with parsed options; returns its exit code.
int run(const BrokerOptions& options) {
  // The service manager's variables are read first: LISTEN_FDS says which
  // inherited fds stage 1 must leave open. All are unset before any child
  // exists (the worker's environment is empty anyway).
  auto activation = parse_listen_env(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
                                     std::getenv("LISTEN_FDNAMES"), ::getpid());
  const char* notify_socket = std::getenv("NOTIFY_SOCKET");
  const std::string notify_path = notify_socket != nullptr ? notify_socket : "";
  auto watchdog =
      parse_watchdog(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), ::getpid());
  unset_service_manager_env();
  // Stage 1: a known fd table before anything is opened, then a log that
  // never blocks sluiced and cannot be flooded.
  if (auto ok = sanitize_inherited_fds(activation ? activation->count : 0); !ok) {
    LOG_ERROR("%s", ok.error().message.c_str());
    return kExitFailure;
  }
  log_set_rate_limit(kLogBurst, kLogPerSecond);
  if (auto sink = unblock_log(); sink) {
    LOG_DEBUG("%s", sink->c_str());
  } else {
    LOG_WARN("%s", sink.error().message.c_str());
  }
  if (!activation) {
    LOG_ERROR("socket activation: %s", activation.error().message.c_str());
    return kExitFailure;
  }
  auto adopted = adopt_activated(*activation, !options.pesto_path.empty());
  if (!adopted) {
    LOG_ERROR("%s", adopted.error().message.c_str());
    return kExitFailure;
  }
  // Readiness: connected now, before the filter (sd_notify.h).
  UniqueFd notify_fd;
  uint64_t watchdog_usec = UINT64_MAX;  // UINT64_MAX: no NOTIFY_SOCKET
  if (!notify_path.empty()) {
    if (!watchdog) {
      LOG_ERROR("%s", watchdog.error().message.c_str());
      return kExitFailure;
    }
    auto connected = connect_notify_socket(notify_path);
    if (!connected) {
      LOG_ERROR("%s", connected.error().message.c_str());
      return kExitFailure;
    }
    notify_fd = std::move(*connected);
    watchdog_usec = *watchdog;
    LOG_DEBUG("NOTIFY_SOCKET %s: READY=1 once the initial rules are served%s",
              sanitize(notify_path, 108).c_str(),
              *watchdog != 0 ? ", WATCHDOG=1 while the worker reports" : "");
  }
  auto signals = take_signals();
  if (!signals) {
    LOG_ERROR("%s", signals.error().message.c_str());
    return kExitFailure;
  }
  auto policy = load_policy(options.policy_path);
  if (!policy) {
    LOG_ERROR("%s", policy.error().message.c_str());
    return kExitFailure;
  }
  auto audit = open_audit_fds(options.audit_log_path);
  if (!audit) {
    LOG_ERROR("%s", audit.error().message.c_str());
    return kExitFailure;
  }
  // The target namespace is opened and tried before anything is created, so
  // that a wrong --netns is one clear line and exit 1.
  std::optional<TargetNamespace> target;
  if (!options.netns.empty()) {
    auto opened = open_target_namespace(options.netns, options.userns);
    if (!opened) {
      LOG_ERROR("%s", opened.error().message.c_str());
      return kExitFailure;
    }
    if (auto joinable = probe_target_namespace(*opened); !joinable) {
      LOG_ERROR("%s", joinable.error().message.c_str());
      return kExitFailure;
    }
    target = std::move(*opened);
    if (target->net_only) {
      LOG_INFO(
          "target namespace %s: joining its network namespace only, not its user namespace: "
          "sluiced's capabilities reach it from here (and its uid may be unmapped in a rootless "
          "container's); the worker and the namespace helper stay in sluiced's user namespace",
          target->name.c_str());
    }
    LOG_INFO(
        "target namespace %s: HOST rules connect inside it, SPLICE rules (-T/-U) listen "
        "inside it",
        target->name.c_str());
  }
  auto path = options.control_path.empty() ? default_control_path()
                                           : Result<std::string>(options.control_path);
  if (!path) {
    LOG_ERROR("%s", path.error().message.c_str());
    return kExitFailure;
  }
  if (!options.pesto_path.empty() && options.pesto_path == *path) {
    LOG_ERROR("--pesto-socket %s is also the control socket; give them different paths",
              path->c_str());
    return kExitFailure;
  }
  auto control = adopted->control.valid()
                     ? activated_socket(std::move(adopted->control), kControlRole, *path)
                     : create_control_socket(*path);
  if (!control) {
    // A socket unit whose fd is not named `control` still holds the path.
    LOG_ERROR("%s%s", control.error().message.c_str(),
              adopted->closed_unnamed
                  ? "; the service manager passed sockets of other names (closed, above): if "
                    "one is this socket, name it in its .socket unit with "
                    "FileDescriptorName=control"
                  : "");
    return kExitFailure;
  }
  std::optional<ControlSocket> pesto;
  if (!options.pesto_path.empty()) {
    auto made = adopted->pesto.valid()
                    ? activated_socket(std::move(adopted->pesto), kPestoRole, options.pesto_path)
                    : create_control_socket(options.pesto_path, kPestoRole);
    if (!made) {
      LOG_ERROR("%s", made.error().message.c_str());
      remove_control_socket(*control);
      return kExitFailure;
    }
    pesto = std::move(*made);
  }
  int code = run_with_socket(options, std::move(*policy), *control, pesto ? &*pesto : nullptr,
                             std::move(*signals), std::move(*audit), target ? &*target : nullptr,
                             std::move(notify_fd), watchdog_usec, std::move(adopted->stored));
  remove_control_socket(*control);
  if (pesto) remove_control_socket(*pesto);
  return code;
}

}  // namespace
}  // namespace sluice

int main(int argc, char** argv) {
  sluice::log_init("sluiced", 2, sluice::LogLevel::kInfo);
  auto parsed = sluice::parse_broker_options(argc, argv);
  if (!parsed) {
    std::fprintf(stderr, "sluiced: error: %s\nTry 'sluiced --help' for more information.\n",
                 parsed.error().message.c_str());
    return 2;
  }
  switch (parsed->action) {
    case sluice::OptionsAction::kHelp:
      sluice::print_usage(stdout);
      return 0;
    case sluice::OptionsAction::kVersion:
      std::printf("sluiced %s\n", SLUICE_VERSION);
      return 0;
    case sluice::OptionsAction::kRun:
      break;
  }
  const sluice::BrokerOptions& options = parsed->options;
  sluice::log_set_level(options.debug   ? sluice::LogLevel::kDebug
                        : options.quiet ? sluice::LogLevel::kWarn
                                        : sluice::LogLevel::kInfo);
  return sluice::run(options);
}
