// Batches of UDP datagrams: one recvmmsg() fills up to kUdpBatch buffers, one
// sendmmsg() sends a run of them on. Also the address plumbing around it:
// the sockaddr <-> UdpEndpoint conversions and the IP_PKTINFO/IPV6_PKTINFO
// ancillary data that tells which local address a datagram was sent to, and
// that makes a reply leave from that same address.
//
// Nothing is ever queued here: a batch lives from one receive to the sends
// that follow it, within one event. A send that would block drops the rest
// of its run, and the caller counts it (UDP semantics: the sender's
// application retries, as it must for any loss).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <memory>

#include "worker/udp_flow_table.h"

namespace sluice {

/// Limit: datagrams per recvmmsg()/sendmmsg(). One call for 32 datagrams
/// instead of 32 calls amortises the syscall cost, which dominates for small
/// datagrams (DNS, games, VoIP), while the buffers stay at a fixed 2 MiB for
/// the whole worker (one batch; the loop is single-threaded). Bigger batches
/// gain little once the call is amortised, and they delay other sockets of
/// the same wake-up; passt's UDP path settles on the same 32 (UDP_MAX_FRAMES).
inline constexpr size_t kUdpBatch = 32;

/// Limit: bytes of one datagram buffer. The largest UDP payload is 65,507
/// bytes over IPv4 and 65,527 over IPv6 (without jumbograms), so 64 KiB
/// never truncates. Pages of a buffer are touched only when a datagram that
/// large arrives.
inline constexpr size_t kUdpMaxDatagram = 65536;

/// Where a datagram was addressed: what IP_PKTINFO or IPV6_PKTINFO said.
struct LocalAddr {
  Addr addr{};           // the local address (v4-mapped for IPv4)
  uint32_t ifindex = 0;  // the interface it arrived on
  bool known = false;    // false: the datagram carried no pktinfo
};

/// What one send of a run came to.
struct SendResult {
  size_t sent = 0;         // datagrams the kernel took
  uint64_t bytes = 0;      // their payload bytes
  size_t would_block = 0;  // dropped because the socket buffer was full (EAGAIN, ENOBUFS)
  size_t failed = 0;       // dropped on another error (last_errno)
  int last_errno = 0;
};

/// Converts a received sockaddr (AF_INET or AF_INET6) into an endpoint. An
/// IPv4 peer becomes v4-mapped; a v4-mapped peer of a dual-stack socket stays
/// as it is. Never fails: any other family gives an all-zero endpoint.
UdpEndpoint endpoint_from_sockaddr(const struct sockaddr_storage& ss) noexcept;

/// Builds the sockaddr to send to `peer` on a socket of `family` (AF_INET:
/// the v4-mapped tail; AF_INET6: the address as it is, v4-mapped included).
/// Returns its length. Never fails.
socklen_t endpoint_to_sockaddr(const UdpEndpoint& peer, int family,
                               struct sockaddr_storage* out) noexcept;

/// Reads the local address from the IP_PKTINFO (ipi_spec_dst: the address
/// the client sent to, or for a broadcast the address of the interface) or
/// IPV6_PKTINFO control message of a received datagram. Returns an unknown
/// LocalAddr when there is none. Never fails.
LocalAddr local_from_cmsg(const struct msghdr& msg) noexcept;

/// Writes the control message that makes a datagram sent on a socket of
/// `family` leave from `local`: IP_PKTINFO for AF_INET, IPV6_PKTINFO for
/// AF_INET6 (v4-mapped for IPv4 on a dual-stack socket). The interface is
/// pinned only for an IPv6 link-local address, which is ambiguous without
/// it; otherwise routing picks the way back. Returns the control length, or
/// 0 when `local` is unknown or `space` is too small.
size_t write_pktinfo(int family, const LocalAddr& local, void* buf, size_t space) noexcept;

/// One batch of datagram buffers with their headers, names and control
/// buffers, reused for every receive.
class UdpBatch {
 public:
  /// Allocates the buffers (kUdpBatch * kUdpMaxDatagram bytes, left
  /// untouched, so the kernel maps pages only as datagrams fill them).
  UdpBatch();
  UdpBatch(const UdpBatch&) = delete;
  UdpBatch& operator=(const UdpBatch&) = delete;

  /// Receives up to `max` datagrams (at most kUdpBatch) from `fd` with one
  /// recvmmsg() (MSG_DONTWAIT, no timeout). Returns how many (1..max), or -1
  /// with errno (EAGAIN: nothing queued; ECONNREFUSED and friends: an ICMP
  /// error on a connected socket, reported once and cleared). Needs
  /// `recvmmsg`.
  int receive(int fd, size_t max = kUdpBatch) noexcept;

  /// The received payload `i` and its length.
  const uint8_t* data(size_t i) const noexcept { return buffers_.get() + i * kUdpMaxDatagram; }
  size_t length(size_t i) const noexcept { return in_[i].msg_len; }
  /// True when datagram `i` did not fit its buffer (never for valid UDP).
  bool truncated(size_t i) const noexcept { return (in_[i].msg_hdr.msg_flags & MSG_TRUNC) != 0; }
  /// Who sent datagram `i`, as the kernel gave it.
  const struct sockaddr_storage& name(size_t i) const noexcept { return names_[i]; }
  /// Where datagram `i` was sent to.
  LocalAddr local(size_t i) const noexcept { return local_from_cmsg(in_[i].msg_hdr); }

  /// Sends the datagrams [begin, end) received last, skipping truncated ones,
  /// on the connected socket `fd` with sendmmsg(MSG_DONTWAIT). Needs `sendmmsg`.
  SendResult send_connected(int fd, size_t begin, size_t end) noexcept;
  /// Sends the datagrams [begin, end) received last, skipping truncated
  /// ones, on the unconnected socket `fd` (of `family`) to `peer`, leaving
  /// from `local` when it is known. Needs `sendmmsg`.
  SendResult send_to(int fd, int family, const UdpEndpoint& peer, const LocalAddr& local,
                     size_t begin, size_t end) noexcept;

 private:
  /// Control bytes per message: room for one in6_pktinfo (the larger of the
  /// two pktinfo messages) with headroom for an unexpected second message.
  static constexpr size_t kControlBytes = 64;
  struct alignas(struct cmsghdr) Control {
    uint8_t bytes[kControlBytes];
  };

  /// Adds out_[count] for received datagram `i` (iov, no name, no control);
  /// returns false for a truncated one, which is skipped.
  bool prepare_out(size_t i, size_t count) noexcept;
  /// Sends out_[0, count) with sendmmsg until done, blocked, or failed:
  /// an error other than EAGAIN/ENOBUFS is retried once (a connected socket
  /// reports a pending ICMP error on the next send and clears it, without
  /// sending), then that datagram is dropped and the rest go on.
  SendResult send_out(int fd, size_t count) noexcept;

  std::unique_ptr<uint8_t[]> buffers_;
  struct mmsghdr in_[kUdpBatch];
  struct iovec in_iov_[kUdpBatch];
  struct sockaddr_storage names_[kUdpBatch];
  Control in_control_[kUdpBatch];
  struct mmsghdr out_[kUdpBatch];
  struct iovec out_iov_[kUdpBatch];
  struct sockaddr_storage out_name_;  // one peer per send_to()
  Control out_control_;               // one source address per send_to()
};

}  // namespace sluice
