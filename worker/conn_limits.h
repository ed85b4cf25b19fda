// The TCP connection limits' accounting, kept free of sockets so that it can
// be tested on its own: the global limit, the per-rule limit with its fair
// share, and the per-source limit (sluiced --max-connections,
// --max-connections-per-rule, --max-connections-per-source).
//
// Why: with one limit shared by every rule, a single exposed port whose
// clients hold their connections (idle or slow) took every slot, and the
// clients of every other rule waited unanswered (issue 15, item 5). Now:
//   - a rule may always use its fair share, the global limit divided among
//     the TCP rules in force; beyond it, it borrows free slots only while
//     more than a reserve (a quarter of the global limit) stays free for the
//     others. One rule alone uses the whole limit, as before;
//   - --max-connections-per-rule caps every rule (HAProxy's frontend
//     `maxconn`);
//   - --max-connections-per-source caps one client address (an IPv6 client
//     by its /64), across all rules (nginx's `limit_conn` on the address).
// The rule limits pause the rule's listeners, as the global limit always
// did (the kernel keeps the clients in the accept queue); the source is only
// known after accept(), so a source over its limit is accepted and reset.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "schema/model.h"

namespace sluice {

/// The limits in force (0 where a limit is off).
struct ConnLimits {
  size_t global = 1;      // --max-connections (at least 1)
  size_t per_rule = 0;    // --max-connections-per-rule; 0: only the fair share
  size_t per_source = 0;  // --max-connections-per-source; 0: off
};

/// What the rule limits say about one more connection of a rule.
enum class RuleAdmit {
  kOk,      // take it
  kGlobal,  // the global limit is reached: every listener pauses
  kRule,    // this rule is at --max-connections-per-rule, or past its share
            // with only the others' reserve left: its listeners pause
};

/// Limit: the part of the global limit that a rule past its fair share may
/// not take, kept for the other rules: a quarter. It is what a flooded rule
/// leaves to all the others (the reproduction: 4 of 16), and what a
/// busy rule gives up when the others are idle (1,024 of 4,096 by default).
inline constexpr size_t kShareReserveDivisor = 4;

/// The slots every TCP rule may always use when `rules` TCP rules are in
/// force: global / rules, at least 1; the whole limit for one rule (or none).
size_t fair_share(size_t global, size_t rules) noexcept;

/// The free slots a rule past its fair share may not take: a quarter of the
/// global limit, at least 1; 0 with at most one TCP rule (no one to keep
/// them for).
size_t share_reserve(size_t global, size_t rules) noexcept;

/// Decides whether a rule holding `rule_in_use` slots may take one more when
/// all rules hold `in_use` and `rules` TCP rules are in force. Pure; never
/// fails.
RuleAdmit admit_rule(const ConnLimits& limits, size_t in_use, size_t rule_in_use,
                     size_t rules) noexcept;

/// The address a per-source limit counts: an IPv4 address (v4-mapped), or
/// the /64 of an IPv6 address, with the other 64 bits zero. A /64 because
/// that is what one host or subscriber gets (RFC 6177) and may fill with
/// addresses of its choosing (privacy addresses, RFC 8981): counted by
/// address, one host would get N connections per address.
Addr source_key(const struct sockaddr_storage& peer) noexcept;

/// Connections per source now, for --max-connections-per-source. Entries
/// exist only while their count is above zero, so the table holds at most as
/// many entries as there are connections. The hash is keyed (SipHash under a
/// secret seed): the sources are chosen by clients, who could otherwise aim
/// them all at one bucket. Thread-safe.
class SourceCounts {
 public:
  /// An empty table whose hash is keyed with (seed0, seed1).
  SourceCounts(uint64_t seed0, uint64_t seed1);
  /// Counts one more connection of `key` when it holds fewer than `limit`
  /// (0: no limit) and returns true; returns false, counting nothing, at the
  /// limit. May allocate (one entry per source).
  bool try_add(const Addr& key, size_t limit);
  /// Counts one connection of `key` less; CHECKs that it had one.
  void remove(const Addr& key) noexcept;
  /// The connections `key` holds now.
  size_t count(const Addr& key) const noexcept;
  /// Sources holding connections now.
  size_t size() const noexcept;

 private:
  /// SipHash-1-3 of the 16 address bytes under the table's key.
  struct Hash {
    uint64_t k0, k1;
    size_t operator()(const Addr& key) const noexcept;
  };
  /// Every data-path thread counts its connections here
  /// (worker/data_thread.h): one lock around each operation, uncontended
  /// but for two threads accepting from one source at once.
  mutable std::mutex mu_;
  std::unordered_map<Addr, size_t, Hash> counts_;
};

/// One connection's place in a SourceCounts: gives it back when reset or
/// destroyed. Move-only. Its table must outlive it (the forwarder resets it
/// when the connection ends, before the connection is retired).
class SourceSlot {
 public:
  SourceSlot() = default;
  /// Holds the place of `key`, already counted in `table`.
  SourceSlot(SourceCounts* table, const Addr& key) : table_(table), key_(key) {}
  SourceSlot(SourceSlot&& other) noexcept : table_(other.table_), key_(other.key_) {
    other.table_ = nullptr;
  }
  SourceSlot& operator=(SourceSlot&& other) noexcept {
    if (this != &other) {
      reset();
      table_ = other.table_;
      key_ = other.key_;
      other.table_ = nullptr;
    }
    return *this;
  }
  SourceSlot(const SourceSlot&) = delete;
  SourceSlot& operator=(const SourceSlot&) = delete;
  ~SourceSlot() { reset(); }
  /// Gives the place back (once); a no-op for an empty slot.
  void reset() noexcept {
    if (table_ != nullptr) table_->remove(key_);
    table_ = nullptr;
  }

 private:
  SourceCounts* table_ = nullptr;
  Addr key_{};
};

}  // namespace sluice
