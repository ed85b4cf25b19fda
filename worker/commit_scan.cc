// The commit engine's auto-scan (see commit_engine.h and port_scan.h): when
// to read the bound ports of each side (the target namespace for HOST scan
// rules, sluiced's side for SPLICE scan rules), what each table's scan rules
// see once sluice's own listeners are left out, the scan job that makes the
// scan rules' listeners follow them through the engine's own states, and the
// ports each scan rule listens on now, for `sluicectl --stats`.
#include <algorithm>
#include <string>
#include <utility>

#include "base/log.h"
#include "schema/broker_wire.h"
#include "worker/commit_engine.h"

namespace sluice {
namespace {

/// Limit: the same scan ports failing to bind again (a port that another
/// service holds on the host side fails at every scan, once a second) are
/// logged once a minute; new failures at once.
constexpr uint64_t kScanRepeatLogNs = 60 * 1000000000ULL;

/// Limit: ports named in one log line of a scan change; the rest are
/// counted. A `-t auto` rule meeting a container that starts hundreds of
/// servers at once would otherwise write a line of kilobytes.
constexpr size_t kMaxPortsLogged = 16;

/// One port of a log line.
struct LoggedPort {
  Proto proto;
  uint16_t port;
  auto operator<=>(const LoggedPort&) const = default;
};

/// Formats `ports` as "TCP 8080, UDP 5353" (sorted, each once, at most
/// kMaxPortsLogged, then "and N more").
std::string port_list(std::vector<LoggedPort> ports) {
  std::sort(ports.begin(), ports.end());
  ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
  std::string out;
  for (size_t i = 0; i < ports.size() && i < kMaxPortsLogged; ++i) {
    if (i != 0) out += ", ";
    out += std::string(proto_name(ports[i].proto)) + " " + std::to_string(ports[i].port);
  }
  if (ports.size() > kMaxPortsLogged) {
    out += " and " + std::to_string(ports.size() - kMaxPortsLogged) + " more";
  }
  return out;
}

/// Appends to `out` the ports of `acq` that the broker opened, but for the
/// listeners of `rebound` (sorted: sockets bound anew to an interface that
/// came back, which commit_interfaces.cc logs on its own).
void opened_ports(const Acquisition& acq, std::vector<LoggedPort>* out,
                  const std::vector<std::pair<ListenerKey, size_t>>& rebound) {
  for (size_t i = 0; i < acq.keys.size(); ++i) {
    if (acq.status[i] != wire::kStatusOk) continue;
    const ListenerKey& key = acq.keys[i].key;
    auto it = std::lower_bound(rebound.begin(), rebound.end(), key,
                               [](const auto& e, const ListenerKey& k) { return e.first < k; });
    if (it != rebound.end() && it->first == key) continue;
    out->push_back({key.proto, key.port});
  }
}

}  // namespace

void CommitEngine::scan_tick(uint64_t now_ns) noexcept {
  if ((scanner_ == nullptr && host_scanner_ == nullptr) || !scan_.active ||
      now_ns < scan_.next_ns || state_ == State::kStopped) {
    return;
  }
  refresh_scan(scan_.watched);
  if (scan_.queued) return;  // the queued job reads again when it starts
  if (restrict_to(scan_.bound, scan_.watched) == scan_.applied && !scan_.retry) return;
  queue_scan_job();
}

void CommitEngine::queue_scan_job() noexcept {
  scan_.queued = true;
  Job job;
  job.scan = true;
  job.peer = {};
  queue_.push_back(std::move(job));
  if (state_ == State::kIdle) fire(Event::kSubmitted);
}

void CommitEngine::refresh_scan(const PifPorts& watched) noexcept {
  scan_.next_ns = monotonic_ns() + kScanIntervalNs;
  // Only the sides some scan rule follows: sluiced's side may hold many
  // more sockets than a container.
  for (Pif pif : {Pif::kHost, Pif::kSplice}) {
    PortScanner* scanner = pif == Pif::kHost ? scanner_ : host_scanner_;
    const BoundPorts& w = watched.of(pif);
    if (scanner == nullptr || (!w.tcp.any() && !w.udp.any())) continue;
    Result<BoundPorts> got = scanner->scan();
    if (got) scan_.raw.of(pif) = std::move(*got);
  }
  // sluice's own listeners on each side never count (port_scan.h), so that
  // HOST and SPLICE scan rules never follow each other's listeners.
  std::vector<ListenerKey> keys;
  keys.reserve(installed_.size());
  for (const Installed& i : installed_) keys.push_back(i.key);
  for (Pif pif : {Pif::kHost, Pif::kSplice}) {
    scan_.bound.of(pif) = scan_view(scan_.raw.of(pif), listener_ports(keys, other_table(pif)));
  }
}

void CommitEngine::plan_scan_job() noexcept {
  Active& a = *active_;
  scan_.queued = false;
  a.job.request.tables = tables_;
  refresh_scan(scan_.watched);
  a.scan_seen = restrict_to(scan_.bound, scan_.watched);
  std::vector<ListenerKey> keys;
  std::vector<KeyOrigin> origins;
  keys.reserve(installed_.size());
  origins.reserve(installed_.size());
  for (const Installed& i : installed_) {
    keys.push_back(i.key);
    origins.push_back(i.origin);
  }
  a.plan = plan_scan(keys, origins, tables_, scan_.bound);
  for (size_t c : a.plan.close) a.scan_closing.push_back(installed_[c].key);
  fit_scan_to_descriptors();
  plan_stale_rebinds();
  fire(Event::kPlanned);
}

void CommitEngine::fit_scan_to_descriptors() noexcept {
  Active& a = *active_;
  // The sockets asked of sluiced: those no dead worker's escrow hands over.
  const FdUse use = fd_use();
  const uint64_t room = use.room();
  uint64_t fresh = 0;
  for (const PlannedKey& k : a.plan.rebind) fresh += adopted_.contains(k.key) ? 0 : 1;
  std::vector<PlannedKey> fit;
  fit.reserve(a.plan.open.size());
  size_t cut = 0;
  for (PlannedKey& k : a.plan.open) {
    if (!adopted_.contains(k.key) && fresh++ >= room) {
      a.scan_failing.push_back(k.key);  // tried again at the next scan, when room may be back
      ++cut;
      continue;
    }
    fit.push_back(std::move(k));
  }
  a.plan.open = std::move(fit);
  if (cut > 0) a.scan_retry = true;
  const uint64_t now = monotonic_ns();
  if (cut != 0 && (cut != scan_.budget_cut || now >= scan_.next_budget_log_ns)) {
    LOG_WARN(
        "auto-scan: %zu port%s bound on the side a scan rule follows get%s no listener: the "
        "worker's RLIMIT_NOFILE (%llu) has room for no more, keeping %llu descriptors for "
        "connections and control clients; raise sluiced's LimitNOFILE= or ulimit -n (its "
        "workers inherit it), or narrow the scan rules' ranges",
        cut, cut == 1 ? "" : "s", cut == 1 ? "s" : "", static_cast<unsigned long long>(use.limit),
        static_cast<unsigned long long>(use.reserve()));
    scan_.next_budget_log_ns = now + kScanRepeatLogNs;
  }
  scan_.budget_cut = cut;
}

void CommitEngine::note_scan_failures(const Acquisition& acq) noexcept {
  Active& a = *active_;
  const TableSet& tables = a.job.request.tables;
  for (size_t i = 0; i < acq.keys.size(); ++i) {
    if (acq.status[i] == wire::kStatusOk) continue;
    const KeyOrigin& o = acq.keys[i].origin;
    const Table& table = tables.of(o.pif);
    if (o.rule >= table.rules.size() || !table.rules[o.rule].scan) continue;
    a.scan_failing.push_back(acq.keys[i].key);
    // An errno is worth another try; a policy denial stays one.
    if (acq.status[i] > 0 && acq.status[i] <= wire::kStatusMaxErrno) a.scan_retry = true;
  }
  std::sort(a.scan_failing.begin(), a.scan_failing.end());
}

bool CommitEngine::scan_failures_worth_logging() noexcept {
  const Active& a = *active_;
  const uint64_t now = monotonic_ns();
  if (a.scan_failing == scan_.failing && now < scan_.next_repeat_log_ns) return false;
  scan_.next_repeat_log_ns = now + kScanRepeatLogNs;
  return true;
}

void CommitEngine::scan_applied() noexcept {
  const Active& a = *active_;
  scan_.watched = watched_ports(tables_);
  scan_.active = scan_.watched.any();
  scan_.applied = a.scan_seen;
  scan_.retry = a.scan_retry;
  scan_.failing = a.scan_failing;
  // Every job tries each missing port of the scan rules again (plan_scan),
  // so its failures are the whole list; the tables in force are the job's.
  scan_.why.clear();
  for (const control::Failure& w : a.warnings) {
    if (of_scan_rule(w) && scan_.why.size() < control::kMaxFailures) scan_.why.push_back(w);
  }
}

bool CommitEngine::of_scan_rule(const control::Failure& f) const noexcept {
  const Table& table = tables_.of(f.pif);
  return f.rule >= 0 && static_cast<size_t>(f.rule) < table.rules.size() &&
         table.rules[static_cast<size_t>(f.rule)].scan;
}

void CommitEngine::finish_scan_job(control::Outcome outcome) noexcept {
  Active& a = *active_;
  std::vector<LoggedPort> opened, closed;
  if (outcome == control::Outcome::kApplied) {
    opened_ports(a.opens, &opened, a.rebound_stale);
    opened_ports(a.rebinds, &opened, a.rebound_stale);
    for (const ListenerKey& k : a.scan_closing) closed.push_back({k.proto, k.port});
  }
  const unsigned long long micros = (monotonic_ns() - a.start_ns) / 1000;
  if (outcome != control::Outcome::kApplied) {
    if (scan_.change_log.allow()) {
      LOG_WARN("auto-scan: the change was rolled back (%s); trying again at the next scan",
               a.failures.empty() ? "a rebind failed" : a.failures.front().message.c_str());
    }
  } else if ((!opened.empty() || !closed.empty()) && scan_.change_log.allow()) {
    // Not a commit: no generation, audit line or history entry; the log is
    // where a scan change shows, besides --stats.
    LOG_INFO("auto-scan: %s%s%s%s%s, %llu us", opened.empty() ? "" : "now listening on ",
             port_list(opened).c_str(), !opened.empty() && !closed.empty() ? "; " : "",
             closed.empty() ? "" : "stopped listening on ", port_list(closed).c_str(), micros);
  }
  active_.reset();
  fire(Event::kReplied);
}

std::vector<std::vector<std::vector<control::PortRange>>> CommitEngine::scan_active() const {
  std::vector<std::vector<std::vector<control::PortRange>>> out(kPifCount);
  // The scan rules by the address of their route: a listener in force
  // points at its rule's route (kept ones are re-pointed at each swap).
  std::vector<std::pair<const Route*, std::pair<size_t, size_t>>> by_route;
  std::vector<std::vector<std::vector<uint16_t>>> ports(kPifCount);
  for (size_t p = 0; p < kPifCount; ++p) {
    const std::vector<Rule>& rules = tables_.tables[p].rules;
    out[p].resize(rules.size());
    ports[p].resize(rules.size());
    for (size_t i = 0; i < rules.size() && p < routes_.size() && i < routes_[p].size(); ++i) {
      if (rules[i].scan) by_route.push_back({routes_[p][i].get(), {p, i}});
    }
  }
  if (by_route.empty()) return out;
  std::sort(by_route.begin(), by_route.end());
  for (const Installed& inst : installed_) {
    if (inst.listener == nullptr) continue;  // released during a commit
    const Route* route = inst.listener->route().get();
    auto it = std::lower_bound(by_route.begin(), by_route.end(), route,
                               [](const std::pair<const Route*, std::pair<size_t, size_t>>& e,
                                  const Route* r) { return e.first < r; });
    if (it == by_route.end() || it->first != route) continue;
    ports[it->second.first][it->second.second].push_back(inst.key.port);
  }
  for (size_t p = 0; p < kPifCount; ++p) {
    for (size_t i = 0; i < ports[p].size(); ++i) {
      std::vector<uint16_t>& list = ports[p][i];
      std::sort(list.begin(), list.end());
      list.erase(std::unique(list.begin(), list.end()), list.end());
      for (uint16_t port : list) {
        if (!out[p][i].empty() && out[p][i].back().last + 1 == port) {
          out[p][i].back().last = port;
        } else {
          out[p][i].push_back(control::PortRange{port, port});
        }
      }
    }
  }
  return out;
}

}  // namespace sluice
