// sluiced's loop once it is isolated (serve()): the worker's requests,
// signals, the service manager, policy reloads, and the worker restarts
// (docs/ARCHITECTURE.md "Worker restarts", restart_policy.h).
#pragma once

#include <string>

#include "base/unique_fd.h"
#include "broker/broker_host.h"
#include "broker/namespace_helper.h"
#include "broker/policy_reader.h"
#include "broker/restart_policy.h"
#include "broker/sd_notify.h"
#include "broker/worker_launch.h"

namespace sluice {

/// Exit code of a start-up failure or a misbehaving worker.
inline constexpr int kExitFailure = 1;

/// What serve() needs besides the host: the fixed-number descriptors and
/// the bookkeeping of worker restarts.
struct Serving {
  WorkerProcess* worker;          // its pidfd and channel at kWorker and kChannel
  const NamespaceHelper* helper;  // nullptr without --netns
  const UniqueFd* signals;
  const UniqueFd* launcher_pidfd;    // at kLauncher
  const UniqueFd* launcher_channel;  // at kLauncherChannel
  const UniqueFd* policy_text;       // the policy text a new worker gets (the one in force)
  std::string control_path;
  std::string pesto_path;
  Notifier* notifier;
  RestartPolicy* restarts;
  PolicyReloader* reloader;  // SIGHUP: the policy reader's answers
  bool watch_target;         // broker_fd::kTarget is the --netns PID's pidfd
  std::string target_name;   // --netns as given, for the message
};

/// The broker loop. Returns sluiced's exit code: 0 after SIGTERM/SIGINT,
/// the worker's code when the first worker ends before it served (a
/// start-up failure) or when restarts are off (--worker-restarts 0/..),
/// kExitFailure on a violation, when workers died too often (the restart
/// policy gives up), or when the namespace helper (nullptr without --netns)
/// exits. A worker that dies otherwise is replaced (restart_policy.h): its
/// listeners stay open in sluiced's escrow, so connections queue in the
/// kernel meanwhile, and the new worker takes them and the last tables over.
/// While an answer waits for room on the channel (the worker is slow to read
/// its replies), the loop waits for POLLOUT instead of reading: as long as
/// the worker lives, with no time limit, since a slow worker is not a broken
/// one; signals and the worker's exit are still seen at once.
/// Under systemd, the notifier reports readiness (once), status and the
/// watchdog as the worker's WorkerStatus messages say (broker/sd_notify.h);
/// during a restart the heartbeat's age counts from the death, so a restart
/// within kWorkerStatusStaleMs never stops the pings, and while a request
/// waits for the namespace helper (the worker's reports wait unread behind
/// it, at most kHelperAnswerTimeoutMs) the heartbeat counts as fresh, so a
/// stopped helper never starves the watchdog. poll wakes for its
/// deadlines and for a delayed restart. While fd store operations wait for
/// the manager (ListenerEscrow::flush_store), poll waits for room on the
/// notify socket too.
/// SIGHUP reloads the policy through the reloader (policy_reader.h): the
/// reader's answer is polled for like the rest, and the loop never waits
/// for it.
/// Needs `poll`, `read` on the signalfd, and what BrokerHost, Notifier,
/// ListenerEscrow::flush_store(), PolicyReloader, relaunch() and
/// stop_worker() need.
int serve(BrokerHost& host, Serving& s);

}  // namespace sluice
