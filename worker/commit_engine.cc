// The commit engine's state machine (see commit_engine.h): the transition
// table, the handlers that run on each transition, and the judging of the
// broker's answers into events. The socket work the handlers do on the
// tables in force (serving, releasing, stats) is in commit_sockets.cc.
#include "worker/commit_engine.h"

#include <malloc.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "base/strings.h"
#include "policy/check_commit.h"
#include "schema/broker_wire.h"
#include "worker/state_store.h"

namespace sluice {

using State = CommitEngine::State;
using Event = CommitEngine::Event;

namespace {

/// Limit: listeners installed or released per slice. Each costs a few
/// syscalls (epoll_ctl, getsockname, setsockopt, accept4, close: up to about
/// 10 us together); 64 keep one slice well under a millisecond, so a
/// 10,000-port commit never holds traffic up for longer than that between
/// data events. Smaller slices only add loop iterations (about 160 for
/// 10,000 ports).
constexpr size_t kSliceListeners = 64;

/// A failure about the commit as a whole.
control::Failure whole_commit_failure(control::FailureKind kind, Pif pif, std::string message) {
  control::Failure f;
  f.kind = kind;
  f.pif = pif;
  f.message = std::move(message);
  return f;
}

}  // namespace

// clang-format off
const CommitEngine::Transition CommitEngine::kTransitions[] = {
    // from                    event                 to                         handler
    {State::kIdle,              Event::kSubmitted,    State::kChecking,          &CommitEngine::check},
    {State::kChecking,          Event::kStale,        State::kFinishing,         &CommitEngine::finish_stale},
    {State::kChecking,          Event::kRefused,      State::kFinishing,         &CommitEngine::finish_refused},
    {State::kChecking,          Event::kPlanned,      State::kAcquiring,         &CommitEngine::acquire_opens},
    {State::kAcquiring,         Event::kTrialBound,   State::kFinishing,         &CommitEngine::discard_trial},
    {State::kAcquiring,         Event::kOpenFailed,   State::kFinishing,         &CommitEngine::roll_back_opens},
    {State::kAcquiring,         Event::kOpened,       State::kInstalling,        &CommitEngine::swap_tables},
    {State::kAcquiring,         Event::kClashes,      State::kRebinding,         &CommitEngine::acquire_rebinds},
    {State::kRebinding,         Event::kRebound,      State::kInstalling,        &CommitEngine::swap_tables},
    {State::kRebinding,         Event::kRebindFailed, State::kFinishing,         &CommitEngine::roll_back_rebinds},
    {State::kInstalling,        Event::kTick,         State::kInstalling,        &CommitEngine::install_slice_step},
    {State::kInstalling,        Event::kInstalled,    State::kFinishing,         &CommitEngine::finish_applied},
    {State::kFinishing,         Event::kReplied,      State::kIdle,              &CommitEngine::start_next},
    // The broker can go away whenever the engine waits, for the broker or for a tick.
    {State::kIdle,              Event::kBrokerLost,   State::kStopped,           &CommitEngine::stop_for_broker},
    {State::kAcquiring,         Event::kBrokerLost,   State::kStopped,           &CommitEngine::stop_for_broker},
    {State::kRebinding,         Event::kBrokerLost,   State::kStopped,           &CommitEngine::stop_for_broker},
    {State::kInstalling,        Event::kBrokerLost,   State::kStopped,           &CommitEngine::stop_for_broker},
};
// clang-format on

std::optional<State> CommitEngine::next_state(State from, Event event) noexcept {
  for (const Transition& t : kTransitions) {
    if (t.from == from && t.event == event) return t.to;
  }
  return std::nullopt;
}

const char* CommitEngine::state_name(State state) noexcept {
  switch (state) {
    case State::kIdle:
      return "Idle";
    case State::kChecking:
      return "Checking";
    case State::kAcquiring:
      return "Acquiring";
    case State::kRebinding:
      return "Rebinding";
    case State::kInstalling:
      return "Installing";
    case State::kFinishing:
      return "Finishing";
    case State::kStopped:
      return "Stopped";
  }
  return "?";
}

const char* CommitEngine::event_name(Event event) noexcept {
  switch (event) {
    case Event::kSubmitted:
      return "Submitted";
    case Event::kStale:
      return "Stale";
    case Event::kRefused:
      return "Refused";
    case Event::kPlanned:
      return "Planned";
    case Event::kTrialBound:
      return "TrialBound";
    case Event::kOpenFailed:
      return "OpenFailed";
    case Event::kOpened:
      return "Opened";
    case Event::kClashes:
      return "Clashes";
    case Event::kTick:
      return "Tick";
    case Event::kRebound:
      return "Rebound";
    case Event::kRebindFailed:
      return "RebindFailed";
    case Event::kInstalled:
      return "Installed";
    case Event::kReplied:
      return "Replied";
    case Event::kBrokerLost:
      return "BrokerLost";
  }
  return "?";
}

CommitEngine::CommitEngine(EventLoop& loop, Forwarder& forwarder, UdpForwarder& udp,
                           BrokerClient& broker, BrokerInfo info, ServerCaps caps, AuditLog& audit)
    : loop_(loop), forwarder_(forwarder), udp_(udp), broker_(broker), info_(info), audit_(audit) {
  facts_.caps = caps;
  // HOST is always served; SPLICE rules listen in a target namespace, so
  // only where sluiced has one (and its namespace helper runs).
  facts_.served = {true, info.splice_served};
  facts_.targets_share_namespace = true;
  digest_ = control::digest_tables(tables_);
}

CommitEngine::~CommitEngine() = default;

void CommitEngine::start() {
  loop_.add_ticker(this);
}

void CommitEngine::fire(Event event) noexcept {
  const Transition* row = nullptr;
  for (const Transition& t : kTransitions) {
    if (t.from == state_ && t.event == event) {
      row = &t;
      break;
    }
  }
  if (row == nullptr) {
    std::string why =
        std::string("no transition from ") + state_name(state_) + " on " + event_name(event);
    CHECK_MSG(row != nullptr, why.c_str());
  }
  if (event != Event::kTick) {  // one line per slice would flood a 10,000-port commit's log
    LOG_DEBUG("commit engine: %s --%s--> %s", state_name(state_), event_name(event),
              state_name(row->to));
  }
  state_ = row->to;
  // Handlers fire the next event last, if they can; nothing runs after a
  // fire() that could see a state changed under it.
  (this->*(row->handler))();
}

void CommitEngine::submit(control::CommitRequest request, struct ucred peer, Done done) {
  queue_.push_back(Job{std::move(request), peer, std::move(done)});
  if (state_ == State::kIdle) fire(Event::kSubmitted);
}

void CommitEngine::submit_refused(struct ucred peer, std::string comment,
                                  std::vector<control::Failure> failures, Done done) {
  CHECK(!failures.empty());
  // A client that may only read can repeat a refused attempt as fast as it
  // reconnects: past the bound it is counted, not recorded.
  const std::optional<uint64_t> before = refusals_.admit(peer, monotonic_ns());
  if (!before) {
    held_back_kind_ = failures.front().kind;
    return;
  }
  std::string count;
  if (*before > 0) {
    count = " (" + std::to_string(*before) + " refused attempt" + (*before == 1 ? "" : "s") +
            " before it not recorded one by one: " + std::to_string(kRefusalRecordBurst) +
            " records at most, then one per " +
            std::to_string(kRefusalRecordIntervalNs / 1000000000ULL) + " s)";
  }
  // A comment longer than a client's own may be would make the history
  // unreadable to every client (the codec refuses it): cut it, keep the count.
  const size_t room = control::kMaxCommentBytes - count.size();
  if (comment.size() > room) {
    comment.resize(room - 3);
    comment += "...";
  }
  comment += count;
  Job job;
  job.request.comment = std::move(comment);
  job.peer = peer;
  job.done = std::move(done);
  job.refused = std::move(failures);
  queue_.push_back(std::move(job));
  if (state_ == State::kIdle) fire(Event::kSubmitted);
}

void CommitEngine::on_tick(uint64_t now_ns) noexcept {
  if (state_ == State::kInstalling) fire(Event::kTick);
  if (trim_pending_ && !active_) {
    trim_pending_ = false;
#ifndef SLUICE_SANITIZE
    // glibc's: needs madvise(MADV_DONTNEED), and brk to shrink the heap. The
    // sanitizers' allocator answers it with syscalls outside the filter.
    ::malloc_trim(0);
#endif
  }
  scan_tick(now_ns);
  interface_tick(now_ns);
  confirm_tick(now_ns);
  if (state_ == State::kStopped) return;
  if (auto summary = refusals_.summary_due(now_ns)) {
    // The attempts the bound held back, once a record may be written and no
    // further attempt came to carry their count.
    const std::string n = std::to_string(summary->held_back);
    control::Failure f = whole_commit_failure(
        held_back_kind_, Pif::kHost,
        n + " attempt" + (summary->held_back == 1 ? " was" : "s were") +
            " refused before the commit engine (by the control policy, or malformed) and not "
            "recorded one by one: " +
            std::to_string(kRefusalRecordBurst) + " such records at most, then one per " +
            std::to_string(kRefusalRecordIntervalNs / 1000000000ULL) +
            " s; this record stands for them, under the ids of the last one");
    Job job;
    job.request.comment = n + " refused attempts, counted (the last from pid " +
                          std::to_string(summary->last.pid) + ")";
    job.peer = summary->last;
    job.refused = {std::move(f)};
    queue_.push_back(std::move(job));
    if (state_ == State::kIdle) fire(Event::kSubmitted);
  }
}

void CommitEngine::on_broker_lost(const BrokerLoss& loss) noexcept {
  loss_ = loss;
  // Finishing never waits, but what it sends (StoreState, a pesto client's
  // PeerQuery from a commit's callback) can find the channel gone: the
  // engine stops once the commit is answered (start_next()).
  if (state_ == State::kFinishing) {
    broker_lost_pending_ = true;
    return;
  }
  fire(Event::kBrokerLost);
}

void CommitEngine::check() noexcept {
  CHECK(!queue_.empty() && !active_);
  active_.emplace();
  Active& a = *active_;
  a.job = std::move(queue_.front());
  queue_.pop_front();
  a.start_ns = monotonic_ns();
  a.generation_before = generation_;
  a.digest_before = digest_;
  if (a.job.scan) return plan_scan_job();
  if (!a.job.refused.empty()) {
    // Refused before it got here: recorded as it is, the tables untouched.
    a.failures = std::move(a.job.refused);
    return fire(Event::kRefused);
  }
  // The rollback restores the tables before the unconfirmed commit over
  // whatever generation is in force (no other commit ran meanwhile).
  if (a.job.rollback) a.job.request.expected_generation = generation_;
  const control::CommitRequest& req = a.job.request;
  a.added = rule_diff(req.tables, tables_);
  a.removed = rule_diff(tables_, req.tables);
  // While a commit waits for confirmation, no other commit is taken.
  if (auto refused = check_confirmation()) {
    a.failures.push_back(std::move(*refused));
    return fire(Event::kRefused);
  }

  // Compare-and-swap: a client that edited an older generation would undo
  // somebody else's commit without knowing it.
  if (req.expected_generation != generation_) {
    a.failures.push_back(whole_commit_failure(
        control::FailureKind::kStale, Pif::kHost,
        "the tables changed since generation " + std::to_string(req.expected_generation) +
            " was read (now " + std::to_string(generation_) +
            "); read the state again and re-apply the edits (sluicectl does this by itself)"));
    return fire(Event::kStale);
  }
  a.failures = check_commit(req.tables, facts_, &target_policy_);
  if (!a.failures.empty()) return fire(Event::kRefused);

  // Auto-scan rules listen on the ports bound now, from this commit on.
  const PifPorts watched = watched_ports(req.tables);
  if (watched.any()) refresh_scan(watched);
  a.scan_seen = restrict_to(scan_.bound, watched);
  std::vector<ListenerKey> keys;
  keys.reserve(installed_.size());
  for (const Installed& i : installed_) keys.push_back(i.key);
  a.plan = plan_commit(keys, req.tables, &scan_.bound);
  // Refused before sluiced is asked when the new listeners would not fit
  // the worker's descriptor table: past it, the kernel drops sockets in
  // transit.
  if (auto full = check_descriptors()) {
    a.failures.push_back(std::move(*full));
    return fire(Event::kRefused);
  }
  fire(Event::kPlanned);
}

void CommitEngine::finish_stale() noexcept {
  finish(control::Outcome::kStale);
}

void CommitEngine::finish_refused() noexcept {
  finish(active_->job.request.dry_run ? control::Outcome::kDryRun : control::Outcome::kRejected);
}

void CommitEngine::acquire_opens() noexcept {
  Active& a = *active_;
  a.opens = prepare_acquisition(a.plan.open, bind_policy_, info_);
  // Kept sockets whose rule changes: judged by the bind policy as new ones.
  std::vector<PlannedKey> changed;
  for (const CommitPlan::Keep& keep : a.plan.keep) {
    const Installed& in = installed_[keep.installed];
    if (!(tables_.of(in.origin.pif).rules[in.origin.rule] ==
          a.job.request.tables.of(keep.origin.pif).rules[keep.origin.rule])) {
      changed.push_back(PlannedKey{in.key, keep.origin});
    }
  }
  deny_changed_kept(&a.opens, changed, bind_policy_, info_);
  acquire(a.opens, &CommitEngine::opens_answered);
}

void CommitEngine::acquire(Acquisition& acq, Answered answered, bool replaces) noexcept {
  if (acq.asked == 0) return (this->*answered)({});
  if (!adopted_.empty()) {
    // A restarted worker: keys the dead worker held come from the escrow it
    // handed over; only the others are asked of sluiced.
    auto results = std::make_shared<std::vector<OpenedListener>>();
    std::vector<size_t> missing = take_adopted(acq, results.get());
    if (missing.empty()) return (this->*answered)(std::move(*results));
    std::vector<ListenerKey> keys;
    for (size_t i : missing) keys.push_back(acq.keys[i].key);
    broker_.open_listeners(
        std::move(keys),
        [this, answered, results, missing](std::vector<OpenedListener> got) {
          for (size_t k = 0; k < missing.size(); ++k) (*results)[missing[k]] = std::move(got[k]);
          (this->*answered)(std::move(*results));
        },
        replaces);
    return;
  }
  // The callback never runs once the channel is lost, and the engine
  // outlives the broker's requests (it is destroyed after the loop stops).
  broker_.open_listeners(
      acq.asked_keys(),
      [this, answered](std::vector<OpenedListener> results) {
        (this->*answered)(std::move(results));
      },
      replaces);
}

void CommitEngine::opens_answered(std::vector<OpenedListener> results) noexcept {
  Active& a = *active_;
  a.opens.take(std::move(results));
  if (!a.rebound_stale.empty()) settle_stale_rebinds();
  note_scan_failures(a.opens);
  a.failures = judge(false);
  note_lost_sockets(a.opens);
  // A dry run does not trial-bind its rebinds: that would mark the listeners
  // in force for sharing (SO_REUSEPORT) for a commit that never happens. It
  // counts them in the plan.
  if (a.job.request.dry_run) return fire(Event::kTrialBound);
  if (!a.failures.empty()) return fire(Event::kOpenFailed);
  fire(a.plan.rebind.empty() ? Event::kOpened : Event::kClashes);
}

void CommitEngine::discard_trial() noexcept {
  active_->opens.discard();
  // sluiced keeps a copy of every socket it sent (its escrow) until the
  // worker's next StoreState leaves it out: tell it now, or the trial binds
  // would stay bound there.
  if (active_->opens.asked > 0) store_state();
  finish(control::Outcome::kDryRun);
}

void CommitEngine::roll_back_opens() noexcept {
  set_aside(active_->opens);                    // the old table never stopped serving
  if (active_->opens.asked > 0) store_state();  // sluiced lets go of its copies too
  finish(control::Outcome::kRejected);
}

void CommitEngine::acquire_rebinds() noexcept {
  Active& a = *active_;
  // The listeners the rebinds replace keep listening: sluiced lets each new
  // socket share its port with them (wire::kListenerReplaces) until the
  // swap drains and closes them, so the port never stops listening and no
  // other user's process can take it in between.
  a.rebinds = prepare_acquisition(a.plan.rebind, bind_policy_, info_);
  acquire(a.rebinds, &CommitEngine::rebinds_answered, true);
}

void CommitEngine::rebinds_answered(std::vector<OpenedListener> results) noexcept {
  Active& a = *active_;
  a.rebinds.take(std::move(results));
  note_scan_failures(a.rebinds);
  a.failures = judge(true);
  note_lost_sockets(a.rebinds);
  fire(a.failures.empty() ? Event::kRebound : Event::kRebindFailed);
}

void CommitEngine::roll_back_rebinds() noexcept {
  Active& a = *active_;
  // As roll_back_opens(): the listeners in force never stopped serving.
  a.rebinds.discard();
  set_aside(a.opens);
  store_state();  // sluiced lets go of its copies of what was acquired
  finish(control::Outcome::kRejected);
}

void CommitEngine::swap_tables() noexcept {
  swap();
  install_slice_step();
}

void CommitEngine::install_slice_step() noexcept {
  Active& a = *active_;
  size_t budget = kSliceListeners;
  // Serve the new sockets first, then release the old ones, so a closing
  // listener drains under the old rule while its successor serves.
  if (!install_slice(&budget) || !release_slice(&budget)) return loop_.request_immediate_tick();
  if (!a.to_release_settled.empty()) {
    // A UDP socket a rebind replaces hands its flows to its successors,
    // served now, so that they outlive its close.
    if (!a.handed_over) {
      a.handed_over = true;
      for (size_t c : a.to_release_settled) {
        const Installed& old = installed_[c];
        if (old.key.proto != Proto::kUdp || old.listener == nullptr) continue;
        udp_.hand_over(static_cast<UdpListener*>(old.listener), udp_successors(old.key));
      }
    }
    // The listeners the rebinds replace go once their handshakes under way
    // have completed (swap() quiesced them); a tick brings the engine back.
    if (monotonic_ns() < a.settle_until_ns) return;
    a.to_release = std::move(a.to_release_settled);
    a.to_release_settled.clear();
    a.released = 0;
    if (!release_slice(&budget)) return loop_.request_immediate_tick();
  }
  fire(Event::kInstalled);
}

void CommitEngine::finish_applied() noexcept {
  Active& a = *active_;
  // The listeners and the plan of a large commit are freed after the current
  // batch of events; a tick later their heap goes back to the system.
  if (a.plan.close.size() >= kTrimAfterClosing) trim_pending_ = true;
  std::sort(a.next_installed.begin(), a.next_installed.end(),
            [](const Installed& x, const Installed& y) { return x.key < y.key; });
  installed_ = std::move(a.next_installed);
  scan_applied();
  if (!a.job.scan) drop_adopted();
  taking_over_ = false;
  store_state();
  if (a.job.request.end_removed_flows && !a.removed.empty()) {
    std::vector<std::string> removed = a.removed;
    std::sort(removed.begin(), removed.end());
    end_removed_flows(removed);
  }
  finish(control::Outcome::kApplied);
}

void CommitEngine::start_next() noexcept {
  if (broker_lost_pending_) {
    broker_lost_pending_ = false;
    return fire(Event::kBrokerLost);
  }
  if (!queue_.empty()) fire(Event::kSubmitted);
}

void CommitEngine::stop_for_broker() noexcept {
  broker_loss_ = loss_.reason;
  // The broker is the more privileged side and the only source of sockets:
  // a failure on its channel is a dying broker or a bug, and the worker stops.
  if (loss_.idle_eof) {
    LOG_INFO("%s; stopping", loss_.reason.c_str());
  } else {
    LOG_ERROR("broker channel: %s; stopping", loss_.reason.c_str());
  }
  if (active_) {
    // Nothing is published of what the commit acquired and did not serve
    // yet; its client is not answered, and sees the worker exit.
    active_->opens.discard();
    active_->rebinds.discard();
    active_.reset();
  }
  loop_.stop();
}

std::vector<control::Failure> CommitEngine::judge(bool with_rebinds) {
  Active& a = *active_;
  std::vector<PlannedKey> keys = a.opens.keys;
  std::vector<int32_t> status = a.opens.status;
  std::vector<std::string> reasons = a.opens.policy_reason;
  if (with_rebinds) {
    keys.insert(keys.end(), a.rebinds.keys.begin(), a.rebinds.keys.end());
    status.insert(status.end(), a.rebinds.status.begin(), a.rebinds.status.end());
    reasons.insert(reasons.end(), a.rebinds.policy_reason.begin(), a.rebinds.policy_reason.end());
  }
  std::vector<control::Failure> warnings;
  BindContext ctx{info_.has_bind_cap, info_.unprivileged_port_start, info_.splice_has_bind_cap,
                  info_.splice_unprivileged_port_start};
  if (with_rebinds) ctx.first_rebind = a.opens.keys.size();
  auto failures = judge_rules(a.job.request.tables, keys, status, reasons, ctx, &warnings);
  // A scan job retries a failing port every second: the same failures are
  // logged once a minute there, and any burst is rate-limited.
  const bool log_them = !a.job.scan || warnings.empty() || scan_failures_worth_logging();
  for (const control::Failure& w : warnings) {
    if (!log_them) break;
    if (!a.job.scan || scan_.fail_log.allow()) {
      LOG_WARN("%s%s", a.job.scan ? "auto-scan: " : "", w.message.c_str());
    }
  }
  a.warnings = std::move(warnings);  // the reply, State.unbound and --stats say them too
  return failures;
}

void CommitEngine::finish(control::Outcome outcome) noexcept {
  Active& a = *active_;
  if (a.job.scan) return finish_scan_job(outcome);
  CommitRecord record;
  record.outcome = outcome;
  record.dry_run = a.job.request.dry_run;
  record.peer = a.job.peer;
  record.comment = a.job.request.comment;
  record.generation_before = a.generation_before;
  record.generation_after = generation_;
  record.digest_before = a.digest_before;
  record.digest_after = digest_;
  record.added = std::move(a.added);
  record.removed = std::move(a.removed);
  record.kept = static_cast<uint32_t>(a.plan.keep.size());
  record.opened = static_cast<uint32_t>(a.plan.open.size()) - a.not_opened[0];
  record.closed = static_cast<uint32_t>(a.plan.close.size());
  record.rebound = static_cast<uint32_t>(a.plan.rebind.size()) - a.not_opened[1];
  record.failures = std::move(a.failures);
  record.failure_count = cut_failures(&record.failures);
  if (outcome == control::Outcome::kApplied) {
    // Best-effort ports that did not bind for a reason that may pass (a
    // port in use, an interface or address not there yet): a commit of the
    // same tables tries them again, so sluicectl sends one (State.unbound).
    // Not those the bind policy or the privileged port limit refuse: only a
    // policy reload or new rights change that, and an unchanged table would
    // otherwise be committed anew at every call.
    unbound_ = 0;
    for (const control::Failure& w : a.warnings) {
      const bool may_pass =
          w.kind == control::FailureKind::kBindFailed && w.err != EACCES && w.err != EPERM;
      if (may_pass && !of_scan_rule(w)) ++unbound_;
    }
  }
  if (outcome == control::Outcome::kApplied || outcome == control::Outcome::kDryRun) {
    // One reply holds at most kMaxFailures of both lists (a dry run may
    // have both): the frame stays within what a client reads.
    record.warnings = std::move(a.warnings);
    const size_t room =
        control::kMaxFailures - std::min(record.failures.size(), control::kMaxFailures - 1);
    const uint32_t total = cut_failures(&record.warnings, room);
    if (total > record.warnings.size()) {
      record.warnings.back().message =
          std::to_string(total - (record.warnings.size() - 1)) + " more ports did not bind";
    }
  }
  record.duration_micros = (monotonic_ns() - a.start_ns) / 1000;
  record = audit_.write(std::move(record));  // stamps the sequence and the time
  history_.push_back(to_history_entry(record));
  ++outcomes_[static_cast<size_t>(outcome)];
  note_confirmation(record);
  while (history_.size() > control::kMaxHistory) history_.pop_front();
  // A commit that did not apply changed nothing: its counts are the plan's.
  const bool applied = outcome == control::Outcome::kApplied;
  LOG_INFO(
      "commit from pid %d uid %u: %s, generation %llu, %skept %u opened %u closed %u "
      "rebound %u, %u failure%s, %llu us",
      record.peer.pid, record.peer.uid, control::outcome_name(outcome),
      static_cast<unsigned long long>(record.generation_after),
      applied ? "" : "planned: ", record.kept, record.opened, record.closed, record.rebound,
      record.failure_count, record.failure_count == 1 ? "" : "s",
      static_cast<unsigned long long>(record.duration_micros));

  Done done = std::move(a.job.done);
  active_.reset();
  if (done) done(to_result(record));
  fire(Event::kReplied);
}

}  // namespace sluice
