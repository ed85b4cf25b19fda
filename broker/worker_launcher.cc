// The worker launcher (see worker_launcher.h).
#include "broker/worker_launcher.h"

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

// glibc 2.36's <sys/pidfd.h> lacks __BEGIN_DECLS (fixed in 2.37): C linkage by hand.
extern "C" {
#include <sys/pidfd.h>
}

#include <cerrno>

#include "base/log.h"
#include "base/scm_rights.h"
#include "base/strings.h"
#include "broker/isolation.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

/// In the launcher, before its first request: stages 2 and 3 (see
/// worker_launcher.h). Returns the target namespace its workers' children
/// still join (nullptr: none, or the launcher joined it itself). Exits 1
/// after logging a stage that failed.
const TargetNamespace* isolate_launcher(LaunchSet& set) {
  // Stage 2: a target network namespace joined without its user namespace
  // is joined by the launcher itself, now, while it still holds
  // CAP_SYS_ADMIN (setns into a network namespace needs it over the
  // namespace's owner), so that its workers are born there and no capability
  // beyond stage 3's is kept for them. That is real root with a container's
  // namespace (net_only, probe_target_namespace), and anyone whose target is
  // owned by sluiced's own user namespace (`ip netns add`, `unshare -n`),
  // which has no user namespace to join. The owner of a rootless container
  // instead lets each worker's child join the container's user namespace,
  // then its network namespace (exec_child): that needs no capability, and
  // the launcher stays out of the container's user namespace.
  const TargetNamespace* child_joins = nullptr;
  if (set.target && !set.target->userns.valid()) {
    if (int err = join_target_namespace(*set.target); err != 0) {
      LOG_ERROR("the worker launcher cannot join the target namespace %s: %s",
                set.target->name.c_str(), errno_text(err).c_str());
      ::_exit(1);
    }
    set.target->netns.reset();
  } else if (set.target) {
    child_joins = &*set.target;
  }
  // Stage 3: capabilities cut to what a worker's start needs
  // (launcher_capabilities_needed says why for each).
  auto caps = cut_launcher_capabilities(launcher_capabilities_needed());
  if (!caps) {
    LOG_ERROR("%s", caps.error().message.c_str());
    ::_exit(1);
  }
  LOG_DEBUG("worker launcher: CapEff %016llx, CapBnd %016llx",
            static_cast<unsigned long long>(caps->eff), static_cast<unsigned long long>(caps->bnd));
  return child_joins;
}

/// In the launcher: its stages, then answers LaunchWorker requests on
/// `channel` until it closes, then exits 0 (1 when sluiced is gone or sent
/// something else, or a stage failed). Never returns.
[[noreturn]] void launcher_main(LaunchSet& set, int channel, pid_t parent) {
  // Stage 1: never outlive sluiced (the check closes the race with a
  // sluiced that died before the prctl). Stage 3's capability cut keeps the
  // parent-death signal: the kernel resets it only when privilege is gained
  // or ids change.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 || ::getppid() != parent) ::_exit(1);
  // Its own name in ps and /proc (sluiced's other fork is the namespace
  // helper); the name has 15 bytes, the most comm holds.
  ::prctl(PR_SET_NAME, "sluice-launcher", 0, 0, 0);
  const TargetNamespace* child_joins = isolate_launcher(set);
  for (;;) {
    wire::LaunchWorkerMsg req;
    auto got = receive_message(channel, &req, sizeof(req), 1);
    if (!got) {
      if (got.error().err == EINTR) continue;
      ::_exit(1);
    }
    if (got->len == 0) ::_exit(0);  // sluiced closed the channel: it is stopping
    if (got->len != sizeof(req) || got->fds.size() != 1 ||
        req.header.magic != wire::kBrokerWireMagic ||
        req.header.type != static_cast<uint32_t>(wire::BrokerMsg::kLaunchWorker)) {
      LOG_ERROR("malformed LaunchWorker from sluiced; the launcher stops");
      ::_exit(1);
    }
    // The policy memfd is shared with sluiced and every worker before: the
    // last worker read it to its end.
    const int policy = got->fds[0].get();
    wire::WorkerLaunchedMsg reply = {};
    reply.header = wire::header(wire::BrokerMsg::kWorkerLaunched, req.header.sequence);
    std::vector<int> fds;
    std::optional<WorkerProcess> worker;
    if (::lseek(policy, 0, SEEK_SET) != 0) {
      reply.status = errno;
      LOG_ERROR("cannot rewind the policy text for the worker: %s", errno_text(errno).c_str());
    } else {
      auto launched = launch_worker(set.path, set.args, set.control.get(), set.audit.get(), policy,
                                    set.pesto.valid() ? set.pesto.get() : -1,
                                    set.audit_tail.valid() ? set.audit_tail.get() : -1,
                                    set.host_scan, child_joins, /*sibling=*/true);
      if (launched) {
        worker = std::move(*launched);
        reply.pid = worker->pid;
        fds = {worker->pidfd.get(), worker->channel.get()};
      } else {
        reply.status = launched.error().err > 0 ? launched.error().err : EIO;
        LOG_ERROR("%s", launched.error().message.c_str());
      }
    }
    if (!send_message(channel, &reply, sizeof(reply), fds).ok()) ::_exit(1);
    // The launcher's copies of the pidfd and the channel close here.
  }
}

}  // namespace

Result<WorkerLauncher> start_worker_launcher(LaunchSet set) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
    return SysErr("socketpair(SOCK_SEQPACKET) for the worker launcher");
  }
  UniqueFd ours(sv[0]), theirs(sv[1]);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) return SysErr("fork for the worker launcher");
  if (pid == 0) {
    ours.reset();
    launcher_main(set, theirs.get(), parent);
  }
  WorkerLauncher launcher;
  launcher.pid = pid;
  launcher.channel = std::move(ours);
  launcher.pidfd.reset(::pidfd_open(pid, 0));
  if (!launcher.pidfd.valid()) {
    const int err = errno;
    ::kill(pid, SIGKILL);  // not yet reaped, so the pid cannot have been recycled
    return Err(err, "pidfd_open for the worker launcher: " + errno_text(err));
  }
  return launcher;
}

Result<WorkerProcess> launch_through(int channel, int policy_fd, uint64_t sequence) {
  wire::LaunchWorkerMsg req = {};
  req.header = wire::header(wire::BrokerMsg::kLaunchWorker, sequence);
  const int fds[] = {policy_fd};
  if (auto sent = send_message(channel, &req, sizeof(req), fds); !sent) {
    return Err(sent.error().err,
               "asking the worker launcher for a worker: " + sent.error().message +
                   "; the launcher is gone, so no worker can be started");
  }
  struct pollfd p = {channel, POLLIN, 0};
  const uint64_t deadline = monotonic_ns() + uint64_t{kLaunchTimeoutMs} * 1000000ULL;
  for (;;) {
    const uint64_t now = monotonic_ns();
    if (now >= deadline) {
      return Err(ETIMEDOUT, "the worker launcher did not answer within " +
                                std::to_string(kLaunchTimeoutMs / 1000) + " s");
    }
    const int rc = ::poll(&p, 1, static_cast<int>((deadline - now + 999999) / 1000000));
    if (rc > 0) break;
    if (rc < 0 && errno != EINTR) return SysErr("poll on the worker launcher's channel");
  }
  wire::WorkerLaunchedMsg reply;
  auto got = receive_message(channel, &reply, sizeof(reply), 2);
  if (!got) return Err(got.error().err, "reading the worker launcher: " + got.error().message);
  if (got->len == 0) return Err(EPIPE, "the worker launcher is gone; no worker can be started");
  if (got->len != sizeof(reply) || reply.header.magic != wire::kBrokerWireMagic ||
      reply.header.type != static_cast<uint32_t>(wire::BrokerMsg::kWorkerLaunched) ||
      reply.header.sequence != sequence || (reply.status == 0) != (got->fds.size() == 2)) {
    return Err(EPROTO, "the worker launcher sent a malformed WorkerLaunched");
  }
  if (reply.status != 0) {
    return Err(reply.status, "the worker launcher could not start a worker: " +
                                 errno_text(reply.status) + " (its error is above)");
  }
  WorkerProcess worker;
  worker.pid = reply.pid;
  worker.pidfd = std::move(got->fds[0]);
  worker.channel = std::move(got->fds[1]);
  return worker;
}

}  // namespace sluice
