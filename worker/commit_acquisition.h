// The acquisition bookkeeping of a commit: the listener keys one phase of a
// commit asks the broker for (the opens, or the rebinds, acquired while the
// listeners they replace still listen), and what came back for each. The bind
// policy is pre-checked here, so that a denial names its policy line and the
// broker is never asked for a key the worker already knows it refuses.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "policy/bind_policy.h"
#include "worker/broker_client.h"
#include "worker/commit_plan.h"

namespace sluice {

/// Keys to acquire from the broker, and what came back. Keys the bind policy
/// denies are answered without asking; the asked keys come first, in the
/// order given.
struct Acquisition {
  std::vector<PlannedKey> keys;
  std::vector<int32_t> status;             // per key: wire::kStatusOk, an errno, or denied
  std::vector<UniqueFd> fds;               // per key, valid when status is kStatusOk
  std::vector<std::string> policy_reason;  // per key, for denials of the pre-check
  size_t asked = 0;                        // keys[0, asked) go to the broker
  /// Sockets sluiced sent that never arrived: the worker's descriptor table
  /// was full (OpenedListener::lost). Their keys have status EMFILE.
  size_t lost = 0;

  /// Returns the keys to ask the broker for, keys[0, asked).
  std::vector<ListenerKey> asked_keys() const;
  /// Takes the broker's answers: one per asked key, in order (a CHECK), and
  /// counts the lost ones.
  void take(std::vector<OpenedListener> results) noexcept;
  /// Closes the sockets acquired and not published to the data path (a dry
  /// run's trial binds, a rollback); see discard_unpublished. Needs
  /// `shutdown`, `close`.
  void discard() noexcept;
};

/// Prepares the acquisition of `keys`: each is checked against `file_policy`
/// (the policy file's bind lines), the kernel's privileged port rule as
/// the broker reported it (`info`; for SPLICE keys, the target namespace's),
/// and without bind lines the default policy's grants (`info.initial_grants`),
/// as the broker checks. Denied keys get
/// kStatusPolicyDenied and the reason at once and move behind the allowed ones, which keep their
/// order. Never fails; no syscalls.
Acquisition prepare_acquisition(std::vector<PlannedKey> keys, const BindPolicy& file_policy,
                                const BrokerInfo& info);

/// Appends to `acq`, as denied without asking the broker, each key of
/// `kept` that the bind policy refuses now, with its reason. `kept` are the
/// listeners in force that a commit keeps for a rule it changes (a new
/// target, a wider range): a changed rule is judged as a new one, as
/// POLICY.md says ("New `bind` lines apply from the next commit"), even
/// where its socket stays; otherwise a rule the reloaded policy forbids
/// could be changed at will, and then be refused when a restarted worker
/// resumes the tables. Checked as prepare_acquisition() checks. No syscalls.
void deny_changed_kept(Acquisition* acq, std::span<const PlannedKey> kept,
                       const BindPolicy& file_policy, const BrokerInfo& info);

/// Closes sockets the broker opened for a commit that will not use them.
/// Each is shut down (SHUT_RD) before it is closed, so that the port refuses
/// from now on even where sluiced still holds a copy. Needs `shutdown`,
/// `close`.
void discard_unpublished(std::span<UniqueFd> fds) noexcept;

}  // namespace sluice
