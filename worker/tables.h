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
#include "schema/codec.h"
#include "schema/model.h"
#include "worker/broker_client.h"
#include "worker/forwarder.h"

namespace sluice {

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
  std::vector<control::Failure> install_initial(const TableSet& tables);

  const TableSet& tables() const { return tables_; }
  uint64_t generation() const { return generation_; }
  const Sha256Digest& digest() const { return digest_; }
  const ServerCaps& caps() const { return caps_; }
  size_t listener_count() const { return listeners_.size(); }

 private:
  /// Validates `tables` against the server's capabilities and the pifs it serves.
  std::vector<control::Failure> validate(const TableSet& tables) const;

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
