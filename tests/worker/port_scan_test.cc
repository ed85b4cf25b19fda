// Auto-scan's view of the target namespace (worker/port_scan.h): the parser
// of /proc/net/{tcp,tcp6,udp,udp6} on the kernel's own lines and on text that
// is not, the ports the scan rules watch, and the scanner on the real files
// of this test's own network namespace (tests/integration/namespace_main.cc),
// where the test's sockets are the only ones.
#include "worker/port_scan.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <vector>

#include "base/unique_fd.h"

namespace sluice {
namespace {

constexpr const char* kTcpHeader =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode\n";
constexpr const char* kUdpHeader =
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout "
    "inode ref pointer drops\n";

/// A tcp line as the kernel prints it, for `local` and `remote` ("HEX:PORT")
/// in state `st`.
std::string tcp_line(int slot, const std::string& local, const std::string& remote,
                     const std::string& st) {
  return "   " + std::to_string(slot) + ": " + local + " " + remote + " " + st +
         " 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 "
         "0 10 0                     \n";
}

/// A udp line as the kernel prints it.
std::string udp_line(int slot, const std::string& local, const std::string& remote,
                     const std::string& st) {
  return "  " + std::to_string(slot) + ": " + local + " " + remote + " " + st +
         " 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 0\n";
}

/// Parses `text` as `kind` and returns the ports set.
PortSet ports_of(const std::string& text, ProcNetKind kind, PortScanParse* result = nullptr) {
  PortSet set;
  PortScanParse r = parse_proc_net(text, kind, &set);
  if (result != nullptr) *result = r;
  return set;
}

TEST(PortSet, AnEmptySetIsAPointerAndBehavesAsAFullSizedOne) {
  // What the engine keeps per table and protocol whatever its tables hold:
  // no 8 KiB bitset until a port is added.
  static_assert(sizeof(PortSet) == sizeof(void*));
  static_assert(sizeof(PifPorts) == kPifCount * 2 * sizeof(void*));
  PortSet empty, a, b;
  EXPECT_TRUE(empty.none());
  EXPECT_FALSE(empty.test(80));
  EXPECT_EQ(empty.count(), 0u);
  a.set(80);
  a.set(443);
  a.set(kMaxPort);
  b.set(443);
  b.set(8080);
  EXPECT_TRUE(a.test(kMaxPort));
  EXPECT_EQ(a.count(), 3u);
  // An allocated set that became empty equals one that never held a port.
  PortSet emptied;
  emptied.set(1);
  emptied.reset(1);
  EXPECT_EQ(emptied, empty);
  EXPECT_EQ(empty, emptied);
  EXPECT_NE(a, empty);
  const PortSet both = a & b, either = a | b, only_a = a - b;
  EXPECT_EQ(both.count(), 1u);
  EXPECT_TRUE(both.test(443));
  EXPECT_EQ(either.count(), 4u);
  EXPECT_TRUE(either.test(8080) && either.test(80));
  EXPECT_EQ(only_a.count(), 2u);
  EXPECT_FALSE(only_a.test(443));
  EXPECT_EQ(a - empty, a);
  EXPECT_EQ(empty - a, empty);
  EXPECT_EQ((a & empty).count(), 0u);
  EXPECT_EQ(a | empty, a);
  EXPECT_EQ(empty | b, b);
  // Copies are deep, also into bits a set holds already.
  PortSet copy = a;
  copy.reset(80);
  EXPECT_TRUE(a.test(80));
  copy = b;
  EXPECT_EQ(copy, b);
  copy.set(9);
  EXPECT_FALSE(b.test(9));
  copy = empty;
  EXPECT_TRUE(copy.none());
  // Self-assignment keeps the set; a moved-from set is empty and usable.
  const PortSet& same = a;
  a = same;
  EXPECT_EQ(a.count(), 3u);
  PortSet moved = std::move(a);
  EXPECT_EQ(moved.count(), 3u);
  EXPECT_TRUE(a.none());  // NOLINT(bugprone-use-after-move): the state is specified
  a.set(1);
  EXPECT_TRUE(a.test(1));
}

TEST(ProcNetParse, OnlyListeningTcpSocketsCount) {
  std::string text = kTcpHeader;
  text += tcp_line(0, "0100007F:1F90", "00000000:0000", "0A");  // 127.0.0.1:8080 LISTEN
  text += tcp_line(1, "00000000:0016", "00000000:0000", "0A");  // *:22 LISTEN
  text += tcp_line(2, "0100007F:9C40", "0100007F:1F90", "01");  // a client, ESTABLISHED
  text += tcp_line(3, "0100007F:A000", "0100007F:1F90", "02");  // SYN_SENT (a connect)
  text += tcp_line(4, "0100007F:A001", "0100007F:1F90", "06");  // TIME_WAIT
  PortScanParse r;
  PortSet set = ports_of(text, ProcNetKind::kTcp, &r);
  EXPECT_EQ(r.entries, 5u);
  EXPECT_EQ(r.bound, 2u);
  EXPECT_EQ(r.malformed, 0u);
  EXPECT_FALSE(r.truncated);
  EXPECT_EQ(set.count(), 2u);
  EXPECT_TRUE(set.test(8080));
  EXPECT_TRUE(set.test(22));
  EXPECT_FALSE(set.test(0x9C40));
}

TEST(ProcNetParse, Tcp6LinesHave32DigitAddresses) {
  std::string text =
      "  sl  local_address                         remote_address                        st "
      "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
  text += tcp_line(0, "00000000000000000000000001000000:1F91",
                   "00000000000000000000000000000000:0000", "0A");
  text += tcp_line(1, "0000000000000000FFFF00000100007F:1F92",
                   "0000000000000000FFFF00000100007F:1F91", "01");
  PortScanParse r;
  PortSet set = ports_of(text, ProcNetKind::kTcp, &r);
  EXPECT_EQ(r.entries, 2u);
  EXPECT_TRUE(set.test(8081));
  EXPECT_FALSE(set.test(8082));
}

TEST(ProcNetParse, UdpCountsSocketsThatAreBoundAndNotConnected) {
  std::string text = kUdpHeader;
  text += udp_line(1, "0100007F:14E9", "00000000:0000", "07");  // a server on 5353
  text += udp_line(2, "00000000:0035", "00000000:0000", "07");  // a server on *:53
  // A connected socket: a client, or one of sluice's own flow sockets. Its
  // ephemeral port must never make a listener appear.
  text += udp_line(3, "0100007F:9C41", "0100007F:14E9", "01");
  // Disconnected again is unconnected; a remote set with st 07 is not the
  // kernel's, and does not count either.
  text += udp_line(4, "0100007F:9C42", "0100007F:14E9", "07");
  PortScanParse r;
  PortSet set = ports_of(text, ProcNetKind::kUdp, &r);
  EXPECT_EQ(r.entries, 4u);
  EXPECT_EQ(r.bound, 2u);
  EXPECT_TRUE(set.test(5353));
  EXPECT_TRUE(set.test(53));
  EXPECT_FALSE(set.test(0x9C41));
  EXPECT_FALSE(set.test(0x9C42));
  // A TCP listener's state means nothing in a UDP table, and the reverse.
  EXPECT_FALSE(
      ports_of(std::string(kUdpHeader) + udp_line(0, "0100007F:0050", "00000000:0000", "0A"),
               ProcNetKind::kUdp)
          .test(80));
  EXPECT_FALSE(
      ports_of(std::string(kTcpHeader) + tcp_line(0, "0100007F:0050", "00000000:0000", "07"),
               ProcNetKind::kTcp)
          .test(80));
}

TEST(ProcNetParse, MalformedLinesAreSkippedAndCountedTheRestIsRead) {
  std::string text = kTcpHeader;
  const char* bad[] = {
      "garbage\n",
      "   0: 0100007F:1F90\n",                         // fields missing
      "   0 0100007F:1F90 00000000:0000 0A rest\n",    // slot without its colon
      "   x: 0100007F:1F90 00000000:0000 0A rest\n",   // slot not a number
      "   0: 0100007F1F90 00000000:0000 0A rest\n",    // no colon in the address
      "   0: 100007F:1F90 00000000:0000 0A rest\n",    // 7 address digits
      "   0: 0100007F:1F9 00000000:0000 0A rest\n",    // 3 port digits
      "   0: 0100007F:1F900 00000000:0000 0A rest\n",  // 5 port digits
      "   0: 0100007G:1F90 00000000:0000 0A rest\n",   // not hex
      "   0: 0100007F:1F90 00000000:0000 A rest\n",    // one state digit
      "   0: 0100007F:1F90 00000000:0000 0AA rest\n",  // three state digits
      "   0: 0100007F:1F90 00000000:000Z 0A rest\n",   // remote port not hex
      "   0: 0100007F:-1F9 00000000:0000 0A rest\n",   // a sign
      "\n",                                            // an empty line
  };
  for (const char* line : bad) text += line;
  text += tcp_line(9, "0100007F:0016", "00000000:0000", "0A");  // still read
  // A line longer than kMaxProcNetLineBytes is not the kernel's, whatever it holds.
  text += "   7: 0100007F:0017 00000000:0000 0A " + std::string(kMaxProcNetLineBytes, 'x') + "\n";
  PortScanParse r;
  PortSet set = ports_of(text, ProcNetKind::kTcp, &r);
  EXPECT_EQ(r.malformed, sizeof(bad) / sizeof(bad[0]) + 1);
  EXPECT_EQ(r.entries, 1u);
  EXPECT_EQ(set.count(), 1u);
  EXPECT_TRUE(set.test(22));
  EXPECT_FALSE(set.test(23));
}

TEST(ProcNetParse, PortZeroNeverCounts) {
  PortSet set =
      ports_of(std::string(kTcpHeader) + tcp_line(0, "00000000:0000", "00000000:0000", "0A"),
               ProcNetKind::kTcp);
  EXPECT_TRUE(set.none());
}

TEST(ProcNetParse, ALastLineWithoutItsNewlineIsNotParsed) {
  std::string line = tcp_line(0, "0100007F:1F90", "00000000:0000", "0A");
  line.pop_back();  // the read stopped here
  PortScanParse r;
  PortSet set = ports_of(std::string(kTcpHeader) + line, ProcNetKind::kTcp, &r);
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(r.entries, 0u);
  EXPECT_TRUE(set.none());
}

TEST(ProcNetParse, TheLineCountIsBounded) {
  std::string text = kTcpHeader;
  const size_t lines = kMaxProcNetLines + 10;
  for (size_t i = 0; i < lines; ++i) {
    char local[16];
    std::snprintf(local, sizeof(local), "0100007F:%04zX", i + 1);
    text += tcp_line(static_cast<int>(i), local, "00000000:0000", "0A");
  }
  PortScanParse r;
  PortSet set = ports_of(text, ProcNetKind::kTcp, &r);
  EXPECT_TRUE(r.truncated);
  // The header counts as a line.
  EXPECT_EQ(r.entries, kMaxProcNetLines - 1);
  EXPECT_TRUE(set.test(kMaxProcNetLines - 1));
  EXPECT_FALSE(set.test(kMaxProcNetLines));
}

TEST(ProcNetParse, EmptyTextAndHeaderOnlyHoldNothing) {
  PortScanParse r;
  EXPECT_TRUE(ports_of("", ProcNetKind::kTcp, &r).none());
  EXPECT_FALSE(r.truncated);
  EXPECT_TRUE(ports_of(kUdpHeader, ProcNetKind::kUdp, &r).none());
  EXPECT_EQ(r.entries, 0u);
  EXPECT_EQ(r.malformed, 0u);
}

TEST(WatchedPorts, AScanRuleWatchesItsTargetPorts) {
  TableSet tables;
  Rule mapped;
  mapped.proto = Proto::kTcp;
  mapped.dual_stack = true;
  mapped.first = 80;
  mapped.last = 81;
  mapped.to = 8080;
  mapped.scan = true;
  Rule udp = mapped;
  udp.proto = Proto::kUdp;
  udp.first = udp.last = udp.to = 53;
  Rule plain = mapped;
  plain.scan = false;
  plain.first = plain.last = plain.to = 22;
  tables.of(Pif::kHost).rules = {mapped, udp, plain};
  Rule splice = mapped;
  splice.ifname = "lo";
  splice.first = splice.last = 5432;
  splice.to = 15432;
  tables.of(Pif::kSplice).rules = {splice};
  const PifPorts all = watched_ports(tables);
  // Each table's own: a SPLICE rule watches sluiced's side, not the namespace.
  EXPECT_EQ(all.of(Pif::kSplice).tcp.count(), 1u);
  EXPECT_TRUE(all.of(Pif::kSplice).tcp.test(15432));
  EXPECT_FALSE(all.of(Pif::kHost).tcp.test(15432));
  EXPECT_TRUE(all.any());
  EXPECT_FALSE(PifPorts{}.any());
  const BoundPorts& w = all.of(Pif::kHost);
  EXPECT_EQ(w.tcp.count(), 2u);
  EXPECT_TRUE(w.tcp.test(8080));
  EXPECT_TRUE(w.tcp.test(8081));
  EXPECT_FALSE(w.tcp.test(80));
  EXPECT_FALSE(w.tcp.test(22));
  EXPECT_EQ(w.udp.count(), 1u);
  EXPECT_TRUE(w.udp.test(53));
}

/// Binds a socket of `type` on 127.0.0.1 (or ::1 with `v6`) at an ephemeral
/// port, listening for TCP; returns it and its port.
UniqueFd bound_socket(int type, bool v6, uint16_t* port) {
  UniqueFd fd(socket(v6 ? AF_INET6 : AF_INET, type | SOCK_CLOEXEC, 0));
  struct sockaddr_storage ss = {};
  socklen_t len;
  if (v6) {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_addr = in6addr_loopback;
    len = sizeof(*sin6);
  } else {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*sin);
  }
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len), 0);
  if (type == SOCK_STREAM) {
    EXPECT_EQ(listen(fd.get(), 4), 0);
  }
  len = sizeof(ss);
  getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), &len);
  *port = ntohs(v6 ? reinterpret_cast<struct sockaddr_in6*>(&ss)->sin6_port
                   : reinterpret_cast<struct sockaddr_in*>(&ss)->sin_port);
  return fd;
}

/// Connects a new socket of `type` to 127.0.0.1:`port`; returns it and its
/// own (ephemeral) port.
UniqueFd connected_socket(int type, uint16_t port, uint16_t* own) {
  UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)), 0);
  socklen_t len = sizeof(sin);
  getsockname(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), &len);
  *own = ntohs(sin.sin_port);
  return fd;
}

TEST(PortScanner, SeesServersOfItsNamespaceAndNeverClientsOrConnectedSockets) {
  auto scanner = PortScanner::open_own();
  ASSERT_TRUE(scanner.ok()) << scanner.error().message;
  uint16_t tcp4 = 0, tcp6 = 0, udp4 = 0, udp6 = 0, client = 0, flow = 0;
  UniqueFd l4 = bound_socket(SOCK_STREAM, false, &tcp4);
  UniqueFd l6 = bound_socket(SOCK_STREAM, true, &tcp6);
  UniqueFd u4 = bound_socket(SOCK_DGRAM, false, &udp4);
  UniqueFd u6 = bound_socket(SOCK_DGRAM, true, &udp6);
  // A TCP client and a connected UDP socket, as the worker's own outgoing
  // connections and flows are.
  UniqueFd c = connected_socket(SOCK_STREAM, tcp4, &client);
  UniqueFd f = connected_socket(SOCK_DGRAM, udp4, &flow);
  auto bound = scanner->scan();
  ASSERT_TRUE(bound.ok()) << bound.error().message;
  EXPECT_TRUE(bound->tcp.test(tcp4));
  EXPECT_TRUE(bound->tcp.test(tcp6));
  EXPECT_FALSE(bound->tcp.test(client));
  EXPECT_TRUE(bound->udp.test(udp4));
  EXPECT_TRUE(bound->udp.test(udp6));
  EXPECT_FALSE(bound->udp.test(flow));
  // The read keeps TCP and UDP apart; scan_view() adds TCP ports to UDP
  // (pasta's rule) once sluice's own are out.
  EXPECT_FALSE(bound->tcp.test(udp4));
  EXPECT_TRUE(scan_view(*bound, BoundPorts{}).udp.test(tcp4));
  // Read again from offset 0: a server that stopped is gone.
  l4.reset();
  u4.reset();
  auto again = scanner->scan();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->tcp.test(tcp4));
  EXPECT_FALSE(again->udp.test(udp4));
  EXPECT_TRUE(again->tcp.test(tcp6));
}

TEST(PortScanner, ManySocketsAreReadAcrossManyPreads) {
  // More than one kernel page of lines: the reader continues at each offset.
  auto scanner = PortScanner::open_own();
  ASSERT_TRUE(scanner.ok());
  std::vector<UniqueFd> socks;
  std::vector<uint16_t> ports;
  for (int i = 0; i < 200; ++i) {  // bounded: 200 sockets, about 30 KiB of lines
    uint16_t port = 0;
    socks.push_back(bound_socket(SOCK_STREAM, i % 2 == 1, &port));
    ports.push_back(port);
  }
  auto bound = scanner->scan();
  ASSERT_TRUE(bound.ok());
  for (uint16_t p : ports) EXPECT_TRUE(bound->tcp.test(p)) << p;
}

TEST(PortScanner, PinMovesTheFilesToFixedNumbersAndTheyStillRead) {
  auto scanner = PortScanner::open_own();
  ASSERT_TRUE(scanner.ok());
  // High numbers, aligned on four like the worker's, and away from gtest's.
  constexpr int kFirst = 200;
  UniqueFd squatter(fcntl(0, F_DUPFD_CLOEXEC, kFirst + 1));  // something already there
  ASSERT_EQ(squatter.get(), kFirst + 1);
  ASSERT_TRUE(scanner->pin(kFirst).ok());
  const auto fds = scanner->fds();
  if (fds[1] == kFirst + 1) squatter.release();  // pin() closed it by putting tcp6 there
  for (size_t i = 0; i < PortScanner::kFiles; ++i) {
    if (fds[i] >= 0) {
      EXPECT_EQ(fds[i], kFirst + static_cast<int>(i));
    }
  }
  EXPECT_EQ(fds[0], kFirst);
  EXPECT_EQ(fds[2], kFirst + 2);
  uint16_t port = 0;
  UniqueFd l = bound_socket(SOCK_STREAM, false, &port);
  auto bound = scanner->scan();
  ASSERT_TRUE(bound.ok());
  EXPECT_TRUE(bound->tcp.test(port));
}

/// A listener key of `pif` on `port`.
ListenerKey key_of(Pif pif, Proto proto, uint16_t port) {
  ListenerKey k{};
  k.pif = pif;
  k.proto = proto;
  k.dual_stack = true;
  k.port = port;
  return k;
}

TEST(ScanView, SluicesOwnListenersOnASideNeverCount) {
  BoundPorts raw;
  raw.tcp.set(8080);  // a real server
  raw.tcp.set(5432);  // sluice's own listener of the other table
  raw.udp.set(5353);  // a real server
  raw.udp.set(53);    // sluice's own
  BoundPorts own;
  own.tcp.set(5432);
  own.udp.set(53);
  const BoundPorts seen = scan_view(raw, own);
  EXPECT_TRUE(seen.tcp.test(8080));
  EXPECT_FALSE(seen.tcp.test(5432));
  EXPECT_TRUE(seen.udp.test(5353));
  EXPECT_FALSE(seen.udp.test(53));
  // pasta's rule: a TCP server's port counts for UDP too, but sluice's own
  // TCP listener never makes a UDP port appear.
  EXPECT_TRUE(seen.udp.test(8080));
  EXPECT_FALSE(seen.udp.test(5432));
  EXPECT_EQ(seen.tcp.count(), 1u);
  EXPECT_EQ(seen.udp.count(), 2u);
}

TEST(ScanView, ATcpServerOnAPortSluiceHoldsForUdpDoesNotMakeThatUdpPortCount) {
  BoundPorts raw;
  raw.tcp.set(7000);  // a real TCP server
  raw.udp.set(7000);  // sluice's own UDP listener on the same number
  BoundPorts own;
  own.udp.set(7000);
  const BoundPorts seen = scan_view(raw, own);
  EXPECT_TRUE(seen.tcp.test(7000));
  EXPECT_FALSE(seen.udp.test(7000)) << "sluice's own UDP port never counts";
}

TEST(ScanView, EachTableLeavesOutTheOtherTablesListeners) {
  // HOST listeners are on sluiced's side, which SPLICE rules follow; SPLICE
  // listeners are inside the target namespace, which HOST rules follow.
  EXPECT_EQ(other_table(Pif::kHost), Pif::kSplice);
  EXPECT_EQ(other_table(Pif::kSplice), Pif::kHost);
  const std::vector<ListenerKey> keys = {
      key_of(Pif::kHost, Proto::kTcp, 8080), key_of(Pif::kHost, Proto::kUdp, 53),
      key_of(Pif::kSplice, Proto::kTcp, 5432), key_of(Pif::kSplice, Proto::kTcp, 5433)};
  const BoundPorts host = listener_ports(keys, Pif::kHost);
  EXPECT_EQ(host.tcp.count(), 1u);
  EXPECT_TRUE(host.tcp.test(8080));
  EXPECT_TRUE(host.udp.test(53));
  const BoundPorts splice = listener_ports(keys, Pif::kSplice);
  EXPECT_EQ(splice.tcp.count(), 2u);
  EXPECT_TRUE(splice.tcp.test(5432));
  EXPECT_TRUE(splice.udp.none());

  // Ping-pong, step by step: a server on sluiced's side at 9000 makes a
  // SPLICE listener inside at 9000, which the namespace's tables then list.
  // HOST rules (-t auto) must not follow it back out, and SPLICE rules must
  // not follow a HOST listener that -t auto made.
  BoundPorts inside;  // the target namespace as read
  inside.tcp.set(9000);
  const std::vector<ListenerKey> now = {key_of(Pif::kSplice, Proto::kTcp, 9000)};
  EXPECT_FALSE(scan_view(inside, listener_ports(now, other_table(Pif::kHost))).tcp.test(9000));
  BoundPorts outside;  // sluiced's side as read: a HOST listener at 8000
  outside.tcp.set(8000);
  const std::vector<ListenerKey> host_now = {key_of(Pif::kHost, Proto::kTcp, 8000)};
  EXPECT_FALSE(
      scan_view(outside, listener_ports(host_now, other_table(Pif::kSplice))).tcp.test(8000));
}

TEST(ScanView, RestrictKeepsEachTablesWatchedPorts) {
  PifPorts bound, watched;
  bound.of(Pif::kHost).tcp.set(80);
  bound.of(Pif::kHost).tcp.set(81);
  bound.of(Pif::kSplice).tcp.set(80);
  watched.of(Pif::kHost).tcp.set(80);
  watched.of(Pif::kSplice).udp.set(80);
  const PifPorts r = restrict_to(bound, watched);
  EXPECT_TRUE(r.of(Pif::kHost).tcp.test(80));
  EXPECT_FALSE(r.of(Pif::kHost).tcp.test(81));
  EXPECT_TRUE(r.of(Pif::kSplice).tcp.none()) << "watched for UDP only";
  EXPECT_TRUE(r.of(Pif::kSplice).udp.none());
}

TEST(PortScanner, AdoptTakesTheFilesLeftOnFixedNumbers) {
  // As sluiced leaves them: tcp and udp on first and first + 2; tcp6 and
  // udp6 may be missing (closed numbers). High numbers, away from gtest's.
  constexpr int kFirst = 240;
  std::array<int, PortScanner::kFiles> placed;
  {
    auto opened = PortScanner::open_own("a test side");
    ASSERT_TRUE(opened.ok());
    const auto fds = opened->fds();
    // Copies away from kFirst; the scanner closes its own at the end of the block.
    for (size_t i = 0; i < PortScanner::kFiles; ++i) {
      placed[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD_CLOEXEC, 300);
    }
  }
  for (size_t i = 0; i < PortScanner::kFiles; ++i) {
    if (placed[i] >= 0) {
      ASSERT_EQ(dup2(placed[i], kFirst + static_cast<int>(i)), kFirst + static_cast<int>(i));
      close(placed[i]);
    }
  }
  close(kFirst + 1);  // as without IPv6: no tcp6
  auto adopted = PortScanner::adopt(kFirst, "sluiced's side");
  ASSERT_TRUE(adopted.has_value());
  EXPECT_EQ(adopted->fds()[0], kFirst);
  EXPECT_EQ(adopted->fds()[1], -1);
  EXPECT_EQ(adopted->fds()[2], kFirst + 2);
  uint16_t port = 0;
  UniqueFd l = bound_socket(SOCK_STREAM, false, &port);
  auto bound = adopted->scan();
  ASSERT_TRUE(bound.ok()) << bound.error().message;
  EXPECT_TRUE(bound->tcp.test(port));
}

TEST(PortScanner, AdoptWithoutTcpOrUdpIsOff) {
  constexpr int kFirst = 260;  // nothing open here
  EXPECT_FALSE(PortScanner::adopt(kFirst, "sluiced's side").has_value());
}

}  // namespace
}  // namespace sluice
