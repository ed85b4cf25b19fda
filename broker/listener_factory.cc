// The listener factory (see listener_factory.h).
#include "broker/listener_factory.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"

namespace sluice {
namespace {

/// The loopback device's index in every network namespace (the kernel's
/// LOOPBACK_IFINDEX: it registers loopback first in each one).
constexpr int kLoopbackIfIndex = 1;

/// Returns an Error for the syscall `what` that just failed, carrying errno.
Unexpected syscall_error(const char* what) {
  int err = errno != 0 ? errno : EIO;
  return SysErr(err, std::string(what));
}

/// Sets an int socket option; fails with the errno of setsockopt.
Result<void> set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof(value)) != 0) return syscall_error(what);
  return Ok();
}

}  // namespace

Result<UniqueFd> open_listener(const wire::ListenerSpec& spec) noexcept {
  const bool tcp = spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp);
  const bool v4 = spec.family == static_cast<uint8_t>(wire::WireFamily::kInet);
  const int type = (tcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
  UniqueFd fd(::socket(v4 ? AF_INET : AF_INET6, type, 0));
  if (!fd.valid()) return syscall_error("socket");

  if (tcp) {
    // SO_REUSEADDR lets a port whose previous listener was closed be bound
    // again while that listener's old connections sit in TIME_WAIT, which a
    // table switch or restart would otherwise hit as EADDRINUSE. It does not
    // allow two listeners on one port (that would be SO_REUSEPORT).
    auto r = set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "setsockopt(SO_REUSEADDR)");
    if (!r) return Err(r.error());
    // Accepted connections inherit these from the listener, so the worker
    // pays no syscall per connection for them: no Nagle delay (the client
    // already batched its writes; a forwarder must not add a delay), and
    // keepalive, so a client that vanished frees its connection (timing:
    // the net.ipv4.tcp_keepalive_* sysctls).
    r = set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "setsockopt(TCP_NODELAY)");
    if (r) r = set_int_option(fd.get(), SOL_SOCKET, SO_KEEPALIVE, 1, "setsockopt(SO_KEEPALIVE)");
    if (!r) return Err(r.error());
  }
  if (!tcp) {
    // The worker answers each client from the address it sent to, which only
    // the datagram's pktinfo tells on a wildcard socket. Set before bind, so
    // no datagram is ever queued without it. On a dual-stack socket
    // IPV6_RECVPKTINFO covers IPv4 too (as a v4-mapped address).
    auto r = v4 ? set_int_option(fd.get(), IPPROTO_IP, IP_PKTINFO, 1, "setsockopt(IP_PKTINFO)")
                : set_int_option(fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, 1,
                                 "setsockopt(IPV6_RECVPKTINFO)");
    if (!r) return Err(r.error());
  }
  if (!v4) {
    // Explicit either way, never the sysctl default (net.ipv6.bindv6only): a
    // [::] listener must receive IPv4 only when the rule asked for dual-stack.
    int v6only = (spec.flags & wire::kListenerDualStack) != 0 ? 0 : 1;
    auto r = set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, v6only, "setsockopt(IPV6_V6ONLY)");
    if (!r) return Err(r.error());
  }
  if ((spec.flags & wire::kListenerReplaces) != 0) {
    // A rebind (wire::kListenerReplaces): the listener it replaces still
    // listens, and sluiced set SO_REUSEPORT on it; the kernel lets the two
    // share the port only when both carry it and have one owner.
    auto r = set_int_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, 1, "setsockopt(SO_REUSEPORT)");
    if (!r) return Err(r.error());
  }
  size_t ifname_len = strnlen(spec.ifname, sizeof(spec.ifname));
  if ((spec.flags & wire::kListenerSplice) != 0 &&
      std::strcmp(spec.ifname, wire::kListenerSpliceIfName) == 0) {
    // A SPLICE listener on the target namespace's loopback: bound by index,
    // not by name. The namespace belongs to its owner, who may rename `lo`
    // and give the name to an interface that reaches other hosts; the
    // loopback device has the same index in every network namespace
    // (kLoopbackIfIndex), whatever it is called.
    auto r = set_int_option(fd.get(), SOL_SOCKET, SO_BINDTOIFINDEX, kLoopbackIfIndex,
                            "setsockopt(SO_BINDTOIFINDEX) to the loopback device");
    if (!r) return Err(r.error());
  } else if (ifname_len > 0) {
    // The validated name is NUL-terminated within IFNAMSIZ; pass it with its NUL.
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_BINDTODEVICE, spec.ifname,
                     static_cast<socklen_t>(ifname_len + 1)) != 0) {
      return syscall_error("setsockopt(SO_BINDTODEVICE)");
    }
  }

  struct sockaddr_storage ss = {};
  socklen_t len;
  if (v4) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(spec.port);
    std::memcpy(&sin->sin_addr, spec.addr + 12, 4);  // the v4-mapped tail
    len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(&ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(spec.port);
    std::memcpy(&sin6->sin6_addr, spec.addr, 16);
    len = sizeof(*sin6);
  }
  if (::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&ss), len) != 0) {
    return syscall_error("bind");
  }
  // SOMAXCONN: the kernel's own ceiling (net.core.somaxconn caps it further).
  // Forwarded ports may take bursts of connections; the worker accepts in
  // batches, and a short queue would turn a burst into refused connections.
  if (tcp && ::listen(fd.get(), SOMAXCONN) != 0) return syscall_error("listen");
  return fd;
}

Result<UniqueFd> open_fresh_socket(wire::WireFamily family, wire::WireProto proto) noexcept {
  const int type =
      (proto == wire::WireProto::kTcp ? SOCK_STREAM : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
  UniqueFd fd(::socket(family == wire::WireFamily::kInet ? AF_INET : AF_INET6, type, 0));
  if (!fd.valid()) return syscall_error("socket");
  return fd;
}

int32_t open_listener_checked(const BindPolicy& policy, const wire::ListenerSpec& spec,
                              UniqueFd* out) {
  BindDecision decision = check_bind(policy, spec);
  if (!decision.allowed) {
    LOG_INFO("refused %s: %s", describe_listener(spec).c_str(), decision.reason.c_str());
    return wire::kStatusPolicyDenied;
  }
  auto fd = open_listener(spec);
  if (!fd) {
    int err = fd.error().err;
    LOG_DEBUG("%s failed: %s", describe_listener(spec).c_str(), fd.error().message.c_str());
    // Kernel errnos are 1..4095 (MAX_ERRNO); keep the wire contract even if not.
    return err >= 1 && err <= wire::kStatusMaxErrno ? err : EIO;
  }
  LOG_DEBUG("opened %s", describe_listener(spec).c_str());
  *out = std::move(*fd);
  return wire::kStatusOk;
}

}  // namespace sluice
