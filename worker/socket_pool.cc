// The pool of host-side sockets (see socket_pool.h).
#include "worker/socket_pool.h"

#include <sys/socket.h>

#include "base/strings.h"

namespace sluice {

SocketPool::SocketPool(BrokerClient& broker, bool ipv4, bool ipv6)
    : broker_(broker), ipv4_(ipv4), ipv6_(ipv6) {}

SocketPool::Pool& SocketPool::pool(int family, Proto proto) noexcept {
  return pools_[family == AF_INET6 ? 1 : 0][proto == Proto::kUdp ? 1 : 0];
}

const SocketPool::Pool& SocketPool::pool(int family, Proto proto) const noexcept {
  return pools_[family == AF_INET6 ? 1 : 0][proto == Proto::kUdp ? 1 : 0];
}

void SocketPool::set_wanted(Proto proto, bool wanted) noexcept {
  for (int family : {AF_INET, AF_INET6}) {
    Pool& p = pool(family, proto);
    p.wanted = wanted;
    if (!wanted) {
      p.ready.clear();  // nothing will connect them: give the descriptors back
      continue;
    }
    if ((family == AF_INET && ipv4_) || (family == AF_INET6 && ipv6_)) refill(family, proto);
  }
}

UniqueFd SocketPool::take(int family, Proto proto) noexcept {
  Pool& p = pool(family, proto);
  p.wanted = true;  // a SPLICE rule of this protocol connects: keep it filled
  UniqueFd out;
  if (!p.ready.empty()) {
    out = std::move(p.ready.back());
    p.ready.pop_back();
  }
  if (p.ready.size() < kHostSocketLowWater) refill(family, proto);
  return out;
}

void SocketPool::refill(int family, Proto proto) noexcept {
  Pool& p = pool(family, proto);
  if (p.asking || broker_.lost() || p.ready.size() >= kHostSocketPoolSize) return;
  p.asking = true;
  const auto count = static_cast<uint32_t>(kHostSocketPoolSize - p.ready.size());
  // The pool outlives every request: the broker channel drops open requests
  // unanswered when it is lost, and is destroyed after the pool's users.
  broker_.open_sockets(family, proto, count,
                       [this, family, proto](std::vector<UniqueFd> fds, int status) {
                         refilled(family, proto, std::move(fds), status);
                       });
}

void SocketPool::refilled(int family, Proto proto, std::vector<UniqueFd> fds, int status) noexcept {
  Pool& p = pool(family, proto);
  p.asking = false;
  if (status != 0 && log_.allow()) {
    LOG_WARN("sluiced made %zu of the host-side %s sockets asked for: %s", fds.size(),
             proto_name(proto), errno_text(status).c_str());
  }
  if (p.wanted) {
    for (UniqueFd& fd : fds) {
      if (p.ready.size() < kHostSocketPoolSize) p.ready.push_back(std::move(fd));
    }
  }
  if (refilled_) refilled_(family, proto);
}

size_t SocketPool::ready(int family, Proto proto) const noexcept {
  return pool(family, proto).ready.size();
}

bool SocketPool::refilling(int family, Proto proto) const noexcept {
  return pool(family, proto).asking;
}

}  // namespace sluice
