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

namespace {

/// The bind policy a key of `pif` is checked against: the file's bind lines
/// (pre-checked to name the line), with the kernel's privileged port rule as
/// the broker reported it (for SPLICE keys, the target namespace's, whose
/// kernel binds them) and the default policy's privileged ports.
BindPolicy effective_policy(const BindPolicy& file_policy, const BrokerInfo& info, Pif pif) {
  BindPolicy policy = file_policy;
  const bool splice = pif == Pif::kSplice;
  policy.unprivileged_port_start =
      splice ? info.splice_unprivileged_port_start : info.unprivileged_port_start;
  policy.has_bind_cap = splice ? info.splice_has_bind_cap : info.has_bind_cap;
  policy.initial_grants = info.initial_grants;
  return policy;
}

}  // namespace

Acquisition prepare_acquisition(std::vector<PlannedKey> keys, const BindPolicy& file_policy,
                                const BrokerInfo& info) {
  const BindPolicy policy = effective_policy(file_policy, info, Pif::kHost);
  const BindPolicy splice_policy = effective_policy(file_policy, info, Pif::kSplice);
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

void deny_changed_kept(Acquisition* acq, std::span<const PlannedKey> kept,
                       const BindPolicy& file_policy, const BrokerInfo& info) {
  const BindPolicy policy = effective_policy(file_policy, info, Pif::kHost);
  const BindPolicy splice_policy = effective_policy(file_policy, info, Pif::kSplice);
  for (const PlannedKey& k : kept) {
    BindDecision d = check_bind(k.key.pif == Pif::kSplice ? splice_policy : policy, to_wire(k.key));
    if (d.allowed) continue;
    acq->keys.push_back(k);
    acq->status.push_back(wire::kStatusPolicyDenied);
    acq->fds.emplace_back();
    acq->policy_reason.push_back(std::move(d.reason));
  }
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
