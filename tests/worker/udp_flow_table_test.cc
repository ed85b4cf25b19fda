// The UDP flow table on its own: keys, capacity, slot reuse, least-recently-
// active order, idle expiry, and the keyed hash.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

#include "worker/udp_flow_table.h"

namespace sluice {
namespace {

constexpr uint64_t kSecond = 1000000000ULL;

/// The key of client 127.0.0.1:`port` on listener `listener`, sent to 127.0.0.1.
FlowKey client(uint16_t port, uint64_t listener = 1) {
  FlowKey k;
  k.listener = listener;
  k.local = addr_v4(127, 0, 0, 1);
  k.peer.addr = addr_v4(127, 0, 0, 1);
  k.peer.port = port;
  return k;
}

TEST(FlowTable, InsertFindErase) {
  FlowTable t(8, 10 * kSecond, 1, 2);
  EXPECT_EQ(t.find(client(1000)), kNoFlow);
  FlowId a = t.insert(client(1000), 100);
  FlowId b = t.insert(client(1001), 100);
  ASSERT_NE(a, kNoFlow);
  ASSERT_NE(b, kNoFlow);
  EXPECT_NE(a, b);
  EXPECT_EQ(t.find(client(1000)), a);
  EXPECT_EQ(t.find(client(1001)), b);
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.contains(a));
  EXPECT_EQ(t.key(a), client(1000));
  EXPECT_EQ(t.last_active(a), 100u);
  t.erase(a);
  EXPECT_FALSE(t.contains(a));
  EXPECT_EQ(t.find(client(1000)), kNoFlow);
  EXPECT_EQ(t.find(client(1001)), b);
  EXPECT_EQ(t.size(), 1u);
  // The freed slot is handed out again before the table grows.
  EXPECT_EQ(t.insert(client(2000), 200), a);
  EXPECT_EQ(t.id_bound(), 2u);
}

TEST(FlowTable, EveryPartOfTheKeyCounts) {
  FlowTable t(16, kSecond, 7, 8);
  FlowKey base = client(5000);
  FlowKey other_listener = base;
  other_listener.listener = 2;
  FlowKey other_local = base;
  other_local.local = addr_v4(127, 0, 0, 2);  // same client, another address of a wildcard socket
  FlowKey other_addr = base;
  other_addr.peer.addr = addr_v4(127, 0, 0, 3);
  FlowKey other_scope = base;
  other_scope.peer.scope = 3;
  std::set<FlowId> ids;
  for (const FlowKey& k : {base, other_listener, other_local, other_addr, other_scope}) {
    FlowId id = t.insert(k, 1);
    ASSERT_NE(id, kNoFlow);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_EQ(t.size(), 5u);
  EXPECT_EQ(t.key(t.find(other_local)), other_local);
}

TEST(FlowTable, FullTableRefusesNewKeysUntilOneEnds) {
  FlowTable t(3, kSecond, 0, 0);
  std::vector<FlowId> ids;
  for (uint16_t p = 1; p <= 3; ++p) ids.push_back(t.insert(client(p), p));
  EXPECT_TRUE(t.full());
  EXPECT_EQ(t.insert(client(4), 4), kNoFlow);
  EXPECT_EQ(t.size(), 3u);
  t.erase(ids[1]);
  EXPECT_FALSE(t.full());
  EXPECT_NE(t.insert(client(4), 5), kNoFlow);
  EXPECT_EQ(t.insert(client(5), 6), kNoFlow);
}

TEST(FlowTable, ExpiresIdlestFirstAndOnlyAfterTheTimeout) {
  FlowTable t(8, 10 * kSecond, 3, 4);
  EXPECT_EQ(t.next_expiry(), UINT64_MAX);
  EXPECT_EQ(t.oldest_expired(UINT64_MAX), kNoFlow);
  FlowId a = t.insert(client(1), 1 * kSecond);
  FlowId b = t.insert(client(2), 2 * kSecond);
  FlowId c = t.insert(client(3), 3 * kSecond);
  EXPECT_EQ(t.next_expiry(), 11 * kSecond);
  EXPECT_EQ(t.oldest_expired(11 * kSecond - 1), kNoFlow);
  EXPECT_EQ(t.oldest_expired(11 * kSecond), a);
  // Traffic on `a` (either way) makes it the last to expire.
  t.touch(a, 5 * kSecond);
  EXPECT_EQ(t.next_expiry(), 12 * kSecond);
  EXPECT_EQ(t.oldest_expired(11 * kSecond), kNoFlow);
  EXPECT_EQ(t.oldest_expired(12 * kSecond), b);
  t.erase(b);
  EXPECT_EQ(t.oldest_expired(12 * kSecond), kNoFlow);
  EXPECT_EQ(t.oldest_expired(13 * kSecond), c);
  t.erase(c);
  EXPECT_EQ(t.oldest_expired(14 * kSecond), kNoFlow);
  EXPECT_EQ(t.oldest_expired(15 * kSecond), a);
  t.erase(a);
  EXPECT_EQ(t.next_expiry(), UINT64_MAX);
}

TEST(FlowTable, TouchNeverMovesTimeBackwards) {
  FlowTable t(4, kSecond, 0, 0);
  FlowId a = t.insert(client(1), 5 * kSecond);
  t.touch(a, 4 * kSecond);  // a time read before the last touch
  EXPECT_EQ(t.last_active(a), 5 * kSecond);
  // A clock before the flow's last activity never counts as idle.
  EXPECT_EQ(t.oldest_expired(3 * kSecond), kNoFlow);
}

TEST(FlowTable, ManyFlowsExpireInActivityOrder) {
  // 10,000 flows touched in a random order: expiry must hand them back in
  // exactly the order of their last activity, and free every slot.
  constexpr size_t kFlows = 10000;
  FlowTable t(kFlows, 100, 11, 12);
  std::mt19937 rng(42);
  std::vector<FlowId> ids;
  uint64_t now = 1;
  for (size_t i = 0; i < kFlows; ++i)
    ids.push_back(t.insert(client(static_cast<uint16_t>(i), i % 7), now++));
  EXPECT_TRUE(t.full());
  for (size_t round = 0; round < 3 * kFlows; ++round) t.touch(ids[rng() % kFlows], now++);
  uint64_t last = 0;
  size_t expired = 0;
  for (FlowId id = t.oldest_expired(UINT64_MAX - 1); id != kNoFlow && expired <= kFlows;
       id = t.oldest_expired(UINT64_MAX - 1)) {
    EXPECT_GE(t.last_active(id), last);
    last = t.last_active(id);
    t.erase(id);
    ++expired;
  }
  EXPECT_EQ(expired, kFlows);
  EXPECT_EQ(t.size(), 0u);
  // Every slot is free again; the table never grew past its capacity.
  EXPECT_EQ(t.id_bound(), kFlows);
  for (size_t i = 0; i < kFlows; ++i)
    EXPECT_NE(t.insert(client(static_cast<uint16_t>(i)), now), kNoFlow);
  EXPECT_EQ(t.id_bound(), kFlows);
}

TEST(FlowTable, AFlowMovesToAnotherListenerUnlessTheClientHasOneThere) {
  FlowTable t(8, kSecond, 1, 2);
  FlowId a = t.insert(client(53, 1), 10);
  FlowId b = t.insert(client(54, 1), 20);
  FlowId there = t.insert(client(54, 2), 30);
  ASSERT_NE(there, kNoFlow);
  EXPECT_TRUE(t.move_to_listener(a, 2));
  EXPECT_EQ(t.find(client(53, 2)), a);
  EXPECT_EQ(t.find(client(53, 1)), kNoFlow);
  EXPECT_EQ(t.key(a).listener, 2u);
  EXPECT_EQ(t.last_active(a), 10u);  // its place in the expiry order stays
  EXPECT_EQ(t.oldest_expired(10 + kSecond), a);
  // The client of b has a flow on listener 2 already: nothing changes.
  EXPECT_FALSE(t.move_to_listener(b, 2));
  EXPECT_EQ(t.find(client(54, 1)), b);
  EXPECT_EQ(t.find(client(54, 2)), there);
  EXPECT_EQ(t.size(), 3u);
}

/// A UDP listener key on `addr`:53 of the HOST table.
ListenerKey udp_key(const char* addr, bool dual = false) {
  ListenerKey k;
  k.proto = Proto::kUdp;
  EXPECT_TRUE(parse_addr(addr, &k.addr));
  k.dual_stack = dual;
  k.port = 53;
  return k;
}

TEST(ListenerCovers, TheWildcardOfTheFamilyOrTheSameAddressOnTheSamePortAndInterface) {
  Addr v4, v6;
  ASSERT_TRUE(parse_addr("127.0.0.1", &v4));
  ASSERT_TRUE(parse_addr("::1", &v6));
  const ListenerKey old = udp_key("127.0.0.1");
  EXPECT_TRUE(listener_covers(udp_key("0.0.0.0"), old, v4, true));
  EXPECT_TRUE(listener_covers(udp_key("::", true), old, v4, true));  // "*": both families
  EXPECT_TRUE(listener_covers(udp_key("127.0.0.1"), udp_key("0.0.0.0"), v4, true));
  EXPECT_FALSE(listener_covers(udp_key("127.0.0.2"), udp_key("0.0.0.0"), v4, true));
  EXPECT_FALSE(listener_covers(udp_key("::"), old, v4, true));  // [::] with V6ONLY: no IPv4
  EXPECT_TRUE(listener_covers(udp_key("::"), udp_key("::", true), v6, true));
  EXPECT_FALSE(listener_covers(udp_key("0.0.0.0"), udp_key("::", true), v6, true));
  EXPECT_FALSE(listener_covers(udp_key("0.0.0.0"), old, v4, false));  // no pktinfo: unknown
  ListenerKey other_port = udp_key("0.0.0.0");
  other_port.port = 54;
  EXPECT_FALSE(listener_covers(other_port, old, v4, true));
  ListenerKey splice = udp_key("0.0.0.0");
  splice.pif = Pif::kSplice;
  EXPECT_FALSE(listener_covers(splice, old, v4, true));
  ListenerKey bound = udp_key("0.0.0.0");
  bound.ifname[0] = 'l';
  bound.ifname[1] = 'o';
  EXPECT_FALSE(listener_covers(bound, old, v4, true));  // another interface binding
  ListenerKey bound_old = old;
  bound_old.ifname = bound.ifname;
  EXPECT_TRUE(listener_covers(bound, bound_old, v4, true));
}

TEST(FlowHash, DeterministicAndKeyed) {
  FlowKey k = client(53);
  EXPECT_EQ(siphash13(k, 1, 2), siphash13(k, 1, 2));
  EXPECT_NE(siphash13(k, 1, 2), siphash13(k, 1, 3));
  EXPECT_NE(siphash13(k, 1, 2), siphash13(k, 2, 2));
  // Every bit of the port moves the hash (no part of the key is ignored).
  for (int bit = 0; bit < 16; ++bit) {
    FlowKey other = k;
    other.peer.port = static_cast<uint16_t>(k.peer.port ^ (1u << bit));
    EXPECT_NE(siphash13(k, 1, 2), siphash13(other, 1, 2)) << bit;
  }
  FlowKey scoped = k;
  scoped.peer.scope = 1;
  EXPECT_NE(siphash13(k, 1, 2), siphash13(scoped, 1, 2));
}

TEST(FlowHash, SequentialPortsSpreadOverBuckets) {
  // Clients on consecutive ports (what one NAT gives) must not share buckets:
  // the low bits of their hashes take every value of a 256-bucket table.
  std::set<uint64_t> buckets;
  for (uint16_t p = 0; p < 4096; ++p) buckets.insert(siphash13(client(p), 5, 6) & 0xff);
  EXPECT_EQ(buckets.size(), 256u);
}

}  // namespace
}  // namespace sluice
