// The operations sluiced owes the service manager's file-descriptor store
// (broker/fd_store.h), in order, until the notify socket takes them.
//
// Every put and remove is one datagram on the connected notify socket,
// sent with MSG_DONTWAIT: sluiced never waits for the manager. When the
// manager's queue is full (a first commit of more listeners than
// net.unix.max_dgram_qlen, 512 under systemd, or a manager busy elsewhere),
// the datagram is refused with EAGAIN and nothing is stored. The operation
// then stays here, and the broker's loop polls the notify socket for
// POLLOUT while anything waits and sends the rest once the manager has read
// (broker/serve.cc serve). The order is kept, so that a listener's removal
// never overtakes its put and a state is stored before the one before it
// is removed; a remove of a name whose put still waits drops both, since
// the manager never had it.
//
// A put holds the descriptor's number, not a copy: the caller keeps it open
// until the put was sent or a remove of the same name cancelled it (the
// escrow queues the remove before it closes a listener or a state). The
// queue holds no name strings either: an operation is a kind, a number (a
// cookie or a state's sequence) and a spec, about 100 bytes, and its FDNAME
// is made when it is sent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>

#include "base/result.h"
#include "schema/broker_wire.h"

namespace sluice {

/// Limit: operations that may wait. A put that waits is cancelled by the
/// remove of its listener, so waiting puts never outnumber the listeners in
/// escrow (wire::kMaxEscrowListeners); states add one put and the remove of
/// the state before it (a newer state cancels an older one's waiting put).
/// Beyond that only removes of listeners the manager already holds can pile
/// up, while it reads nothing and the tables churn: one more is refused and
/// logged, and a restart of sluiced closes the stale listener itself (it
/// comes back, the resumed worker does not use it, and it is released).
/// About 100 bytes per operation (the list node and a put's index entry):
/// of the order of what the escrow itself holds per listener.
inline constexpr size_t kMaxFdStoreOps = wire::kMaxEscrowListeners + 2;

/// Limit: how long the loop waits before it tries again after ENOBUFS (the
/// kernel was short of memory for the datagram; POLLOUT would not wait for
/// that, and the loop must not spin): 100 ms, short against a restart.
inline constexpr uint64_t kFdStoreRetryNs = 100 * 1000000ULL;

/// What one store operation names: a listener (its SO_COOKIE and spec) or a
/// worker state (its sequence).
struct FdStoreKey {
  bool state = false;         // a worker state; else a listener
  uint64_t id = 0;            // the listener's cookie, or the state's sequence
  wire::ListenerSpec spec{};  // a listener's spec (zero for a state)

  /// The key of the listener `cookie` opened for `spec`.
  static FdStoreKey listener(uint64_t cookie, const wire::ListenerSpec& spec) noexcept {
    return FdStoreKey{false, cookie, spec};
  }
  /// The key of the worker state number `sequence`.
  static FdStoreKey worker_state(uint64_t sequence) noexcept {
    return FdStoreKey{true, sequence, {}};
  }
  /// Its FDNAME: stored_listener_name() or stored_state_name().
  std::string name() const;
  /// What it is, for log lines: "the listener of TCP port 8080" or "the
  /// worker's state 7".
  std::string describe() const;
};

/// What one flush() did.
struct FdStoreFlush {
  size_t sent = 0;       // operations the manager took
  size_t dropped = 0;    // operations refused with another error, logged and dropped
  bool blocked = false;  // stopped at EAGAIN or ENOBUFS: the rest waits
};

/// The operations that wait for the notify socket, oldest first.
class FdStoreQueue {
 public:
  /// A queue of at most `max_ops` waiting operations (kMaxFdStoreOps in
  /// sluiced; smaller in tests).
  explicit FdStoreQueue(size_t max_ops = kMaxFdStoreOps) : max_ops_(max_ops) {}

  /// Queues the put of `fd` (not owned: it stays open until sent or
  /// cancelled) under `key`. Fails with ENOSPC when max_ops operations wait,
  /// and with EEXIST when a put of the same key waits already (every name is
  /// put once: a cookie is unique per socket, a sequence per state); nothing
  /// is queued then.
  Result<void> put(const FdStoreKey& key, int fd);
  /// Queues the remove of `key`, or, when its put still waits, drops that
  /// put and queues nothing. Fails with ENOSPC when max_ops operations wait.
  Result<void> remove(const FdStoreKey& key);

  /// Sends the waiting operations in order on the connected notify socket
  /// `notify_fd` (fd_store_put(), fd_store_remove()) until none is left or
  /// one is refused with EAGAIN or ENOBUFS, which stays first; after ENOBUFS
  /// nothing is tried before `now_ns` + kFdStoreRetryNs (wants_writable()).
  /// An operation refused with another error (the manager is gone, the
  /// descriptor is not open) is dropped; the first of a call is logged with
  /// its reason, the others counted in one more line. Needs `sendmsg` and
  /// `sendto` on the notify fd.
  FdStoreFlush flush(int notify_fd, uint64_t now_ns) noexcept;

  /// True when operations wait and may be tried at `now_ns`: the loop then
  /// polls the notify socket for POLLOUT.
  bool wants_writable(uint64_t now_ns) const noexcept {
    return !ops_.empty() && now_ns >= retry_at_ns_;
  }
  /// Milliseconds until waiting operations may be tried again after ENOBUFS
  /// (rounded up), for poll's timeout; -1 when nothing waits for a time.
  int timeout_ms(uint64_t now_ns) const noexcept;
  /// Operations waiting.
  size_t size() const noexcept { return ops_.size(); }
  /// True when nothing waits.
  bool empty() const noexcept { return ops_.empty(); }

 private:
  /// One waiting operation.
  struct Op {
    FdStoreKey key;
    bool put;  // a put of `fd`; else a remove
    int fd;    // the put's descriptor, not owned (-1 for a remove)
  };
  /// The index of a waiting put: its key's kind and number.
  using PutIndex = std::unordered_map<uint64_t, std::list<Op>::iterator>;
  /// The index of waiting puts of `key`'s kind.
  PutIndex& puts_of(const FdStoreKey& key) noexcept {
    return key.state ? state_puts_ : listener_puts_;
  }

  size_t max_ops_;
  std::list<Op> ops_;         // oldest first
  PutIndex listener_puts_;    // waiting listener puts by cookie
  PutIndex state_puts_;       // waiting state puts by sequence
  uint64_t retry_at_ns_ = 0;  // after ENOBUFS: no try before this
};

}  // namespace sluice
