// The UDP flow table: the pure bookkeeping of the UDP data path, with no
// sockets in it, so that it can be tested on its own.
//
// A flow is what conntrack would call a UDP connection: the datagrams that
// one client (address and port) sends to one local address through one
// listener, and the replies. The table maps that key to a small integer id
// (a slot; worker/udp_forwarder.cc keeps the flow's socket at that index),
// keeps the flows in least-recently-active order, and enforces two limits:
// a capacity (new keys are refused when the table is full) and an idle
// timeout (the flows idle longest come first, so expiry never scans).
//
// Every operation is O(1) on average. The hash is keyed with a secret seed:
// UDP source addresses are trivially spoofed, so an unkeyed hash would let a
// sender pick keys that all land in one bucket and make each lookup cost the
// whole table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <vector>

#include "schema/model.h"

namespace sluice {

/// One end of a UDP flow: an address (IPv4 stored v4-mapped, as everywhere in
/// sluice), a port, and the IPv6 scope (interface) of a link-local address.
struct UdpEndpoint {
  Addr addr{};
  uint16_t port = 0;
  uint32_t scope = 0;  // sin6_scope_id; 0 for IPv4 and for global addresses
  bool operator==(const UdpEndpoint&) const = default;
};

/// What identifies a flow. The local address is part of it: a client that
/// sends from one port to two addresses of a wildcard listener has two flows,
/// because each must be answered from the address it used (as conntrack keys
/// on the whole 5-tuple).
struct FlowKey {
  uint64_t listener = 0;  // the listener's id: unique for the worker's lifetime, never reused
  Addr local{};           // the address the client sent to (IP_PKTINFO / IPV6_PKTINFO)
  UdpEndpoint peer;       // the client
  bool operator==(const FlowKey&) const = default;
};

/// A flow's slot in the table; slots of ended flows are reused.
using FlowId = uint32_t;
inline constexpr FlowId kNoFlow = UINT32_MAX;

/// True when a datagram to `local` (what IP_PKTINFO or IPV6_PKTINFO said)
/// would reach the UDP listener `successor`, which takes the port of
/// `replaced` in a commit, and its replies can leave from `local` there:
/// the same table, port and interface binding, and an address that is
/// `local` or the wildcard of its family (a dual-stack `*` covers both).
/// An unknown local address is never covered. Pure.
bool listener_covers(const ListenerKey& successor, const ListenerKey& replaced, const Addr& local,
                     bool local_known) noexcept;

/// SipHash-1-3 of `key` under the 128-bit key (k0, k1). The hash of Rust's
/// and Python's hash tables: keyed, so collisions cannot be chosen from
/// outside without the key. Never fails.
uint64_t siphash13(const FlowKey& key, uint64_t k0, uint64_t k1) noexcept;

class FlowTable {
 public:
  /// An empty table for at most `capacity` flows (at least 1, at most
  /// kNoFlow - 1) that expire after `idle_ns` without a datagram either way.
  /// `seed0`/`seed1` key the hash; the worker draws them from getrandom()
  /// before its sandbox is up.
  FlowTable(size_t capacity, uint64_t idle_ns, uint64_t seed0, uint64_t seed1);

  /// Returns the flow of `key`, or kNoFlow. Never fails.
  FlowId find(const FlowKey& key) const noexcept;
  /// Adds `key` as active at `now_ns` (it must not be in the table) and
  /// returns its id, or kNoFlow when the table is full. Allocates only while
  /// the table grows towards its capacity.
  FlowId insert(const FlowKey& key, uint64_t now_ns);
  /// Marks `id` active at `now_ns`: it becomes the last to expire. Never fails.
  void touch(FlowId id, uint64_t now_ns) noexcept;
  /// Removes `id`; its slot may be handed out again by insert(). Never fails.
  void erase(FlowId id) noexcept;
  /// Moves flow `id` to the listener `listener` (a rebind's successor takes
  /// the flows of the socket it replaces): the same slot and activity, the
  /// key's listener changed. Returns false, changing nothing, when the new
  /// key is in the table already (the client has a flow on that listener).
  /// Never allocates.
  bool move_to_listener(FlowId id, uint64_t listener) noexcept;

  /// The flow idle longest, if it has been idle for the timeout at `now_ns`;
  /// otherwise kNoFlow. Call it in a loop, erasing each one, to expire.
  FlowId oldest_expired(uint64_t now_ns) const noexcept;
  /// When the flow idle longest expires (monotonic ns), or UINT64_MAX when the
  /// table is empty.
  uint64_t next_expiry() const noexcept;

  /// The key of a flow in the table.
  const FlowKey& key(FlowId id) const noexcept { return slots_[id].key; }
  /// When the flow last saw a datagram (monotonic ns).
  uint64_t last_active(FlowId id) const noexcept { return slots_[id].last_active; }
  /// True when `id` names a flow in the table.
  bool contains(FlowId id) const noexcept { return id < slots_.size() && slots_[id].used; }
  size_t size() const noexcept { return index_.size(); }
  size_t capacity() const noexcept { return capacity_; }
  /// True when insert() would refuse a new key.
  bool full() const noexcept { return index_.size() >= capacity_; }
  uint64_t idle_ns() const noexcept { return idle_ns_; }
  /// One past the highest id ever handed out (ids are below it).
  size_t id_bound() const noexcept { return slots_.size(); }

 private:
  struct Slot {
    FlowKey key;
    uint64_t last_active = 0;
    FlowId older = kNoFlow;  // towards head_ (idle longer)
    FlowId newer = kNoFlow;  // towards tail_ (active more recently)
    bool used = false;
  };
  /// The keyed hash, as the unordered_map wants it.
  struct Hash {
    uint64_t k0, k1;
    size_t operator()(const FlowKey& key) const noexcept { return siphash13(key, k0, k1); }
  };

  /// Takes `id` out of the activity list.
  void unlink(FlowId id) noexcept;
  /// Appends `id` at the most recently active end of the list.
  void link_newest(FlowId id) noexcept;

  size_t capacity_;
  uint64_t idle_ns_;
  std::vector<Slot> slots_;
  std::vector<FlowId> free_;  // ended slots, reused before the table grows
  std::unordered_map<FlowKey, FlowId, Hash> index_;
  FlowId head_ = kNoFlow;  // idle longest
  FlowId tail_ = kNoFlow;  // active most recently
};

}  // namespace sluice
