// The service manager's file-descriptor store (broker/fd_store.h): names,
// the two messages as a manager receives them (a real datagram socket, the
// descriptor in SCM_RIGHTS), the checks of stored listeners on real sockets,
// and how LISTEN_FDS entries are sorted at start.
#include "broker/fd_store.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/scm_rights.h"

namespace sluice {
namespace {

/// A loopback IPv4 socket of `type`, bound to an ephemeral port, listening
/// when `listen_too`.
UniqueFd bound_socket(int type, bool listen_too) {
  UniqueFd fd(socket(AF_INET, type | SOCK_CLOEXEC, 0));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  if (listen_too) {
    EXPECT_EQ(listen(fd.get(), 8), 0);
  }
  return fd;
}

/// The SO_COOKIE of `fd`.
uint64_t cookie_of(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len), 0);
  return cookie;
}

/// The spec of the loopback IPv4 socket `fd` of `type`, as the broker
/// would have opened it.
wire::ListenerSpec spec_of(int fd, int type) {
  wire::ListenerSpec spec = {};
  spec.proto =
      static_cast<uint8_t>(type == SOCK_STREAM ? wire::WireProto::kTcp : wire::WireProto::kUdp);
  spec.family = static_cast<uint8_t>(wire::WireFamily::kInet);
  sockaddr_in addr = {};
  socklen_t len = sizeof(addr);
  EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  spec.port = ntohs(addr.sin_port);
  // IPv4 as the wire carries it: v4-mapped (::ffff:a.b.c.d).
  spec.addr[10] = 0xff;
  spec.addr[11] = 0xff;
  std::memcpy(spec.addr + 12, &addr.sin_addr, sizeof(addr.sin_addr));
  return spec;
}

/// The name `fd` (of `type`) is stored under.
StoredListenerName name_of(int fd, int type) {
  return {cookie_of(fd), spec_of(fd, type)};
}

/// True when `a` and `b` are descriptors of the same open file.
bool same_file(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

TEST(FdStore, NamesRoundTripAndNothingElseParses) {
  wire::ListenerSpec spec = {};
  spec.proto = static_cast<uint8_t>(wire::WireProto::kTcp);
  spec.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
  spec.port = 8080;
  spec.flags = wire::kListenerDualStack;
  spec.addr[15] = 1;
  std::memcpy(spec.ifname, "eth0", 5);
  const std::string name = stored_listener_name(0x1234abcdULL, spec);
  EXPECT_EQ(name.substr(0, 26), "listener-000000001234abcd-");
  EXPECT_EQ(name.size(), 26 + 2 * sizeof(spec));
  auto parsed = parse_stored_listener_name(name);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->cookie, 0x1234abcdULL);
  EXPECT_EQ(std::memcmp(&parsed->spec, &spec, sizeof(spec)), 0);
  EXPECT_EQ(parse_stored_listener_name(stored_listener_name(UINT64_MAX, spec))->cookie, UINT64_MAX);
  std::string upper = name;
  upper[20] = 'A';
  std::string no_dash = name;
  no_dash[25] = '0';
  std::string bad_spec = name;
  bad_spec.back() = 'g';
  for (const std::string& bad :
       {std::string("listener-"), name.substr(0, name.size() - 1), name + "0", upper, no_dash,
        bad_spec, std::string("control"), "L" + name.substr(1), std::string("state-1")}) {
    EXPECT_FALSE(parse_stored_listener_name(bad)) << bad;
  }
  EXPECT_EQ(stored_state_name(42), "state-42");
  EXPECT_EQ(parse_stored_state_name("state-42"), 42u);
  EXPECT_EQ(parse_stored_state_name("state-0"), 0u);
  EXPECT_EQ(parse_stored_state_name("state-18446744073709551615"), UINT64_MAX);
  for (const char* bad : {"state-", "state-042", "state-18446744073709551616", "state--1",
                          "state-1x", "state-99999999999999999999", "pesto"}) {
    EXPECT_FALSE(parse_stored_state_name(bad)) << bad;
  }
  // systemd refuses a name longer than 255 bytes or holding ':'.
  EXPECT_LE(name.size(), 255u);
  EXPECT_EQ(name.find(':'), std::string::npos);
}

TEST(FdStore, TheManagerReceivesTheDescriptorWithItsNameAndTheRemoval) {
  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd manager(pair[0]), sluiced(pair[1]);
  UniqueFd listener = bound_socket(SOCK_STREAM, true);
  const std::string name =
      stored_listener_name(cookie_of(listener.get()), spec_of(listener.get(), SOCK_STREAM));

  ASSERT_TRUE(fd_store_put(sluiced.get(), name, listener.get()).ok());
  char buf[512];
  auto got = receive_message(manager.get(), buf, sizeof(buf), 4);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(std::string(buf, got->len), "FDSTORE=1\nFDNAME=" + name);
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_TRUE(same_file(got->fds[0].get(), listener.get()));
  EXPECT_EQ(cookie_of(got->fds[0].get()), cookie_of(listener.get()));

  ASSERT_TRUE(fd_store_remove(sluiced.get(), name).ok());
  got = receive_message(manager.get(), buf, sizeof(buf), 4);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(std::string(buf, got->len), "FDSTOREREMOVE=1\nFDNAME=" + name);
  EXPECT_TRUE(got->fds.empty());

  // A manager that is gone: the error comes back, nothing blocks.
  manager.reset();
  EXPECT_FALSE(fd_store_put(sluiced.get(), name, listener.get()).ok());
  EXPECT_FALSE(fd_store_remove(sluiced.get(), name).ok());
}

TEST(FdStore, AStoredListenerMustBeTheSocketItsNameSays) {
  UniqueFd tcp = bound_socket(SOCK_STREAM, true);
  EXPECT_TRUE(check_stored_listener(tcp.get(), name_of(tcp.get(), SOCK_STREAM)).ok());
  UniqueFd udp = bound_socket(SOCK_DGRAM, false);
  EXPECT_TRUE(check_stored_listener(udp.get(), name_of(udp.get(), SOCK_DGRAM)).ok());

  // Another socket's cookie, a port or a protocol that differs.
  StoredListenerName other = name_of(tcp.get(), SOCK_STREAM);
  other.cookie = cookie_of(udp.get());
  auto wrong = check_stored_listener(tcp.get(), other);
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.error().message.find("another socket than its name says"), std::string::npos);
  StoredListenerName moved = name_of(tcp.get(), SOCK_STREAM);
  moved.spec.port = static_cast<uint16_t>(moved.spec.port + 1);
  auto port = check_stored_listener(tcp.get(), moved);
  ASSERT_FALSE(port.ok());
  EXPECT_NE(port.error().message.find("not bound as its name says"), std::string::npos);
  EXPECT_FALSE(check_stored_listener(udp.get(), name_of(udp.get(), SOCK_STREAM)).ok());

  UniqueFd quiet = bound_socket(SOCK_STREAM, false);
  auto not_listening = check_stored_listener(quiet.get(), name_of(quiet.get(), SOCK_STREAM));
  ASSERT_FALSE(not_listening.ok());
  EXPECT_NE(not_listening.error().message.find("does not listen"), std::string::npos);

  UniqueFd unbound(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  wire::ListenerSpec port_zero = spec_of(udp.get(), SOCK_DGRAM);
  auto no_port = check_stored_listener(unbound.get(), {cookie_of(unbound.get()), port_zero});
  ASSERT_FALSE(no_port.ok());
  EXPECT_NE(no_port.error().message.find("not bound as its name says"), std::string::npos);

  int pair[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
  UniqueFd a(pair[0]), b(pair[1]);
  auto unix_socket = check_stored_listener(a.get(), {cookie_of(a.get()), port_zero});
  ASSERT_FALSE(unix_socket.ok());
  EXPECT_NE(unix_socket.error().message.find("not IPv4 or IPv6"), std::string::npos);

  UniqueFd file(open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto not_socket = check_stored_listener(file.get(), {1, port_zero});
  ASSERT_FALSE(not_socket.ok());
  EXPECT_NE(not_socket.error().message.find("not a socket"), std::string::npos);
}

TEST(FdStore, StartUpTakesStoredListenersAndTheNewestStateAndLeavesTheRest) {
  UniqueFd l1 = bound_socket(SOCK_STREAM, true);
  UniqueFd l2 = bound_socket(SOCK_DGRAM, false);
  UniqueFd impostor = bound_socket(SOCK_STREAM, true);
  const StoredListenerName n1 = name_of(l1.get(), SOCK_STREAM), n2 = name_of(l2.get(), SOCK_DGRAM);
  StoredListenerName false_name = name_of(impostor.get(), SOCK_STREAM);
  false_name.cookie = n2.cookie + 1000;
  UniqueFd control(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd old_state(open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd new_state(open("/dev/zero", O_RDONLY | O_CLOEXEC));
  const int new_state_raw = new_state.get(), control_raw = control.get();

  std::vector<UniqueFd> fds;
  std::vector<std::string> names;
  auto add = [&](UniqueFd fd, std::string name) {
    fds.push_back(std::move(fd));
    names.push_back(std::move(name));
  };
  UniqueFd l1_copy(dup(l1.get()));
  add(std::move(control), "control");
  add(std::move(old_state), "state-6");
  add(std::move(l1), stored_listener_name(n1.cookie, n1.spec));
  add(std::move(new_state), "state-7");
  add(std::move(l2), stored_listener_name(n2.cookie, n2.spec));
  add(std::move(impostor), stored_listener_name(false_name.cookie, false_name.spec));
  add(std::move(l1_copy), stored_listener_name(n1.cookie, n1.spec));  // stored twice

  StoredFds stored = take_stored_fds(fds, names);
  ASSERT_EQ(stored.listeners.size(), 2u);
  EXPECT_EQ(stored.listeners[0].name.cookie, n1.cookie);
  EXPECT_EQ(stored.listeners[1].name.cookie, n2.cookie);
  EXPECT_EQ(stored.listeners[1].name.spec.port, n2.spec.port);
  EXPECT_EQ(stored.state.get(), new_state_raw);
  EXPECT_EQ(stored.state_sequence, 7u);
  ASSERT_EQ(stored.dropped.size(), 3u);
  EXPECT_NE(stored.dropped[0].find("state-6: an older state than state-7"), std::string::npos)
      << stored.dropped[0];
  EXPECT_NE(stored.dropped[1].find("another socket than its name says"), std::string::npos)
      << stored.dropped[1];
  EXPECT_NE(stored.dropped[2].find("stored twice"), std::string::npos) << stored.dropped[2];
  // The store is to forget what was closed, but not the name of the copy
  // stored twice: removing it would remove the listener kept.
  ASSERT_EQ(stored.stale.size(), 2u);
  EXPECT_TRUE(stored.stale[0].state);
  EXPECT_EQ(stored.stale[0].id, 6u);
  EXPECT_FALSE(stored.stale[1].state);
  EXPECT_EQ(stored.stale[1].name(), stored_listener_name(false_name.cookie, false_name.spec));
  // The socket unit's own descriptor is left where it was.
  ASSERT_TRUE(fds[0].valid());
  EXPECT_EQ(fds[0].get(), control_raw);
  for (size_t i = 1; i < fds.size(); ++i) EXPECT_FALSE(fds[i].valid()) << names[i];
}

TEST(FdStore, ANameAlsoKeptIsNeverStale) {
  // Another socket under the name of a listener that is also stored: it is
  // closed, but removing its name would remove the listener kept too.
  UniqueFd l1 = bound_socket(SOCK_STREAM, true);
  UniqueFd impostor = bound_socket(SOCK_STREAM, true);
  const StoredListenerName n1 = name_of(l1.get(), SOCK_STREAM);
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(impostor));
  fds.push_back(std::move(l1));
  fds.push_back(UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC)));
  fds.push_back(UniqueFd(open("/dev/null", O_RDONLY | O_CLOEXEC)));
  const std::vector<std::string> names = {stored_listener_name(n1.cookie, n1.spec),
                                          stored_listener_name(n1.cookie, n1.spec), "state-3",
                                          "state-3"};
  StoredFds stored = take_stored_fds(fds, names);
  ASSERT_EQ(stored.listeners.size(), 1u);
  EXPECT_EQ(stored.listeners[0].name.cookie, n1.cookie);
  EXPECT_EQ(stored.state_sequence, 3u);
  EXPECT_EQ(stored.dropped.size(), 2u);
  EXPECT_TRUE(stored.stale.empty()) << stored.stale[0].name();
}

}  // namespace
}  // namespace sluice
