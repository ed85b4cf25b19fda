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
};

/// Sends `len` bytes (at least 1: a zero-length payload would read as EOF) and
/// `fds` in one message with MSG_NOSIGNAL and `flags` (MSG_DONTWAIT for a
/// send that must not wait for room). Returns an Error with the errno on
/// failure (EAGAIN when a non-blocking send found no room: nothing was sent)
/// or on a short send. Needs the `sendmsg` syscall.
Result<void> send_message(int sock, const void* data, size_t len, std::span<const int> fds,
                          int flags = 0) noexcept;

/// Receives one message into `buf` (capacity `cap`) with MSG_CMSG_CLOEXEC, and
/// wraps every fd at once. Fails, closing whatever fds arrived, on a truncated
/// payload (MSG_TRUNC), truncated control data (MSG_CTRUNC), any other
/// unexpected msg_flags, a control message that is not SCM_RIGHTS, or more than
/// `max_fds` fds. EAGAIN/EINTR come back as an Error with that errno.
/// Needs the `recvmsg` syscall.
Result<ReceivedMessage> receive_message(int sock, void* buf, size_t cap, size_t max_fds,
                                        int flags = 0) noexcept;

}  // namespace sluice
