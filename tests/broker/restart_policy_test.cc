// Worker restarts on sluiced's side: the restart policy (back-off, give-up
// after failed restarts in a row, --worker-restarts), the checks of StoreState's memfds, and the
// escrow's bookkeeping over a real socketpair-free set of listeners.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "broker/listener_escrow.h"
#include "broker/listener_factory.h"
#include "broker/port_holders.h"
#include "broker/restart_policy.h"
#include "tests/broker/test_wire.h"

namespace sluice {
namespace {

using testing::spec_v4;

constexpr uint64_t kSec = 1000000000ULL;

TEST(RestartPolicy, AServingWorkerIsReplacedAtOnce) {
  RestartPolicy p(RestartLimit{30, 60});
  for (int i = 0; i < 20; ++i) {
    auto delay = p.on_death(uint64_t(i + 1) * kSec / 10, true);
    ASSERT_TRUE(delay.has_value()) << i;
    EXPECT_EQ(*delay, 0u);
  }
  EXPECT_EQ(p.restarts(), 20u);
}

TEST(RestartPolicy, ReplacementsThatNeverServeAreGivenUpOnAfterThreeInARow) {
  // The default --worker-restarts (30/60) would never end this: a worker
  // that dies at start is given up on after kMaxFailedRestarts in a row.
  RestartPolicy p(RestartLimit{30, 60});
  EXPECT_EQ(*p.on_death(1 * kSec, true), 0u);   // a serving worker died
  EXPECT_EQ(*p.on_death(2 * kSec, false), 0u);  // its replacement died at start
  EXPECT_EQ(p.failed_in_a_row(), 1u);
  EXPECT_EQ(*p.on_death(3 * kSec, false), kFirstBackoffMs);
  EXPECT_EQ(p.gave_up(), RestartPolicy::GiveUp::kNo);
  EXPECT_FALSE(p.on_death(4 * kSec, false).has_value());
  EXPECT_EQ(p.gave_up(), RestartPolicy::GiveUp::kFailedStarts);
  EXPECT_EQ(p.failed_in_a_row(), kMaxFailedRestarts);
  EXPECT_EQ(p.restarts(), 3u);
}

TEST(RestartPolicy, AWorkerThatServesInBetweenStartsTheCountAgain) {
  RestartPolicy p(RestartLimit{100, 60});
  uint64_t now = 0;
  // Forever "two failed restarts, then one that serves": never given up on
  // for failing to start, and each first failure is replaced at once.
  for (int round = 0; round < 10; ++round) {
    EXPECT_EQ(*p.on_death(now += kSec / 10, true), 0u) << round;
    EXPECT_EQ(*p.on_death(now += kSec / 10, false), 0u) << round;
    EXPECT_EQ(*p.on_death(now += kSec / 10, false), kFirstBackoffMs) << round;
  }
  EXPECT_EQ(p.gave_up(), RestartPolicy::GiveUp::kNo);
}

TEST(RestartPolicy, TheCountOfDeathsIsCheckedFirst) {
  RestartPolicy p(RestartLimit{3, 60});
  EXPECT_TRUE(p.on_death(1 * kSec, true));
  EXPECT_TRUE(p.on_death(2 * kSec, false));
  EXPECT_FALSE(p.on_death(3 * kSec, false));
  EXPECT_EQ(p.gave_up(), RestartPolicy::GiveUp::kTooMany);
}

TEST(RestartPolicy, OnlyDeathsWithinTheWindowCount) {
  RestartPolicy quick(RestartLimit{3, 10});
  EXPECT_TRUE(quick.on_death(1 * kSec, true));
  EXPECT_TRUE(quick.on_death(2 * kSec, true));
  EXPECT_FALSE(quick.on_death(3 * kSec, true));  // the third within 10 s
  RestartPolicy spread(RestartLimit{3, 10});
  EXPECT_TRUE(spread.on_death(1 * kSec, true));
  EXPECT_TRUE(spread.on_death(2 * kSec, true));
  EXPECT_TRUE(spread.on_death(12 * kSec, true));  // both earlier ones left the window
  EXPECT_TRUE(spread.on_death(13 * kSec, true));
  EXPECT_FALSE(spread.on_death(14 * kSec, true));
}

TEST(RestartPolicy, ZeroNeverRestarts) {
  RestartPolicy p(RestartLimit{0, 60});
  EXPECT_FALSE(p.on_death(kSec, true).has_value());
}

TEST(RestartPolicy, LimitsParse) {
  auto ok = parse_restart_limit("5/10");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->count, 5u);
  EXPECT_EQ(ok->seconds, 10u);
  for (const char* bad :
       {"", "5", "/10", "5/", "5/0", "x/10", "5/10/2", "-1/10", "10001/10", "5/86401", "5 /10"}) {
    auto got = parse_restart_limit(bad);
    EXPECT_FALSE(got.ok()) << bad;
    if (!got.ok()) {
      EXPECT_NE(got.error().message.find("COUNT/SECONDS"), std::string::npos);
    }
  }
}

TEST(RestartPolicy, WorkerEndsAreDescribed) {
  EXPECT_EQ(describe_worker_end(1), "exited with status 1");
  EXPECT_EQ(describe_worker_end(128 + 9), "was killed by signal 9 (SIGKILL)");
  EXPECT_EQ(describe_worker_end(128 + 31),
            "was killed by signal 31 (SIGSYS): a syscall outside its seccomp allowlist, a bug to "
            "report");
}

/// A memfd holding `bytes`, sealed with `seals`.
UniqueFd memfd(const std::string& bytes, int seals) {
  UniqueFd fd(memfd_create("test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_EQ(write(fd.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  if (seals != 0) {
    EXPECT_EQ(fcntl(fd.get(), F_ADD_SEALS, seals), 0);
  }
  return fd;
}
constexpr int kAllSeals = F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

TEST(ListenerEscrow, MemfdsMustBeSealedAndWithinTheirSize) {
  EXPECT_TRUE(check_sealed_memfd(memfd("abc", kAllSeals).get(), 1, 8, "blob").ok());
  EXPECT_FALSE(check_sealed_memfd(memfd("abc", 0).get(), 1, 8, "blob").ok());
  EXPECT_FALSE(check_sealed_memfd(memfd("abc", F_SEAL_WRITE).get(), 1, 8, "blob").ok());
  EXPECT_FALSE(check_sealed_memfd(memfd("abcdefghi", kAllSeals).get(), 1, 8, "blob").ok());
  EXPECT_FALSE(check_sealed_memfd(memfd("", kAllSeals).get(), 1, 8, "blob").ok());
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]), b(sv[1]);
  auto sock = check_sealed_memfd(a.get(), 0, 8, "blob");
  ASSERT_FALSE(sock.ok());
  EXPECT_NE(sock.error().message.find("not a memfd"), std::string::npos);
}

/// A TCP listener on 127.0.0.1, any port; its spec.
UniqueFd listener(wire::ListenerSpec* spec) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof(sin)), 0);
  EXPECT_EQ(listen(fd.get(), 4), 0);
  socklen_t len = sizeof(sin);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len);
  *spec = {};
  spec->proto = static_cast<uint8_t>(wire::WireProto::kTcp);
  spec->family = static_cast<uint8_t>(wire::WireFamily::kInet);
  spec->port = ntohs(sin.sin_port);
  return fd;
}

/// The SO_COOKIE of `fd`.
uint64_t cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof(c);
  getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len);
  return c;
}

/// A StoreState of `sequence`.
wire::StoreStateMsg store(uint64_t sequence) {
  wire::StoreStateMsg m{};
  m.header = wire::header(wire::BrokerMsg::kStoreState, sequence);
  return m;
}

/// A sealed cookie list.
UniqueFd cookies(std::vector<uint64_t> list) {
  return memfd(std::string(reinterpret_cast<const char*>(list.data()), list.size() * 8), kAllSeals);
}

TEST(ListenerEscrow, ReleasedListenersCloseAndTheRestAreHandedOver) {
  ListenerEscrow escrow;
  wire::ListenerSpec s1, s2, s3;
  UniqueFd l1 = listener(&s1), l2 = listener(&s2), l3 = listener(&s3);
  ASSERT_TRUE(escrow.keep(l1.get(), s1, 1).ok());
  ASSERT_TRUE(escrow.keep(l2.get(), s2, 1).ok());
  ASSERT_TRUE(escrow.keep(l3.get(), s3, 5).ok());  // issued after the report below
  EXPECT_EQ(escrow.size(), 3u);
  // The worker holds l1 only, as of request 2: l2 goes, l3 (request 5) stays.
  ASSERT_TRUE(escrow.store(store(2), memfd("blob", kAllSeals), cookies({cookie(l1.get())})).ok());
  EXPECT_EQ(escrow.size(), 2u);
  EXPECT_EQ(escrow.blob_bytes(), 4u);
  // A new worker takes over both, in one batch with the last flag.
  escrow.new_worker();
  auto batch = std::make_unique<wire::ListenersReclaimedMsg>();
  std::vector<UniqueFd> fds;
  ASSERT_TRUE(escrow.next_batch(batch.get(), &fds).ok());
  EXPECT_EQ(batch->count, 2u);
  EXPECT_EQ(fds.size(), 2u);
  EXPECT_EQ(batch->flags, wire::kReclaimLast);
  // Its first report, holding nothing, releases everything kept before it.
  ASSERT_TRUE(escrow.store(store(1), memfd("b", kAllSeals), cookies({})).ok());
  EXPECT_EQ(escrow.size(), 0u);
}

TEST(ListenerEscrow, MalformedCookieListsAreRefusedAndChangeNothing) {
  ListenerEscrow escrow;
  wire::ListenerSpec s1, s2;
  UniqueFd l1 = listener(&s1), l2 = listener(&s2);
  ASSERT_TRUE(escrow.keep(l1.get(), s1, 1).ok());
  ASSERT_TRUE(escrow.keep(l2.get(), s2, 1).ok());
  const uint64_t a = cookie(l1.get()), b = cookie(l2.get());
  const uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
  // Not ascending; more cookies than listeners held; not whole cookies; unsealed.
  EXPECT_FALSE(escrow.store(store(9), memfd("x", kAllSeals), cookies({hi, lo})).ok());
  EXPECT_FALSE(escrow.store(store(9), memfd("x", kAllSeals), cookies({lo, hi, hi + 1})).ok());
  EXPECT_FALSE(escrow.store(store(9), memfd("x", kAllSeals), memfd("1234567", kAllSeals)).ok());
  EXPECT_FALSE(escrow.store(store(9), memfd("x", 0), cookies({lo})).ok());
  EXPECT_EQ(escrow.size(), 2u);
  EXPECT_EQ(escrow.blob_bytes(), 0u);
}

TEST(ListenerEscrow, AListenerIssuedWithoutACopyMayBeListed) {
  // sluiced's descriptor table was full: the worker got a listener whose
  // copy sluiced could not keep, and lists its cookie. That is one more
  // cookie than sluiced holds, not a violation (it stopped sluiced, all
  // forwarding with it). A new worker has no such listener.
  ListenerEscrow escrow;
  wire::ListenerSpec s1, s2;
  UniqueFd l1 = listener(&s1), l2 = listener(&s2);
  ASSERT_TRUE(escrow.keep(l1.get(), s1, 1).ok());
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd r(p[0]), w(p[1]);
  EXPECT_FALSE(escrow.keep(r.get(), s2, 1).ok());  // no copy kept (no cookie here)
  const uint64_t a = cookie(l1.get()), b = cookie(l2.get());
  const std::vector<uint64_t> both = {a < b ? a : b, a < b ? b : a};
  EXPECT_TRUE(escrow.store(store(2), memfd("x", kAllSeals), cookies(both)).ok());
  EXPECT_EQ(escrow.size(), 1u);
  escrow.new_worker();
  EXPECT_FALSE(escrow.store(store(1), memfd("x", kAllSeals), cookies(both)).ok());
}

/// SO_REUSEPORT of the socket `fd` (-1 when it cannot be read).
int reuseport(int fd) {
  int on = -1;
  socklen_t len = sizeof(on);
  getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len);
  return on;
}

TEST(ListenerEscrow, ARebindSharesThePortOfTheListenerItReplacesAndNoOther) {
  const SocketTables tables = open_socket_tables("/proc/self/net");
  ListenerEscrow escrow;
  wire::ListenerSpec s1, s2;
  UniqueFd l1 = listener(&s1), l2 = listener(&s2);
  ASSERT_TRUE(escrow.keep(l1.get(), s1, 1).ok());
  ASSERT_TRUE(escrow.keep(l2.get(), s2, 1).ok());
  // 127.0.0.1:P giving way to 0.0.0.0:P, and a rebind of a port sluiced
  // holds no listener of (the port of l2, but UDP).
  wire::ListenerSpec entries[2] = {s1, s2};
  std::memset(entries[0].addr, 0, sizeof(entries[0].addr));
  entries[0].addr[10] = entries[0].addr[11] = 0xff;  // ::ffff:0.0.0.0
  entries[0].flags = wire::kListenerReplaces;
  entries[1].proto = static_cast<uint8_t>(wire::WireProto::kUdp);
  entries[1].flags = wire::kListenerReplaces;
  EXPECT_EQ(escrow.share_ports(entries, check_holders_on(tables, tables)), 1u);
  EXPECT_EQ(reuseport(l1.get()), 1);
  EXPECT_EQ(reuseport(l2.get()), 0);
  EXPECT_EQ(entries[0].flags, wire::kListenerReplaces);
  EXPECT_EQ(entries[1].flags, 0u) << "a rebind that replaces nothing of sluiced's must not share";
  // The successor binds while the old listener still listens.
  auto wildcard = open_listener(entries[0]);
  ASSERT_TRUE(wildcard.ok()) << wildcard.error().message;
  EXPECT_EQ(reuseport(wildcard->get()), 1);
  // Without the flag, the kernel refuses the clash.
  wire::ListenerSpec plain = entries[0];
  plain.flags = 0;
  wire::ListenerSpec s3;
  UniqueFd l3 = listener(&s3);
  plain.port = s3.port;
  auto refused = open_listener(plain);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().err, EADDRINUSE);
}

TEST(ListenerEscrow, ARebindOfTheListenerItselfSharesNothing) {
  // A worker that asks, flagged as a rebind, for the very listener sluiced
  // holds replaces nothing: neither copy may become shareable, or any
  // process of sluiced's user could bind beside it with SO_REUSEPORT.
  const SocketTables tables = open_socket_tables("/proc/self/net");
  ListenerEscrow escrow;
  wire::ListenerSpec s1;
  UniqueFd l1 = listener(&s1);
  const wire::ListenerSpec held = spec_v4(127, 0, 0, 1, s1.port);
  ASSERT_TRUE(escrow.keep(l1.get(), held, 1).ok());
  wire::ListenerSpec entries[1] = {held};
  entries[0].flags = wire::kListenerReplaces;
  EXPECT_EQ(escrow.share_ports(entries, check_holders_on(tables, tables)), 0u);
  EXPECT_EQ(entries[0].flags, 0u);
  EXPECT_EQ(reuseport(l1.get()), 0);
  EXPECT_TRUE(same_listener(entries[0], held));
  EXPECT_FALSE(same_listener(spec_v4(127, 0, 0, 2, s1.port), held));
}

TEST(ListenerEscrow, SpecsClashAsTheKernelSays) {
  const wire::ListenerSpec any = spec_v4(0, 0, 0, 0, 80), lo = spec_v4(127, 0, 0, 1, 80),
                           lo2 = spec_v4(127, 0, 0, 2, 80);
  EXPECT_TRUE(specs_clash(any, lo));
  EXPECT_TRUE(specs_clash(lo, any));
  EXPECT_TRUE(specs_clash(lo, lo));
  EXPECT_FALSE(specs_clash(lo, lo2));  // two addresses: both may be bound
  EXPECT_FALSE(specs_clash(lo, spec_v4(127, 0, 0, 1, 81)));
  wire::ListenerSpec udp = lo;
  udp.proto = static_cast<uint8_t>(wire::WireProto::kUdp);
  EXPECT_FALSE(specs_clash(lo, udp));
  wire::ListenerSpec splice = lo;
  splice.flags = wire::kListenerSplice;
  EXPECT_FALSE(specs_clash(lo, splice));  // another namespace
  wire::ListenerSpec v6any{};
  v6any.proto = lo.proto;
  v6any.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
  v6any.port = 80;
  EXPECT_FALSE(specs_clash(v6any, any));  // [::] V6ONLY=1 leaves IPv4 alone
  wire::ListenerSpec dual = v6any;
  dual.flags = wire::kListenerDualStack;
  EXPECT_TRUE(specs_clash(dual, lo));
  EXPECT_TRUE(specs_clash(dual, v6any));
  wire::ListenerSpec eth0 = any, eth1 = any;
  std::strcpy(eth0.ifname, "eth0");
  std::strcpy(eth1.ifname, "eth1");
  EXPECT_FALSE(specs_clash(eth0, eth1));
  EXPECT_TRUE(specs_clash(eth0, any));
}

TEST(ListenerEscrow, ARebindThatReplacesNoListenerOfSluicedsSharesNothing) {
  // sluiced holds 127.0.0.1:P. A rebind at 127.0.0.2:P clashes with none of
  // its listeners (it may be another program's address): no SO_REUSEPORT
  // anywhere, and the entry opens as any other.
  const SocketTables tables = open_socket_tables("/proc/self/net");
  ListenerEscrow escrow;
  wire::ListenerSpec s1;
  UniqueFd l1 = listener(&s1);
  const wire::ListenerSpec held = spec_v4(127, 0, 0, 1, s1.port);
  ASSERT_TRUE(escrow.keep(l1.get(), held, 1).ok());
  wire::ListenerSpec entries[1] = {spec_v4(127, 0, 0, 2, s1.port)};
  entries[0].flags = wire::kListenerReplaces;
  EXPECT_EQ(escrow.share_ports(entries, check_holders_on(tables, tables)), 0u);
  EXPECT_EQ(entries[0].flags, 0u);
  EXPECT_EQ(reuseport(l1.get()), 0);
}

}  // namespace
}  // namespace sluice
