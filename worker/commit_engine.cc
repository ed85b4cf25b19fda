#include "worker/commit_engine.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "base/strings.h"
#include "policy/bind_policy.h"
#include "policy/check_commit.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

/// Limit: listeners installed or released per slice. Each costs a few
/// syscalls (epoll_ctl, accept4, close: up to about 10 us together); 64 keep
/// one slice well under a millisecond, so a 10,000-port commit never holds
/// traffic up for longer than that between data events. Smaller slices only
/// add loop iterations (about 160 for 10,000 ports).
constexpr size_t kSliceListeners = 64;

/// Limit: OpenListeners requests in flight at once. Four 253-socket batches
/// keep the broker busy while one reply is processed, and four 10 KiB
/// requests fit easily in the channel's socket buffer, so sends never block.
constexpr size_t kPipelineWindow = 4;

/// Builds the route of every rule of `tables`, indexed [pif][rule]. A rule
/// that `current` (the routes in force) already has, by pif and listing text,
/// keeps its counters: they count from when the rule entered the tables.
/// Rules whose target may be a local address served by the table get the run
/// time loop guard (rules_needing_loop_guard under `facts`).
std::vector<std::vector<std::shared_ptr<const Route>>> make_routes(
    const TableSet& tables, const std::vector<std::vector<std::shared_ptr<const Route>>>& current,
    const CommitFacts& facts) {
  std::vector<std::vector<std::shared_ptr<const Route>>> routes(kPifCount);
  for (size_t p = 0; p < kPifCount; ++p) {
    // The routes in force, by text: one sort, then a binary search per rule.
    std::vector<const Route*> old;
    if (p < current.size()) {
      for (const auto& r : current[p]) old.push_back(r.get());
    }
    auto by_text = [](const Route* a, const Route* b) { return a->text < b->text; };
    std::sort(old.begin(), old.end(), by_text);
    const std::vector<bool> guard = rules_needing_loop_guard(tables.tables[p], facts);
    for (size_t i = 0; i < tables.tables[p].rules.size(); ++i) {
      const Rule& rule = tables.tables[p].rules[i];
      Route route{tables.tables[p].pif, rule.target, rule.first, rule.to, format_rule(rule)};
      route.guard_loops = guard[i];
      auto it =
          std::lower_bound(old.begin(), old.end(), route.text,
                           [](const Route* r, const std::string& text) { return r->text < text; });
      if (it != old.end() && (*it)->text == route.text) route.counters = (*it)->counters;
      routes[p].push_back(std::make_shared<const Route>(std::move(route)));
    }
  }
  return routes;
}

/// A failure about the commit as a whole.
control::Failure whole_commit_failure(control::FailureKind kind, Pif pif, std::string message) {
  control::Failure f;
  f.kind = kind;
  f.pif = pif;
  f.message = std::move(message);
  return f;
}

/// Closes sockets the broker opened for a commit that will not use them (a
/// dry run's trial binds, a rollback). sluiced closes its own copy of each
/// socket only after sending it, so a plain close() here could leave a TCP
/// listener accepting for a moment after the client was told nothing changed,
/// and a connection the kernel queued on it in that moment would be reset.
/// shutdown(SHUT_RD) moves a listening socket to CLOSE for every descriptor
/// at once, so the port refuses from here on, whatever copy still exists.
/// On a UDP socket it fails with ENOTCONN and changes nothing that matters:
/// nothing reads its datagrams, and later binds of the port are asked of
/// sluiced, which has closed its copies by the time it reads them.
void discard_unpublished(std::vector<UniqueFd>* fds) noexcept {
  for (UniqueFd& fd : *fds) {
    if (fd.valid()) ::shutdown(fd.get(), SHUT_RD);
  }
  fds->clear();
}

}  // namespace

CommitEngine::CommitEngine(EventLoop& loop, Forwarder& forwarder, UdpForwarder& udp,
                           BrokerClient& broker, BrokerInfo info, ServerCaps caps, AuditLog& audit)
    : loop_(loop), forwarder_(forwarder), udp_(udp), broker_(broker), info_(info), audit_(audit) {
  facts_.caps = caps;
  // This worker listens and connects in one network namespace, and serves
  // the HOST table only (SPLICE rules listen in a target namespace).
  facts_.served = {true, false};
  facts_.targets_share_namespace = true;
  digest_ = control::digest_tables(tables_);
}

CommitEngine::~CommitEngine() {
  loop_.remove(broker_.fd());
}

Result<void> CommitEngine::start() {
  loop_.add_ticker(this);
  // Level-triggered: every queued reply keeps the channel readable until read.
  return loop_.add(broker_.fd(), EPOLLIN | EPOLLRDHUP, this);
}

void CommitEngine::on_tick(uint64_t /*now_ns*/) noexcept {
  if (active_ && (active_->phase == Phase::kReleaseClashing || active_->phase == Phase::kInstall)) {
    step();
  }
}

void CommitEngine::step() noexcept {
  Active& a = *active_;
  size_t budget = kSliceListeners;
  if (a.phase == Phase::kReleaseClashing) {
    if (!release_slice(&budget)) return loop_.request_immediate_tick();
    // The clashing sockets are closed: bind their successors.
    a.phase = Phase::kRebind;
    prepare(a.rebinds, a.plan.rebind);
    pump(a.rebinds);
    if (active_ && a.rebinds.complete()) advance();
    return;
  }
  // kInstall: serve the new sockets first, then release the old ones, so a
  // closing listener drains under the old rule while its successor serves.
  if (!install_slice(&budget) || !release_slice(&budget)) return loop_.request_immediate_tick();
  std::sort(a.next_installed.begin(), a.next_installed.end(),
            [](const Installed& x, const Installed& y) { return x.key < y.key; });
  installed_ = std::move(a.next_installed);
  if (a.job.request.end_removed_flows && !a.removed.empty()) {
    std::vector<std::string> removed = a.removed;
    std::sort(removed.begin(), removed.end());
    end_removed_flows(removed);
  }
  finish(control::Outcome::kApplied);
}

void CommitEngine::end_removed_flows(const std::vector<std::string>& removed) noexcept {
  // `removed` holds "PIF RULE-TEXT" lines: a rule whose text is gone (a
  // changed target counts as removed and re-added) loses its connections and
  // flows.
  auto gone = [&](const Route& route) {
    return std::binary_search(removed.begin(), removed.end(),
                              std::string(pif_name(route.pif)) + " " + route.text);
  };
  size_t ended = forwarder_.end_connections(gone);
  if (ended > 0) LOG_INFO("ended %zu connection%s of removed rules", ended, ended == 1 ? "" : "s");
  size_t flows = udp_.end_flows(gone);
  if (flows > 0) LOG_INFO("ended %zu UDP flow%s of removed rules", flows, flows == 1 ? "" : "s");
}

Result<Listener*> CommitEngine::serve(const ListenerKey& key, UniqueFd fd,
                                      std::shared_ptr<const Route> route) {
  if (key.proto == Proto::kUdp) {
    auto udp = udp_.add_listener(std::move(fd), key, std::move(route));
    if (!udp) return Err(udp.error());
    return static_cast<Listener*>(*udp);
  }
  auto tcp = forwarder_.add_tcp_listener(std::move(fd), key.port, std::move(route));
  if (!tcp) return Err(tcp.error());
  return static_cast<Listener*>(*tcp);
}

void CommitEngine::submit(control::CommitRequest request, struct ucred peer, Done done) {
  queue_.push_back(Job{std::move(request), peer, std::move(done)});
  start_next();
}

void CommitEngine::start_next() noexcept {
  if (active_ || queue_.empty()) return;
  Job job = std::move(queue_.front());
  queue_.pop_front();
  begin(std::move(job));
}

control::History CommitEngine::history(uint32_t limit) const {
  control::History out;
  size_t n = std::min<size_t>(limit, history_.size());
  out.entries.assign(history_.end() - static_cast<std::ptrdiff_t>(n), history_.end());
  return out;
}

CommitEngine::Acquisition& CommitEngine::current() {
  Active& a = *active_;
  switch (a.phase) {
    case Phase::kAcquire:
    case Phase::kInstall:  // no broker request is in flight while installing
      return a.opens;
    case Phase::kReleaseClashing:
    case Phase::kRebind:
      return a.rebinds;
    case Phase::kRestore:
      return a.restore;
  }
  return a.opens;
}

void CommitEngine::begin(Job job) noexcept {
  active_.emplace();
  Active& a = *active_;
  a.job = std::move(job);
  a.start_ns = monotonic_ns();
  a.generation_before = generation_;
  a.digest_before = digest_;
  const control::CommitRequest& req = a.job.request;
  a.added = rule_diff(req.tables, tables_);
  a.removed = rule_diff(tables_, req.tables);

  // Compare-and-swap: a client that edited an older generation would undo
  // somebody else's commit without knowing it.
  if (req.expected_generation != generation_) {
    a.failures.push_back(whole_commit_failure(
        control::FailureKind::kStale, Pif::kHost,
        "the tables changed since generation " + std::to_string(req.expected_generation) +
            " was read (now " + std::to_string(generation_) +
            "); read the state again and re-apply the edits (sluicectl does this by itself)"));
    return finish(control::Outcome::kStale);
  }
  a.failures = check_commit(req.tables, facts_, &target_policy_);
  if (!a.failures.empty()) {
    return finish(req.dry_run ? control::Outcome::kDryRun : control::Outcome::kRejected);
  }

  std::vector<ListenerKey> keys;
  keys.reserve(installed_.size());
  for (const Installed& i : installed_) keys.push_back(i.key);
  a.plan = plan_commit(keys, req.tables);
  a.phase = Phase::kAcquire;
  prepare(a.opens, a.plan.open);
  pump(a.opens);
  if (active_ && a.opens.complete()) advance();
}

void CommitEngine::prepare(Acquisition& acq, std::vector<PlannedKey> keys) const {
  BindPolicy policy = bind_policy_;  // the file's bind lines, pre-checked to name the line
  policy.unprivileged_port_start = info_.unprivileged_port_start;
  policy.has_bind_cap = info_.has_bind_cap;
  std::vector<PlannedKey> denied;
  std::vector<std::string> reasons;
  acq.keys.clear();
  for (PlannedKey& k : keys) {
    BindDecision d = check_bind(policy, to_wire(k.key));
    if (d.allowed) {
      acq.keys.push_back(std::move(k));
    } else {
      denied.push_back(std::move(k));
      reasons.push_back(std::move(d.reason));
    }
  }
  acq.asked = acq.keys.size();
  acq.keys.insert(acq.keys.end(), denied.begin(), denied.end());
  acq.status.assign(acq.keys.size(), wire::kStatusOk);
  acq.fds.clear();
  acq.fds.resize(acq.keys.size());
  acq.policy_reason.assign(acq.keys.size(), "");
  for (size_t i = 0; i < denied.size(); ++i) {
    acq.status[acq.asked + i] = wire::kStatusPolicyDenied;
    acq.policy_reason[acq.asked + i] = std::move(reasons[i]);
  }
  acq.sent = 0;
  acq.answered = 0;
}

void CommitEngine::pump(Acquisition& acq) noexcept {
  while (broker_.pending_listeners() < kPipelineWindow && acq.sent < acq.asked) {
    size_t n = std::min<size_t>(wire::kMaxListenersPerMessage, acq.asked - acq.sent);
    std::vector<ListenerKey> batch;
    batch.reserve(n);
    for (size_t i = 0; i < n; ++i) batch.push_back(acq.keys[acq.sent + i].key);
    auto sent = broker_.send_request(batch);
    if (!sent) return broker_failed(sent.error().message);
    acq.sent += n;
  }
}

void CommitEngine::on_event(uint32_t /*events*/) noexcept {
  if (broker_.next_is_peer_query()) {
    auto answered = broker_.receive_peer_reply();
    if (!answered) broker_failed(answered.error().message);
    return;
  }
  if (!active_ || broker_.pending() == 0) {
    // Nothing was asked: this is EOF, or the broker speaking out of turn.
    LOG_INFO("sluiced closed the broker channel; stopping");
    loop_.stop();
    return;
  }
  auto reply = broker_.receive_reply();
  if (!reply) return broker_failed(reply.error().message);
  Acquisition& acq = current();
  for (OpenedListener& r : *reply) {
    acq.status[acq.answered] = r.status;
    acq.fds[acq.answered] = std::move(r.fd);
    ++acq.answered;
  }
  pump(acq);
  if (active_ && acq.complete()) advance();
}

std::vector<control::Failure> CommitEngine::judge(bool with_rebinds) const {
  const Active& a = *active_;
  std::vector<PlannedKey> keys = a.opens.keys;
  std::vector<int32_t> status = a.opens.status;
  std::vector<std::string> reasons = a.opens.policy_reason;
  if (with_rebinds) {
    keys.insert(keys.end(), a.rebinds.keys.begin(), a.rebinds.keys.end());
    status.insert(status.end(), a.rebinds.status.begin(), a.rebinds.status.end());
    reasons.insert(reasons.end(), a.rebinds.policy_reason.begin(), a.rebinds.policy_reason.end());
  }
  std::vector<std::string> warnings;
  auto failures =
      judge_rules(a.job.request.tables, keys, status, reasons,
                  BindContext{info_.has_bind_cap, info_.unprivileged_port_start}, &warnings);
  for (const std::string& w : warnings) LOG_WARN("%s", w.c_str());
  return failures;
}

void CommitEngine::advance() noexcept {
  Active& a = *active_;
  const control::CommitRequest& req = a.job.request;
  switch (a.phase) {
    case Phase::kAcquire: {
      a.failures = judge(false);
      if (req.dry_run) {
        // Trial binds done: close them. Rebinds cannot be trial-bound while
        // the clashing sockets listen; they are counted in the plan.
        discard_unpublished(&a.opens.fds);
        return finish(control::Outcome::kDryRun);
      }
      if (!a.failures.empty()) {
        discard_unpublished(&a.opens.fds);  // roll back: the old table never stopped serving
        return finish(control::Outcome::kRejected);
      }
      if (a.plan.rebind.empty()) {
        swap();
        return step();
      }
      // Rebinds: remember how to restore the clashing listeners, close them
      // (in slices), then bind their successors.
      for (size_t i : a.plan.clashing) {
        a.restore_routes.push_back(installed_[i].listener->route());
      }
      a.to_release = a.plan.clashing;
      a.released = 0;
      a.phase = Phase::kReleaseClashing;
      return step();
    }
    case Phase::kRebind: {
      a.failures = judge(true);
      if (a.failures.empty()) {
        swap();
        return step();
      }
      // Roll back: re-acquire the sockets the rebinds replaced.
      discard_unpublished(&a.rebinds.fds);
      discard_unpublished(&a.opens.fds);
      std::vector<PlannedKey> old;
      for (size_t i : a.plan.clashing) old.push_back(PlannedKey{installed_[i].key, KeyOrigin{}});
      a.phase = Phase::kRestore;
      prepare(a.restore, std::move(old));
      pump(a.restore);
      if (active_ && a.restore.complete()) advance();
      return;
    }
    case Phase::kReleaseClashing:
    case Phase::kInstall:
      return;  // sliced phases move on in step()
    case Phase::kRestore: {
      // prepare() keeps the order of allowed keys, and the old keys were all
      // allowed before, so restore.keys[i] matches plan.clashing[i].
      for (size_t i = 0; i < a.plan.clashing.size(); ++i) {
        Installed& slot = installed_[a.plan.clashing[i]];
        if (a.restore.status[i] == wire::kStatusOk && slot.key == a.restore.keys[i].key) {
          auto listener = serve(slot.key, std::move(a.restore.fds[i]), a.restore_routes[i]);
          if (listener) {
            slot.listener = *listener;
            continue;
          }
        }
        control::Failure f = whole_commit_failure(
            control::FailureKind::kBindFailed, slot.key.pif,
            "rolling back a failed rebind, port " + std::to_string(slot.key.port) +
                " could not be bound again (" +
                (a.restore.status[i] > 0 && a.restore.status[i] <= wire::kStatusMaxErrno
                     ? errno_text(a.restore.status[i])
                     : std::string("refused")) +
                "); the old table is in force but this port is not served until the next "
                "commit; commit the current tables again to retry");
        f.port = slot.key.port;
        LOG_ERROR("%s", f.message.c_str());
        a.failures.push_back(std::move(f));
      }
      // Drop entries that could not be restored: the next plan opens them.
      std::erase_if(installed_, [](const Installed& i) { return i.listener == nullptr; });
      return finish(control::Outcome::kRejected);
    }
  }
}

bool CommitEngine::release_slice(size_t* budget) noexcept {
  Active& a = *active_;
  for (; a.released < a.to_release.size() && *budget > 0; ++a.released, --*budget) {
    Listener* listener = installed_[a.to_release[a.released]].listener;
    if (listener == nullptr) continue;
    // Forward what the kernel already queued under the old rule: closing a
    // TCP listener resets every connection left in its queue, and closing a
    // UDP socket discards its datagrams.
    listener->drain();
    listener->release();
    installed_[a.to_release[a.released]].listener = nullptr;
  }
  return a.released == a.to_release.size();
}

void CommitEngine::swap() noexcept {
  Active& a = *active_;
  const TableSet& next = a.job.request.tables;
  a.routes = make_routes(next, routes_, facts_);
  a.next_installed.reserve(a.plan.keep.size() + a.plan.open.size() + a.plan.rebind.size());
  for (const CommitPlan::Keep& keep : a.plan.keep) {
    Installed inst = installed_[keep.installed];
    inst.listener->set_route(a.routes[static_cast<size_t>(keep.origin.pif)][keep.origin.rule]);
    a.next_installed.push_back(inst);
  }
  // The new sockets listen already (the broker called listen()), so the
  // kernel queues their connections from now on; serving them in slices only
  // delays the first accept by a slice, it refuses nothing.
  a.install_acq = 0;
  a.install_next = 0;
  a.to_release = a.plan.close;
  a.released = 0;
  a.phase = Phase::kInstall;
  tables_ = next;
  routes_ = a.routes;
  ++generation_;
  digest_ = control::digest_tables(tables_);
}

control::Stats CommitEngine::stats(uint64_t uptime_millis) const {
  control::Stats st;
  st.generation = generation_;
  st.uptime_millis = uptime_millis;
  st.connections_active = forwarder_.counters().active;
  st.connection_limit = forwarder_.max_connections();
  st.flows_active = udp_.flow_count();
  st.flow_limit = udp_.limits().max_flows;
  st.listeners = installed_.size();
  st.paused_listeners = forwarder_.parked_count();
  // Both sides checked these options against their wire:: maxima, which all
  // fit in 32 bits.
  st.pipe_size = static_cast<uint32_t>(forwarder_.limits().pipe_size);
  st.connect_timeout_seconds =
      static_cast<uint32_t>(forwarder_.limits().connect_timeout_ns / 1000000000ULL);
  st.udp_idle_timeout_seconds = static_cast<uint32_t>(udp_.limits().idle_timeout_s);
  st.audit_lines_lost = audit_.failed_writes();
  st.audit_bytes_waiting = audit_.pending_bytes();
  for (size_t p = 0; p < kPifCount && p < routes_.size(); ++p) {
    const Table& table = tables_.tables[p];
    for (size_t i = 0; i < table.rules.size() && i < routes_[p].size(); ++i) {
      const RuleCounters& c = *routes_[p][i]->counters;
      control::RuleStats r;
      r.pif = table.pif;
      r.proto = table.rules[i].proto;
      r.rule = static_cast<uint32_t>(i);
      r.text = routes_[p][i]->text;
      r.accepted = c.accepted;
      r.active = c.active;
      r.failed = c.failed;
      r.bytes_to_target = c.bytes_to_target;
      r.bytes_to_client = c.bytes_to_client;
      r.flows_active = c.flows_active;
      r.flows_created = c.flows_created;
      r.datagrams_to_target = c.datagrams_to_target;
      r.datagrams_to_client = c.datagrams_to_client;
      r.dropped = c.dropped;
      r.loops = c.loops;
      st.rules.push_back(std::move(r));
    }
  }
  return st;
}

bool CommitEngine::install_slice(size_t* budget) noexcept {
  Active& a = *active_;
  Acquisition* acqs[] = {&a.opens, &a.rebinds};
  for (; a.install_acq < 2; ++a.install_acq, a.install_next = 0) {
    Acquisition& acq = *acqs[a.install_acq];
    for (; a.install_next < acq.keys.size(); ++a.install_next) {
      if (*budget == 0) return false;
      UniqueFd& fd = acq.fds[a.install_next];
      if (!fd.valid()) continue;  // a failed port of a weak rule
      const PlannedKey& k = acq.keys[a.install_next];
      auto listener =
          serve(k.key, std::move(fd), a.routes[static_cast<size_t>(k.origin.pif)][k.origin.rule]);
      CHECK_MSG(listener.ok(), listener.ok() ? "" : listener.error().message.c_str());
      a.next_installed.push_back(Installed{k.key, *listener});
      --*budget;
    }
  }
  return true;
}

void CommitEngine::finish(control::Outcome outcome) noexcept {
  Active& a = *active_;
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
  record.opened = static_cast<uint32_t>(a.plan.open.size());
  record.closed = static_cast<uint32_t>(a.plan.close.size());
  record.rebound = static_cast<uint32_t>(a.plan.rebind.size());
  record.failures = std::move(a.failures);
  cut_failures(&record.failures);
  record.duration_micros = (monotonic_ns() - a.start_ns) / 1000;
  record = audit_.write(std::move(record));  // stamps the sequence and the time
  history_.push_back(to_history_entry(record));
  while (history_.size() > control::kMaxHistory) history_.pop_front();
  LOG_INFO(
      "commit from pid %d uid %u: %s, generation %llu, kept %u opened %u closed %u "
      "rebound %u, %zu failure%s, %llu us",
      record.peer.pid, record.peer.uid, control::outcome_name(outcome),
      static_cast<unsigned long long>(record.generation_after), record.kept, record.opened,
      record.closed, record.rebound, record.failures.size(), record.failures.size() == 1 ? "" : "s",
      static_cast<unsigned long long>(record.duration_micros));

  Done done = std::move(a.job.done);
  active_.reset();
  if (done) done(to_result(record));
  start_next();
}

void CommitEngine::broker_failed(const std::string& why) noexcept {
  // The broker is the more privileged side and the only source of sockets: a
  // failure on its channel is a dying broker or a bug, and the worker stops.
  LOG_ERROR("broker channel: %s; stopping", why.c_str());
  loop_.stop();
}

}  // namespace sluice
