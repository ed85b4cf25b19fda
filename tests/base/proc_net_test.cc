// base/proc_net.h: one socket line of /proc/net/{tcp,tcp6,udp,udp6} as the
// kernel prints it, the lines that are not its shape, and what counts as a
// bound server socket. The real kernel's tables are read by
// tests/broker/port_holders_test.cc and tests/worker/port_scan_test.cc.
#include "base/proc_net.h"

#include <arpa/inet.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace sluice {
namespace {

/// A tcp line as the kernel prints it: `local` and `remote` ("HEX:PORT"),
/// state `st`, uid 1000 and inode `inode`.
std::string tcp_line(const std::string& local, const std::string& remote, const std::string& st,
                     const std::string& inode = "31337") {
  return "   0: " + local + " " + remote + " " + st +
         " 00000000:00000000 00:00000000 00000000  1000        0 " + inode +
         " 1 0000000000000000 100 0 0 10 0";
}

/// The address `text` (inet_pton of `family`) as the kernel prints it: the
/// 32-bit words of its memory as numbers, 8 hex digits each.
std::string kernel_hex(int family, const char* text) {
  unsigned char addr[16] = {};
  EXPECT_EQ(inet_pton(family, text, addr), 1) << text;
  std::string out;
  for (int word = 0; word < (family == AF_INET ? 1 : 4); ++word) {
    uint32_t v = 0;
    std::memcpy(&v, addr + word * 4, 4);
    char buf[9];
    std::snprintf(buf, sizeof(buf), "%08X", v);
    out += buf;
  }
  return out;
}

TEST(ProcNetLine, AddressPortStateAndInodeAreTheKernels) {
  auto s = parse_proc_net_line(
      tcp_line(kernel_hex(AF_INET, "127.0.0.2") + ":1F90", "00000000:0000", "0A", "4242"));
  ASSERT_TRUE(s.has_value());
  EXPECT_FALSE(s->v6);
  const uint8_t want[4] = {127, 0, 0, 2};
  EXPECT_EQ(std::memcmp(s->addr, want, 4), 0);
  EXPECT_EQ(s->port, 8080);
  EXPECT_EQ(s->state, 0x0A);
  EXPECT_TRUE(s->remote_zero);
  EXPECT_EQ(s->inode, 4242u);

  auto v6 = parse_proc_net_line(tcp_line(kernel_hex(AF_INET6, "2001:db8::17") + ":0050",
                                         kernel_hex(AF_INET6, "::1") + ":D431", "01", "0"));
  ASSERT_TRUE(v6.has_value());
  EXPECT_TRUE(v6->v6);
  unsigned char want6[16];
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::17", want6), 1);
  EXPECT_EQ(std::memcmp(v6->addr, want6, 16), 0);
  EXPECT_EQ(v6->port, 80);
  EXPECT_FALSE(v6->remote_zero);
  EXPECT_EQ(v6->inode, 0u);  // TIME_WAIT and the like have none
}

TEST(ProcNetLine, LinesThatAreNotTheKernelsShapeAreRefused) {
  const std::string local = "0100007F:1F90", remote = "00000000:0000";
  const std::vector<std::string> bad = {
      "",
      "   0: 0100007F:1F90 00000000:0000 0A",                          // fields missing
      tcp_line(local, "00000000000000000000000000000000:0000", "0A"),  // families differ
      tcp_line(local, remote, "0A", "12x"),                            // inode not decimal
      tcp_line(local, remote, "0A", "-1"),                             // a sign
      tcp_line(local, remote, "0A", "184467440737095516160"),          // 21 digits
      tcp_line(local, remote, "0A", "18446744073709551616"),           // over 64 bits
      "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 x 0 1",
      tcp_line(local, remote, "0A") + std::string(kMaxProcNetLineBytes, ' '),  // too long
  };
  for (const std::string& line : bad) EXPECT_FALSE(parse_proc_net_line(line)) << line;
  auto max = parse_proc_net_line(tcp_line(local, remote, "0A", "18446744073709551615"));
  ASSERT_TRUE(max.has_value());
  EXPECT_EQ(max->inode, UINT64_MAX);
}

TEST(ProcNetLine, BoundMeansListeningForTcpAndUnconnectedForUdp) {
  auto socket = [](const char* st, const char* remote) {
    return *parse_proc_net_line(tcp_line("0100007F:1F90", remote, st));
  };
  EXPECT_TRUE(proc_net_bound(socket("0A", "00000000:0000"), ProcNetKind::kTcp));
  EXPECT_FALSE(proc_net_bound(socket("01", "0100007F:D431"), ProcNetKind::kTcp));
  EXPECT_FALSE(proc_net_bound(socket("07", "00000000:0000"), ProcNetKind::kTcp));
  EXPECT_TRUE(proc_net_bound(socket("07", "00000000:0000"), ProcNetKind::kUdp));
  EXPECT_FALSE(proc_net_bound(socket("07", "0100007F:0035"), ProcNetKind::kUdp));
  EXPECT_FALSE(proc_net_bound(socket("01", "0100007F:0035"), ProcNetKind::kUdp));
}

TEST(ProcNetText, TheHeaderIsSkippedACutLastLineIsNotReadAndLinesAreBounded) {
  const std::string line = tcp_line("0100007F:1F90", "00000000:0000", "0A") + "\n";
  std::string text = "  sl  local_address rem_address   st ...\n" + line + "garbage\n" + line;
  size_t seen = 0;
  ProcNetParse r =
      for_each_proc_net_socket(text + line.substr(0, 20), [&](const ProcNetSocket&) { ++seen; });
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(r.entries, 2u);
  EXPECT_EQ(r.malformed, 1u);
  EXPECT_TRUE(r.truncated);  // the cut line

  std::string many = "header\n";
  for (size_t i = 0; i < kMaxProcNetLines + 5; ++i) many += line;
  seen = 0;
  r = for_each_proc_net_socket(many, [&](const ProcNetSocket&) { ++seen; });
  EXPECT_EQ(seen, kMaxProcNetLines - 1);  // the header is one of the lines
  EXPECT_TRUE(r.truncated);
}

TEST(ProcNetText, ALaterPartHasNoHeaderAndTheCallbackMayStop) {
  const std::string line = tcp_line("0100007F:1F90", "00000000:0000", "0A") + "\n";
  const std::string cut = line.substr(0, 20);
  // A part read after the first: every whole line is a socket; the bytes
  // consumed end at the last newline, where the next part goes on.
  size_t seen = 0;
  ProcNetParse r = for_each_proc_net_socket(
      line + line + cut, [&](const ProcNetSocket&) { ++seen; }, false);
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(r.consumed, 2 * line.size());
  EXPECT_FALSE(r.stopped);
  // A callback that returns false stops the walk after that socket.
  seen = 0;
  r = for_each_proc_net_socket(
      line + line + line, [&](const ProcNetSocket&) { return ++seen < 2; }, false);
  EXPECT_EQ(seen, 2u);
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.consumed, 2 * line.size());
}

}  // namespace
}  // namespace sluice
