// sluice_test_container: a stand-in for a rootless container, for the target
// namespace tests. It enters a new user namespace (owned by the user that
// runs it) and a new network namespace with only lo, serves TCP and UDP echo
// on the loopback addresses inside, says "ready PID" on stdout, and exits
// when its stdin closes (the test ends, or the test process dies).
//
// Usage: sluice_test_container [netonly] [addr IP | tcp PORT | udp PORT]...
// `netonly` keeps the caller's user namespace: only a network namespace is
// made (as `ip netns add` or `unshare -n` would), which has no user
// namespace of its own to join.
// `addr` adds IP to the namespace's lo (a container's address, such as
// 10.88.0.5 or fd00::5); every server then listens on the loopback address
// and on each added address of its family. A TCP echo answers every byte it
// reads; a UDP echo answers each datagram with "PORT|" and the datagram (so
// a test sees which server answered).
//
// While it runs, it takes one command per line on stdin and answers each with
// one line on stdout, "ok" or "fail: WHY", so that servers can come and go
// inside (the auto-scan tests):
//   tcp PORT | udp PORT               start an echo server (both families)
//   close tcp PORT | close udp PORT   stop it (connections it accepted stay)
//   ports FIRST LAST                  set the namespace's ephemeral port range
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "tests/integration/netns_util.h"

namespace {

/// Limit: sockets served at once: listeners and connections of one test;
/// the most a test binds is 700 ports, two listeners each (127.0.0.1, ::1),
/// past a worker's descriptor limit (netns_scan_test.cc).
constexpr size_t kMaxFds = 2048;
/// Limit: bytes of one command line; the commands are a few words.
constexpr size_t kMaxCommand = 128;

/// One socket the container serves.
struct Served {
  int fd;
  enum Kind { kTcpListener, kTcpConnection, kUdp } kind;
  uint16_t port;
};

/// Binds a socket of `type` on `addr` (of `family`; nullptr: its loopback)
/// at `port`; -1 on failure.
int bind_at(int family, int type, const char* addr, uint16_t port) {
  int fd = socket(family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_storage ss = {};
  socklen_t len;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (addr != nullptr && inet_pton(AF_INET, addr, &sin->sin_addr) != 1) return -1;
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = in6addr_loopback;
    if (addr != nullptr && inet_pton(AF_INET6, addr, &sin6->sin6_addr) != 1) return -1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    len = sizeof(*sin6);
  }
  // Added addresses are usable at once: add_address_to_lo waited for them.
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&ss), len) != 0 ||
      (type == SOCK_STREAM && listen(fd, 64) != 0)) {
    close(fd);
    return -1;
  }
  return fd;
}

/// Serves one readable socket; returns false when it is done (closed).
bool serve(std::vector<Served>& served, size_t i) {
  Served s = served[i];
  char buf[65536];
  if (s.kind == Served::kTcpListener) {
    int c = accept4(s.fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0 && served.size() < kMaxFds) {
      served.push_back({c, Served::kTcpConnection, s.port});
    } else if (c >= 0) {
      close(c);
    }
    return true;
  }
  if (s.kind == Served::kTcpConnection) {
    ssize_t n = read(s.fd, buf, sizeof(buf));
    if (n <= 0) return false;
    return write(s.fd, buf, static_cast<size_t>(n)) == n;
  }
  struct sockaddr_storage from;
  socklen_t from_len = sizeof(from);
  const std::string prefix = std::to_string(s.port) + "|";
  std::memcpy(buf, prefix.data(), prefix.size());
  ssize_t n = recvfrom(s.fd, buf + prefix.size(), sizeof(buf) - prefix.size(), 0,
                       reinterpret_cast<struct sockaddr*>(&from), &from_len);
  if (n >= 0) {
    sendto(s.fd, buf, prefix.size() + static_cast<size_t>(n), 0,
           reinterpret_cast<struct sockaddr*>(&from), from_len);
  }
  return true;
}

/// The addresses every server listens on: nullptr for the loopback address
/// of each family, then the `addr` arguments.
std::vector<const char*> g_addrs = {nullptr};

/// Starts the echo servers of `proto` ("tcp" or "udp") on `port`, on 127.0.0.1,
/// ::1 and every added address; false (with nothing left bound) when a bind
/// fails.
bool start_servers(std::vector<Served>& served, const std::string& proto, uint16_t port) {
  const bool tcp = proto == "tcp";
  std::vector<Served> added;
  for (int family : {AF_INET, AF_INET6}) {
    for (const char* addr : g_addrs) {
      if (addr != nullptr && (std::strchr(addr, ':') != nullptr) != (family == AF_INET6)) {
        continue;  // an address of the other family
      }
      int fd = bind_at(family, tcp ? SOCK_STREAM : SOCK_DGRAM, addr, port);
      if (fd < 0 || served.size() + added.size() >= kMaxFds) {
        if (fd >= 0) close(fd);
        for (const Served& s : added) close(s.fd);
        return false;
      }
      added.push_back({fd, tcp ? Served::kTcpListener : Served::kUdp, port});
    }
  }
  served.insert(served.end(), added.begin(), added.end());
  return true;
}

/// Runs one command line (see the top of this file); returns the answer.
std::string run_command(std::vector<Served>& served, const std::string& line) {
  char word[16] = {}, proto[16] = {};
  unsigned a = 0, b = 0;
  if (std::sscanf(line.c_str(), "close %15s %u", proto, &a) == 2 && a <= 65535) {
    const Served::Kind kind = std::strcmp(proto, "tcp") == 0 ? Served::kTcpListener : Served::kUdp;
    for (size_t i = served.size(); i-- > 0;) {
      if (served[i].kind == kind && served[i].port == a) {
        close(served[i].fd);
        served.erase(served.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    return "ok";
  }
  if (std::sscanf(line.c_str(), "ports %u %u", &a, &b) == 2) {
    int fd = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY | O_CLOEXEC);
    const std::string text = std::to_string(a) + " " + std::to_string(b);
    bool ok = fd >= 0 && write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    if (fd >= 0) close(fd);
    return ok ? "ok" : std::string("fail: ") + std::strerror(errno);
  }
  if (std::sscanf(line.c_str(), "%15s %u", word, &a) == 2 && a <= 65535 &&
      (std::strcmp(word, "tcp") == 0 || std::strcmp(word, "udp") == 0)) {
    return start_servers(served, word, static_cast<uint16_t>(a))
               ? "ok"
               : std::string("fail: ") + std::strerror(errno);
  }
  return "fail: unknown command";
}

/// Reads what stdin holds, runs each whole line as a command and answers it.
/// Returns false at EOF (the test is over) or on an overlong line.
bool serve_commands(std::vector<Served>& served, std::string& pending) {
  char buf[256];
  ssize_t n = read(0, buf, sizeof(buf));
  if (n <= 0) return false;
  pending.append(buf, static_cast<size_t>(n));
  for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
    std::string answer = run_command(served, pending.substr(0, nl)) + "\n";
    pending.erase(0, nl + 1);
    if (write(1, answer.data(), answer.size()) != static_cast<ssize_t>(answer.size())) return false;
  }
  return pending.size() <= kMaxCommand;
}

}  // namespace

/// Enters the namespaces, binds the servers, says ready, serves until stdin closes.
int main(int argc, char** argv) {
  // "netonly" first: a network namespace of the caller's own user namespace
  // (as `ip netns add` or `unshare -n` makes), not a user namespace of its own.
  const bool net_only = argc > 1 && std::strcmp(argv[1], "netonly") == 0;
  const int first = net_only ? 2 : 1;
  if (!net_only && !sluice::test::enter_user_namespace()) return 1;
  if (!sluice::test::enter_net_namespace()) return 1;
  for (int i = first; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "addr") != 0) continue;
    if (!sluice::test::add_address_to_lo(argv[i + 1])) return 1;
    g_addrs.push_back(argv[i + 1]);
  }
  std::vector<Served> served;
  for (int i = first; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "addr") == 0) continue;
    const uint16_t port = static_cast<uint16_t>(std::atoi(argv[i + 1]));
    if (!start_servers(served, std::strcmp(argv[i], "tcp") == 0 ? "tcp" : "udp", port)) {
      std::perror("sluice_test_container: bind");
      return 1;
    }
  }
  std::printf("ready %d\n", static_cast<int>(getpid()));
  std::fflush(stdout);
  std::string pending;
  for (;;) {
    std::vector<struct pollfd> fds = {{0, POLLIN, 0}};
    for (const Served& s : served) fds.push_back({s.fd, POLLIN, 0});
    if (poll(fds.data(), fds.size(), -1) < 0) continue;
    // stdin closed (the test is over), or a command. A command may change
    // the servers: poll again (level-triggered, nothing is lost).
    if (fds[0].revents != 0) {
      if (!serve_commands(served, pending)) return 0;
      continue;
    }
    for (size_t i = served.size(); i-- > 0;) {
      if (fds[i + 1].revents == 0) continue;
      if (!serve(served, i)) {
        close(served[i].fd);
        served.erase(served.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
  }
}
