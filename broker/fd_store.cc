// The service manager's file-descriptor store: names, messages, and the
// checks of what comes back (broker/fd_store.h).
#include "broker/fd_store.h"

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <set>

#include "base/scm_rights.h"
#include "base/strings.h"
#include "broker/socket_facts.h"

namespace sluice {
namespace {

/// True when the socket `fd` is bound to the family, address and port of
/// `spec` (getsockname).
bool bound_as(int fd, const wire::ListenerSpec& spec) {
  sockaddr_storage addr = {};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  if (addr.ss_family == AF_INET && spec.family == static_cast<uint8_t>(wire::WireFamily::kInet)) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    return ntohs(in->sin_port) == spec.port &&
           std::memcmp(&in->sin_addr, spec.addr + 12, sizeof(in->sin_addr)) == 0;  // v4-mapped
  }
  if (addr.ss_family == AF_INET6 && spec.family == static_cast<uint8_t>(wire::WireFamily::kInet6)) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    return ntohs(in6->sin6_port) == spec.port &&
           std::memcmp(&in6->sin6_addr, spec.addr, sizeof(in6->sin6_addr)) == 0;
  }
  return false;
}

/// The value of the lower-case hex digit `c`, or -1.
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

std::string stored_listener_name(uint64_t cookie, const wire::ListenerSpec& spec) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016" PRIx64, cookie);
  std::string name = std::string(kStoredListenerPrefix) + hex + "-";
  const auto* bytes = reinterpret_cast<const unsigned char*>(&spec);
  static constexpr char kDigits[] = "0123456789abcdef";
  for (size_t i = 0; i < sizeof(spec); ++i) {
    name += kDigits[bytes[i] >> 4];
    name += kDigits[bytes[i] & 15];
  }
  return name;
}

std::string stored_state_name(uint64_t sequence) {
  return std::string(kStoredStatePrefix) + std::to_string(sequence);
}

std::optional<StoredListenerName> parse_stored_listener_name(std::string_view name) {
  if (name.substr(0, kStoredListenerPrefix.size()) != kStoredListenerPrefix) return std::nullopt;
  std::string_view rest = name.substr(kStoredListenerPrefix.size());
  constexpr size_t kSpecHex = 2 * sizeof(wire::ListenerSpec);
  if (rest.size() != 16 + 1 + kSpecHex || rest[16] != '-') return std::nullopt;
  StoredListenerName out;
  for (size_t i = 0; i < 16; ++i) {
    const int digit = hex_digit(rest[i]);
    if (digit < 0) return std::nullopt;
    out.cookie = out.cookie << 4 | static_cast<uint64_t>(digit);
  }
  auto* bytes = reinterpret_cast<unsigned char*>(&out.spec);
  for (size_t i = 0; i < sizeof(out.spec); ++i) {
    const int hi = hex_digit(rest[17 + 2 * i]), lo = hex_digit(rest[18 + 2 * i]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return out;
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

Result<void> check_stored_listener(int fd, const StoredListenerName& name) {
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
  const auto proto = type == SOCK_STREAM ? wire::WireProto::kTcp : wire::WireProto::kUdp;
  if (name.spec.proto != static_cast<uint8_t>(proto) || !bound_as(fd, name.spec)) {
    return Err(EPROTO, what + " is not bound as its name says (protocol, family, address or port)");
  }
  auto actual = read_socket_cookie(fd);
  if (!actual) return Err(actual.error().err, what + ": " + actual.error().message);
  if (*actual != name.cookie) {
    return Err(EPROTO, what + " is another socket than its name says (cookie " +
                           std::to_string(*actual) + ", not " + std::to_string(name.cookie) + ")");
  }
  return Ok();
}

StoredFds take_stored_fds(std::vector<UniqueFd>& fds, const std::vector<std::string>& names) {
  StoredFds out;
  std::set<uint64_t> seen;  // cookies taken
  const size_t n = std::min(fds.size(), names.size());
  for (size_t i = 0; i < n; ++i) {
    const std::string& name = names[i];
    if (auto listener = parse_stored_listener_name(name)) {
      UniqueFd fd = std::move(fds[i]);
      if (auto ok = check_stored_listener(fd.get(), *listener); !ok) {
        out.dropped.push_back(name + ": " + ok.error().message + "; closed");
        out.stale.push_back(FdStoreKey::listener(listener->cookie, listener->spec));
        continue;
      }
      // The manager keeps one copy of a socket however often it is stored,
      // but a second entry must never become a second listener.
      if (seen.count(listener->cookie) != 0) {
        out.dropped.push_back(name + ": stored twice; the copy is closed");
        continue;
      }
      seen.insert(listener->cookie);
      out.listeners.push_back({*listener, std::move(fd)});
    } else if (auto sequence = parse_stored_state_name(name)) {
      UniqueFd fd = std::move(fds[i]);
      if (out.state.valid() && *sequence <= out.state_sequence) {
        out.dropped.push_back(name + ": an older state than " +
                              stored_state_name(out.state_sequence) + "; closed");
        out.stale.push_back(FdStoreKey::worker_state(*sequence));
        continue;
      }
      if (out.state.valid()) {
        out.dropped.push_back(stored_state_name(out.state_sequence) + ": an older state than " +
                              name + "; closed");
        out.stale.push_back(FdStoreKey::worker_state(out.state_sequence));
      }
      out.state = std::move(fd);
      out.state_sequence = *sequence;
    }
  }
  // FDSTOREREMOVE=1 drops every descriptor of a name: a name also kept (a
  // listener that failed its check under the cookie of one that passed, a
  // state stored twice under one number) stays in the store.
  std::erase_if(out.stale, [&](const FdStoreKey& key) {
    if (key.state) return out.state.valid() && key.id == out.state_sequence;
    return seen.count(key.id) != 0;
  });
  return out;
}

}  // namespace sluice
