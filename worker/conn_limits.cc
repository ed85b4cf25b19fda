// The TCP connection limits' accounting (see conn_limits.h).
#include "worker/conn_limits.h"

#include <netinet/in.h>

#include <cstring>

#include "base/check.h"
#include "worker/udp_flow_table.h"

namespace sluice {

size_t fair_share(size_t global, size_t rules) noexcept {
  if (rules <= 1) return global;
  size_t share = global / rules;
  return share == 0 ? 1 : share;
}

size_t share_reserve(size_t global, size_t rules) noexcept {
  if (rules <= 1) return 0;
  size_t reserve = global / kShareReserveDivisor;
  return reserve == 0 ? 1 : reserve;
}

RuleAdmit admit_rule(const ConnLimits& limits, size_t in_use, size_t rule_in_use,
                     size_t rules) noexcept {
  if (in_use >= limits.global) return RuleAdmit::kGlobal;
  if (limits.per_rule != 0 && rule_in_use >= limits.per_rule) return RuleAdmit::kRule;
  // Within its fair share a rule takes any free slot: the reserve below
  // keeps enough free that a rule under its share always finds one, unless
  // several rules are past theirs at once.
  if (rule_in_use < fair_share(limits.global, rules)) return RuleAdmit::kOk;
  // Past it, only while more than the reserve stays free after this one.
  if (limits.global - in_use > share_reserve(limits.global, rules)) return RuleAdmit::kOk;
  return RuleAdmit::kRule;
}

Addr source_key(const struct sockaddr_storage& peer) noexcept {
  Addr key{};
  if (peer.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const struct sockaddr_in*>(&peer);
    key[10] = 0xff;
    key[11] = 0xff;
    std::memcpy(key.data() + 12, &sin->sin_addr, 4);
    return key;
  }
  if (peer.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(&peer);
    std::memcpy(key.data(), &sin6->sin6_addr, 16);
    // A v4-mapped peer of a dual-stack socket is an IPv4 client: its whole
    // address counts. Any other IPv6 client counts by its /64.
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) return key;
    std::memset(key.data() + 8, 0, 8);
  }
  return key;
}

SourceCounts::SourceCounts(uint64_t seed0, uint64_t seed1) : counts_(0, Hash{seed0, seed1}) {}

size_t SourceCounts::Hash::operator()(const Addr& key) const noexcept {
  // The flow table's keyed hash, over a key that holds only the address.
  FlowKey k;
  k.peer.addr = key;
  return static_cast<size_t>(siphash13(k, k0, k1));
}

bool SourceCounts::try_add(const Addr& key, size_t limit) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t& n = counts_[key];
  if (limit != 0 && n >= limit) return false;  // n > 0 here: the entry existed
  ++n;
  return true;
}

void SourceCounts::remove(const Addr& key) noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(key);
  CHECK(it != counts_.end() && it->second > 0);
  if (--it->second == 0) counts_.erase(it);
}

size_t SourceCounts::count(const Addr& key) const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(key);
  return it == counts_.end() ? 0 : it->second;
}

size_t SourceCounts::size() const noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_.size();
}

}  // namespace sluice
