// The service manager's file-descriptor store: names, messages, and the
// checks of what comes back (broker/fd_store.h).
#include "broker/fd_store.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "base/scm_rights.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// The int value of socket option `opt` (SOL_SOCKET) of `fd`, or -1.
int sockopt_int(int fd, int opt) {
  int value = 0;
  socklen_t len = sizeof(value);
  if (::getsockopt(fd, SOL_SOCKET, opt, &value, &len) != 0) return -1;
  return value;
}

/// The local port of the bound socket `fd`, or 0 when unbound or unknown.
uint16_t local_port(int fd) {
  sockaddr_storage addr = {};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return 0;
  if (addr.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
  return 0;
}

}  // namespace

std::string stored_listener_name(uint64_t cookie) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, cookie);
  return std::string(kStoredListenerPrefix) + hex;
}

std::string stored_state_name(uint64_t sequence) {
  return std::string(kStoredStatePrefix) + std::to_string(sequence);
}

std::optional<uint64_t> parse_stored_listener_name(std::string_view name) {
  if (name.substr(0, kStoredListenerPrefix.size()) != kStoredListenerPrefix) return std::nullopt;
  std::string_view hex = name.substr(kStoredListenerPrefix.size());
  if (hex.size() != 16) return std::nullopt;
  uint64_t cookie = 0;
  for (char c : hex) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    cookie = cookie << 4 | static_cast<uint64_t>(digit);
  }
  return cookie;
}

std::optional<uint64_t> parse_stored_state_name(std::string_view name) {
  if (name.substr(0, kStoredStatePrefix.size()) != kStoredStatePrefix) return std::nullopt;
  std::string_view digits = name.substr(kStoredStatePrefix.size());
  if (digits.empty() || digits.size() > 20 || (digits.size() > 1 && digits[0] == '0')) {
    return std::nullopt;
  }
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

std::string fd_store_message(std::string_view name) {
  return "FDSTORE=1\nFDNAME=" + std::string(name);
}

std::string fd_remove_message(std::string_view name) {
  return "FDSTOREREMOVE=1\nFDNAME=" + std::string(name);
}

Result<void> fd_store_put(int notify_fd, std::string_view name, int fd) noexcept {
  const std::string msg = fd_store_message(name);
  const int fds[] = {fd};
  return send_message(notify_fd, msg.data(), msg.size(), fds, MSG_DONTWAIT);
}

Result<void> fd_store_remove(int notify_fd, std::string_view name) noexcept {
  const std::string msg = fd_remove_message(name);
  // A connected socket: send() is sendto() with no address.
  const ssize_t n = ::send(notify_fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0) {
    int err = errno;
    return SysErr(err, "removing " + std::string(name) + " from the service manager's store");
  }
  return Ok();
}

Result<void> check_stored_listener(int fd, uint64_t cookie) {
  const std::string what = "the stored listener on fd " + std::to_string(fd);
  const int domain = sockopt_int(fd, SO_DOMAIN);
  if (domain < 0) {
    int err = errno;
    return Err(err, what + " is not a socket (" + errno_text(err) + ")");
  }
  if (domain != AF_INET && domain != AF_INET6) {
    return Err(EPROTO,
               what + " is a socket of family " + std::to_string(domain) + ", not IPv4 or IPv6");
  }
  const int type = sockopt_int(fd, SO_TYPE);
  if (type == SOCK_STREAM && sockopt_int(fd, SO_ACCEPTCONN) != 1) {
    return Err(EPROTO, what + " is a TCP socket that does not listen");
  }
  if (type != SOCK_STREAM && type != SOCK_DGRAM) {
    return Err(EPROTO,
               what + " is a socket of type " + std::to_string(type) + ", neither TCP nor UDP");
  }
  if (local_port(fd) == 0) return Err(EPROTO, what + " is bound to no port");
  uint64_t actual = 0;
  socklen_t len = sizeof(actual);
  if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &actual, &len) != 0) {
    int err = errno;
    return SysErr(err, what + ": getsockopt(SO_COOKIE)");
  }
  if (actual != cookie) {
    return Err(EPROTO, what + " has another socket's name (its cookie is " +
                           stored_listener_name(actual) + ")");
  }
  return Ok();
}

StoredFds take_stored_fds(std::vector<UniqueFd>& fds, const std::vector<std::string>& names) {
  StoredFds out;
  std::map<uint64_t, size_t> seen;  // cookie -> index in out.listeners
  const size_t n = std::min(fds.size(), names.size());
  for (size_t i = 0; i < n; ++i) {
    const std::string& name = names[i];
    if (auto cookie = parse_stored_listener_name(name)) {
      UniqueFd fd = std::move(fds[i]);
      if (auto ok = check_stored_listener(fd.get(), *cookie); !ok) {
        out.dropped.push_back(name + ": " + ok.error().message + "; closed");
        continue;
      }
      // The manager keeps one copy of a socket however often it is stored,
      // but a second entry must never become a second listener.
      if (seen.count(*cookie) != 0) {
        out.dropped.push_back(name + ": stored twice; the copy is closed");
        continue;
      }
      seen[*cookie] = out.listeners.size();
      out.listeners.push_back({*cookie, std::move(fd)});
    } else if (auto sequence = parse_stored_state_name(name)) {
      UniqueFd fd = std::move(fds[i]);
      if (out.state.valid() && *sequence <= out.state_sequence) {
        out.dropped.push_back(name + ": an older state than " +
                              stored_state_name(out.state_sequence) + "; closed");
        continue;
      }
      if (out.state.valid()) {
        out.dropped.push_back(stored_state_name(out.state_sequence) + ": an older state than " +
                              name + "; closed");
      }
      out.state = std::move(fd);
      out.state_sequence = *sequence;
    }
  }
  return out;
}

}  // namespace sluice
