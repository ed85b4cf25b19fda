// The commit engine's watch over listeners bound to an interface (the
// `%IFNAME` of a rule; see commit_engine.h). SO_BINDTODEVICE binds a socket
// to the interface's index as it is at bind time. An interface removed and
// created again (a VPN that reconnects, a bridge or veth that a container
// runtime re-creates) gets a new index, and the socket hears nothing more,
// while the tables still show the rule and a client that sends the same
// table again finds nothing to change. The engine notices it (the kernel
// names a socket's interface from the index it holds: no name, or another
// interface's, means it was removed) and binds such a listener anew through
// a scan job: the same key, a new socket, the other ports untouched; no
// generation, no audit record, as for an auto-scan change.
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "base/log.h"
#include "base/strings.h"
#include "schema/broker_wire.h"
#include "worker/commit_engine.h"

namespace sluice {
namespace {

/// Limit: how often the listeners bound to an interface are looked at:
/// once a second, as auto-scan reads the bound ports, so a listener hears
/// its re-created interface again about a second after it is back.
constexpr uint64_t kInterfaceCheckNs = 1'000'000'000;

/// Limit: listeners looked at per look, one getsockopt each (about a
/// microsecond): a look holds the loop for about a millisecond at most, and
/// a range of 10,000 ports on one interface is looked at whole in 10 s.
constexpr size_t kInterfaceChecksPerTick = 1024;

/// Limit: while an interface stays away, its listeners are tried again at
/// every look; the same failures are logged once a minute.
constexpr uint64_t kInterfaceFailLogNs = 60'000'000'000ULL;

/// True when `key` names an interface that can be removed: lo cannot (in
/// any network namespace), so its listeners are not looked at.
bool removable_interface(const ListenerKey& key) noexcept {
  return key.ifname[0] != '\0' && std::strcmp(key.ifname.data(), "lo") != 0;
}

/// True when the socket `fd`, bound to the interface `ifname`, is bound to
/// it no more: the index it holds names no interface now (ENXIO), or another
/// interface (the index was given to a new one), or none. Other errors
/// (ENOMEM) say nothing and count as bound. Needs `getsockopt
/// (SO_BINDTODEVICE)`.
bool lost_interface(int fd, const char* ifname) noexcept {
  char name[IFNAMSIZ + 1] = {};
  socklen_t len = IFNAMSIZ;  // the kernel wants room for any name
  if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &len) != 0) {
    return errno == ENXIO || errno == ENODEV;
  }
  name[std::min<size_t>(len, IFNAMSIZ)] = '\0';
  return std::strncmp(name, ifname, IFNAMSIZ) != 0;
}

/// "TCP 8080 on eth0" for the log.
std::string describe_key(const ListenerKey& key) {
  return std::string(proto_name(key.proto)) + " " + std::to_string(key.port) + " on " +
         key.ifname.data();
}

}  // namespace

void CommitEngine::interface_tick(uint64_t now_ns) noexcept {
  if (now_ns < interface_.next_ns || state_ == State::kStopped) return;
  interface_.next_ns = now_ns + kInterfaceCheckNs;
  // installed_ changes under a commit; the next look comes soon enough.
  if (!active_) {
    const size_t n = installed_.size();
    size_t looked = 0;
    for (size_t step = 0; step < n && looked < kInterfaceChecksPerTick; ++step) {
      if (interface_.cursor >= n) interface_.cursor = 0;
      const Installed& inst = installed_[interface_.cursor++];
      if (!removable_interface(inst.key) || inst.listener == nullptr) continue;
      ++looked;
      if (!lost_interface(inst.listener->fd(), inst.key.ifname.data())) {
        // Its interface is back under its name with the same index (it was
        // renamed away and back): it serves again as it is.
        if (inst.listener->silenced()) {
          inst.listener->unsilence();
          LOG_INFO("%s: the interface is back; listening on it again",
                   describe_key(inst.key).c_str());
        }
        continue;
      }
      auto at = std::lower_bound(interface_.stale.begin(), interface_.stale.end(), inst.key);
      if (at == interface_.stale.end() || *at != inst.key) interface_.stale.insert(at, inst.key);
    }
  }
  if (!interface_.stale.empty() && !scan_.queued) queue_scan_job();
}

void CommitEngine::plan_stale_rebinds() noexcept {
  Active& a = *active_;
  if (interface_.stale.empty()) return;
  std::vector<ListenerKey> stale;
  stale.swap(interface_.stale);
  // Each new socket stands beside the one it replaces until the swap: as
  // many as the descriptor room holds beyond the job's own opens; the rest
  // wait for the next job.
  const uint64_t room = fd_use().room();
  uint64_t fresh = a.plan.open.size() + a.plan.rebind.size();
  std::vector<CommitPlan::Keep> keep;
  keep.reserve(a.plan.keep.size());
  for (const CommitPlan::Keep& k : a.plan.keep) {
    const Installed& inst = installed_[k.installed];
    // Looked at again: a key may have been bound anew meanwhile.
    if (inst.listener == nullptr || !std::binary_search(stale.begin(), stale.end(), inst.key) ||
        !lost_interface(inst.listener->fd(), inst.key.ifname.data())) {
      keep.push_back(k);
      continue;
    }
    if (fresh++ >= room) {
      keep.push_back(k);
      interface_.stale.push_back(inst.key);  // for the next job (sorted below)
      continue;
    }
    // The new socket binds beside the stale one: the kernel sees two
    // interface indices, so they do not clash.
    a.plan.close.push_back(k.installed);
    a.plan.open.push_back(PlannedKey{inst.key, k.origin});
    a.rebound_stale.emplace_back(inst.key, k.installed);
  }
  a.plan.keep = std::move(keep);
  std::sort(interface_.stale.begin(), interface_.stale.end());
  std::sort(a.rebound_stale.begin(), a.rebound_stale.end());
}

void CommitEngine::settle_stale_rebinds() noexcept {
  Active& a = *active_;
  Acquisition& acq = a.opens;
  std::vector<ListenerKey> failed;
  std::string failures;
  size_t kept = 0;
  for (size_t i = 0; i < acq.keys.size(); ++i) {
    const ListenerKey& key = acq.keys[i].key;
    auto it = std::lower_bound(a.rebound_stale.begin(), a.rebound_stale.end(), key,
                               [](const auto& e, const ListenerKey& k) { return e.first < k; });
    const bool stale = it != a.rebound_stale.end() && it->first == key;
    if (stale && acq.status[i] != wire::kStatusOk) {
      // Not back yet: the stale socket stays in force, and is tried again;
      // silenced, since its old index may name another interface now.
      installed_[it->second].listener->silence();
      std::erase(a.plan.close, it->second);
      a.plan.keep.push_back(CommitPlan::Keep{it->second, acq.keys[i].origin});
      failed.push_back(key);
      if (failures.size() < 512) {
        failures += (failures.empty() ? "" : ", ") + describe_key(key) + " (" +
                    (acq.status[i] > 0 && acq.status[i] <= wire::kStatusMaxErrno
                         ? errno_text(acq.status[i])
                         : std::string("refused by the bind policy")) +
                    ")";
      }
      if (i < acq.asked) --acq.asked;
      continue;
    }
    if (stale && interface_.log.allow()) {
      LOG_INFO("%s: the interface was removed or re-created; listening on it again",
               describe_key(key).c_str());
    }
    if (kept != i) {
      acq.keys[kept] = std::move(acq.keys[i]);
      acq.status[kept] = acq.status[i];
      acq.fds[kept] = std::move(acq.fds[i]);
      acq.policy_reason[kept] = std::move(acq.policy_reason[i]);
    }
    ++kept;
  }
  acq.keys.resize(kept);
  acq.status.resize(kept);
  acq.fds.resize(kept);
  acq.policy_reason.resize(kept);
  std::sort(failed.begin(), failed.end());
  interface_.failed.swap(failed);  // `failed` holds the failures of the time before
  if (interface_.failed.empty()) return;
  const uint64_t now = monotonic_ns();
  if (failed != interface_.failed || now >= interface_.next_fail_log_ns) {
    LOG_WARN(
        "listeners bound to an interface that is gone (removed, renamed, or its index given to "
        "another) serve nothing until it is back: %s; sluice binds them again as soon as an "
        "interface of that name exists (looked at every second). Bring the interface back, or "
        "remove the rules that name it",
        failures.c_str());
    interface_.next_fail_log_ns = now + kInterfaceFailLogNs;
  }
  // Tried again at the next look.
  interface_.stale.insert(interface_.stale.end(), interface_.failed.begin(),
                          interface_.failed.end());
  std::sort(interface_.stale.begin(), interface_.stale.end());
  interface_.stale.erase(std::unique(interface_.stale.begin(), interface_.stale.end()),
                         interface_.stale.end());
}

}  // namespace sluice
