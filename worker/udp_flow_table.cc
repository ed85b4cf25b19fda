#include "worker/udp_flow_table.h"

#include <cstring>

#include "base/check.h"

namespace sluice {
namespace {

/// Rotates `x` left by `b` bits.
constexpr uint64_t rotl(uint64_t x, int b) noexcept {
  return (x << b) | (x >> (64 - b));
}

/// One SipRound on the state v0..v3.
inline void sip_round(uint64_t& v0, uint64_t& v1, uint64_t& v2, uint64_t& v3) noexcept {
  v0 += v1;
  v1 = rotl(v1, 13);
  v1 ^= v0;
  v0 = rotl(v0, 32);
  v2 += v3;
  v3 = rotl(v3, 16);
  v3 ^= v2;
  v0 += v3;
  v3 = rotl(v3, 21);
  v3 ^= v0;
  v2 += v1;
  v1 = rotl(v1, 17);
  v1 ^= v2;
  v2 = rotl(v2, 32);
}

/// Reads 8 bytes as a little-endian word (x86_64 and aarch64 are little-endian;
/// the hash only has to be stable within one process anyway).
inline uint64_t load64(const uint8_t* p) noexcept {
  uint64_t w;
  std::memcpy(&w, p, sizeof(w));
  return w;
}

/// Bytes of the canonical encoding of a FlowKey that siphash13 hashes.
constexpr size_t kKeyBytes = 48;

}  // namespace

uint64_t siphash13(const FlowKey& key, uint64_t k0, uint64_t k1) noexcept {
  // The canonical encoding: listener, local address, peer address, peer port,
  // peer scope, and two zero bytes. Padding bytes of the struct never enter.
  uint8_t m[kKeyBytes] = {};
  std::memcpy(m, &key.listener, 8);
  std::memcpy(m + 8, key.local.data(), 16);
  std::memcpy(m + 24, key.peer.addr.data(), 16);
  std::memcpy(m + 40, &key.peer.port, 2);
  std::memcpy(m + 42, &key.peer.scope, 4);

  uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
  uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
  uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
  uint64_t v3 = 0x7465646279746573ULL ^ k1;
  for (size_t i = 0; i < kKeyBytes; i += 8) {
    uint64_t w = load64(m + i);
    v3 ^= w;
    sip_round(v0, v1, v2, v3);  // c = 1 compression round
    v0 ^= w;
  }
  // The last block holds only the length: the message is a multiple of 8.
  uint64_t b = static_cast<uint64_t>(kKeyBytes) << 56;
  v3 ^= b;
  sip_round(v0, v1, v2, v3);
  v0 ^= b;
  v2 ^= 0xff;
  for (int i = 0; i < 3; ++i) sip_round(v0, v1, v2, v3);  // d = 3 finalization rounds
  return v0 ^ v1 ^ v2 ^ v3;
}

FlowTable::FlowTable(size_t capacity, uint64_t idle_ns, uint64_t seed0, uint64_t seed1)
    : capacity_(capacity), idle_ns_(idle_ns), index_(0, Hash{seed0, seed1}) {
  CHECK_MSG(capacity >= 1 && capacity < kNoFlow, "flow table capacity out of range");
  CHECK_MSG(idle_ns > 0, "a flow table needs an idle timeout");
}

FlowId FlowTable::find(const FlowKey& key) const noexcept {
  auto it = index_.find(key);
  return it == index_.end() ? kNoFlow : it->second;
}

FlowId FlowTable::insert(const FlowKey& key, uint64_t now_ns) {
  if (full()) return kNoFlow;
  FlowId id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = static_cast<FlowId>(slots_.size());
    slots_.emplace_back();
    // erase() must not allocate: keep room for every slot on the free list.
    if (free_.capacity() < slots_.size()) free_.reserve(slots_.capacity());
  }
  Slot& s = slots_[id];
  s.key = key;
  s.last_active = now_ns;
  s.used = true;
  bool added = index_.emplace(key, id).second;
  CHECK_MSG(added, "FlowTable::insert of a key already in the table");
  link_newest(id);
  return id;
}

void FlowTable::touch(FlowId id, uint64_t now_ns) noexcept {
  CHECK(contains(id));
  Slot& s = slots_[id];
  // The clock is monotonic; max() keeps the list in order even if a caller
  // passes a time read before the last touch.
  if (now_ns > s.last_active) s.last_active = now_ns;
  if (tail_ == id) return;
  unlink(id);
  link_newest(id);
}

void FlowTable::erase(FlowId id) noexcept {
  CHECK(contains(id));
  Slot& s = slots_[id];
  index_.erase(s.key);
  unlink(id);
  s = Slot{};
  free_.push_back(id);  // room reserved by insert(): never allocates
}

bool FlowTable::move_to_listener(FlowId id, uint64_t listener) noexcept {
  CHECK(contains(id));
  Slot& s = slots_[id];
  FlowKey moved = s.key;
  moved.listener = listener;
  if (index_.count(moved) != 0) return false;
  // Re-keys the node in place: no allocation, and the table's size (hence
  // its bucket count) does not change.
  auto node = index_.extract(s.key);
  node.key() = moved;
  index_.insert(std::move(node));
  s.key = moved;
  return true;
}

bool listener_covers(const ListenerKey& successor, const ListenerKey& replaced, const Addr& local,
                     bool local_known) noexcept {
  if (!local_known || successor.pif != replaced.pif || successor.proto != replaced.proto ||
      successor.port != replaced.port || successor.ifname != replaced.ifname) {
    return false;
  }
  if (successor.dual_stack) return true;  // [::] with V6ONLY off: every local address
  if (addr_is_v4(successor.addr) != addr_is_v4(local)) return false;
  return addr_is_unspecified(successor.addr) || successor.addr == local;
}

FlowId FlowTable::oldest_expired(uint64_t now_ns) const noexcept {
  if (head_ == kNoFlow) return kNoFlow;
  uint64_t last = slots_[head_].last_active;
  return now_ns >= last && now_ns - last >= idle_ns_ ? head_ : kNoFlow;
}

uint64_t FlowTable::next_expiry() const noexcept {
  if (head_ == kNoFlow) return UINT64_MAX;
  uint64_t last = slots_[head_].last_active;
  return last > UINT64_MAX - idle_ns_ ? UINT64_MAX : last + idle_ns_;
}

void FlowTable::unlink(FlowId id) noexcept {
  Slot& s = slots_[id];
  if (s.older != kNoFlow) {
    slots_[s.older].newer = s.newer;
  } else {
    head_ = s.newer;
  }
  if (s.newer != kNoFlow) {
    slots_[s.newer].older = s.older;
  } else {
    tail_ = s.older;
  }
  s.older = s.newer = kNoFlow;
}

void FlowTable::link_newest(FlowId id) noexcept {
  Slot& s = slots_[id];
  s.older = tail_;
  s.newer = kNoFlow;
  if (tail_ != kNoFlow) {
    slots_[tail_].newer = id;
  } else {
    head_ = id;
  }
  tail_ = id;
}

}  // namespace sluice
