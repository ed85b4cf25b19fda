// The commit engine's socket work on the tables in force (see
// commit_engine.h): the routes of new tables, the swap, serving acquired
// sockets and releasing old ones in slices, ending removed flows, and the
// history and counters that `sluicectl --history` and `--stats` show.
#include <algorithm>
#include <span>
#include <utility>

#include "base/log.h"
#include "worker/commit_engine.h"
#include "worker/state_store.h"

namespace sluice {
namespace {

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
      route.scan = rule.scan;
      auto it =
          std::lower_bound(old.begin(), old.end(), route.text,
                           [](const Route* r, const std::string& text) { return r->text < text; });
      if (it != old.end() && (*it)->text == route.text) route.counters = (*it)->counters;
      routes[p].push_back(std::make_shared<const Route>(std::move(route)));
    }
  }
  return routes;
}

/// A key's table and port: what the two sockets of a rebind share.
std::pair<Pif, uint16_t> table_port(const ListenerKey& key) noexcept {
  return {key.pif, key.port};
}

/// Sorts `index`, positions in `entries` (the engine's Installed lists), by
/// the table and port of their keys, for on_table_port().
template <typename Entry>
void sort_by_table_port(std::vector<size_t>* index, const std::vector<Entry>& entries) {
  std::sort(index->begin(), index->end(), [&](size_t x, size_t y) {
    return table_port(entries[x].key) < table_port(entries[y].key);
  });
}

/// The positions of `index` (sort_by_table_port) whose keys in `entries`
/// are on the table and port of `key`. O(log n).
template <typename Entry>
std::span<const size_t> on_table_port(const std::vector<size_t>& index,
                                      const std::vector<Entry>& entries, const ListenerKey& key) {
  const auto want = table_port(key);
  auto first = std::lower_bound(index.begin(), index.end(), want, [&](size_t i, const auto& w) {
    return table_port(entries[i].key) < w;
  });
  auto last = std::upper_bound(first, index.end(), want, [&](const auto& w, size_t i) {
    return w < table_port(entries[i].key);
  });
  return {first, last};
}

}  // namespace

void CommitEngine::swap() noexcept {
  Active& a = *active_;
  const TableSet& next = a.job.request.tables;
  // A scan job keeps the tables in force, and with them their routes.
  a.routes = a.job.scan ? routes_ : make_routes(next, routes_, facts_);
  a.next_installed.reserve(a.plan.keep.size() + a.plan.open.size() + a.plan.rebind.size());
  for (const CommitPlan::Keep& keep : a.plan.keep) {
    Installed inst = installed_[keep.installed];
    inst.listener->set_route(a.routes[static_cast<size_t>(keep.origin.pif)][keep.origin.rule]);
    inst.origin = keep.origin;
    a.next_installed.push_back(inst);
  }
  // The new sockets listen already (the broker called listen()), so the
  // kernel queues their connections from now on; serving them in slices only
  // delays the first accept by a slice, it refuses nothing.
  a.install_acq = 0;
  a.install_next = 0;
  a.released = 0;
  a.to_release.clear();
  // A port a rebind moves keeps its clients: the listener it replaces stops
  // taking new handshakes now, and is drained and closed only after
  // kRebindSettleNs, when those under way have completed into its queue.
  // Its successor shares the port meanwhile; a SYN the old one drops is
  // sent again by the client, and finds the successor.
  for (size_t c : a.plan.close) {
    const bool replaced = std::binary_search(a.plan.clashing.begin(), a.plan.clashing.end(), c);
    (replaced ? a.to_release_settled : a.to_release).push_back(c);
    if (replaced) installed_[c].listener->quiesce();
  }
  if (!a.to_release_settled.empty()) a.settle_until_ns = monotonic_ns() + kRebindSettleNs;
  // A scan change is not a commit: same tables, generation and digest.
  if (a.job.scan) return;
  // The other data-path threads read a kept listener's rule at each
  // accept; one that read the old rule just before the set_route above may
  // still be accepting under it. Once each has finished its batch, a client
  // that connects after the reply is served under the new rule.
  forwarder_.sync_threads();
  tables_ = next;
  routes_ = a.routes;
  // The fair share of the connection limit divides it among the TCP rules.
  size_t tcp_rules = 0;
  for (const Table& table : tables_.tables) {
    for (const Rule& rule : table.rules) tcp_rules += rule.proto == Proto::kTcp ? 1 : 0;
  }
  forwarder_.set_tcp_rules(tcp_rules);
  // A resume commit takes the dead worker's generation: the tables are the
  // ones it served, and clients' compare-and-swap keeps working.
  generation_ = resume_generation_ ? *resume_generation_ : generation_ + 1;
  resume_generation_.reset();
  digest_ = control::digest_tables(tables_);
}

bool CommitEngine::install_slice(size_t* budget) noexcept {
  Active& a = *active_;
  Acquisition* acqs[] = {&a.opens, &a.rebinds};
  for (; a.install_acq < 2; ++a.install_acq, a.install_next = 0) {
    Acquisition& acq = *acqs[a.install_acq];
    for (; a.install_next < acq.keys.size(); ++a.install_next) {
      if (*budget == 0) return false;
      UniqueFd& fd = acq.fds[a.install_next];
      if (!fd.valid()) {  // a failed port of a weak rule
        ++a.not_opened[a.install_acq];
        continue;
      }
      const PlannedKey& k = acq.keys[a.install_next];
      const uint64_t cookie = socket_cookie(fd.get());
      // A UDP rebind takes over the flows of the sockets it replaces as
      // their clients send to it (UdpForwarder::add_listener).
      std::vector<UdpListener*> predecessors;
      if (a.install_acq == 1 && k.key.proto == Proto::kUdp) predecessors = udp_predecessors(k.key);
      auto listener =
          serve(k.key, std::move(fd), a.routes[static_cast<size_t>(k.origin.pif)][k.origin.rule],
                std::move(predecessors));
      CHECK_MSG(listener.ok(), listener.ok() ? "" : listener.error().message.c_str());
      a.next_installed.push_back(Installed{k.key, *listener, k.origin, cookie});
      --*budget;
    }
  }
  return true;
}

bool CommitEngine::release_slice(size_t* budget) noexcept {
  Active& a = *active_;
  // The other data-path threads let go of this slice's TCP listeners in one
  // round trip each, not one per listener (Forwarder::close_listener).
  std::vector<TcpListener*> tcp;
  for (size_t i = a.released; i < a.to_release.size() && i - a.released < *budget; ++i) {
    const Installed& inst = installed_[a.to_release[i]];
    if (inst.listener != nullptr && inst.key.proto == Proto::kTcp) {
      tcp.push_back(static_cast<TcpListener*>(inst.listener));
    }
  }
  forwarder_.unshare(tcp);
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

std::vector<UdpListener*> CommitEngine::udp_successors(const ListenerKey& key) noexcept {
  Active& a = *active_;
  if (!a.udp_by_port_built) {
    for (size_t i = 0; i < a.next_installed.size(); ++i) {
      if (a.next_installed[i].key.proto == Proto::kUdp) a.udp_by_port.push_back(i);
    }
    sort_by_table_port(&a.udp_by_port, a.next_installed);
    a.udp_by_port_built = true;
  }
  std::vector<UdpListener*> out;
  for (size_t i : on_table_port(a.udp_by_port, a.next_installed, key)) {
    const Installed& inst = a.next_installed[i];
    if (inst.key != key && inst.listener != nullptr) {
      out.push_back(static_cast<UdpListener*>(inst.listener));
    }
  }
  return out;
}

std::vector<UdpListener*> CommitEngine::udp_predecessors(const ListenerKey& key) noexcept {
  Active& a = *active_;
  if (!a.udp_clashing_built) {
    for (size_t c : a.plan.clashing) {
      if (installed_[c].key.proto == Proto::kUdp) a.udp_clashing.push_back(c);
    }
    sort_by_table_port(&a.udp_clashing, installed_);
    a.udp_clashing_built = true;
  }
  std::vector<UdpListener*> out;
  for (size_t c : on_table_port(a.udp_clashing, installed_, key)) {
    const Installed& old = installed_[c];
    if (old.listener != nullptr && kernel_clash(key, old.key)) {
      out.push_back(static_cast<UdpListener*>(old.listener));
    }
  }
  return out;
}

FdUse CommitEngine::fd_use() const noexcept {
  FdUse use;
  use.limit = fd_limit_;
  use.listeners = installed_.size() + adopted_.size();
  use.connections = forwarder_.in_use();
  use.idle_pipes = forwarder_.idle_pipes_total();
  use.flows = udp_.flow_count();
  return use;
}

std::optional<control::Failure> CommitEngine::check_descriptors() const {
  const CommitPlan& plan = active_->plan;
  // What sluiced is asked for: the opens and rebinds, but for the keys a
  // dead worker's escrow hands over (counted as held already).
  size_t fresh[kPifCount] = {};
  for (const std::vector<PlannedKey>* keys : {&plan.open, &plan.rebind}) {
    for (const PlannedKey& k : *keys) {
      if (!adopted_.contains(k.key)) ++fresh[static_cast<size_t>(k.key.pif)];
    }
  }
  const size_t total_fresh = fresh[0] + fresh[1];
  const size_t total = plan.keep.size() + plan.open.size() + plan.rebind.size();
  const Pif pif = fresh[static_cast<size_t>(Pif::kSplice)] > fresh[static_cast<size_t>(Pif::kHost)]
                      ? Pif::kSplice
                      : Pif::kHost;
  return check_fd_budget(total_fresh, total, pif, fd_use());
}

void CommitEngine::note_lost_sockets(const Acquisition& acq) noexcept {
  if (acq.lost == 0) return;
  const FdUse use = fd_use();
  LOG_WARN(
      "%zu listening socket%s from sluiced never arrived: the worker's descriptor table is full "
      "(RLIMIT_NOFILE %llu, about %llu held)%s",
      acq.lost, acq.lost == 1 ? "" : "s", static_cast<unsigned long long>(use.limit),
      static_cast<unsigned long long>(use.held()),
      active_->job.scan ? "; auto-scan tries them again at the next scan"
                        : "; the commit fails and nothing changes");
  if (active_->job.scan) return;
  active_->failures.push_back(lost_sockets_failure(acq.lost, acq.keys.front().key.pif, use));
}

Result<Listener*> CommitEngine::serve(const ListenerKey& key, UniqueFd fd,
                                      std::shared_ptr<const Route> route,
                                      std::vector<UdpListener*> predecessors) {
  if (key.proto == Proto::kUdp) {
    auto udp = udp_.add_listener(std::move(fd), key, std::move(route), std::move(predecessors));
    if (!udp) return Err(udp.error());
    return static_cast<Listener*>(*udp);
  }
  auto tcp = forwarder_.add_tcp_listener(std::move(fd), key.port, std::move(route));
  if (!tcp) return Err(tcp.error());
  return static_cast<Listener*>(*tcp);
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

control::History CommitEngine::history(uint32_t limit) const {
  control::History out;
  size_t n = std::min<size_t>(limit, history_.size());
  out.entries.assign(history_.end() - static_cast<std::ptrdiff_t>(n), history_.end());
  return out;
}

control::Stats CommitEngine::stats(uint64_t uptime_millis) const {
  control::Stats st;
  st.generation = generation_;
  st.uptime_millis = uptime_millis;
  st.connections_active = forwarder_.active_total();
  st.threads_accepted = forwarder_.accepted_by_thread();
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
  st.log_lines_dropped = log_dropped_total();
  st.connection_log = forwarder_.limits().log_connections;
  st.target_exited = target_exited_;
  const ConnLimits limits = forwarder_.conn_limits();
  st.idle_timeout_seconds =
      static_cast<uint32_t>(forwarder_.limits().idle_timeout_ns / 1000000000ULL);
  st.connection_limit_per_rule = limits.per_rule;
  st.connection_limit_per_source = limits.per_source;
  st.connection_share = fair_share(limits.global, forwarder_.tcp_rules());
  st.connection_reserve = share_reserve(limits.global, forwarder_.tcp_rules());
  st.sources_active = forwarder_.source_count();
  st.commits_applied = outcomes_[static_cast<size_t>(control::Outcome::kApplied)];
  st.commits_rejected = outcomes_[static_cast<size_t>(control::Outcome::kRejected)];
  st.commits_dry_run = outcomes_[static_cast<size_t>(control::Outcome::kDryRun)];
  st.commits_stale = outcomes_[static_cast<size_t>(control::Outcome::kStale)];
  st.rollbacks = confirm_.rollbacks();
  st.policy_reloads = policy_reloads_;
  st.policy_failures = policy_failures();
  cut_failures(&st.policy_failures);
  st.pending_confirm = pending_confirm();
  const auto active = scan_active();
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
      r.paused_rule_limit = c.paused_rule_limit;
      r.paused_global_limit = c.paused_global_limit;
      r.refused_source = c.refused_source;
      r.closed_idle = c.closed_idle;
      r.target_errors = c.target_errors;
      if (table.rules[i].scan) {
        r.scan_active = active[p][i];
        // scan_.why is sorted by table, rule and port (judge_rules).
        auto at = std::lower_bound(
            scan_.why.begin(), scan_.why.end(), std::make_pair(table.pif, static_cast<int32_t>(i)),
            [](const control::Failure& f, const std::pair<Pif, int32_t>& want) {
              return std::make_pair(f.pif, f.rule) < want;
            });
        for (; at != scan_.why.end() && at->pif == table.pif && at->rule == static_cast<int32_t>(i);
             ++at) {
          r.scan_failing.push_back(*at);
        }
      }
      st.rules.push_back(std::move(r));
    }
  }
  return st;
}

}  // namespace sluice
