// Probes of the worker's allowlist (policy/seccomp_worker.cc): for every row
// with argument conditions, calls with allowed arguments that must succeed
// and perturbed ones that must die with SIGSYS; for the rest, one allowed
// call each; and the syscalls the design forbids outright.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <malloc.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/scm_rights.h"
#include "schema/broker_wire.h"
#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

/// setsockopt with an int value of 1; true on success.
bool set_int(int fd, int level, int name) {
  int one = 1;
  return setsockopt(fd, level, name, &one, sizeof(one)) == 0;
}

/// getsockopt of an int; true on success.
bool get_int(int fd, int level, int name) {
  int value = 0;
  socklen_t len = sizeof(value);
  return getsockopt(fd, level, name, &value, &len) == 0;
}

/// socket() through the raw syscall, so no libc wrapper changes the arguments.
long raw_socket(unsigned long family, unsigned long type, unsigned long proto) {
  return syscall(SYS_socket, family, type, proto);
}

/// The address `listener` is bound to.
sockaddr_in listener_addr(const ProbeFds& f) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(f.listener, reinterpret_cast<sockaddr*>(&addr), &len);
  return addr;
}

/// The IPv4 address and port `fd` is bound to.
sockaddr_in bound_addr(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return addr;
}

/// One message header over `iov`, with optional name and control buffers.
mmsghdr one_msg(iovec* iov, void* name, socklen_t name_len, void* control, size_t control_len) {
  mmsghdr m = {};
  m.msg_hdr.msg_iov = iov;
  m.msg_hdr.msg_iovlen = 1;
  m.msg_hdr.msg_name = name;
  m.msg_hdr.msg_namelen = name_len;
  m.msg_hdr.msg_control = control;
  m.msg_hdr.msg_controllen = control_len;
  return m;
}

/// The UDP data path's calls, as worker/udp_batch.cc makes them: a flow
/// socket connected to a listener (the broker's kind, IP_PKTINFO on) sends
/// two datagrams in one sendmmsg; the listener receives both with their
/// pktinfo in one recvmmsg; a reply leaves the listener from the address the
/// datagram was sent to (an IP_PKTINFO cmsg) and reaches the flow socket.
bool udp_flow_round_trip(const ProbeFds& f) {
  int flow = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  sockaddr_in listener = bound_addr(f.udp_listener);
  if (flow < 0 || connect(flow, reinterpret_cast<sockaddr*>(&listener), sizeof(listener)) != 0) {
    return false;
  }
  char out[2] = {'a', 'b'};
  iovec o[2] = {{&out[0], 1}, {&out[1], 1}};
  mmsghdr om[2] = {one_msg(&o[0], nullptr, 0, nullptr, 0), one_msg(&o[1], nullptr, 0, nullptr, 0)};
  if (sendmmsg(flow, om, 2, MSG_DONTWAIT) != 2) return false;

  char in[2] = {};
  iovec i[2] = {{&in[0], 1}, {&in[1], 1}};
  sockaddr_in from[2] = {};
  alignas(cmsghdr) char control[2][64] = {};
  mmsghdr im[2] = {one_msg(&i[0], &from[0], sizeof(from[0]), control[0], sizeof(control[0])),
                   one_msg(&i[1], &from[1], sizeof(from[1]), control[1], sizeof(control[1]))};
  if (recvmmsg(f.udp_listener, im, 2, MSG_DONTWAIT, nullptr) != 2 || in[0] != 'a') return false;
  cmsghdr* c = CMSG_FIRSTHDR(&im[0].msg_hdr);
  if (c == nullptr || c->cmsg_level != IPPROTO_IP || c->cmsg_type != IP_PKTINFO) return false;
  in_pktinfo info;
  std::memcpy(&info, CMSG_DATA(c), sizeof(info));
  if (info.ipi_spec_dst.s_addr != htonl(INADDR_LOOPBACK)) return false;

  alignas(cmsghdr) char reply_control[CMSG_SPACE(sizeof(in_pktinfo))] = {};
  mmsghdr reply =
      one_msg(&i[0], &from[0], im[0].msg_hdr.msg_namelen, reply_control, sizeof(reply_control));
  cmsghdr* rc = CMSG_FIRSTHDR(&reply.msg_hdr);
  rc->cmsg_level = IPPROTO_IP;
  rc->cmsg_type = IP_PKTINFO;
  rc->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
  in_pktinfo source = {};
  source.ipi_spec_dst = info.ipi_spec_dst;
  std::memcpy(CMSG_DATA(rc), &source, sizeof(source));
  if (sendmmsg(f.udp_listener, &reply, 1, MSG_DONTWAIT) != 1) return false;

  char back = 0;
  iovec bi = {&back, 1};
  mmsghdr bm = one_msg(&bi, nullptr, 0, nullptr, 0);
  return recvmmsg(flow, &bm, 1, MSG_DONTWAIT, nullptr) == 1 && back == 'a';
}

/// recvmmsg of one datagram from `fd` with `flags` and `timeout`, through the
/// raw syscall so that no wrapper changes the arguments.
long raw_recvmmsg(int fd, unsigned long flags, struct timespec* timeout) {
  char c;
  iovec iov = {&c, 1};
  mmsghdr m = one_msg(&iov, nullptr, 0, nullptr, 0);
  return syscall(SYS_recvmmsg, fd, &m, 1, flags, timeout);
}

/// sendmmsg of one byte on `fd` with `flags`, through the raw syscall.
long raw_sendmmsg(int fd, unsigned long flags) {
  char c = 'z';
  iovec iov = {&c, 1};
  mmsghdr m = one_msg(&iov, nullptr, 0, nullptr, 0);
  return syscall(SYS_sendmmsg, fd, &m, 1, flags);
}

/// The worker's audit sink, where kSetupAuditFd puts an O_APPEND file that
/// already holds a line.
constexpr int kAuditFd = wire::kWorkerFdAudit;

}  // namespace

const std::vector<Probe>& worker_probes() {
  static const std::vector<Probe> probes = with_futex_probes({
    // --- socket(): AF_INET/AF_INET6 x STREAM/DGRAM, protocol 0 or the matching one.
    {"socket_tcp4", Expect::kAllowed,
     +[](const ProbeFds&) {
       return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) >= 0;
     }},
        {"socket_tcp4_ipproto_tcp", Expect::kAllowed,
         +[](const ProbeFds&) { return socket(AF_INET, SOCK_STREAM, IPPROTO_TCP) >= 0; }},
        {"socket_tcp6", Expect::kAllowed,
         +[](const ProbeFds&) { return socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0) >= 0; }},
        {"socket_udp4", Expect::kAllowed,
         +[](const ProbeFds&) { return socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) >= 0; }},
        {"socket_udp6_ipproto_udp", Expect::kAllowed,
         +[](const ProbeFds&) { return socket(AF_INET6, SOCK_DGRAM, IPPROTO_UDP) >= 0; }},
        {"socket_high_bits_ignored", Expect::kAllowed,
         +[](const ProbeFds&) {
           // The kernel reads an int: dirty upper halves must not matter (STYLE.md 10).
           return raw_socket(0xdead000000000000ul | AF_INET, 0xbeef000000000000ul | SOCK_STREAM,
                             0xf00d000000000000ul) >= 0;
         }},
        {"socket_unix", Expect::kKilled, FORBIDDEN(socket(AF_UNIX, SOCK_STREAM, 0))},
        {"socket_netlink", Expect::kKilled, FORBIDDEN(socket(AF_NETLINK, SOCK_RAW, 0))},
        {"socket_packet", Expect::kKilled, FORBIDDEN(socket(AF_PACKET, SOCK_DGRAM, 0))},
        {"socket_raw", Expect::kKilled, FORBIDDEN(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP))},
        {"socket_seqpacket", Expect::kKilled, FORBIDDEN(socket(AF_INET, SOCK_SEQPACKET, 0))},
        {"socket_stream_udp", Expect::kKilled,
         FORBIDDEN(socket(AF_INET, SOCK_STREAM, IPPROTO_UDP))},
        {"socket_dgram_tcp", Expect::kKilled, FORBIDDEN(socket(AF_INET6, SOCK_DGRAM, IPPROTO_TCP))},
        {"socket_unknown_type_flag", Expect::kKilled,
         FORBIDDEN(raw_socket(AF_INET, SOCK_STREAM | 0x1000, 0))},

        // --- accept4 (flags only NONBLOCK|CLOEXEC); plain accept is not granted.
        {"accept4_flags", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return accept4(f.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC) < 0 &&
                  errno == EAGAIN;
         }},
        {"accept4_no_flags", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return accept4(f.listener, nullptr, nullptr, 0) < 0 && errno == EAGAIN;
         }},
        {"accept4_other_flag", Expect::kKilled,
         FORBIDDEN(syscall(SYS_accept4, f.listener, nullptr, nullptr, SOCK_NONBLOCK | 0x4))},
        {"accept", Expect::kKilled, FORBIDDEN(syscall(SYS_accept, f.listener, nullptr, nullptr))},

        // --- connect, then a real accept: the TCP data path's first steps.
        {"connect_and_accept", Expect::kAllowed,
         +[](const ProbeFds& f) {
           sockaddr_in addr = listener_addr(f);
           int rc = connect(f.tcp4, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
           if (rc != 0 && errno != EINPROGRESS) return false;
           for (int i = 0; i < 1000; ++i) {  // bounded: loopback connects in microseconds
             int c = accept4(f.listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
             if (c >= 0) return get_int(f.tcp4, SOL_SOCKET, SO_ERROR) && shutdown(c, SHUT_WR) == 0;
             if (errno != EAGAIN) return false;
             epoll_event ev;
             epoll_wait(f.epoll, &ev, 1, 1);  // nothing registered: a 1 ms sleep
           }
           return false;
         }},

        // --- fcntl: four commands, F_SETFD with restricted flags; no F_GETFL
        // and no F_SETFL at all (every fd is created non-blocking).
        {"fcntl_getfl", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_GETFL))},
        {"fcntl_setfl_nonblock", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_SETFL, O_NONBLOCK))},
        // The harmful direction: clearing O_APPEND on the audit log (fd 5), so
        // that later writes land on earlier audit lines.
        {"fcntl_setfl_clears_append_on_audit_fd", Expect::kKilled,
         FORBIDDEN(fcntl(kAuditFd, F_SETFL, 0)), kSetupAuditFd},
        {"fcntl_getfd_setfd", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return fcntl(f.udp4, F_GETFD) >= 0 && fcntl(f.udp4, F_SETFD, FD_CLOEXEC) == 0;
         }},
        {"fcntl_pipe_size", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return fcntl(f.pipe_w, F_SETPIPE_SZ, 1 << 17) >= (1 << 17) &&
                  fcntl(f.pipe_w, F_GETPIPE_SZ) >= (1 << 17);
         }},
        {"state_memfd_sealed", Expect::kAllowed,
         +[](const ProbeFds& f) {
           const int fd = memfd_create("sluice-state", MFD_CLOEXEC | MFD_ALLOW_SEALING);
           uint64_t cookie = 0;
           socklen_t len = sizeof(cookie);
           return fd >= 0 && write(fd, "blob", 4) == 4 &&
                  fcntl(fd, F_ADD_SEALS,
                        F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0 &&
                  getsockopt(f.listener, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0;
         }},
        {"getsockopt_bindtodevice", Expect::kAllowed,
         +[](const ProbeFds& f) {
           // Names the interface a listener is bound to (none here: length 0).
           char name[IFNAMSIZ] = {};
           socklen_t len = sizeof(name);
           return getsockopt(f.listener, SOL_SOCKET, SO_BINDTODEVICE, name, &len) == 0 && len == 0;
         }},
        {"memfd_create_without_sealing", Expect::kKilled,
         FORBIDDEN(memfd_create("x", MFD_CLOEXEC))},
        {"memfd_create_hugetlb", Expect::kKilled,
         FORBIDDEN(memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB))},
        {"fcntl_add_seals_future_write", Expect::kKilled,
         FORBIDDEN(fcntl(f.pipe_w, F_ADD_SEALS, F_SEAL_FUTURE_WRITE))},
        {"fcntl_get_seals", Expect::kKilled, FORBIDDEN(fcntl(f.pipe_w, F_GET_SEALS))},
        {"fcntl_setfl_async", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_SETFL, O_ASYNC))},
        {"fcntl_setfl_append", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_SETFL, O_APPEND))},
        {"fcntl_setfd_other_bit", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_SETFD, 2))},
        {"fcntl_dupfd", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_DUPFD_CLOEXEC, 0))},
        {"fcntl_setown", Expect::kKilled, FORBIDDEN(fcntl(f.tcp6, F_SETOWN, 1))},
        {"fcntl_setlk", Expect::kKilled, FORBIDDEN(fcntl(f.pipe_r, F_SETLK, nullptr))},

        // --- splice and pipe2 (flag masks).
        {"splice", Expect::kAllowed,
         +[](const ProbeFds& f) {
           if (write(f.stream[0], "abc", 3) != 3) return false;
           return splice(f.stream[1], nullptr, f.pipe_w, nullptr, 3,
                         SPLICE_F_NONBLOCK | SPLICE_F_MOVE | SPLICE_F_MORE) == 3 &&
                  splice(f.pipe_r, nullptr, f.stream[0], nullptr, 3, SPLICE_F_NONBLOCK) == 3;
         }},
        {"splice_gift", Expect::kKilled,
         FORBIDDEN(splice(f.stream[1], nullptr, f.pipe_w, nullptr, 1, SPLICE_F_GIFT))},
        // Offsets: only NULL. An output offset writes inside a file, such as
        // the audit log at offset 0, whatever O_APPEND says.
        {"splice_offset_out_into_audit_fd", Expect::kKilled,
         +[](const ProbeFds& f) {
           loff_t at = 0;
           [[maybe_unused]] ssize_t n = write(f.pipe_w, "xx", 2);
           (void)splice(f.pipe_r, nullptr, kAuditFd, &at, 2, 0);
           return false;
         },
         kSetupAuditFd},
        {"splice_offset_in", Expect::kKilled,
         +[](const ProbeFds& f) {
           loff_t at = 0;
           (void)splice(kAuditFd, &at, f.pipe_w, nullptr, 1, SPLICE_F_NONBLOCK);
           return false;
         },
         kSetupAuditFd},
        {"pipe2", Expect::kAllowed,
         +[](const ProbeFds&) {
           int p[2];
           return pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0 && pipe2(p, 0) == 0;
         }},
        {"pipe2_direct", Expect::kKilled,
         +[](const ProbeFds&) {
           int p[2];
           [[maybe_unused]] int rc = pipe2(p, O_DIRECT);
           return false;
         }},
        {"pipe", Expect::kKilled,
         +[](const ProbeFds&) {
           int p[2];
           return syscall(SYS_pipe, p) == 0 && false;
         }},

        // --- pread64: auto-scan's re-read of both sides' /proc/net tables,
        // only on fds 16 to 23 (fd & ~7 == 16): 16-19 the target namespace's,
        // 20-23 sluiced's side's; any offset there, nowhere else.
        {"pread64_scan_fds", Expect::kAllowed,
         +[](const ProbeFds&) {
           char buf[256];
           for (int fd = wire::kWorkerFdScanFirst;
                fd < wire::kWorkerFdScanFirst + wire::kWorkerFdScanCount; ++fd) {
             if (pread(fd, buf, sizeof(buf), 0) <= 0 || pread(fd, buf, sizeof(buf), 64) < 0) {
               return false;
             }
           }
           return true;
         },
         kSetupScanFds},
        {"pread64_host_scan_fds", Expect::kAllowed,
         +[](const ProbeFds&) {
           char buf[256];
           for (int fd = wire::kWorkerFdHostScanFirst; fd < wire::kWorkerFdScanEnd; ++fd) {
             if (pread(fd, buf, sizeof(buf), 0) <= 0 || pread(fd, buf, sizeof(buf), 64) < 0) {
               return false;
             }
           }
           return true;
         },
         kSetupScanFds},
        {"pread64_scan_fd_high_bits_ignored", Expect::kAllowed,
         +[](const ProbeFds&) {
           char buf[64];
           return syscall(SYS_pread64, 0xdead000000000000ul | wire::kWorkerFdScanFirst, buf,
                          sizeof(buf), 0) > 0 &&
                  syscall(SYS_pread64, 0xdead000000000000ul | (wire::kWorkerFdScanEnd - 1), buf,
                          sizeof(buf), 0) > 0;
         },
         kSetupScanFds},
        {"pread64_fd_below_the_block", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n = pread(wire::kWorkerFdScanFirst - 1, buf, sizeof(buf), 0);
           return false;
         },
         kSetupScanFds},
        {"pread64_fd_above_the_block", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n = pread(wire::kWorkerFdScanEnd, buf, sizeof(buf), 0);
           return false;
         },
         kSetupScanFds},
        // The old block of the target side (12-15) is no scan fd any more.
        {"pread64_old_scan_block", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n = pread(12, buf, sizeof(buf), 0);
           return false;
         },
         kSetupScanFds},
        // A mask one bit too wide would admit 24-31 or 8-15: the first fd of
        // each neighbouring block of eight dies.
        {"pread64_fd_of_the_block_below", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n =
               pread(wire::kWorkerFdScanFirst - 2 * wire::kWorkerFdScanCount, buf, sizeof(buf), 0);
           return false;
         },
         kSetupScanFds},
        // The policy text on its fixed number, read from its start: the file
        // offset is shared with sluiced and every earlier worker.
        {"pread64_policy_fd", Expect::kAllowed,
         +[](const ProbeFds&) {
           char buf[8];
           ssize_t n = pread(wire::kWorkerFdPolicy, buf, sizeof(buf), 0);
           return n >= 0 || errno == EBADF || errno == ESPIPE;
         }},
        {"pread64_fd_after_the_policy", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n = pread(wire::kWorkerFdPolicy + 1, buf, sizeof(buf), 0);
           return false;
         }},
        // The audit log's earlier lines cannot be read back at an offset either.
        {"pread64_audit_fd", Expect::kKilled,
         +[](const ProbeFds&) {
           char buf[8];
           [[maybe_unused]] ssize_t n = pread(kAuditFd, buf, sizeof(buf), 0);
           return false;
         },
         kSetupAuditFd},
        {"lseek", Expect::kKilled, FORBIDDEN(lseek(f.pipe_r, 0, SEEK_SET))},
        {"pwrite64", Expect::kKilled, FORBIDDEN(pwrite(f.pipe_w, "x", 1, 0))},

        // --- I/O without argument filters.
        {"read_write_readv_writev", Expect::kAllowed,
         +[](const ProbeFds& f) {
           char buf[8] = {};
           iovec iov = {buf, sizeof(buf)};
           return write(f.pipe_w, "x", 1) == 1 && read(f.pipe_r, buf, 1) == 1 &&
                  writev(f.pipe_w, &iov, 1) == 8 && readv(f.pipe_r, &iov, 1) == 8;
         }},
        {"send_recv", Expect::kAllowed,
         +[](const ProbeFds& f) {
           char c;
           return send(f.stream[0], "y", 1, MSG_NOSIGNAL) == 1 && recv(f.stream[1], &c, 1, 0) == 1;
         }},
        // The TCP data path's copy of a connection's first bytes
        // (worker/transfer_mode.h): recv until drained, send without SIGPIPE.
        {"send_recv_dontwait_copy_path", Expect::kAllowed,
         +[](const ProbeFds& f) {
           char buf[16];
           return send(f.stream[0], "zz", 2, MSG_DONTWAIT | MSG_NOSIGNAL) == 2 &&
                  recv(f.stream[1], buf, sizeof(buf), MSG_DONTWAIT) == 2 &&
                  recv(f.stream[1], buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN;
         }},
        {"sendmsg_recvmsg_scm_rights", Expect::kAllowed,
         +[](const ProbeFds& f) {
           int fd = f.pipe_r;
           if (!send_message(f.dgram[0], "m", 1, {&fd, 1})) return false;
           char buf[4];
           Result<ReceivedMessage> got = receive_message(f.dgram[1], buf, sizeof(buf), 1);
           return got && got->len == 1 && got->fds.size() == 1;
         }},
        // The broker channel is drained without blocking (BrokerClient::on_event):
        // recvmsg with MSG_DONTWAIT until EAGAIN.
        {"recvmsg_dontwait_drain", Expect::kAllowed,
         +[](const ProbeFds& f) {
           if (!send_message(f.dgram[0], "r", 1, {})) return false;
           char buf[4];
           Result<ReceivedMessage> got =
               receive_message(f.dgram[1], buf, sizeof(buf), 0, MSG_DONTWAIT);
           Result<ReceivedMessage> none =
               receive_message(f.dgram[1], buf, sizeof(buf), 0, MSG_DONTWAIT);
           return got && got->len == 1 && !none && none.error().err == EAGAIN;
         }},
        {"sendmmsg_recvmmsg", Expect::kAllowed,
         +[](const ProbeFds& f) {
           char out[2] = {'a', 'b'}, in[2];
           iovec o[2] = {{&out[0], 1}, {&out[1], 1}}, i[2] = {{&in[0], 1}, {&in[1], 1}};
           mmsghdr om[2] = {}, im[2] = {};
           for (int k = 0; k < 2; ++k) {
             om[k].msg_hdr.msg_iov = &o[k];
             om[k].msg_hdr.msg_iovlen = 1;
             im[k].msg_hdr.msg_iov = &i[k];
             im[k].msg_hdr.msg_iovlen = 1;
           }
           return sendmmsg(f.dgram[0], om, 2, 0) == 2 &&
                  recvmmsg(f.dgram[1], im, 2, MSG_DONTWAIT, nullptr) == 2;
         }},

        // --- The UDP data path: recvmmsg (flags only MSG_DONTWAIT, no
        // timeout), sendmmsg (flags only MSG_DONTWAIT), with pktinfo cmsgs.
        {"udp_flow_round_trip", Expect::kAllowed, udp_flow_round_trip},
        {"recvmmsg_flags_high_bits_ignored", Expect::kAllowed,
         +[](const ProbeFds& f) {
           // The kernel reads flags as an unsigned int: a dirty upper half passes.
           return raw_recvmmsg(f.udp_listener, 0xdead000000000000ul | MSG_DONTWAIT, nullptr) < 0 &&
                  errno == EAGAIN;
         }},
        {"recvmmsg_timeout", Expect::kKilled,
         +[](const ProbeFds& f) {
           struct timespec ts = {0, 1000};
           (void)raw_recvmmsg(f.udp_listener, MSG_DONTWAIT, &ts);
           return false;
         }},
        {"recvmmsg_waitforone", Expect::kKilled,
         FORBIDDEN(raw_recvmmsg(f.udp_listener, MSG_WAITFORONE, nullptr))},
        {"recvmmsg_errqueue", Expect::kKilled,
         FORBIDDEN(raw_recvmmsg(f.udp_listener, MSG_DONTWAIT | MSG_ERRQUEUE, nullptr))},
        {"recvmmsg_peek", Expect::kKilled,
         FORBIDDEN(raw_recvmmsg(f.udp_listener, MSG_DONTWAIT | MSG_PEEK, nullptr))},
        {"sendmmsg_dontwait", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return raw_sendmmsg(f.dgram[0], MSG_DONTWAIT) == 1 && raw_sendmmsg(f.dgram[0], 0) == 1;
         }},
        {"sendmmsg_confirm", Expect::kKilled,
         FORBIDDEN(raw_sendmmsg(f.dgram[0], MSG_DONTWAIT | MSG_CONFIRM))},
        {"sendmmsg_oob", Expect::kKilled, FORBIDDEN(raw_sendmmsg(f.dgram[0], MSG_OOB))},
        {"sendmmsg_nosignal", Expect::kKilled, FORBIDDEN(raw_sendmmsg(f.dgram[0], MSG_NOSIGNAL))},
        {"udp_listener_checks", Expect::kAllowed,
         +[](const ProbeFds& f) {
           // verify_listener(): pktinfo on, and no peer.
           int on = 0;
           socklen_t len = sizeof(on);
           sockaddr_storage peer;
           socklen_t plen = sizeof(peer);
           return getsockopt(f.udp_listener, IPPROTO_IP, IP_PKTINFO, &on, &len) == 0 && on == 1 &&
                  get_int(f.udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO) &&
                  getpeername(f.udp_listener, reinterpret_cast<sockaddr*>(&peer), &plen) != 0 &&
                  errno == ENOTCONN;
         }},
        {"getsockopt_ip_options", Expect::kKilled,
         FORBIDDEN(get_int(f.udp_listener, IPPROTO_IP, IP_OPTIONS))},
        {"getsockopt_ipv6_recvpktinfo_wrong_level", Expect::kKilled,
         FORBIDDEN(get_int(f.udp6, IPPROTO_IP, IPV6_RECVPKTINFO))},
        {"getsockopt_ip_pktinfo_wrong_level", Expect::kKilled,
         FORBIDDEN(get_int(f.udp6, IPPROTO_IPV6, IP_PKTINFO))},

        {"getsockname_getpeername", Expect::kAllowed,
         +[](const ProbeFds& f) {
           sockaddr_storage ss;
           socklen_t len = sizeof(ss);
           if (getsockname(f.listener, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
           len = sizeof(ss);
           return getpeername(f.stream[0], reinterpret_cast<sockaddr*>(&ss), &len) == 0;
         }},
        {"epoll", Expect::kAllowed,
         +[](const ProbeFds& f) {
           epoll_event ev = {EPOLLIN | EPOLLET, {}};
           epoll_event out[4];
           sigset_t none;
           sigemptyset(&none);
           return epoll_ctl(f.epoll, EPOLL_CTL_ADD, f.pipe_r, &ev) == 0 &&
                  epoll_wait(f.epoll, out, 4, 0) >= 0 &&
                  epoll_pwait(f.epoll, out, 4, 0, &none) >= 0 &&
                  epoll_ctl(f.epoll, EPOLL_CTL_DEL, f.pipe_r, nullptr) == 0;
         }},
        {"close", Expect::kAllowed, +[](const ProbeFds& f) { return close(f.udp6) == 0; }},

        // --- getsockopt rows.
        {"getsockopt_allowed", Expect::kAllowed,
         +[](const ProbeFds& f) {
           ucred cred;
           socklen_t len = sizeof(cred);
           tcp_info info;
           socklen_t ilen = sizeof(info);
           return get_int(f.listener, SOL_SOCKET, SO_ERROR) &&
                  get_int(f.listener, SOL_SOCKET, SO_TYPE) &&
                  get_int(f.listener, SOL_SOCKET, SO_DOMAIN) &&
                  get_int(f.listener, SOL_SOCKET, SO_PROTOCOL) &&
                  get_int(f.listener, SOL_SOCKET, SO_ACCEPTCONN) &&
                  get_int(f.tcp4, SOL_SOCKET, SO_RCVBUF) &&
                  get_int(f.tcp4, SOL_SOCKET, SO_SNDBUF) &&
                  getsockopt(f.stream[0], SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
                  getsockopt(f.tcp4, IPPROTO_TCP, TCP_INFO, &info, &ilen) == 0;
         }},
        {"getsockopt_reuseaddr", Expect::kKilled,
         FORBIDDEN(get_int(f.tcp4, SOL_SOCKET, SO_REUSEADDR))},
        {"getsockopt_tcp_info_wrong_level", Expect::kKilled,
         FORBIDDEN(get_int(f.tcp4, SOL_SOCKET, TCP_INFO))},
        {"getsockopt_peersec", Expect::kKilled,
         FORBIDDEN(get_int(f.stream[0], SOL_SOCKET, SO_PEERSEC))},

        // --- setsockopt rows.
        {"setsockopt_allowed", Expect::kAllowed,
         +[](const ProbeFds& f) {
           linger lg = {1, 0};
           return setsockopt(f.tcp4, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) == 0 &&
                  set_int(f.tcp4, SOL_SOCKET, SO_KEEPALIVE) &&
                  set_int(f.tcp4, SOL_SOCKET, SO_OOBINLINE) &&
                  set_int(f.tcp4, SOL_SOCKET, SO_RCVBUF) &&
                  set_int(f.tcp4, SOL_SOCKET, SO_SNDBUF) &&
                  set_int(f.tcp4, IPPROTO_TCP, TCP_NODELAY) &&
                  set_int(f.tcp4, IPPROTO_TCP, TCP_KEEPIDLE) &&
                  set_int(f.tcp4, IPPROTO_TCP, TCP_KEEPINTVL) &&
                  set_int(f.tcp4, IPPROTO_TCP, TCP_KEEPCNT) &&
                  set_int(f.tcp6, IPPROTO_IPV6, IPV6_V6ONLY) &&
                  set_int(f.tcp4, IPPROTO_IP, IP_MINTTL) &&
                  set_int(f.tcp6, IPPROTO_IP, IP_MINTTL) &&
                  set_int(f.tcp6, IPPROTO_IPV6, IPV6_MINHOPCOUNT);
         }},
        // The TTL floor that stops a closing listener, but no other IP option
        // and no BPF filter.
        {"setsockopt_ip_ttl", Expect::kKilled, FORBIDDEN(set_int(f.tcp4, IPPROTO_IP, IP_TTL))},
        {"setsockopt_minttl_wrong_level", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, IP_MINTTL))},
        {"setsockopt_oobinline_wrong_level", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, SO_OOBINLINE))},
        {"setsockopt_attach_filter", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_ATTACH_FILTER))},
        // The broker sets pktinfo before bind; the worker sets no UDP option.
        {"setsockopt_ip_pktinfo", Expect::kKilled,
         FORBIDDEN(set_int(f.udp4, IPPROTO_IP, IP_PKTINFO))},
        {"setsockopt_ipv6_recvpktinfo", Expect::kKilled,
         FORBIDDEN(set_int(f.udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO))},
        {"setsockopt_ip_recverr", Expect::kKilled,
         FORBIDDEN(set_int(f.udp4, IPPROTO_IP, IP_RECVERR))},
        {"setsockopt_reuseaddr", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_REUSEADDR))},
        {"setsockopt_reuseport", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_REUSEPORT))},
        {"setsockopt_bindtodevice", Expect::kKilled,
         FORBIDDEN(setsockopt(f.tcp4, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3))},
        {"setsockopt_mark", Expect::kKilled, FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_MARK))},
        {"setsockopt_ip_transparent", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, IPPROTO_IP, IP_TRANSPARENT))},
        {"setsockopt_nodelay_wrong_level", Expect::kKilled,
         FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, TCP_NODELAY))},

        // --- Memory: never executable.
        {"mmap_rw_none", Expect::kAllowed,
         +[](const ProbeFds&) {
           void* a =
               mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
           void* b = mmap(nullptr, 8192, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
           return a != MAP_FAILED && b != MAP_FAILED && munmap(b, 8192) == 0 &&
                  mremap(a, 8192, 1 << 20, MREMAP_MAYMOVE) != MAP_FAILED;
         }},
        {"mmap_exec", Expect::kKilled,
         FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))},
        {"mmap_rwx", Expect::kKilled,
         FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))},
        {"mprotect_rw_ro", Expect::kAllowed,
         +[](const ProbeFds& f) {
           return mprotect(f.page, 4096, PROT_READ) == 0 &&
                  mprotect(f.page, 4096, PROT_READ | PROT_WRITE) == 0;
         }},
        {"mprotect_exec", Expect::kKilled,
         FORBIDDEN(mprotect(f.page, 4096, PROT_READ | PROT_EXEC))},
        {"mremap_fixed", Expect::kKilled,
         FORBIDDEN(syscall(SYS_mremap, f.page, 4096, 4096, MREMAP_MAYMOVE | MREMAP_FIXED,
                           static_cast<char*>(f.page) + (1 << 20)))},
        {"madvise_dontneed", Expect::kAllowed,
         +[](const ProbeFds& f) { return madvise(f.page, 4096, MADV_DONTNEED) == 0; }},
#ifndef SLUICE_SANITIZE
        // What a commit that closed many listeners does a tick later: glibc
        // returns freed heap (brk, madvise DONTNEED). The sanitizer builds'
        // worker does not call it (their allocator needs more).
        {"malloc_trim", Expect::kAllowed,
         +[](const ProbeFds&) {
           std::vector<void*> blocks;
           for (int i = 0; i < 256; ++i) blocks.push_back(std::malloc(4096));
           for (size_t i = 0; i + 1 < blocks.size(); ++i) std::free(blocks[i]);
           ::malloc_trim(0);
           std::free(blocks.back());
           return true;
         }},
#endif
        {"madvise_dontfork", Expect::kKilled, FORBIDDEN(madvise(f.page, 4096, MADV_DONTFORK))},
        {"brk_futex_clock", Expect::kAllowed,
         +[](const ProbeFds&) {
           int word = 0;
           struct timespec ts;
           return syscall(SYS_brk, 0) > 0 &&
                  syscall(SYS_futex, &word, FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0) == 0 &&
                  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
         }},
        {"malloc_free", Expect::kAllowed,
         +[](const ProbeFds&) {
           for (size_t size = 16; size <= (8u << 20); size *= 4) {
             void* p = std::malloc(size);
             if (p == nullptr) return false;
             static_cast<char*>(p)[size - 1] = 1;
             p = std::realloc(p, size * 2);
             std::free(p);
           }
           return true;
         }},

        // --- Signals: abort() works; a handler returns through rt_sigreturn;
        // signals to anyone else, or other signals, die.
        {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }},
        {"raise_sigabrt_handled", Expect::kAllowed,
         +[](const ProbeFds&) { return raise(SIGABRT) == 0 && abort_handler_ran(); },
         kSetupAbortHandler},
        {"rt_sigaction", Expect::kKilled, FORBIDDEN(signal(SIGABRT, SIG_IGN))},
        {"tgkill_other_process", Expect::kKilled,
         FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, SIGABRT))},
        {"tgkill_other_signal", Expect::kKilled,
         FORBIDDEN(syscall(SYS_tgkill, getpid(), gettid(), SIGUSR1))},
        {"kill", Expect::kKilled, FORBIDDEN(kill(getpid(), 0))},
        {"exit_thread", Expect::kAllowed,
         +[](const ProbeFds&) -> bool {
           syscall(SYS_exit, 0);
           return false;
         }},

        // --- Forbidden outright by the design.
        {"bind", Expect::kKilled,
         +[](const ProbeFds& f) {
           sockaddr_in addr{};
           addr.sin_family = AF_INET;
           addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
           (void)bind(f.tcp4, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
           return false;
         }},
        {"listen", Expect::kKilled, FORBIDDEN(listen(f.tcp4, 1))},
        {"openat", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY))},
        {"open", Expect::kKilled, FORBIDDEN(syscall(SYS_open, "/", O_RDONLY))},
        {"execve", Expect::kKilled,
         +[](const ProbeFds&) {
           char* const argv[] = {const_cast<char*>("true"), nullptr};
           execve("/bin/true", argv, nullptr);
           return false;
         }},
        {"execveat", Expect::kKilled,
         FORBIDDEN(syscall(SYS_execveat, AT_FDCWD, "/bin/true", nullptr, nullptr, 0))},
        {"ptrace", Expect::kKilled, FORBIDDEN(ptrace(PTRACE_TRACEME, 0, nullptr, nullptr))},
        {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork))},
        {"clone", Expect::kKilled, FORBIDDEN(syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0))},
        {"unshare", Expect::kKilled, FORBIDDEN(unshare(CLONE_NEWUTS))},
        {"mount", Expect::kKilled, FORBIDDEN(mount("none", "/", "tmpfs", 0, nullptr))},
        {"ioctl", Expect::kKilled,
         +[](const ProbeFds& f) {
           int n = 0;
           (void)ioctl(f.pipe_r, FIONREAD, &n);
           return false;
         }},
        {"prctl", Expect::kKilled, FORBIDDEN(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0))},
        {"epoll_create1", Expect::kKilled, FORBIDDEN(epoll_create1(EPOLL_CLOEXEC))},
        {"socketpair", Expect::kKilled,
         +[](const ProbeFds&) {
           int sv[2];
           (void)socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
           return false;
         }},
        // The audit log's last line is read before the filter (worker/audit_tail.h):
        // after it, the worker can neither stat the log nor read it at an
        // offset, through fd 5 (pread64_audit_fd above) or through fd 8, so no
        // row of the allowlist was added for it.
        {"pread64_audit_tail_fd", Expect::kKilled,
         +[](const ProbeFds&) {
           char c;
           (void)syscall(SYS_pread64, wire::kWorkerFdAuditTail, &c, 1, 0);
           return false;
         }},
        {"fstat_audit_fd", Expect::kKilled,
         +[](const ProbeFds&) {
           struct stat st;
           (void)syscall(SYS_fstat, kAuditFd, &st);
           return false;
         },
         kSetupAuditFd},
        {"dup", Expect::kKilled, FORBIDDEN(dup(f.pipe_r))},
        {"memfd_create", Expect::kKilled, FORBIDDEN(memfd_create("x", 0))},
        {"setuid", Expect::kKilled, FORBIDDEN(syscall(SYS_setuid, 0))},
        {"x32_abi_getpid", Expect::kKilled, FORBIDDEN(syscall(0x40000000 | SYS_getpid))},
#if defined(__x86_64__)
        {"i386_abi_getpid", Expect::kKilled,
         +[](const ProbeFds&) {
           // int 0x80 from a 64-bit process is checked as the i386 architecture:
           // SCMP_FLTATR_ACT_BADARCH must kill the process.
           long ret = 20;  // __NR_getpid on i386
           asm volatile("int $0x80" : "+a"(ret) : : "memory");
           return false;
         },
         0, ia32_syscalls_work},
#endif
        {"sendfile", Expect::kKilled,
         FORBIDDEN(syscall(SYS_sendfile, f.stream[0], f.pipe_r, nullptr, 1))},
  });
  return probes;
}

}  // namespace sluice::testing
