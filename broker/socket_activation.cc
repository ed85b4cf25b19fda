// Socket activation (see socket_activation.h).
#include "broker/socket_activation.h"

#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/strings.h"
#include "broker/socket_facts.h"

namespace sluice {
namespace {

/// Limit: a name's length, systemd's FDNAME_MAX.
constexpr size_t kMaxFdNameLen = 255;

/// Parses a positive decimal number of at most 9 digits (pids and counts);
/// returns -1 for anything else.
long parse_small(const char* text) {
  if (text == nullptr || *text == '\0' || std::strlen(text) > 9) return -1;
  long value = 0;
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return -1;
    value = value * 10 + (*p - '0');
  }
  return value;
}

}  // namespace

Result<std::vector<std::string>> parse_listen_fdnames(const char* names, int count) {
  std::vector<std::string> out;
  if (names == nullptr) {
    out.assign(static_cast<size_t>(count), "unknown");
    return out;
  }
  std::string_view rest(names);
  for (;;) {
    const size_t colon = rest.find(':');
    std::string_view name = rest.substr(0, colon);
    if (name.empty() || name.size() > kMaxFdNameLen) {
      return Err(EINVAL, "LISTEN_FDNAMES has an empty or over-long name");
    }
    for (char c : name) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
        return Err(EINVAL, "LISTEN_FDNAMES holds a control character");
      }
    }
    out.emplace_back(name);
    if (out.size() > static_cast<size_t>(count)) break;
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  if (out.size() != static_cast<size_t>(count)) {
    return Err(EINVAL, "LISTEN_FDNAMES names " + std::to_string(out.size()) +
                           " fd(s), LISTEN_FDS says " + std::to_string(count));
  }
  return out;
}

Result<ListenEnv> parse_listen_env(const char* pid, const char* fds, const char* names,
                                   pid_t self) {
  ListenEnv env;
  if (pid == nullptr) return env;
  const long for_pid = parse_small(pid);
  if (for_pid <= 0) return Err(EINVAL, "LISTEN_PID is not a pid");
  if (for_pid != static_cast<long>(self)) return env;
  const long count = parse_small(fds);
  if (count < 0) return Err(EINVAL, "LISTEN_FDS is not a number");
  if (count > kMaxListenFds) {
    return Err(EINVAL, "LISTEN_FDS is " + std::to_string(count) + ", more than the " +
                           std::to_string(kMaxListenFds) + " sluiced accepts");
  }
  auto parsed = parse_listen_fdnames(names, static_cast<int>(count));
  if (!parsed) return Err(parsed.error());
  env.count = static_cast<int>(count);
  env.names = std::move(*parsed);
  return env;
}

Result<void> check_activated_socket(int fd, const std::string& name) {
  const std::string what =
      "the socket-activated fd " + std::to_string(fd) + " named " + sanitize(name, 64);
  const int domain = sockopt_int(fd, SO_DOMAIN);
  if (domain < 0) {
    int err = errno;
    return Err(err, what + " is not a socket (" + errno_text(err) +
                        "); give it with ListenStream=/path in the .socket unit");
  }
  const int type = sockopt_int(fd, SO_TYPE);
  const int listening = sockopt_int(fd, SO_ACCEPTCONN);
  if (domain != AF_UNIX || type != SOCK_STREAM) {
    return Err(EPROTO, what + " is a socket of family " + std::to_string(domain) + " and type " +
                           std::to_string(type) +
                           ", not a UNIX stream socket; use ListenStream=/path (not "
                           "ListenDatagram= or a port) in the .socket unit");
  }
  if (listening != 1) {
    return Err(EPROTO, what +
                           " is a UNIX stream socket that does not listen; use "
                           "ListenStream= with Accept=no in the .socket unit");
  }
  return Ok();
}

std::string socket_path_of(int fd) {
  sockaddr_un addr = {};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      len <= offsetof(sockaddr_un, sun_path) || addr.sun_path[0] == '\0') {
    return "";
  }
  return std::string(addr.sun_path, strnlen(addr.sun_path, sizeof(addr.sun_path)));
}

void unset_service_manager_env() {
  for (const char* name : {"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET",
                           "WATCHDOG_USEC", "WATCHDOG_PID"}) {
    ::unsetenv(name);
  }
}

}  // namespace sluice
