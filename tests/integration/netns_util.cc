#include "tests/integration/netns_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace sluice::test {
namespace {

/// Writes `text` to `path`; returns false on failure.
bool write_file(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

/// The kernel's struct in6_ifreq (linux/ipv6.h, which clashes with glibc's
/// netinet/in.h): the argument of SIOCSIFADDR on an AF_INET6 socket.
struct In6Ifreq {
  struct in6_addr addr;
  uint32_t prefixlen;
  int ifindex;
};

}  // namespace

bool add_address_to_lo(const char* text) {
  struct in_addr v4;
  struct in6_addr v6;
  const bool is_v4 = inet_pton(AF_INET, text, &v4) == 1;
  if (!is_v4 && inet_pton(AF_INET6, text, &v6) != 1) {
    std::fprintf(stderr, "add_address_to_lo: %s is not an address\n", text);
    return false;
  }
  int fd = socket(is_v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    std::perror("socket");
    return false;
  }
  bool ok;
  if (is_v4) {
    // An alias label adds an address; SIOCSIFADDR on "lo" itself would
    // replace 127.0.0.1. The label's number only has to be unused.
    static int next_alias = 1;
    struct ifreq ifr = {};
    std::snprintf(ifr.ifr_name, IFNAMSIZ, "lo:%d", next_alias++);
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ifr.ifr_addr);
    sin->sin_family = AF_INET;
    sin->sin_addr = v4;
    ok = ioctl(fd, SIOCSIFADDR, &ifr) == 0;
    struct ifreq mask = {};
    std::memcpy(mask.ifr_name, ifr.ifr_name, sizeof(mask.ifr_name));
    auto* m = reinterpret_cast<struct sockaddr_in*>(&mask.ifr_netmask);
    m->sin_family = AF_INET;
    m->sin_addr.s_addr = 0xffffffffu;
    ok = ok && ioctl(fd, SIOCSIFNETMASK, &mask) == 0;
  } else {
    // No duplicate address detection: the address is usable at once instead
    // of "tentative" for a second (bind would fail with EADDRNOTAVAIL).
    write_file("/proc/sys/net/ipv6/conf/lo/accept_dad", "0");
    write_file("/proc/sys/net/ipv6/conf/all/accept_dad", "0");
    In6Ifreq req = {};
    req.addr = v6;
    req.prefixlen = 128;
    req.ifindex = static_cast<int>(if_nametoindex("lo"));
    ok = ioctl(fd, SIOCSIFADDR, &req) == 0;
    // Where duplicate address detection could not be turned off, the address
    // is tentative for about a second: wait until it can be bound (at most 5 s,
    // a busy machine), so that callers never see EADDRNOTAVAIL.
    for (int i = 0; ok && i < 100; ++i) {
      int probe = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      struct sockaddr_in6 sin6 = {};
      sin6.sin6_family = AF_INET6;
      sin6.sin6_addr = v6;
      const bool bound =
          probe >= 0 && bind(probe, reinterpret_cast<struct sockaddr*>(&sin6), sizeof(sin6)) == 0;
      if (probe >= 0) close(probe);
      if (bound) break;
      usleep(50000);
    }
  }
  if (!ok) std::perror(text);
  close(fd);
  return ok;
}

bool enter_user_namespace() {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER) != 0) {
    std::perror("unshare(CLONE_NEWUSER)");
    return false;
  }
  if (!write_file("/proc/self/setgroups", "deny") ||
      !write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
      !write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
    std::perror("writing the id maps");
    return false;
  }
  return true;
}

bool enter_net_namespace() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return false;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  bool ok = fd >= 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  if (!ok) std::perror("bringing up lo");
  if (fd >= 0) close(fd);
  return ok;
}

}  // namespace sluice::test
