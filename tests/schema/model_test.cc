// The plain rule model: addresses, listing format, listener expansion.
#include <gtest/gtest.h>

#include "schema/model.h"

namespace sluice {
namespace {

/// Parses `text` as an address or fails the test.
Addr addr(const std::string& text) {
  Addr a{};
  EXPECT_TRUE(parse_addr(text, &a)) << text;
  return a;
}

TEST(Model, AddressesRoundTrip) {
  EXPECT_EQ(format_addr(addr("192.0.2.1")), "192.0.2.1");
  EXPECT_EQ(format_addr(addr("::1")), "::1");
  EXPECT_EQ(format_addr(addr("2001:db8::5")), "2001:db8::5");
  EXPECT_TRUE(addr_is_v4(addr("10.0.0.1")));
  EXPECT_FALSE(addr_is_v4(addr("::1")));
  EXPECT_TRUE(addr_is_unspecified(addr("0.0.0.0")));
  EXPECT_TRUE(addr_is_unspecified(addr("::")));
  EXPECT_TRUE(addr_is_multicast(addr("224.0.0.1")));
  EXPECT_TRUE(addr_is_multicast(addr("ff02::1")));
  Addr a{};
  EXPECT_FALSE(parse_addr("[::1]", &a));
  EXPECT_FALSE(parse_addr("1.2.3", &a));
}

TEST(Model, ListingFormatMatchesPesto) {
  Rule r;
  r.dual_stack = true;
  r.first = 22;
  r.last = 80;
  r.to = 32;
  EXPECT_EQ(format_rule(r), "TCP [*]:22-80 => 32-90");
  Rule t;
  t.listen = addr("0.0.0.0");
  t.first = t.last = 5000;
  t.to = 6000;
  t.target = addr("192.0.2.5");
  EXPECT_EQ(format_rule(t), "TCP [0.0.0.0]:5000 => 192.0.2.5:6000");
  Rule v6;
  v6.listen = addr("::1");
  v6.first = v6.last = 5000;
  v6.to = 6000;
  v6.target = addr("::2");
  EXPECT_EQ(format_rule(v6), "TCP [::1]:5000 => ::2:6000");
  Rule i;
  i.listen = addr("192.0.2.1");
  i.ifname = "eth0";
  i.first = i.last = i.to = 22;
  EXPECT_EQ(format_rule(i), "TCP [192.0.2.1]%eth0:22 => 22");
  Rule w;
  w.dual_stack = true;
  w.first = w.to = 1;
  w.last = 32767;
  w.weak = true;
  EXPECT_EQ(format_rule(w), "TCP [*]:1-32767 => 1-32767 (best effort)");
  Rule s;
  s.dual_stack = true;
  s.proto = Proto::kUdp;
  s.first = s.last = s.to = 10000;
  s.scan = true;
  EXPECT_EQ(format_rule(s), "UDP [*]:10000 => 10000 (auto-scan)");
}

TEST(Model, ExpandListenersOnePerPort) {
  Table t;
  Rule r;
  r.listen = addr("127.0.0.1");
  r.first = 8000;
  r.last = 8002;
  r.to = 9000;
  t.rules.push_back(r);
  std::vector<ListenerKey> keys;
  expand_listeners(t, &keys);
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0].port, 8000);
  EXPECT_EQ(keys[2].port, 8002);
  EXPECT_EQ(count_listeners(t), 3u);
  Rule top;
  top.first = 65535;
  top.last = 65535;
  top.to = 1;
  Table edge{Pif::kHost, {top}};
  keys.clear();
  expand_listeners(edge, &keys);
  ASSERT_EQ(keys.size(), 1u);  // no wrap-around at 65535
}

}  // namespace
}  // namespace sluice
