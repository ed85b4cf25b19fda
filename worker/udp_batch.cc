#include "worker/udp_batch.h"

#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace sluice {
namespace {

/// True for fe80::/10, whose meaning depends on the interface.
bool is_link_local6(const Addr& a) noexcept {
  return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

}  // namespace

UdpEndpoint endpoint_from_sockaddr(const struct sockaddr_storage& ss) noexcept {
  UdpEndpoint e;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const struct sockaddr_in*>(&ss);
    e.addr = addr_v4(0, 0, 0, 0);
    std::memcpy(e.addr.data() + 12, &sin->sin_addr, 4);
    e.port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const struct sockaddr_in6*>(&ss);
    std::memcpy(e.addr.data(), &sin6->sin6_addr, 16);
    e.port = ntohs(sin6->sin6_port);
    e.scope = sin6->sin6_scope_id;
  }
  return e;
}

socklen_t endpoint_to_sockaddr(const UdpEndpoint& peer, int family,
                               struct sockaddr_storage* out) noexcept {
  std::memset(out, 0, sizeof(*out));
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<struct sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(peer.port);
    std::memcpy(&sin->sin_addr, peer.addr.data() + 12, 4);
    return sizeof(*sin);
  }
  auto* sin6 = reinterpret_cast<struct sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(peer.port);
  std::memcpy(&sin6->sin6_addr, peer.addr.data(), 16);
  sin6->sin6_scope_id = peer.scope;
  return sizeof(*sin6);
}

LocalAddr local_from_cmsg(const struct msghdr& msg) noexcept {
  LocalAddr local;
  if (msg.msg_control == nullptr || msg.msg_controllen == 0) return local;
  auto& m = const_cast<struct msghdr&>(msg);  // the CMSG_* macros take non-const pointers
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      local.addr = addr_v4(0, 0, 0, 0);
      std::memcpy(local.addr.data() + 12, &info.ipi_spec_dst, 4);
      local.ifindex = static_cast<uint32_t>(info.ipi_ifindex);
      local.known = true;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               c->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof(info));
      std::memcpy(local.addr.data(), &info.ipi6_addr, 16);
      local.ifindex = info.ipi6_ifindex;
      local.known = true;
    }
  }
  return local;
}

size_t write_pktinfo(int family, const LocalAddr& local, void* buf, size_t space) noexcept {
  if (!local.known) return 0;
  struct msghdr m = {};
  m.msg_control = buf;
  if (family == AF_INET) {
    if (space < CMSG_SPACE(sizeof(struct in_pktinfo))) return 0;
    std::memset(buf, 0, CMSG_SPACE(sizeof(struct in_pktinfo)));
    m.msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
    struct cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo info = {};
    std::memcpy(&info.ipi_spec_dst, local.addr.data() + 12, 4);  // ipi_ifindex 0: route it
    std::memcpy(CMSG_DATA(c), &info, sizeof(info));
    return CMSG_SPACE(sizeof(struct in_pktinfo));
  }
  if (space < CMSG_SPACE(sizeof(struct in6_pktinfo))) return 0;
  std::memset(buf, 0, CMSG_SPACE(sizeof(struct in6_pktinfo)));
  m.msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
  struct cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
  struct in6_pktinfo info = {};
  std::memcpy(&info.ipi6_addr, local.addr.data(), 16);
  info.ipi6_ifindex = is_link_local6(local.addr) ? local.ifindex : 0;
  std::memcpy(CMSG_DATA(c), &info, sizeof(info));
  return CMSG_SPACE(sizeof(struct in6_pktinfo));
}

UdpBatch::UdpBatch() : buffers_(new uint8_t[kUdpBatch * kUdpMaxDatagram]) {
  std::memset(in_, 0, sizeof(in_));
  std::memset(out_, 0, sizeof(out_));
  for (size_t i = 0; i < kUdpBatch; ++i) {
    in_iov_[i].iov_base = buffers_.get() + i * kUdpMaxDatagram;
    in_iov_[i].iov_len = kUdpMaxDatagram;
    in_[i].msg_hdr.msg_iov = &in_iov_[i];
    in_[i].msg_hdr.msg_iovlen = 1;
    in_[i].msg_hdr.msg_name = &names_[i];
    in_[i].msg_hdr.msg_control = in_control_[i].bytes;
    out_[i].msg_hdr.msg_iov = &out_iov_[i];
    out_[i].msg_hdr.msg_iovlen = 1;
  }
}

int UdpBatch::receive(int fd, size_t max) noexcept {
  max = std::min(max, kUdpBatch);
  for (size_t i = 0; i < max; ++i) {
    // The kernel overwrites the lengths and flags of every message it fills.
    in_[i].msg_hdr.msg_namelen = sizeof(names_[i]);
    in_[i].msg_hdr.msg_controllen = kControlBytes;
    in_[i].msg_hdr.msg_flags = 0;
    in_[i].msg_len = 0;
  }
  return recvmmsg(fd, in_, static_cast<unsigned>(max), MSG_DONTWAIT, nullptr);
}

bool UdpBatch::prepare_out(size_t i, size_t count) noexcept {
  if (truncated(i)) return false;
  out_iov_[count].iov_base = buffers_.get() + i * kUdpMaxDatagram;
  out_iov_[count].iov_len = in_[i].msg_len;
  struct msghdr& h = out_[count].msg_hdr;
  h.msg_name = nullptr;
  h.msg_namelen = 0;
  h.msg_control = nullptr;
  h.msg_controllen = 0;
  h.msg_flags = 0;
  return true;
}

SendResult UdpBatch::send_connected(int fd, size_t begin, size_t end) noexcept {
  size_t count = 0;
  for (size_t i = begin; i < end && i < kUdpBatch; ++i) {
    if (prepare_out(i, count)) ++count;
  }
  return send_out(fd, count);
}

SendResult UdpBatch::send_to(int fd, int family, const UdpEndpoint& peer, const LocalAddr& local,
                             size_t begin, size_t end) noexcept {
  socklen_t name_len = endpoint_to_sockaddr(peer, family, &out_name_);
  size_t control_len = write_pktinfo(family, local, out_control_.bytes, kControlBytes);
  size_t count = 0;
  for (size_t i = begin; i < end && i < kUdpBatch; ++i) {
    if (!prepare_out(i, count)) continue;
    struct msghdr& h = out_[count].msg_hdr;
    h.msg_name = &out_name_;
    h.msg_namelen = name_len;
    h.msg_control = control_len > 0 ? out_control_.bytes : nullptr;
    h.msg_controllen = control_len;
    ++count;
  }
  return send_out(fd, count);
}

SendResult UdpBatch::send_out(int fd, size_t count) noexcept {
  SendResult r;
  size_t i = 0;
  bool retried = false;
  while (i < count) {
    int n = sendmmsg(fd, &out_[i], static_cast<unsigned int>(count - i), MSG_DONTWAIT);
    if (n > 0) {
      for (size_t k = i; k < i + static_cast<size_t>(n); ++k) r.bytes += out_iov_[k].iov_len;
      i += static_cast<size_t>(n);
      r.sent += static_cast<size_t>(n);
      retried = false;
      continue;
    }
    int err = n == 0 ? EIO : errno;
    if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) {
      // The socket buffer is full: drop the rest of the run rather than queue it.
      r.would_block += count - i;
      break;
    }
    if (!retried) {
      retried = true;  // EINTR, or a pending ICMP error that this call reported and cleared
      continue;
    }
    r.failed += 1;
    r.last_errno = err;
    ++i;
    retried = false;
  }
  return r;
}

}  // namespace sluice
