// The acquisition bookkeeping of a commit (see commit_acquisition.h).
#include "worker/commit_acquisition.h"

#include <sys/socket.h>

#include "base/check.h"
#include "schema/broker_wire.h"

namespace sluice {

std::vector<ListenerKey> Acquisition::asked_keys() const {
  std::vector<ListenerKey> out;
  out.reserve(asked);
  for (size_t i = 0; i < asked; ++i) out.push_back(keys[i].key);
  return out;
}

void Acquisition::take(std::vector<OpenedListener> results) noexcept {
  CHECK(results.size() == asked);
  for (size_t i = 0; i < asked; ++i) {
    status[i] = results[i].status;
    fds[i] = std::move(results[i].fd);
    if (results[i].lost) ++lost;
  }
}

void Acquisition::discard() noexcept {
  discard_unpublished(fds);
}

Acquisition prepare_acquisition(std::vector<PlannedKey> keys, const BindPolicy& file_policy,
                                const BrokerInfo& info) {
  BindPolicy policy = file_policy;  // the file's bind lines, pre-checked to name the line
  policy.unprivileged_port_start = info.unprivileged_port_start;
  policy.has_bind_cap = info.has_bind_cap;
  policy.initial_grants = info.initial_grants;  // the default policy's privileged ports
  // SPLICE listeners are bound inside the target namespace, under its kernel.
  BindPolicy splice_policy = policy;
  splice_policy.unprivileged_port_start = info.splice_unprivileged_port_start;
  splice_policy.has_bind_cap = info.splice_has_bind_cap;
  Acquisition acq;
  std::vector<PlannedKey> denied;
  std::vector<std::string> reasons;
  acq.keys.reserve(keys.size());
  for (PlannedKey& k : keys) {
    BindDecision d = check_bind(k.key.pif == Pif::kSplice ? splice_policy : policy, to_wire(k.key));
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
  acq.fds.resize(acq.keys.size());
  acq.policy_reason.assign(acq.keys.size(), "");
  for (size_t i = 0; i < denied.size(); ++i) {
    acq.status[acq.asked + i] = wire::kStatusPolicyDenied;
    acq.policy_reason[acq.asked + i] = std::move(reasons[i]);
  }
  return acq;
}

void discard_unpublished(std::span<UniqueFd> fds) noexcept {
  // sluiced closes its own copy of each socket only after sending it, so a
  // plain close() here could leave a TCP listener accepting for a moment
  // after the client was told nothing changed, and a connection the kernel
  // queued on it in that moment would be reset. shutdown(SHUT_RD) moves a
  // listening socket to CLOSE for every descriptor at once, so the port
  // refuses from here on, whatever copy still exists. On a UDP socket it
  // fails with ENOTCONN and changes nothing that matters: nothing reads its
  // datagrams, and later binds of the port are asked of sluiced, which has
  // closed its copies by the time it reads them.
  for (UniqueFd& fd : fds) {
    if (fd.valid()) ::shutdown(fd.get(), SHUT_RD);
    fd.reset();
  }
}

}  // namespace sluice
