// Probes of the namespace helper's allowlist (helper_seccomp_rules in
// policy/seccomp_broker.cc), one or more per row: the call as the helper
// makes it passes, and every argument condition is perturbed once (another
// fd than its channel, another flag, option or backlog) and must die of
// SIGSYS. Every probe runs with the channel on helper_fd::kChannel
// (kSetupHelperFds), a request queued on it. Then what the helper must never
// do once it runs inside the target namespace: join another namespace, open,
// exec, fork, connect, accept, signal, wait, read options of sockets.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "base/scm_rights.h"
#include "policy/seccomp_broker.h"
#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

using helper_fd::kChannel;

/// The socket types of the listener factory.
constexpr int kStream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
constexpr int kDgram = SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

/// Creates a socket as the listener factory does and closes it.
bool make_socket(int family, int type) {
  int fd = socket(family, type, 0);
  return fd >= 0 && close(fd) == 0;
}

/// setsockopt(fd, level, name) with the int `value`.
int set_int(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof(value));
}

/// recvmsg of one byte from `fd` with `flags`.
ssize_t recv_one(int fd, int flags) {
  char byte;
  iovec iov = {&byte, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  return recvmsg(fd, &msg, flags);
}

/// sendmsg of one byte to `fd` with `flags`.
ssize_t send_one(int fd, int flags) {
  char byte = 'r';
  iovec iov = {&byte, 1};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  return sendmsg(fd, &msg, flags);
}

/// Binds `fd` (AF_INET) to 127.0.0.1 on an ephemeral port.
int bind_loopback(int fd) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
}

}  // namespace

const std::vector<Probe>& helper_probes() {
  constexpr unsigned kFds = kSetupHelperFds;
  // Long by nature: one entry per row and per perturbed argument.
  static const std::vector<Probe> probes = {
      // --- Its channel to sluiced and its log.
      {"recvmsg_channel_blocking", Expect::kAllowed,
       +[](const ProbeFds&) {
         char buf[8];
         Result<ReceivedMessage> got = receive_message(kChannel, buf, sizeof(buf), 0);
         return got && got->len == 1;
       },
       kFds},
      {"recvmsg_channel_dontwait", Expect::kKilled,
       FORBIDDEN(recv_one(kChannel, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)), kFds},
      {"recvmsg_channel_peek", Expect::kKilled,
       FORBIDDEN(recv_one(kChannel, MSG_CMSG_CLOEXEC | MSG_PEEK)), kFds},
      {"recvmsg_other_fd", Expect::kKilled, FORBIDDEN(recv_one(f.channel_peer, MSG_CMSG_CLOEXEC)),
       kFds},
      {"sendmsg_channel_with_fd", Expect::kAllowed,
       +[](const ProbeFds& f) {
         const int fds[] = {f.listener};  // an answer carries a listener
         return send_message(kChannel, "r", 1, fds).ok();
       },
       kFds},
      {"sendmsg_channel_without_nosignal", Expect::kKilled, FORBIDDEN(send_one(kChannel, 0)), kFds},
      {"sendmsg_other_fd", Expect::kKilled, FORBIDDEN(send_one(f.channel_peer, MSG_NOSIGNAL)),
       kFds},
      {"write_log", Expect::kAllowed, +[](const ProbeFds&) { return write(2, "", 0) == 0; }, kFds},
      {"write_stdout", Expect::kKilled, FORBIDDEN(write(1, "", 0)), kFds},
      // A socket sink (log_set_socket_sink, inherited from sluiced): fd 2 here
      // may be no socket, and ENOTSOCK then shows that the call got past.
      {"send_log_dontwait", Expect::kAllowed,
       +[](const ProbeFds&) {
         ssize_t n = send(2, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL);
         return n == 0 || errno == ENOTSOCK;
       },
       kFds},
      {"send_log_blocking", Expect::kKilled, FORBIDDEN(send(2, "", 0, MSG_NOSIGNAL)), kFds},
      {"send_channel", Expect::kKilled,
       FORBIDDEN(send(kChannel, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL)), kFds},
      {"write_channel", Expect::kKilled, FORBIDDEN(write(kChannel, "x", 1)), kFds},
      {"read_channel", Expect::kKilled,
       +[](const ProbeFds&) {
         char c;
         [[maybe_unused]] ssize_t n = read(kChannel, &c, 1);
         return false;
       },
       kFds},

      // --- The listener factory, inside the target namespace.
      {"socket_tcp4", Expect::kAllowed,
       +[](const ProbeFds&) { return make_socket(AF_INET, kStream); }, kFds},
      {"socket_udp4", Expect::kAllowed,
       +[](const ProbeFds&) { return make_socket(AF_INET, kDgram); }, kFds},
      {"socket_tcp6", Expect::kAllowed,
       +[](const ProbeFds&) { return make_socket(AF_INET6, kStream); }, kFds},
      {"socket_udp6", Expect::kAllowed,
       +[](const ProbeFds&) { return make_socket(AF_INET6, kDgram); }, kFds},
      {"socket_unix", Expect::kKilled, FORBIDDEN(socket(AF_UNIX, kStream, 0)), kFds},
      {"socket_netlink", Expect::kKilled, FORBIDDEN(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0)),
       kFds},
      {"socket_tcp_blocking", Expect::kKilled,
       FORBIDDEN(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), kFds},
      {"socket_tcp_protocol", Expect::kKilled, FORBIDDEN(socket(AF_INET, kStream, IPPROTO_TCP)),
       kFds},
      {"setsockopt_reuseaddr", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_REUSEADDR, 1) == 0; }, kFds},
      {"setsockopt_v6only", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.tcp6, IPPROTO_IPV6, IPV6_V6ONLY, 0) == 0; }, kFds},
      {"setsockopt_bindtodevice", Expect::kAllowed,
       +[](const ProbeFds& f) {
         static const char kLo[] = "lo";
         return setsockopt(f.tcp4, SOL_SOCKET, SO_BINDTODEVICE, kLo, sizeof(kLo)) == 0 ||
                errno == EPERM;
       },
       kFds},
      {"setsockopt_tcp_nodelay", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.tcp4, IPPROTO_TCP, TCP_NODELAY, 1) == 0; }, kFds},
      {"setsockopt_keepalive", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_KEEPALIVE, 1) == 0; }, kFds},
      {"setsockopt_ip_pktinfo", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.udp4, IPPROTO_IP, IP_PKTINFO, 1) == 0; }, kFds},
      {"setsockopt_ipv6_recvpktinfo", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) == 0; },
       kFds},
      {"setsockopt_linger", Expect::kKilled,
       +[](const ProbeFds& f) {
         struct linger off = {0, 0};
         (void)setsockopt(f.tcp4, SOL_SOCKET, SO_LINGER, &off, sizeof(off));
         return false;
       },
       kFds},
      {"setsockopt_reuseport", Expect::kAllowed,
       +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_REUSEPORT, 1) == 0; }, kFds},
      {"setsockopt_reuseport_wrong_level", Expect::kKilled,
       FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, SO_REUSEPORT, 1)), kFds},
      {"setsockopt_ip_transparent", Expect::kKilled,
       FORBIDDEN(set_int(f.tcp4, IPPROTO_IP, IP_TRANSPARENT, 1)), kFds},
      {"bind", Expect::kAllowed, +[](const ProbeFds& f) { return bind_loopback(f.tcp4) == 0; },
       kFds},
      {"listen_somaxconn", Expect::kAllowed,
       +[](const ProbeFds& f) { return listen(f.listener, SOMAXCONN) == 0; }, kFds},
      {"listen_other_backlog", Expect::kKilled, FORBIDDEN(listen(f.listener, 8)), kFds},
      {"close", Expect::kAllowed, +[](const ProbeFds& f) { return close(f.tcp4) == 0; }, kFds},
      {"exit_group", Expect::kAllowed, +[](const ProbeFds&) -> bool { _exit(0); }, kFds},

      // --- Memory, time and abort().
      {"malloc_brk_mmap_munmap", Expect::kAllowed,
       +[](const ProbeFds&) {
         for (size_t size = 16; size <= (8u << 20); size *= 4) {
           void* p = std::malloc(size);
           if (p == nullptr) return false;
           std::free(p);
         }
         return true;
       },
       kFds},
      {"mmap_exec", Expect::kKilled,
       FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
       kFds},
      {"clock_gettime_syscall", Expect::kAllowed,
       +[](const ProbeFds&) {
         timespec ts;
         return syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
       },
       kFds},
      {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }, kFds},
      {"tgkill_other_process", Expect::kKilled,
       FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, SIGABRT)), kFds},

      // --- What the helper never does once it runs inside the namespace.
      {"setns", Expect::kKilled, FORBIDDEN(setns(f.tcp4, CLONE_NEWNET)), kFds},
      {"unshare", Expect::kKilled, FORBIDDEN(unshare(CLONE_NEWNET)), kFds},
      {"openat", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY)), kFds},
      {"execve", Expect::kKilled,
       +[](const ProbeFds&) {
         char* const argv[] = {const_cast<char*>("true"), nullptr};
         execve("/bin/true", argv, nullptr);
         return false;
       },
       kFds},
      {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork)), kFds},
      {"connect", Expect::kKilled, FORBIDDEN(connect(f.tcp4, nullptr, 0)), kFds},
      {"accept4", Expect::kKilled, FORBIDDEN(accept4(f.listener, nullptr, nullptr, SOCK_CLOEXEC)),
       kFds},
      {"getsockopt", Expect::kKilled,
       +[](const ProbeFds& f) {
         int type = 0;
         socklen_t len = sizeof(type);
         (void)getsockopt(f.tcp4, SOL_SOCKET, SO_TYPE, &type, &len);
         return false;
       },
       kFds},
      {"poll", Expect::kKilled,
       +[](const ProbeFds&) {
         pollfd p = {kChannel, POLLIN, 0};
         (void)poll(&p, 1, 0);
         return false;
       },
       kFds},
      {"shutdown", Expect::kKilled, FORBIDDEN(shutdown(kChannel, SHUT_RDWR)), kFds},
      {"waitid", Expect::kKilled,
       +[](const ProbeFds&) {
         siginfo_t info{};
         (void)syscall(SYS_waitid, P_ALL, 0, &info, WEXITED | WNOHANG, nullptr);
         return false;
       },
       kFds},
      {"kill", Expect::kKilled, FORBIDDEN(kill(kNoSuchPid, SIGKILL)), kFds},
      {"prctl", Expect::kKilled, FORBIDDEN(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)), kFds},
      {"fcntl", Expect::kKilled, FORBIDDEN(fcntl(kChannel, F_GETFL)), kFds},
  };
  return probes;
}

}  // namespace sluice::testing
