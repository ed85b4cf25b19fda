// What sluiced reads from a socket (see socket_facts.h).
#include "broker/socket_facts.h"

#include <sys/socket.h>

#include <cerrno>

namespace sluice {

int sockopt_int(int fd, int opt) noexcept {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(fd, SOL_SOCKET, opt, &value, &len) != 0) return -1;
  return value;
}

Result<uint64_t> read_socket_cookie(int fd) {
  uint64_t cookie = 0;
  socklen_t len = sizeof(cookie);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) {
    int err = errno;
    return SysErr(err, "getsockopt(SO_COOKIE)");
  }
  return cookie;
}

}  // namespace sluice
