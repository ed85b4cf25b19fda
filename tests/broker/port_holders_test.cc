// broker/port_holders.h: who else holds a port before a rebind shares it.
// The pure check on table text, then the real kernel's tables: a socket of
// "another program" (one this test opens outside the escrow) that a rebind
// would have joined with SO_REUSEPORT, and the escrow refusing to share.
#include "broker/port_holders.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "broker/listener_escrow.h"
#include "broker/listener_factory.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using testing::spec_v4;
using testing::spec_v6;

/// A line's fields from the local address to the inode: "LOCAL REMOTE ST ... INODE"; the
/// remote is all zero, of the local address's family, unless given.
std::string sock(const std::string& local, const std::string& st, const std::string& inode,
                 std::string remote = "") {
  if (remote.empty()) remote = std::string(local.find(':'), '0') + ":0000";
  return local + " " + remote + " " + st + " 00000000:00000000 00:00000000 00000000  1000 0 " +
         inode;
}

/// foreign_holders() for the one rebind `spec`, with `t` as both sides.
Result<std::optional<std::string>> holder_of(const SocketTables& t, const wire::ListenerSpec& spec,
                                             std::vector<uint64_t> own = {}) {
  return foreign_holders(t, t, std::span<const wire::ListenerSpec>(&spec, 1), own)[0];
}

/// Tables whose tcp table (or udp, with `udp`) is `text`, in a memfd.
SocketTables tables_of(const std::string& text, bool udp = false) {
  SocketTables t;
  t.error.clear();
  const size_t i = udp ? 2 : 0;
  t.files[i].reset(memfd_create("table", MFD_CLOEXEC));
  EXPECT_EQ(write(t.files[i].get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  t.present[i] = true;
  return t;
}

/// Runs holder_of() on a table of `lines` (after a header) for `spec`.
std::optional<std::string> holder(const std::vector<std::string>& lines,
                                  const wire::ListenerSpec& spec, std::vector<uint64_t> own = {}) {
  std::string text = "header\n";
  for (const std::string& line : lines) text += "   0: " + line + "\n";
  const bool udp = spec.proto == static_cast<uint8_t>(wire::WireProto::kUdp);
  auto found = holder_of(tables_of(text, udp), spec, own);
  EXPECT_TRUE(found.ok()) << found.error().message;
  return found.ok() ? *found : std::nullopt;
}

TEST(PortHolders, OnlyABoundSocketOfAnotherProgramAtAClashingAddressCounts) {
  const wire::ListenerSpec any = spec_v4(0, 0, 0, 0, 8080);
  const wire::ListenerSpec lo = spec_v4(127, 0, 0, 1, 8080);
  // 127.0.0.2:8080 listening (the kernel prints 127.0.0.2 as 0200007F).
  const std::string other = sock("0200007F:1F90", "0A", "500");
  EXPECT_EQ(holder({other}, any), "127.0.0.2:8080");
  EXPECT_FALSE(holder({other}, lo));                         // another address: no clash
  EXPECT_FALSE(holder({other}, any, {500}));                 // sluiced's own
  EXPECT_FALSE(holder({other}, spec_v4(0, 0, 0, 0, 8081)));  // another port
  // Not listening: an accepted connection on the port, a TIME_WAIT.
  EXPECT_FALSE(holder({sock("0200007F:1F90", "01", "501", "0100007F:D431")}, any));
  EXPECT_FALSE(holder({sock("0200007F:1F90", "06", "0", "0100007F:D432")}, any));
  // The first foreign one is named, after sluiced's own.
  EXPECT_EQ(holder({sock("00000000:1F90", "0A", "7"), other}, any, {7}), "127.0.0.2:8080");
}

TEST(PortHolders, TheTablesAreReadInChunksTcpOnlyUpToItsLastListener) {
  const wire::ListenerSpec any = spec_v4(0, 0, 0, 0, 8080);
  const std::string other = sock("0200007F:1F90", "0A", "500");
  // Thousands of listeners on other ports first (more than one read), then
  // the other program's: found across the chunks.
  std::vector<std::string> lines(3000, sock("0100007F:0016", "0A", "1"));
  lines.push_back(other);
  EXPECT_EQ(holder(lines, any), "127.0.0.2:8080");
  // The kernel lists listeners before connections: after the first socket
  // that does not listen, no listener follows, and nothing more is read.
  EXPECT_FALSE(holder({sock("0200007F:1F91", "06", "0", "0100007F:D431"), other}, any));
  // UDP has no such order: a connected socket first, the server after it.
  wire::ListenerSpec udp = any;
  udp.proto = static_cast<uint8_t>(wire::WireProto::kUdp);
  EXPECT_EQ(
      holder({sock("0200007F:1F91", "01", "3", "0100007F:D431"), sock("0200007F:1F90", "07", "4")},
             udp),
      "127.0.0.2:8080");
  // A table longer than sluiced reads: nothing shared.
  std::string huge = "header\n";
  const std::string line = "   0: " + sock("0100007F:0016", "0A", "1") + "\n";
  while (huge.size() <= (16u << 20)) huge += line;
  auto cut = holder_of(tables_of(huge), any, {});
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find("longer than"), std::string::npos) << cut.error().message;
  // A line no reader would split: not the kernel's table.
  auto garbage = holder_of(tables_of("header\n" + std::string(70000, 'x')), any, {});
  ASSERT_FALSE(garbage.ok());
}

TEST(PortHolders, ManyRebindsAreJudgedInOnePassEachAgainstItsOwnPortSideAndProtocol) {
  // A range of 4096 ports moving address: one answer per rebind, in order;
  // only the rebind whose port another program holds is refused, and only
  // for its protocol and side.
  std::vector<std::string> lines;
  for (uint16_t p = 20000; p < 24096; ++p) {
    char local[16];
    std::snprintf(local, sizeof(local), "0100007F:%04X", p);
    lines.push_back(sock(local, "0A", std::to_string(100000 + p)));  // sluiced's own
  }
  lines.push_back(sock("0200007F:5DC0", "0A", "7"));  // 127.0.0.2:24000, another program's
  std::string text = "header\n";
  for (const std::string& line : lines) text += "   0: " + line + "\n";
  const SocketTables tables = tables_of(text);
  std::vector<wire::ListenerSpec> rebinds;
  std::vector<uint64_t> own;
  for (uint16_t p = 20000; p < 24096; ++p) {
    rebinds.push_back(spec_v4(0, 0, 0, 0, p));
    own.push_back(100000 + p);
  }
  rebinds.push_back(spec_v4(0, 0, 0, 0, 24000, wire::WireProto::kUdp));  // no udp table: none
  wire::ListenerSpec inside = spec_v4(127, 0, 0, 1, 24000);
  inside.flags = wire::kListenerSplice;
  rebinds.push_back(inside);  // the other side: its tables have an error
  const SocketTables none = no_socket_tables("sluiced has no target namespace");
  auto answers = foreign_holders(tables, none, rebinds, own);
  ASSERT_EQ(answers.size(), rebinds.size());
  for (size_t i = 0; i + 2 < rebinds.size(); ++i) {
    ASSERT_TRUE(answers[i].ok()) << i << ": " << answers[i].error().message;
    if (rebinds[i].port == 24000) {
      EXPECT_EQ(*answers[i], "127.0.0.2:24000");
    } else {
      EXPECT_FALSE(answers[i]->has_value()) << rebinds[i].port << ": " << **answers[i];
    }
  }
  ASSERT_TRUE(answers[rebinds.size() - 2].ok());
  EXPECT_FALSE(answers[rebinds.size() - 2]->has_value());
  ASSERT_FALSE(answers.back().ok());
  EXPECT_EQ(answers.back().error().message, "sluiced has no target namespace");
}

TEST(PortHolders, AnIPv6WildcardIsTakenForDualStackAndMappedAddressesForIPv4) {
  const wire::ListenerSpec lo = spec_v4(127, 0, 0, 1, 8080);
  // [::]:8080 may have IPV6_V6ONLY=0: it covers IPv4 too.
  EXPECT_EQ(holder({sock("00000000000000000000000000000000:1F90", "0A", "9")}, lo), "[::]:8080");
  // [::ffff:127.0.0.1]:8080 is 127.0.0.1.
  const std::string mapped = "0000000000000000FFFF00000100007F:1F90";
  EXPECT_EQ(holder({sock(mapped, "0A", "9")}, lo), "[::ffff:127.0.0.1]:8080");
  EXPECT_FALSE(holder({sock(mapped, "0A", "9")}, spec_v4(127, 0, 0, 2, 8080)));
  // [::1] clashes with IPv6 listeners only.
  const std::string v6lo = "00000000000000000000000001000000:1F90";
  EXPECT_FALSE(holder({sock(v6lo, "0A", "9")}, lo));
  const uint8_t any6[16] = {};
  EXPECT_EQ(holder({sock(v6lo, "0A", "9")}, spec_v6(any6, 8080)), "[::1]:8080");
}

/// Listens on 127.0.0.`last`:`port` (0: a free port) with SO_REUSEPORT, as
/// another program of this user might; `*port` gets the port.
UniqueFd shared_listener(uint8_t last, uint16_t* port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  EXPECT_EQ(setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)), 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(0x7f000000u | last);
  sin.sin_port = htons(*port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)) != 0) return UniqueFd();
  EXPECT_EQ(listen(fd.get(), 4), 0);
  socklen_t len = sizeof(sin);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  *port = ntohs(sin.sin_port);
  return fd;
}

/// The inode of `fd`.
uint64_t inode(int fd) {
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0);
  return st.st_ino;
}

TEST(PortHolders, TheKernelsTablesNameAnotherProgramsSocketAndNotOurs) {
  const SocketTables tables = open_socket_tables("/proc/self/net");
  ASSERT_EQ(tables.error, "");
  uint16_t port = 0;
  UniqueFd theirs = shared_listener(2, &port);
  ASSERT_TRUE(theirs.valid());
  auto found = holder_of(tables, spec_v4(0, 0, 0, 0, port), {});
  ASSERT_TRUE(found.ok()) << found.error().message;
  EXPECT_EQ(*found, "127.0.0.2:" + std::to_string(port));
  const std::vector<uint64_t> own = {inode(theirs.get())};
  found = holder_of(tables, spec_v4(0, 0, 0, 0, port), own);
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
  // UDP reads the other two tables: no UDP socket holds the port.
  found = holder_of(tables, spec_v4(0, 0, 0, 0, port, wire::WireProto::kUdp), {});
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST(PortHolders, TablesThatCouldNotBeOpenedShareNothing) {
  const SocketTables unset;
  EXPECT_FALSE(holder_of(unset, spec_v4(0, 0, 0, 0, 80), {}).ok());
  const SocketTables none = no_socket_tables("sluiced has no target namespace");
  for (const UniqueFd& file : none.files) EXPECT_TRUE(file.valid());
  auto r = holder_of(none, spec_v4(0, 0, 0, 0, 80), {});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "sluiced has no target namespace");
  const SocketTables missing = open_socket_tables("/proc/self/no-such-dir");
  EXPECT_NE(missing.error.find("cannot open /proc/self/no-such-dir/tcp"), std::string::npos)
      << missing.error;
}

TEST(PortHolders, ARebindBesideAnotherProgramsSharedSocketSharesNothing) {
  // sluiced holds 127.0.0.1:P; another program of its user listens on
  // 127.0.0.2:P with SO_REUSEPORT. A rebind to 0.0.0.0:P must not be
  // opened with SO_REUSEPORT: it would bind beside that socket (and a next
  // rebind to 127.0.0.2:P would join its group). It fails with EADDRINUSE,
  // as any program's bind would.
  const SocketTables tables = open_socket_tables("/proc/self/net");
  uint16_t port = 0;
  UniqueFd theirs = shared_listener(2, &port);
  ASSERT_TRUE(theirs.valid());
  const wire::ListenerSpec held = spec_v4(127, 0, 0, 1, port);
  auto ours = open_listener(held);
  ASSERT_TRUE(ours.ok()) << ours.error().message;
  ListenerEscrow escrow;
  ASSERT_TRUE(escrow.keep(ours->get(), held, 1).ok());
  wire::ListenerSpec entries[1] = {spec_v4(0, 0, 0, 0, port)};
  entries[0].flags = wire::kListenerReplaces;
  EXPECT_EQ(escrow.share_ports(entries, check_holders_on(tables, tables)), 0u);
  EXPECT_EQ(entries[0].flags, 0u);
  auto refused = open_listener(entries[0]);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().err, EADDRINUSE);

  // What the check prevents: shared anyway, the rebind binds beside it.
  entries[0].flags = wire::kListenerReplaces;
  const ForeignHolderCheck blind = [](std::span<const wire::ListenerSpec> rebinds,
                                      std::span<const uint64_t>) {
    return std::vector<Result<std::optional<std::string>>>(rebinds.size(),
                                                           std::optional<std::string>());
  };
  EXPECT_EQ(escrow.share_ports(entries, blind), 1u);
  {
    auto beside = open_listener(entries[0]);
    EXPECT_TRUE(beside.ok());
  }

  // Alone, the same rebind shares, as before.
  theirs.reset();
  wire::ListenerSpec again[1] = {spec_v4(0, 0, 0, 0, port)};
  again[0].flags = wire::kListenerReplaces;
  EXPECT_EQ(escrow.share_ports(again, check_holders_on(tables, tables)), 1u);
  EXPECT_EQ(again[0].flags, wire::kListenerReplaces);
}

}  // namespace
}  // namespace sluice
