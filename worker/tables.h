// The worker's current tables: the rules in force, their generation and
// digest, and the listening sockets that serve them.
//
// Installing a table set is all or nothing: validate, check the bind policy,
// acquire every socket from the broker, verify each one, and only when every
// rule is satisfied hand the sockets to the data path. Any failure closes what
// was acquired and leaves the old state serving.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "policy/validate.h"
#include "schema/model.h"
#include "worker/broker_client.h"
#include "worker/forwarder.h"

namespace sluice {

/// The kinds of commit failure of the control protocol.
enum class FailureKind { kInvalid, kConflict, kPolicyDenied, kBindFailed, kCapacity };

/// One reason a commit failed: which rule, which port, which errno, and a
/// complete message saying what failed, why, and what to do.
struct CommitFailure {
  FailureKind kind = FailureKind::kInvalid;
  Pif pif = Pif::kHost;
  int rule = -1;      // index in its table, -1 when the table as a whole failed
  std::string text;   // the rule in listing format, empty when rule < 0
  uint16_t port = 0;  // 0 when the failure is not about one port
  int err = 0;        // errno, 0 when not a syscall's failure
  std::string message;
};

/// Returns "invalid", "conflict", "policy-denied", "bind-failed" or "capacity".
const char* failure_kind_name(FailureKind kind) noexcept;

/// Returns advice for a bind errno ("another process listens on ..."), or an
/// empty string when there is none to give.
std::string bind_errno_advice(int err, uint16_t port, const BrokerInfo& broker);

class TableState {
 public:
  TableState(Forwarder& forwarder, BrokerClient& broker, BrokerInfo broker_info, ServerCaps caps);

  /// Installs `tables` as the first table set: validate, acquire every socket,
  /// then serve. On failure returns every reason and installs nothing.
  /// TODO(perf): the commit issue replaces this with plan/acquire/swap/release
  /// against the tables in force, keeping the sockets of ports that stay.
  std::vector<CommitFailure> install_initial(const TableSet& tables);

  const TableSet& tables() const { return tables_; }
  uint64_t generation() const { return generation_; }
  const Sha256Digest& digest() const { return digest_; }
  const ServerCaps& caps() const { return caps_; }
  size_t listener_count() const { return listeners_.size(); }

 private:
  /// Validates `tables` against the server's capabilities and the pifs it serves.
  std::vector<CommitFailure> validate(const TableSet& tables) const;

  Forwarder& forwarder_;
  BrokerClient& broker_;
  BrokerInfo broker_info_;
  ServerCaps caps_;
  TableSet tables_;
  uint64_t generation_ = 0;
  Sha256Digest digest_{};
  std::vector<TcpListener*> listeners_;
};

}  // namespace sluice
