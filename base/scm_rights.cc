#include "base/scm_rights.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"

namespace sluice {

Result<void> send_message(int sock, const void* data, size_t len, std::span<const int> fds,
                          int flags) noexcept {
  CHECK(len > 0);
  CHECK(fds.size() <= kScmMaxFds);
  struct iovec iov = {const_cast<void*>(data), len};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  // Control buffer sized for the largest fd batch, aligned for cmsghdr.
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kScmMaxFds)];
  if (!fds.empty()) {
    size_t bytes = sizeof(int) * fds.size();
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(bytes);
    struct cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(bytes);
    std::memcpy(CMSG_DATA(cmsg), fds.data(), bytes);
  }
  for (;;) {
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysErr("sendmsg");
    if (static_cast<size_t>(n) != len) return Err(EMSGSIZE, "sendmsg: short send");
    return Ok();
  }
}

void close_without_linger(std::vector<UniqueFd>& fds) noexcept {
  const struct linger off = {0, 0};
  for (UniqueFd& fd : fds) {
    (void)::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &off, sizeof(off));  // ENOTSOCK: fine
    fd.reset();
  }
  fds.clear();
}

namespace {

/// Returns `error` as a failure, after closing the fds of `out` as `refused`
/// says.
Unexpected refuse(ReceivedMessage& out, RefusedFds refused, Error error) noexcept {
  if (refused == RefusedFds::kCloseWithoutLinger) close_without_linger(out.fds);
  out.fds.clear();
  return Err(std::move(error));
}

}  // namespace

Result<ReceivedMessage> receive_message(int sock, void* buf, size_t cap, size_t max_fds, int flags,
                                        RefusedFds refused, CutFds cut) noexcept {
  struct iovec iov = {buf, cap};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kScmMaxFds)];
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return SysErr("recvmsg");

  // Wrap every fd before looking at anything else, so that no path leaks one.
  ReceivedMessage out;
  out.len = static_cast<size_t>(n);
  bool foreign_cmsg = false;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      foreign_cmsg = true;
      continue;
    }
    // Count fds from cmsg_len, never from CMSG_SPACE (which rounds up).
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      out.fds.emplace_back(fd);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) && cut == CutFds::kKeep) {
    out.fds_cut = true;
    msg.msg_flags &= ~MSG_CTRUNC;
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return refuse(out, refused,
                  Error{EMSGSIZE,
                        "message arrived with truncated control data (MSG_CTRUNC): the fd "
                        "limit was reached or the peer sent too many fds"});
  }
  if (msg.msg_flags & MSG_TRUNC) {
    return refuse(out, refused, Error{EMSGSIZE, "message larger than its buffer (MSG_TRUNC)"});
  }
  if ((msg.msg_flags & ~MSG_CMSG_CLOEXEC) != 0) {
    return refuse(out, refused,
                  Error{EPROTO, "unexpected msg_flags " + std::to_string(msg.msg_flags)});
  }
  if (foreign_cmsg) {
    return refuse(out, refused, Error{EPROTO, "control message that is not SCM_RIGHTS"});
  }
  if (out.fds.size() > max_fds) {
    return refuse(out, refused,
                  Error{EPROTO, "message carried " + std::to_string(out.fds.size()) +
                                    " fds, at most " + std::to_string(max_fds) + " allowed"});
  }
  return out;
}

}  // namespace sluice
