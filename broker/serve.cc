// sluiced's loop once it is isolated (see serve.h).
#include "broker/serve.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/log.h"
#include "base/strings.h"
#include "broker/worker_launcher.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// Starts a new worker through the launcher and puts its pidfd and channel on
/// kWorker and kChannel (dup3 over the dead worker's). Fails with the
/// launcher's reason. Needs what launch_through() needs, `dup3` and `close`.
Result<void> relaunch(Serving& s, uint64_t sequence) {
  auto launched = launch_through(s.launcher_channel->get(), s.policy_text->get(), sequence);
  if (!launched) return Err(launched.error());
  if (::dup3(launched->channel.get(), broker_fd::kChannel, O_CLOEXEC) != broker_fd::kChannel ||
      ::dup3(launched->pidfd.get(), broker_fd::kWorker, O_CLOEXEC) != broker_fd::kWorker) {
    int err = errno;
    return SysErr(err, "dup3 of the new worker's descriptors");
  }
  s.worker->pid = launched->pid;
  return Ok();
}

/// The state of worker restarts in serve().
struct RestartState {
  bool alive = true;           // a worker runs on kWorker/kChannel
  bool launcher_alive = true;  // restarts are possible
  uint64_t restart_at_ns = 0;  // with !alive: when the next worker starts
  uint64_t down_since_ns =
      0;  // when the last worker died: the heartbeat's age until the next reports
};

/// A worker ended with `code` (as poll_worker_exit() gives it, which logged
/// nothing): logs how, once, with what follows, and schedules the next
/// worker as the restart policy says; STATUS= says that no worker serves.
/// Returns -1 when a new one will start, else sluiced's exit code: the
/// worker's when the first worker never served (a start-up failure) or
/// restarts are off, kExitFailure when the policy gives up (too many deaths,
/// or kMaxFailedRestarts replacements in a row that died at start) or the
/// launcher is gone.
int worker_ended(const BrokerHost& host, Serving& s, RestartState& r, int code) {
  const WorkerReport& report = host.worker_report();
  const bool served = report.at_ns != 0;
  const std::string how = describe_worker_end(code);
  const LogLevel level = code == 0 ? LogLevel::kInfo : LogLevel::kError;
  if (s.restarts->restarts() == 0 && !report.seen) {
    // Never served: a start-up failure (bad rules, a port taken), whose
    // reason is the worker's own last lines.
    log_write(level, __func__,
              "the worker %s before it served: a start-up failure, not restarted; sluiced stops "
              "with its status (the worker's messages above say why)",
              how.c_str());
    return code;
  }
  if (s.restarts->limit().count == 0) {
    log_write(level, __func__,
              "the worker %s; restarts are off (--worker-restarts 0/...): sluiced stops with its "
              "status",
              how.c_str());
    return code;
  }
  const uint64_t now = monotonic_ns();
  auto delay = s.restarts->on_death(now, served);
  if (!delay && s.restarts->gave_up() == RestartPolicy::GiveUp::kFailedStarts) {
    LOG_ERROR(
        "the worker %s before it served: %u new workers in a row died at start, so sluiced gives "
        "up and stops, and nothing is forwarded any more. Their own messages above say why "
        "(typically: the policy refuses both the tables in force and the initial rules); fix the "
        "policy file or the rules, then start sluiced again",
        how.c_str(), s.restarts->failed_in_a_row());
    s.notifier->stopping("new workers die at start; see the log");
    return kExitFailure;
  }
  if (!delay) {
    LOG_ERROR(
        "the worker %s; %zu workers died within %u s (--worker-restarts %u/%u): sluiced gives up "
        "and stops, and nothing is forwarded any more; find the cause in the worker's messages "
        "above (or the kernel log), then start sluiced again",
        how.c_str(), s.restarts->recent(), s.restarts->limit().seconds, s.restarts->limit().count,
        s.restarts->limit().seconds);
    s.notifier->stopping("workers die too often; see the log");
    return kExitFailure;
  }
  if (!r.launcher_alive) {
    LOG_ERROR(
        "the worker %s, and no new worker can be started: the worker launcher is gone (see "
        "above); stopping. Start sluiced again",
        how.c_str());
    s.notifier->stopping("the worker launcher is gone; see the log");
    return kExitFailure;
  }
  const std::string when = *delay == 0 ? "now" : "in " + std::to_string(*delay) + " ms";
  if (served) {
    LOG_ERROR(
        "the worker %s; its established connections and UDP flows are lost, and so is a commit "
        "it had not applied yet (a sluicectl client sees its connection close; a pesto client, "
        "which gets no reply, exited 0: check the tables with sluicectl and run it again). The "
        "listeners stay open in sluiced (new connections wait in the kernel) and a new worker "
        "takes them and the tables over %s",
        how.c_str(), when.c_str());
  } else {
    LOG_ERROR(
        "the worker %s before it served (a failed restart, %u in a row; at %u sluiced gives up). "
        "The listeners stay open in sluiced (new connections wait in the kernel) and a new "
        "worker takes them and the tables over %s",
        how.c_str(), s.restarts->failed_in_a_row(), kMaxFailedRestarts, when.c_str());
  }
  s.notifier->worker_down(now,
                          "no worker serves: the worker " + how + "; a new one starts " + when);
  r.alive = false;
  r.down_since_ns = now;
  r.restart_at_ns = now + *delay * 1000000ULL;
  return -1;
}

/// The earlier of two poll timeouts in ms, where -1 means none.
int earliest_timeout(int a, int b) noexcept {
  if (a < 0) return b;
  if (b < 0) return a;
  return a < b ? a : b;
}

/// At a stop: sends the fd store operations that still wait, as far as the
/// manager takes them now (never waiting), and says how many are lost.
void store_before_stop(ListenerEscrow& escrow) noexcept {
  escrow.flush_store(monotonic_ns());
  if (escrow.store_waiting() > 0) {
    LOG_WARN(
        "%zu fd store operations were never taken by the service manager: a restart of sluiced "
        "binds the ports whose listeners are missing again",
        escrow.store_waiting());
  }
}

}  // namespace

int serve(BrokerHost& host, Serving& s) {
  WorkerProcess& worker = *s.worker;
  ListenerEscrow& escrow = host.escrow();
  bool announced = false;
  RestartState r;
  bool& alive = r.alive;
  bool& launcher_alive = r.launcher_alive;
  uint64_t launch_sequence = 1;  // the first launch was 1
  for (;;) {
    uint64_t now = monotonic_ns();
    if (!alive && now >= r.restart_at_ns) {
      if (auto ok = relaunch(s, ++launch_sequence); !ok) {
        LOG_ERROR("starting a new worker: %s; stopping", ok.error().message.c_str());
        return kExitFailure;
      }
      host.new_worker();
      alive = true;
      s.notifier->set_restarts(s.restarts->restarts());
      LOG_INFO("worker restart %u: pid %d", s.restarts->restarts(), static_cast<int>(worker.pid));
      now = monotonic_ns();
    }
    const WorkerReport& report = host.worker_report();
    // STATUS= says "serving" again once the new worker reports.
    if (alive && report.at_ns != 0) s.notifier->worker_serves();
    // Until the new worker reports, the heartbeat's age counts from the death.
    const uint64_t beat =
        host.heartbeat_ns(report.at_ns != 0 ? report.at_ns : r.down_since_ns, now);
    s.notifier->update(now, report.seen, report.generation, report.listeners, beat);
    int timeout = earliest_timeout(s.notifier->timeout_ms(now), escrow.store_timeout_ms(now));
    if (!alive) {
      timeout =
          earliest_timeout(timeout, static_cast<int>((r.restart_at_ns - now + 999999) / 1000000));
    }
    timeout = earliest_timeout(timeout, host.splice_timeout_ms(now));
    const bool waiting = alive && host.reply_pending();
    // While the namespace helper opens a request's SPLICE listeners, the
    // worker's channel is not read (its answers stay in order).
    const bool reading = alive && !host.splice_waiting();
    struct pollfd fds[9] = {
        {alive ? worker.pidfd.get() : -1, POLLIN, 0},
        {s.signals->get(), POLLIN, 0},
        {reading ? worker.channel.get() : -1, static_cast<short>(waiting ? POLLOUT : POLLIN), 0},
        {s.helper != nullptr ? s.helper->pidfd.get() : -1, POLLIN, 0},
        {s.reloader->poll_fd(), POLLIN, 0},
        {launcher_alive ? s.launcher_pidfd->get() : -1, POLLIN, 0},
        // Only while fd store operations wait for the manager to read, and
        // not while READY=1 waits: the room it makes goes to READY=1 first.
        {escrow.store_wants_writable(now) && !s.notifier->ready_waits() ? broker_fd::kNotify : -1,
         POLLOUT, 0},
        {host.helper_poll_fd(), POLLIN, 0},
        {s.watch_target ? broker_fd::kTarget : -1, POLLIN, 0}};
    if (::poll(fds, 9, timeout) < 0) {
      if (errno == EINTR) continue;
      LOG_ERROR("poll: %s; stopping", errno_text(errno).c_str());
      if (alive) stop_worker(worker, StopMode::kTerminate);
      return kExitFailure;
    }
    // Signals first: an operator's SIGTERM/SIGINT is a clean shutdown (exit 0)
    // even when the worker's exit is already visible in the same wakeup.
    if (fds[1].revents != 0) {
      struct signalfd_siginfo si;
      if (::read(s.signals->get(), &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si)) &&
          (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)) {
        LOG_INFO("%s received; stopping the worker",
                 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        store_before_stop(escrow);
        s.notifier->stopping();
        if (alive) stop_worker(worker, StopMode::kTerminate);
        return 0;
      }
      if (si.ssi_signo == SIGHUP) s.reloader->start(host, *s.notifier);
      continue;  // SIGCHLD: the pidfds report the exits
    }
    if (fds[6].revents != 0) escrow.flush_store(monotonic_ns());
    if (fds[8].revents != 0) {
      // Said once: the namespace lives on (sluiced's helper and worker hold
      // it), so the rules whose targets still answer keep working, and a
      // commit still works; only its processes are gone.
      s.watch_target = false;
      host.queue_target_exited();  // for --stats
      LOG_ERROR(
          "the process --netns %s named has exited: the container stopped. Unless other "
          "processes of the container still run there, its network namespace lives on only "
          "through sluiced, and connections through HOST rules are refused there from now on. "
          "If the container started again, it has a new namespace: "
          "start sluiced again with its new PID (podman inspect --format '{{.State.Pid}}' "
          "NAME); sluiced itself keeps serving",
          s.target_name.c_str());
    }
    if (fds[4].revents != 0) s.reloader->finish(host, *s.notifier);
    if (fds[5].revents != 0) {
      siginfo_t info = {};
      ::waitid(P_PIDFD, static_cast<id_t>(s.launcher_pidfd->get()), &info, WEXITED | WNOHANG);
      launcher_alive = false;
      LOG_ERROR(
          "the worker launcher exited; forwarding goes on, but a worker that dies can no longer "
          "be replaced");
    }
    if (fds[0].revents != 0) {
      int code = poll_worker_exit(worker, 0, EndLog::kCallerLogs);
      if (code >= 0 && host.drain_dead_worker(worker.channel.get()) == HandleStatus::kViolation) {
        LOG_ERROR(
            "the worker %s, and had sent a request the broker does not permit: %s; it is "
            "treated as compromised and not replaced, and sluiced stops",
            describe_worker_end(code).c_str(), host.last_error().c_str());
        return kExitFailure;
      }
      if (code >= 0) {
        if (int exit_code = worker_ended(host, s, r, code); exit_code >= 0) return exit_code;
        continue;
      }
    }
    if (fds[3].revents != 0 && poll_helper_exit(*s.helper) >= 0) {
      // SPLICE listeners can no longer be opened: stop cleanly rather than
      // serve a table that a commit could not change.
      LOG_ERROR("the namespace helper is gone, so SPLICE rules cannot be served; stopping");
      if (alive) stop_worker(worker, StopMode::kTerminate);
      return kExitFailure;
    }
    HandleStatus status = HandleStatus::kContinue;
    now = monotonic_ns();
    if (fds[7].revents != 0 || host.splice_timeout_ms(now) == 0) {
      // The helper's answer, or its time is up: the waiting request is answered.
      status = host.serve_helper(alive ? worker.channel.get() : -1, now);
      if (host.helper_failed()) {
        // A helper that closed its channel or sent something else cannot
        // open SPLICE listeners any more: stop, as when it exits.
        LOG_ERROR("%s; SPLICE rules cannot be served; stopping", host.last_error().c_str());
        if (alive) stop_worker(worker, StopMode::kTerminate);
        return kExitFailure;
      }
    } else if (fds[2].revents != 0) {
      status =
          waiting ? host.flush_reply(worker.channel.get()) : host.handle_one(worker.channel.get());
    } else {
      continue;
    }
    switch (status) {
      case HandleStatus::kContinue:
        if (!announced && host.state() == HostState::kReady) {
          LOG_INFO("control socket %s; list the rules with: sluicectl %s", s.control_path.c_str(),
                   s.control_path.c_str());
          if (!s.pesto_path.empty()) {
            // Without a target namespace, a port alone would forward to itself.
            LOG_INFO("pesto socket %s; pesto edits the rules with: pesto --add -t %s %s",
                     s.pesto_path.c_str(), s.helper != nullptr ? "8080" : "8080:8000",
                     s.pesto_path.c_str());
          }
          announced = true;
        }
        break;
      case HandleStatus::kPeerClosed: {
        LOG_INFO("%s; waiting for the worker to exit", host.last_error().c_str());
        const int code = stop_worker(worker, StopMode::kAwaitExit, EndLog::kCallerLogs);
        if (int exit_code = worker_ended(host, s, r, code); exit_code >= 0) {
          return exit_code;
        }
        break;
      }
      case HandleStatus::kViolation:
        // A compromised worker is not replaced: whoever compromised it holds
        // a working exploit, and a new worker would give them another try.
        LOG_ERROR(
            "the worker sent a request the broker does not permit: %s; the worker is "
            "treated as compromised and killed, and sluiced stops (a compromised worker is "
            "never replaced)",
            host.last_error().c_str());
        stop_worker(worker, StopMode::kKill);
        return kExitFailure;
      case HandleStatus::kIoError: {
        LOG_ERROR("%s; stopping the worker", host.last_error().c_str());
        const int code = stop_worker(worker, StopMode::kTerminate, EndLog::kCallerLogs);
        if (int exit_code = worker_ended(host, s, r, code); exit_code >= 0) {
          return exit_code;
        }
        break;
      }
    }
  }
}

}  // namespace sluice
