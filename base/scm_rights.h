// SCM_RIGHTS over SOCK_SEQPACKET: one message = one fixed payload plus its fds.
// The fds always travel in the same message as their metadata, never apart.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// Most fds the kernel accepts in one SCM_RIGHTS message (SCM_MAX_FD).
inline constexpr size_t kScmMaxFds = 253;

/// One received message: its payload length and the fds that came with it,
/// already wrapped. `len == 0` with no fds means the peer closed the channel.
struct ReceivedMessage {
  size_t len = 0;
  std::vector<UniqueFd> fds;
  /// The kernel cut the fds short (MSG_CTRUNC, with CutFds::kKeep only):
  /// `fds` are the first ones sent, in order; the rest never arrived (they
  /// were closed in transit), because the receiver reached its RLIMIT_NOFILE.
  bool fds_cut = false;
};

/// Sends `len` bytes (at least 1: a zero-length payload would read as EOF) and
/// `fds` in one message with MSG_NOSIGNAL and `flags` (MSG_DONTWAIT for a
/// send that must not wait for room). Returns an Error with the errno on
/// failure (EAGAIN when a non-blocking send found no room: nothing was sent)
/// or on a short send. Needs the `sendmsg` syscall.
Result<void> send_message(int sock, const void* data, size_t len, std::span<const int> fds,
                          int flags = 0) noexcept;

/// How receive_message() closes the fds of a message it refuses.
enum class RefusedFds {
  kClose,               // plain close(): for fds from a trusted peer
  kCloseWithoutLinger,  // close_without_linger(): for fds from a less privileged peer
};

/// What receive_message() makes of control data the kernel cut short
/// (MSG_CTRUNC). The control buffer always has room for kScmMaxFds, so a
/// cut means the receiver's fd table is full (RLIMIT_NOFILE): the kernel
/// hands over the fds it could install, in order, and closes the rest.
enum class CutFds {
  kRefuse,  // a failure, closing what arrived: the message is of no use without all its fds
  kKeep,    // the message and the fds that arrived, with ReceivedMessage::fds_cut set
};

/// Receives one message into `buf` (capacity `cap`) with MSG_CMSG_CLOEXEC, and
/// wraps every fd at once. Fails, closing whatever fds arrived as `refused`
/// says, on a truncated payload (MSG_TRUNC), truncated control data
/// (MSG_CTRUNC) unless `cut` is kKeep, any other unexpected msg_flags, a
/// control message that is not SCM_RIGHTS, or more than `max_fds` fds.
/// EAGAIN/EINTR come back as an Error with that errno. Needs the `recvmsg`
/// syscall (and what close_without_linger() needs, with kCloseWithoutLinger).
Result<ReceivedMessage> receive_message(int sock, void* buf, size_t cap, size_t max_fds,
                                        int flags = 0, RefusedFds refused = RefusedFds::kClose,
                                        CutFds cut = CutFds::kRefuse) noexcept;

/// Closes every fd of `fds` (and empties it) so that no close() can block.
/// The peer that sent them chose what they are: the last close of a TCP
/// socket with SO_LINGER on waits up to the linger time for its unsent data to
/// leave, and with signals handled through a signalfd (as in sluiced) nothing
/// interrupts that wait. So each fd first gets SO_LINGER {0, 0}, which makes
/// the close return at once (the kernel still sends what it can); a non-socket
/// refuses the option and is closed as it is. Never fails. Needs `setsockopt`
/// (SOL_SOCKET, SO_LINGER) and `close`.
void close_without_linger(std::vector<UniqueFd>& fds) noexcept;

}  // namespace sluice
