// The listener escrow: sluiced's own reference to every listening socket it
// issued to the worker, and the worker's last state blob, so that a worker
// that dies refuses nothing (docs/ARCHITECTURE.md "Worker restarts").
//
// The escrow holds a copy of each socket (a dup made as it is issued), keyed
// by its SO_COOKIE, which every descriptor of one socket shares: the worker
// names the sockets it still holds by their cookies (StoreState), and sluiced
// closes its copy of every other one, so that a removed rule's port neither
// queues connections nobody accepts nor blocks a later bind. The blob is kept
// as the sealed memfd the worker sent, checked with fstat and F_GET_SEALS
// only: sluiced stores and returns it, and never reads it.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/fd_store_queue.h"
#include "schema/broker_wire.h"

namespace sluice {

/// Checks that `fd` is a sealed memfd as StoreState requires: a regular
/// file of at most `max_bytes` bytes (and at least `min_bytes`) carrying
/// F_SEAL_WRITE, F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL, so that its
/// content can change no more. Returns its size; the Error names `what` and
/// the failed check. Needs `newfstatat` (AT_EMPTY_PATH) and `fcntl`
/// (F_GET_SEALS).
Result<uint64_t> check_sealed_memfd(int fd, uint64_t min_bytes, uint64_t max_bytes,
                                    const char* what);

/// Whether the listeners `a` and `b` would clash in the kernel (the one's
/// bind fails with EADDRINUSE while the other is bound): one table, protocol
/// and port, devices that do not differ, and overlapping addresses (the
/// same, or either unspecified, in one family; a dual-stack [::] overlaps
/// IPv4 too). The broker's side of the worker's kernel_clash
/// (worker/commit_plan.h), on wire specs.
bool specs_clash(const wire::ListenerSpec& a, const wire::ListenerSpec& b) noexcept;

/// Whether `a` and `b` ask for the same listener: every field equal but the
/// kListenerReplaces flag.
bool same_listener(const wire::ListenerSpec& a, const wire::ListenerSpec& b) noexcept;

/// What share_ports() asks, once per request, before rebinds share their
/// ports: for each of `rebinds`, a description of a socket that is not among
/// `own` (the inodes of sluiced's listeners on their ports) and holds the
/// rebind's port at an address that clashes with it; nothing when none does;
/// an error when who holds it cannot be told (foreign_holders() in
/// port_holders.h, on the sides' tables).
using ForeignHolderCheck = std::function<std::vector<Result<std::optional<std::string>>>(
    std::span<const wire::ListenerSpec> rebinds, std::span<const uint64_t> own)>;

/// sluiced's listeners in escrow and the worker's blob.
class ListenerEscrow {
 public:
  /// Keeps a copy of the listener `fd` that sluiced issued for `spec` in
  /// reply to the worker's request `sequence`. Fails (and keeps nothing)
  /// when the copy or its cookie cannot be had, or the escrow is full
  /// (wire::kMaxEscrowListeners); the worker still gets its socket, which a
  /// restart then cannot hand back. Needs `fcntl` (F_DUPFD_CLOEXEC) and
  /// `getsockopt` (SO_COOKIE).
  Result<void> keep(int fd, const wire::ListenerSpec& spec, uint64_t sequence);

  /// Takes a StoreState: checks both memfds (check_sealed_memfd: the blob,
  /// and the cookie file, at most 8 bytes per listener issued to this worker
  /// (escrowed, or issued when no copy could be kept), a whole
  /// number of cookies, strictly ascending), then keeps the blob and closes
  /// the escrowed listeners issued for requests up to `msg.header.sequence`
  /// whose cookie is not listed. Fails on any malformed part, changing
  /// nothing: the worker is then compromised. Needs `pread64` (and `dup3`
  /// with a staging fd) besides what check_sealed_memfd() needs, and `close`.
  Result<void> store(const wire::StoreStateMsg& msg, UniqueFd blob, UniqueFd cookies);
  /// Reads cookie lists on `fd` from now on (sluiced: broker_fd::kStateStaging,
  /// the one number its filter lets pread64 read; moved there with dup3 and
  /// closed after), and keeps its copies and the blob on numbers from
  /// `min_fd` on (sluiced: broker_fd::kFirstFree), above every fixed number
  /// that a dup3 may replace. -1 and 0, the defaults, read lists where they
  /// arrive and keep copies on any number.
  void set_staging_fd(int fd, int min_fd) noexcept {
    staging_fd_ = fd;
    min_fd_ = min_fd;
  }

  /// Mirrors the escrow from now on into the service manager's
  /// file-descriptor store on the connected notify socket `notify_fd`
  /// (broker/fd_store.h): each listener kept is stored, each one released is
  /// removed, each new blob is stored before the one before it is removed.
  /// The operations go through an FdStoreQueue (broker/fd_store_queue.h)
  /// and are sent at once when the manager has room; what it has no room
  /// for waits, in order, for flush_store(). Needs `sendmsg` and `sendto`
  /// on the notify fd.
  void mirror_to(int notify_fd) noexcept { mirror_fd_ = notify_fd; }
  /// Removes from the fd store, when mirrored (queued, then sent as
  /// flush_store() sends), the names sluiced closed at start that the
  /// manager still holds (StoredFds::stale): otherwise they would come back
  /// at every start until the service stops.
  void unstore_stale(const std::vector<FdStoreKey>& keys) noexcept;
  /// Sends the store operations that wait, as far as the manager takes them
  /// (FdStoreQueue::flush at `now_ns`). Call when the notify socket is
  /// writable, or before sluiced stops.
  void flush_store(uint64_t now_ns) noexcept;
  /// True when store operations wait and the loop should poll the notify
  /// socket for POLLOUT at `now_ns`.
  bool store_wants_writable(uint64_t now_ns) const noexcept {
    return mirror_fd_ >= 0 && store_ops_.wants_writable(now_ns);
  }
  /// Milliseconds until waiting store operations may be tried again after
  /// ENOBUFS, for poll; -1 for none.
  int store_timeout_ms(uint64_t now_ns) const noexcept { return store_ops_.timeout_ms(now_ns); }
  /// Store operations waiting for the manager.
  size_t store_waiting() const noexcept { return store_ops_.size(); }
  /// Prepares the rebinds among `entries` (those with wire::kListenerReplaces,
  /// which the caller has cleared from entries the bind policy refuses): sets
  /// SO_REUSEPORT on sluiced's copy of every listener in escrow that one of
  /// them clashes with in the kernel (specs_clash), so that the new socket,
  /// opened with SO_REUSEPORT too, binds while the old one still listens.
  /// Clears the flag of a rebind that clashes with no listener in escrow: it
  /// replaces nothing of sluiced's, and opens as any other entry. A listener
  /// the worker still holds is always in escrow (unless the escrow was full
  /// when it was issued; its rebind then fails with EADDRINUSE and the
  /// commit rolls back). Before it shares, it asks `foreign` once, for all
  /// the rebinds that replace something, whether another program's socket
  /// holds their ports at clashing addresses (port_holders.h says why): a
  /// rebind with one, or one `foreign` cannot judge, shares nothing and
  /// loses its flag (logged with the reason), so its bind fails with
  /// EADDRINUSE as any program's would. Returns how many listeners it set. Needs `setsockopt`
  /// (SO_REUSEPORT), `newfstatat` (AT_EMPTY_PATH) and what `foreign` needs.
  size_t share_ports(std::span<wire::ListenerSpec> entries, const ForeignHolderCheck& foreign);

  /// Takes a listener the store gave back at start (check_stored_listener()
  /// passed): kept as issued before the first worker's requests, and already
  /// in the store under its name. Fails when the escrow is full.
  Result<void> adopt(UniqueFd fd, uint64_t cookie, const wire::ListenerSpec& spec);
  /// Takes the state the store gave back at start, stored as
  /// state-`sequence`: checked as a StoreState's blob (check_sealed_memfd),
  /// then kept as the blob the next worker resumes from. Fails, keeping
  /// nothing, when the checks fail. Needs `fstat` and `fcntl` (F_GET_SEALS),
  /// which the broker's filter allows.
  Result<void> adopt_blob(UniqueFd blob, uint64_t sequence);

  /// A new worker takes over: every listener in escrow now counts as issued
  /// before its first request (its sequences start again at 1), and the
  /// hand-over starts from the first listener.
  void new_worker() noexcept;

  /// Listeners in escrow.
  size_t size() const noexcept { return entries_.size(); }
  /// Bytes of the blob held, 0 for none.
  uint64_t blob_bytes() const noexcept { return blob_bytes_; }
  /// A copy of the blob's memfd for the new worker (invalid when none is
  /// held). Fails when the copy cannot be made. Needs `fcntl` (F_DUPFD_CLOEXEC).
  Result<UniqueFd> blob_copy() const;
  /// Fills `msg` (count, flags, specs) and `fds` with copies of the next
  /// listeners to hand over, at most wire::kMaxListenersPerMessage; sets
  /// kReclaimLast when none is left after them. Fails when a copy cannot be
  /// made. Needs `fcntl` (F_DUPFD_CLOEXEC).
  Result<void> next_batch(wire::ListenersReclaimedMsg* msg, std::vector<UniqueFd>* fds);

 private:
  /// Removes the listener `cookie` of `spec` from the fd store, when
  /// mirrored (queued; a put that still waits is dropped instead). Call
  /// before its copy closes.
  void unstore(uint64_t cookie, const wire::ListenerSpec& spec) noexcept;
  /// Stores the blob just taken as the next state and removes the one
  /// before it, when mirrored (queued). Call before the old blob closes.
  void store_blob() noexcept;
  /// flush_store(), unless the last try found the manager's queue full
  /// (then only the loop's flush_store(), on POLLOUT, tries again).
  void send_store_unless_full(uint64_t now_ns) noexcept;

  /// (table, protocol, port) of `spec` as one number, for share_ports().
  static uint32_t port_slot(const wire::ListenerSpec& spec) noexcept {
    return ((spec.flags & wire::kListenerSplice) != 0 ? 1u << 24 : 0u) |
           (uint32_t{spec.proto} << 16) | spec.port;
  }

  struct Entry {
    UniqueFd fd;
    wire::ListenerSpec spec;
    uint64_t sequence;  // the request it was issued for (0: a previous worker's)
  };
  std::map<uint64_t, Entry> entries_;  // by SO_COOKIE
  /// Listeners issued to the worker in force whose copy keep() could not
  /// make (at most kMaxEscrowListeners): its cookie lists may name them.
  size_t unkept_ = 0;
  UniqueFd blob_;
  uint64_t blob_bytes_ = 0;
  uint64_t reclaim_from_ = 0;   // the next cookie to hand over
  int staging_fd_ = -1;         // where cookie lists are read, -1: where they arrive
  int min_fd_ = 0;              // the lowest number of what the escrow keeps
  int mirror_fd_ = -1;          // the notify socket of the fd store, -1: no mirror
  FdStoreQueue store_ops_;      // what the fd store still has to be told, in order
  uint64_t blob_sequence_ = 0;  // the blob's number in the fd store (0: none stored)
  bool store_full_ = false;     // the last flush stopped at a full manager queue
};

}  // namespace sluice
