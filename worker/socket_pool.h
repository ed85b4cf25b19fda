// The pool of host-side sockets: how SPLICE rules (-T/-U) connect to
// sluiced's side.
//
// With a target namespace the worker runs inside it, so a socket it makes
// itself connects there; SPLICE rules listen in there and must connect to
// the host side (sluiced's network namespace), where the worker has no way
// in (no setns). sluiced therefore makes those sockets (OpenSockets in
// schema/broker_wire.h): fresh, unbound, unconnected, non-blocking and
// close-on-exec. A socket keeps the namespace it was made in, so the worker
// connects it itself (TCP) or uses it as a UDP flow's socket, with no round
// trip per connection.
//
// One pool per (family, protocol), filled while a SPLICE listener of that
// protocol is served: up to kHostSocketPoolSize sockets are kept ready, and a
// refill is asked as soon as fewer than kHostSocketLowWater are left, with at
// most one request open per pool. A TCP connection that finds its pool empty
// waits for the refill (the forwarder parks it, bounded by the connect
// timeout and the connection limit); see worker/forwarder.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "base/log.h"
#include "base/unique_fd.h"
#include "schema/model.h"
#include "worker/broker_client.h"

namespace sluice {

/// Limit: sockets kept ready per (family, protocol). A burst of new
/// connections takes sockets from the pool while the refill (one round trip
/// to sluiced, tens of microseconds) is on its way; 32 cover a burst of 32
/// connections inside that round trip, and four full pools hold 128
/// descriptors, a small part of the worker's RLIMIT_NOFILE (raised to the
/// hard limit by sluiced).
inline constexpr size_t kHostSocketPoolSize = 32;
/// Limit: a refill is asked when fewer sockets than this are ready, so that
/// it arrives before the pool runs dry under a steady stream of connections.
/// A quarter of the pool: a refill then asks for at least 24 sockets, so
/// there is one round trip per 24 connections at most.
inline constexpr size_t kHostSocketLowWater = 8;
static_assert(kHostSocketPoolSize <= wire::kMaxSocketsPerMessage);
static_assert(kHostSocketLowWater < kHostSocketPoolSize);

class SocketPool {
 public:
  /// Called when a refill of (family, proto) has been answered, so that
  /// what waits for a socket of it can go on.
  using Refilled = std::function<void(int family, Proto proto)>;

  /// An empty pool asking `broker`; `families` are the address families the
  /// server has (a pool is filled only for those).
  SocketPool(BrokerClient& broker, bool ipv4, bool ipv6);

  /// Sets the one callback for answered refills.
  void set_on_refilled(Refilled refilled) { refilled_ = std::move(refilled); }

  /// Keeps the pools of `proto` filled (`wanted`), or empties them and stops
  /// refilling (no SPLICE listener of `proto` left). Needs `close`.
  void set_wanted(Proto proto, bool wanted) noexcept;

  /// Takes a ready socket of `family` (AF_INET, AF_INET6) and `proto`, and
  /// asks for a refill below the low-water mark. Returns an invalid fd when
  /// none is ready; the refill is then on its way, and the Refilled callback
  /// says when it arrived. Never fails otherwise. Needs `sendmsg`.
  UniqueFd take(int family, Proto proto) noexcept;

  /// Asks for a refill of (family, proto) now, unless one is open or the
  /// pool is full: for waiters when a refill came back empty. Needs `sendmsg`.
  void refill(int family, Proto proto) noexcept;

  /// Sockets ready in the pool of (family, proto).
  size_t ready(int family, Proto proto) const noexcept;
  /// True while a refill of (family, proto) is open.
  bool refilling(int family, Proto proto) const noexcept;

 private:
  /// One (family, protocol) pool.
  struct Pool {
    std::vector<UniqueFd> ready;
    bool wanted = false;
    bool asking = false;
  };
  /// Returns the pool of (family, proto).
  Pool& pool(int family, Proto proto) noexcept;
  const Pool& pool(int family, Proto proto) const noexcept;
  /// Takes the answer of a refill of (family, proto): the sockets, and the
  /// errno that stopped sluiced short (logged, rate-limited).
  void refilled(int family, Proto proto, std::vector<UniqueFd> fds, int status) noexcept;

  BrokerClient& broker_;
  bool ipv4_, ipv6_;
  Pool pools_[2][2];  // [AF_INET6?][UDP?]
  Refilled refilled_;
  // sluiced short of sockets (EMFILE): at most 5 lines at once, then 1 a second.
  LogRateLimit log_{5, 1};
};

}  // namespace sluice
