// Probes of sluiced's allowlist (policy/seccomp_broker.cc), one or more per
// row: the call as the broker makes it passes, and every argument condition
// is perturbed once (another fd than the fixed one of seccomp_broker.h,
// another flag, family, type, option, signal or id type) and must die of
// SIGSYS. Every probe runs with the fixed descriptors in place
// (kSetupBrokerFds): the worker channel, the signalfd, the worker's pidfd (of
// a real child) and the control socket's directory. Then what the broker
// never needs after start-up: open, exec, fork, ioctl, fcntl, prctl, ...
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <vector>

#include "base/scm_rights.h"
#include "policy/seccomp_broker.h"
#include "tests/sandbox/filter_harness.h"

namespace sluice::testing {
namespace {

using broker_fd::kChannel;
using broker_fd::kControlDir;
using broker_fd::kHelper;
using broker_fd::kHelperChannel;
using broker_fd::kLauncher;
using broker_fd::kLauncherChannel;
using broker_fd::kPestoDir;
using broker_fd::kPolicyText;
using broker_fd::kSignal;
using broker_fd::kStateStaging;
using broker_fd::kWorker;

/// The socket types the listener factory creates (listener_factory.cc).
constexpr int kStream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
constexpr int kDgram = SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

/// A name that does not exist in the control socket's directory ("/").
constexpr const char* kNoSuchFile = "sluice-broker-probe-no-such-file";

/// Creates a socket as the listener factory does and closes it; true when
/// that worked.
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

/// pidfd_send_signal(2); glibc 2.36 has no wrapper that every header declares.
long pidfd_signal(int pidfd, int sig, siginfo_t* info, unsigned flags) {
  return syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags);
}

/// waitid(2) as the raw syscall (5 arguments, the last the rusage).
long raw_waitid(int idtype, int id, int options) {
  siginfo_t info{};
  return syscall(SYS_waitid, idtype, id, &info, options, nullptr);
}

/// fstatat(2) (newfstatat on x86_64) of `path` under `dirfd` with `flags`.
int stat_at(int dirfd, const char* path, int flags) {
  struct stat st;
  return fstatat(dirfd, path, &st, flags);
}

/// Binds `fd` (AF_INET) to 127.0.0.1 on an ephemeral port.
int bind_loopback(int fd) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
}

}  // namespace

const std::vector<Probe>& broker_probes() {
  // Long by nature: one entry per row and per perturbed argument.
  static const std::vector<Probe> probes = {
    // --- The worker channel and the loop.
    {"poll_fixed_fds", Expect::kAllowed,
     +[](const ProbeFds&) {
       pollfd fds[3] = {{kWorker, POLLIN, 0}, {kSignal, POLLIN, 0}, {kChannel, POLLIN, 0}};
       return poll(fds, 3, 0) == 2;  // the signal and the queued request
     },
     kSetupBrokerFds},
    {"recvmsg_channel", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[8];
       Result<ReceivedMessage> got = receive_message(kChannel, buf, sizeof(buf), 1, MSG_DONTWAIT);
       return got && got->len == 1;
     },
     kSetupBrokerFds},
    {"recvmsg_channel_blocking", Expect::kKilled,
     FORBIDDEN(recv_one(kChannel, MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"recvmsg_channel_peek", Expect::kKilled,
     FORBIDDEN(recv_one(kChannel, MSG_DONTWAIT | MSG_CMSG_CLOEXEC | MSG_PEEK)), kSetupBrokerFds},
    {"recvmsg_other_fd", Expect::kKilled,
     FORBIDDEN(recv_one(f.channel_peer, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"sendmsg_channel_with_fd", Expect::kAllowed,
     +[](const ProbeFds& f) {
       const int fds[] = {f.listener};  // a reply carries a listener
       return send_message(kChannel, "r", 1, fds).ok();
     },
     kSetupBrokerFds},
    {"sendmsg_channel_without_nosignal", Expect::kKilled, FORBIDDEN(send_one(kChannel, 0)),
     kSetupBrokerFds},
    {"sendmsg_other_fd", Expect::kKilled, FORBIDDEN(send_one(f.channel_peer, MSG_NOSIGNAL)),
     kSetupBrokerFds},
    {"read_signalfd", Expect::kAllowed,
     +[](const ProbeFds&) {
       signalfd_siginfo si;
       return read(kSignal, &si, sizeof(si)) == static_cast<ssize_t>(sizeof(si)) &&
              si.ssi_signo == SIGUSR1;
     },
     kSetupBrokerFds},
    {"read_channel", Expect::kKilled,
     +[](const ProbeFds&) {
       char c;
       [[maybe_unused]] ssize_t n = read(kChannel, &c, 1);
       return false;
     },
     kSetupBrokerFds},
    {"read_stdin", Expect::kKilled,
     +[](const ProbeFds&) {
       char c;
       [[maybe_unused]] ssize_t n = read(0, &c, 0);
       return false;
     },
     kSetupBrokerFds},
    {"write_log", Expect::kAllowed, +[](const ProbeFds&) { return write(2, "", 0) == 0; },
     kSetupBrokerFds},
    {"write_stdout", Expect::kKilled, FORBIDDEN(write(1, "", 0)), kSetupBrokerFds},
    // A socket sink (log_set_socket_sink): fd 2 here may be no socket, and
    // ENOTSOCK then shows that the call got past the filter.
    {"send_log_dontwait", Expect::kAllowed,
     +[](const ProbeFds&) {
       ssize_t n = send(2, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL);
       return n == 0 || errno == ENOTSOCK;
     },
     kSetupBrokerFds},
    {"send_log_blocking", Expect::kKilled, FORBIDDEN(send(2, "", 0, MSG_NOSIGNAL)),
     kSetupBrokerFds},
    {"send_log_with_address", Expect::kKilled,
     +[](const ProbeFds&) {
       sockaddr_in to{};
       to.sin_family = AF_INET;
       [[maybe_unused]] ssize_t n = sendto(2, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL,
                                           reinterpret_cast<sockaddr*>(&to), sizeof(to));
       return false;
     },
     kSetupBrokerFds},
    // systemd's NOTIFY_SOCKET (broker/sd_notify.h) on its fixed fd, a
    // connected datagram socket as sluiced keeps it: the whole message goes.
    // (Reading it back would need recvfrom on another fd, which the filter
    // rightly kills.)
    {"send_notify_dontwait", Expect::kAllowed,
     +[](const ProbeFds&) {
       return send(broker_fd::kNotify, "WATCHDOG=1", 10, MSG_DONTWAIT | MSG_NOSIGNAL) == 10;
     },
     kSetupBrokerFds},
    {"send_notify_blocking", Expect::kKilled,
     FORBIDDEN(send(broker_fd::kNotify, "READY=1", 7, MSG_NOSIGNAL)), kSetupBrokerFds},
    {"send_notify_with_address", Expect::kKilled,
     +[](const ProbeFds&) {
       sockaddr_in to{};
       to.sin_family = AF_INET;
       [[maybe_unused]] ssize_t n = sendto(broker_fd::kNotify, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL,
                                           reinterpret_cast<sockaddr*>(&to), sizeof(to));
       return false;
     },
     kSetupBrokerFds},
    // The service manager's fd store (broker/fd_store.h): one listener
    // with FDSTORE=1, never waiting; a blocking send dies.
    {"sendmsg_notify_fdstore", Expect::kAllowed,
     +[](const ProbeFds& f) {
       const int fds[] = {f.listener};
       return send_message(broker_fd::kNotify, "FDSTORE=1", 9, fds, MSG_DONTWAIT).ok();
     },
     kSetupBrokerFds},
    // While store operations wait, the loop polls the notify socket for
    // room (fd_store_queue.h): the poll row, which has no condition.
    {"poll_notify_writable", Expect::kAllowed,
     +[](const ProbeFds&) {
       pollfd p = {broker_fd::kNotify, POLLOUT, 0};
       return poll(&p, 1, 0) == 1 && (p.revents & POLLOUT) != 0;
     },
     kSetupBrokerFds},
    {"sendmsg_notify_blocking", Expect::kKilled,
     FORBIDDEN(send_one(broker_fd::kNotify, MSG_NOSIGNAL)), kSetupBrokerFds},
    {"send_channel", Expect::kKilled, FORBIDDEN(send(kChannel, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL)),
     kSetupBrokerFds},
    {"write_channel", Expect::kKilled, FORBIDDEN(write(kChannel, "x", 1)), kSetupBrokerFds},

    // --- Policy reload: the reader's channel and the policy texts.
    {"sendmsg_policy_reader", Expect::kAllowed,
     +[](const ProbeFds&) {
       return send_message(broker_fd::kPolicyReader, "r", 1, {}, MSG_DONTWAIT).ok();
     },
     kSetupBrokerFds},
    {"sendmsg_policy_reader_blocking", Expect::kKilled,
     FORBIDDEN(send_one(broker_fd::kPolicyReader, MSG_NOSIGNAL)), kSetupBrokerFds},
    {"sendmsg_channel_dontwait", Expect::kKilled,
     FORBIDDEN(send_one(kChannel, MSG_NOSIGNAL | MSG_DONTWAIT)), kSetupBrokerFds},
    {"recvmsg_policy_reader", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[8];
       Result<ReceivedMessage> got =
           receive_message(broker_fd::kPolicyReader, buf, sizeof(buf), 1, MSG_DONTWAIT);
       return got && got->len == 1;
     },
     kSetupBrokerFds},
    {"recvmsg_policy_reader_blocking", Expect::kKilled,
     FORBIDDEN(recv_one(broker_fd::kPolicyReader, MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"recvmsg_reader_peer", Expect::kKilled,
     FORBIDDEN(recv_one(f.reader_peer, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"dup3_to_policy_staging", Expect::kAllowed,
     +[](const ProbeFds&) {
       return dup3(broker_fd::kPolicyText, broker_fd::kPolicyStaging, O_CLOEXEC) ==
              broker_fd::kPolicyStaging;
     },
     kSetupBrokerFds},
    {"dup3_to_policy_staging_without_cloexec", Expect::kKilled,
     FORBIDDEN(dup3(broker_fd::kPolicyText, broker_fd::kPolicyStaging, 0)), kSetupBrokerFds},
    {"dup3_to_another_number", Expect::kKilled,
     FORBIDDEN(dup3(broker_fd::kPolicyText, broker_fd::kFirstFree + 20, O_CLOEXEC)),
     kSetupBrokerFds},
    {"dup3_policy_in_force", Expect::kAllowed,
     +[](const ProbeFds&) {
       return dup3(broker_fd::kPolicyStaging, broker_fd::kPolicyText, O_CLOEXEC) ==
              broker_fd::kPolicyText;
     },
     kSetupBrokerFds},
    {"dup3_channel_over_policy_in_force", Expect::kKilled,
     FORBIDDEN(dup3(kChannel, broker_fd::kPolicyText, O_CLOEXEC)), kSetupBrokerFds},
    // F_GET_SEALS reads the seals of any fd (StoreState's memfds arrive on
    // any number); it changes nothing. The reload does not check them.
    {"fcntl_get_seals_staging", Expect::kAllowed,
     +[](const ProbeFds&) { return fcntl(broker_fd::kPolicyStaging, F_GET_SEALS) > 0; },
     kSetupBrokerFds},
    {"pread_staging", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[32];
       return pread(broker_fd::kPolicyStaging, buf, sizeof(buf), 0) == 17;
     },
     kSetupBrokerFds},
    {"pread_policy_in_force", Expect::kKilled,
     FORBIDDEN([] {
       char buf[32];
       return pread(broker_fd::kPolicyText, buf, sizeof(buf), 0);
     }()),
     kSetupBrokerFds},

    // --- The namespace helper's channel and pidfd.
    {"poll_helper_pidfd", Expect::kAllowed,
     +[](const ProbeFds&) {
       pollfd fds[2] = {{kHelper, POLLIN, 0}, {kHelperChannel, POLLIN, 0}};
       return poll(fds, 2, 0) == 1;  // the answer queued on the channel
     },
     kSetupBrokerFds},
    {"sendmsg_helper_channel", Expect::kAllowed,
     +[](const ProbeFds&) { return send_message(kHelperChannel, "q", 1, {}).ok(); },
     kSetupBrokerFds},
    {"sendmsg_helper_channel_without_nosignal", Expect::kKilled,
     FORBIDDEN(send_one(kHelperChannel, 0)), kSetupBrokerFds},
    {"sendmsg_helper_channel_dontwait", Expect::kKilled,
     FORBIDDEN(send_one(kHelperChannel, MSG_NOSIGNAL | MSG_DONTWAIT)), kSetupBrokerFds},
    {"recvmsg_helper_channel_dontwait", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[8];
       Result<ReceivedMessage> got =
           receive_message(kHelperChannel, buf, sizeof(buf), 253, MSG_DONTWAIT);
       return got && got->len == 1;
     },
     kSetupBrokerFds},
    // A blocking read would let a stopped helper stop sluiced.
    {"recvmsg_helper_channel_blocking", Expect::kKilled,
     FORBIDDEN(recv_one(kHelperChannel, MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"recvmsg_helper_peer", Expect::kKilled, FORBIDDEN(recv_one(f.helper_peer, MSG_CMSG_CLOEXEC)),
     kSetupBrokerFds},
    {"getsockopt_acceptconn", Expect::kAllowed,
     +[](const ProbeFds& f) {
       int on = 0;
       socklen_t len = sizeof(on);
       return getsockopt(f.listener, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on == 1;
     },
     kSetupBrokerFds},
    {"getsockopt_ip_pktinfo", Expect::kAllowed,
     +[](const ProbeFds& f) {
       int on = 0;
       socklen_t len = sizeof(on);
       return getsockopt(f.udp_listener, IPPROTO_IP, IP_PKTINFO, &on, &len) == 0 && on == 1;
     },
     kSetupBrokerFds},
    {"getsockopt_ipv6_recvpktinfo", Expect::kAllowed,
     +[](const ProbeFds& f) {
       int on = 1;
       socklen_t len = sizeof(on);
       return getsockopt(f.udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, &len) == 0 && on == 0;
     },
     kSetupBrokerFds},
    {"getsockopt_ip_pktinfo_wrong_level", Expect::kKilled,
     +[](const ProbeFds& f) {
       int on = 0;
       socklen_t len = sizeof(on);
       (void)getsockopt(f.udp_listener, SOL_SOCKET, IP_PKTINFO, &on, &len);
       return false;
     },
     kSetupBrokerFds},
    {"getsockname", Expect::kAllowed,
     +[](const ProbeFds& f) {
       sockaddr_storage ss{};
       socklen_t len = sizeof(ss);
       return getsockname(f.listener, reinterpret_cast<sockaddr*>(&ss), &len) == 0;
     },
     kSetupBrokerFds},
    {"getpeername", Expect::kKilled,
     +[](const ProbeFds& f) {
       sockaddr_storage ss{};
       socklen_t len = sizeof(ss);
       (void)getpeername(f.stream[0], reinterpret_cast<sockaddr*>(&ss), &len);
       return false;
     },
     kSetupBrokerFds},
    {"waitid_helper_nohang", Expect::kAllowed,
     +[](const ProbeFds&) { return raw_waitid(P_PIDFD, kHelper, WEXITED | WNOHANG) == 0; },
     kSetupBrokerFds},
    {"waitid_helper_blocking", Expect::kKilled, FORBIDDEN(raw_waitid(P_PIDFD, kHelper, WEXITED)),
     kSetupBrokerFds},
    {"pidfd_signal_helper", Expect::kKilled, FORBIDDEN(pidfd_signal(kHelper, SIGKILL, nullptr, 0)),
     kSetupBrokerFds},
    {"shutdown_helper_channel", Expect::kAllowed,
     +[](const ProbeFds&) { return shutdown(kHelperChannel, SHUT_RDWR) == 0; }, kSetupBrokerFds},
    {"shutdown_helper_channel_read_only", Expect::kKilled,
     FORBIDDEN(shutdown(kHelperChannel, SHUT_RD)), kSetupBrokerFds},

    // --- Worker restarts: the launcher, the escrow, StoreState.
    {"sendmsg_launcher", Expect::kAllowed,
     +[](const ProbeFds&) {
       const int fds[] = {kPolicyText};
       return send_message(kLauncherChannel, "l", 1, fds).ok();
     },
     kSetupBrokerFds},
    {"sendmsg_launcher_dontwait", Expect::kKilled,
     FORBIDDEN(send_one(kLauncherChannel, MSG_NOSIGNAL | MSG_DONTWAIT)), kSetupBrokerFds},
    {"recvmsg_launcher", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[8];
       Result<ReceivedMessage> got = receive_message(kLauncherChannel, buf, sizeof(buf), 2);
       return got && got->len == 1;
     },
     kSetupBrokerFds},
    {"recvmsg_launcher_dontwait", Expect::kKilled,
     FORBIDDEN(recv_one(kLauncherChannel, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)), kSetupBrokerFds},
    {"dup3_new_worker_channel_and_pidfd", Expect::kAllowed,
     +[](const ProbeFds& f) {
       return dup3(f.tcp4, kChannel, O_CLOEXEC) == kChannel &&
              dup3(f.tcp4, kWorker, O_CLOEXEC) == kWorker;
     },
     kSetupBrokerFds},
    {"dup3_other_target", Expect::kKilled, FORBIDDEN(dup3(f.tcp4, kSignal, O_CLOEXEC)),
     kSetupBrokerFds},
    {"dup3_without_cloexec", Expect::kKilled, FORBIDDEN(dup3(f.tcp4, kChannel, 0)),
     kSetupBrokerFds},
    {"waitid_launcher_nohang", Expect::kAllowed,
     +[](const ProbeFds&) { return raw_waitid(P_PIDFD, kLauncher, WEXITED | WNOHANG) == 0; },
     kSetupBrokerFds},
    {"waitid_launcher_blocking", Expect::kKilled,
     FORBIDDEN(raw_waitid(P_PIDFD, kLauncher, WEXITED)), kSetupBrokerFds},
    {"escrow_copy_and_cookie", Expect::kAllowed,
     +[](const ProbeFds& f) {
       uint64_t cookie = 0;
       socklen_t len = sizeof(cookie);
       const int copy = fcntl(f.listener, F_DUPFD_CLOEXEC, 0);
       return copy >= 0 && close(copy) == 0 &&
              getsockopt(f.listener, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 && cookie != 0;
     },
     kSetupBrokerFds},
    {"fcntl_dupfd_without_cloexec", Expect::kKilled, FORBIDDEN(fcntl(f.listener, F_DUPFD, 0)),
     kSetupBrokerFds},
    {"store_state_checks", Expect::kAllowed,
     +[](const ProbeFds& f) {
       struct stat st;
       char buf[17];
       return fstat(kPolicyText, &st) == 0 && st.st_size == 17 &&
              fcntl(kPolicyText, F_GET_SEALS) > 0 &&
              dup3(f.tcp4, kStateStaging, O_CLOEXEC) == kStateStaging &&
              dup3(kPolicyText, kStateStaging, O_CLOEXEC) == kStateStaging &&
              pread(kStateStaging, buf, sizeof(buf), 0) == 17;
     },
     kSetupBrokerFds},
    {"pread_other_than_state_staging", Expect::kKilled,
     +[](const ProbeFds&) -> bool {
       char buf[1];
       [[maybe_unused]] auto n = pread(kPolicyText, buf, 1, 0);
       return false;
     },
     kSetupBrokerFds},
    // Rebinds: the socket tables, 24-31 only (one masked compare).
    {"pread_socket_tables", Expect::kAllowed,
     +[](const ProbeFds&) {
       char buf[64];
       return pread(broker_fd::kSocketTables, buf, sizeof(buf), 0) > 0 &&
              pread(broker_fd::kTargetSocketTables + 3, buf, sizeof(buf), 0) > 0;
     },
     kSetupBrokerFds},
    {"pread_below_socket_tables", Expect::kKilled,
     FORBIDDEN([] {
       char buf[1];
       return pread(broker_fd::kSocketTables - 1, buf, sizeof(buf), 0);
     }()),
     kSetupBrokerFds},
    {"pread_above_socket_tables", Expect::kKilled,
     FORBIDDEN([] {
       char buf[1];
       return pread(broker_fd::kFirstFree, buf, sizeof(buf), 0);
     }()),
     kSetupBrokerFds},
    {"fcntl_add_seals", Expect::kKilled, FORBIDDEN(fcntl(kPolicyText, F_ADD_SEALS, F_SEAL_SEAL)),
     kSetupBrokerFds},
    {"fstatat_path_not_empty_flag", Expect::kKilled,
     FORBIDDEN(stat_at(kPolicyText, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)), kSetupBrokerFds},

    // --- The listener factory.
    {"socket_tcp4", Expect::kAllowed, +[](const ProbeFds&) { return make_socket(AF_INET, kStream); },
     kSetupBrokerFds},
    {"socket_udp4", Expect::kAllowed, +[](const ProbeFds&) { return make_socket(AF_INET, kDgram); },
     kSetupBrokerFds},
    {"socket_tcp6", Expect::kAllowed,
     +[](const ProbeFds&) { return make_socket(AF_INET6, kStream); }, kSetupBrokerFds},
    {"socket_udp6", Expect::kAllowed,
     +[](const ProbeFds&) { return make_socket(AF_INET6, kDgram); }, kSetupBrokerFds},
    {"socket_unix", Expect::kKilled, FORBIDDEN(socket(AF_UNIX, kStream, 0)), kSetupBrokerFds},
    {"socket_netlink", Expect::kKilled, FORBIDDEN(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0)),
     kSetupBrokerFds},
    {"socket_packet", Expect::kKilled, FORBIDDEN(socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0)),
     kSetupBrokerFds},
    {"socket_raw_ip", Expect::kKilled,
     FORBIDDEN(socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP)),
     kSetupBrokerFds},
    {"socket_tcp_blocking", Expect::kKilled,
     FORBIDDEN(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), kSetupBrokerFds},
    {"socket_tcp_inheritable", Expect::kKilled,
     FORBIDDEN(socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0)), kSetupBrokerFds},
    {"socket_tcp_protocol", Expect::kKilled, FORBIDDEN(socket(AF_INET, kStream, IPPROTO_TCP)),
     kSetupBrokerFds},
    {"socket_seqpacket", Expect::kKilled,
     FORBIDDEN(socket(AF_INET, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)), kSetupBrokerFds},
    {"setsockopt_reuseaddr", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_REUSEADDR, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_v6only", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.tcp6, IPPROTO_IPV6, IPV6_V6ONLY, 0) == 0; },
     kSetupBrokerFds},
    {"setsockopt_bindtodevice", Expect::kAllowed,
     +[](const ProbeFds& f) {
       // Allowed by the filter; the kernel may still want CAP_NET_RAW.
       static const char kLo[] = "lo";
       return setsockopt(f.tcp4, SOL_SOCKET, SO_BINDTODEVICE, kLo, sizeof(kLo)) == 0 ||
              errno == EPERM;
     },
     kSetupBrokerFds},
    {"setsockopt_tcp_nodelay", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.tcp4, IPPROTO_TCP, TCP_NODELAY, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_keepalive", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_KEEPALIVE, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_tcp_cork", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, TCP_CORK, 1)), kSetupBrokerFds},
    {"setsockopt_keepalive_wrong_level", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, SO_KEEPALIVE, 1)), kSetupBrokerFds},
    {"setsockopt_ip_pktinfo", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.udp4, IPPROTO_IP, IP_PKTINFO, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_ipv6_recvpktinfo", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.udp6, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_ip_pktinfo_wrong_level", Expect::kKilled,
     FORBIDDEN(set_int(f.udp4, SOL_SOCKET, IP_PKTINFO, 1)), kSetupBrokerFds},
    {"setsockopt_ip_recverr", Expect::kKilled,
     FORBIDDEN(set_int(f.udp4, IPPROTO_IP, IP_RECVERR, 1)), kSetupBrokerFds},
    {"setsockopt_reuseport", Expect::kAllowed,
     +[](const ProbeFds& f) { return set_int(f.tcp4, SOL_SOCKET, SO_REUSEPORT, 1) == 0; },
     kSetupBrokerFds},
    {"setsockopt_reuseport_wrong_level", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, SO_REUSEPORT, 1)), kSetupBrokerFds},
    {"setsockopt_mark", Expect::kKilled, FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_MARK, 1)),
     kSetupBrokerFds},
    {"setsockopt_attach_filter", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, SOL_SOCKET, SO_ATTACH_FILTER, 0)), kSetupBrokerFds},
    {"setsockopt_ip_transparent", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, IPPROTO_IP, IP_TRANSPARENT, 1)), kSetupBrokerFds},
    {"setsockopt_ipv6_other", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp6, IPPROTO_IPV6, IPV6_TRANSPARENT, 1)), kSetupBrokerFds},
    {"setsockopt_reuseaddr_wrong_level", Expect::kKilled,
     FORBIDDEN(set_int(f.tcp4, IPPROTO_TCP, SO_REUSEADDR, 1)), kSetupBrokerFds},
    // --- PeerQuery: the ids of a control client, on an fd with no fixed number.
    {"getsockopt_peercred", Expect::kAllowed,
     +[](const ProbeFds& f) {
       ucred cred{};
       socklen_t len = sizeof(cred);
       return getsockopt(f.stream[0], SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 &&
              cred.pid == getpid();
     },
     kSetupBrokerFds},
    {"getsockopt_peergroups", Expect::kAllowed,
     +[](const ProbeFds& f) {
       gid_t groups[256];
       socklen_t len = sizeof(groups);
       return getsockopt(f.stream[0], SOL_SOCKET, SO_PEERGROUPS, groups, &len) == 0 ||
              errno == ERANGE;
     },
     kSetupBrokerFds},
    // check_peer_socket(): the fd's family and type before anything else.
    {"getsockopt_domain_type", Expect::kAllowed,
     +[](const ProbeFds& f) {
       int domain = 0, type = 0;
       socklen_t len = sizeof(domain);
       if (getsockopt(f.stream[0], SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) return false;
       len = sizeof(type);
       return getsockopt(f.stream[0], SOL_SOCKET, SO_TYPE, &type, &len) == 0 &&
              domain == AF_UNIX && type == SOCK_STREAM;
     },
     kSetupBrokerFds},
    {"getsockopt_other_option", Expect::kKilled,
     +[](const ProbeFds& f) {
       int size = 0;
       socklen_t len = sizeof(size);
       (void)getsockopt(f.tcp4, SOL_SOCKET, SO_RCVBUF, &size, &len);
       return false;
     },
     kSetupBrokerFds},
    {"getsockopt_type_wrong_level", Expect::kKilled,
     +[](const ProbeFds& f) {
       int type = 0;
       socklen_t len = sizeof(type);
       (void)getsockopt(f.tcp4, IPPROTO_TCP, SO_TYPE, &type, &len);
       return false;
     },
     kSetupBrokerFds},
    // close_without_linger(): SO_LINGER {0, 0} on a worker's fd before close.
    {"setsockopt_linger_then_close", Expect::kAllowed,
     +[](const ProbeFds& f) {
       struct linger off = {0, 0};
       return setsockopt(f.tcp4, SOL_SOCKET, SO_LINGER, &off, sizeof(off)) == 0 &&
              close(f.tcp4) == 0;
     },
     kSetupBrokerFds},
    {"setsockopt_linger_wrong_level", Expect::kKilled,
     +[](const ProbeFds& f) {
       struct linger off = {0, 0};
       (void)setsockopt(f.tcp4, IPPROTO_TCP, SO_LINGER, &off, sizeof(off));
       return false;
     },
     kSetupBrokerFds},
    {"getsockopt_peercred_wrong_level", Expect::kKilled,
     +[](const ProbeFds& f) {
       ucred cred{};
       socklen_t len = sizeof(cred);
       (void)getsockopt(f.stream[0], IPPROTO_TCP, SO_PEERCRED, &cred, &len);
       return false;
     },
     kSetupBrokerFds},
    {"bind", Expect::kAllowed, +[](const ProbeFds& f) { return bind_loopback(f.tcp4) == 0; },
     kSetupBrokerFds},
    {"listen_somaxconn", Expect::kAllowed,
     +[](const ProbeFds& f) { return listen(f.listener, SOMAXCONN) == 0; }, kSetupBrokerFds},
    {"listen_other_backlog", Expect::kKilled, FORBIDDEN(listen(f.listener, 8)), kSetupBrokerFds},
    {"close", Expect::kAllowed, +[](const ProbeFds& f) { return close(f.tcp4) == 0; },
     kSetupBrokerFds},
    {"shutdown_channel", Expect::kAllowed,
     +[](const ProbeFds&) { return shutdown(kChannel, SHUT_RDWR) == 0; }, kSetupBrokerFds},
    {"shutdown_channel_write_only", Expect::kKilled, FORBIDDEN(shutdown(kChannel, SHUT_WR)),
     kSetupBrokerFds},
    {"shutdown_other_fd", Expect::kKilled, FORBIDDEN(shutdown(f.stream[0], SHUT_RDWR)),
     kSetupBrokerFds},

    // --- The worker's lifetime, through its pidfd.
    {"pidfd_sigterm", Expect::kAllowed,
     +[](const ProbeFds&) { return pidfd_signal(kWorker, SIGTERM, nullptr, 0) == 0; },
     kSetupBrokerFds},
    {"pidfd_sigkill_then_waitid", Expect::kAllowed,
     +[](const ProbeFds&) {
       if (pidfd_signal(kWorker, SIGKILL, nullptr, 0) != 0) return false;
       pollfd p = {kWorker, POLLIN, 0};
       siginfo_t info{};
       return poll(&p, 1, 5000) == 1 &&
              syscall(SYS_waitid, P_PIDFD, kWorker, &info, WEXITED | WNOHANG, nullptr) == 0 &&
              info.si_code == CLD_KILLED && info.si_status == SIGKILL;
     },
     kSetupBrokerFds},
    {"pidfd_other_signal", Expect::kKilled, FORBIDDEN(pidfd_signal(kWorker, SIGUSR1, nullptr, 0)),
     kSetupBrokerFds},
    {"pidfd_other_fd", Expect::kKilled, FORBIDDEN(pidfd_signal(kChannel, SIGTERM, nullptr, 0)),
     kSetupBrokerFds},
    {"pidfd_with_siginfo", Expect::kKilled,
     +[](const ProbeFds&) {
       siginfo_t info{};
       (void)pidfd_signal(kWorker, SIGTERM, &info, 0);
       return false;
     },
     kSetupBrokerFds},
    {"pidfd_with_flags", Expect::kKilled, FORBIDDEN(pidfd_signal(kWorker, SIGTERM, nullptr, 1)),
     kSetupBrokerFds},
    {"waitid_pidfd_nohang", Expect::kAllowed,
     +[](const ProbeFds&) { return raw_waitid(P_PIDFD, kWorker, WEXITED | WNOHANG) == 0; },
     kSetupBrokerFds},
    {"waitid_blocking", Expect::kKilled, FORBIDDEN(raw_waitid(P_PIDFD, kWorker, WEXITED)),
     kSetupBrokerFds},
    {"waitid_stopped", Expect::kKilled,
     FORBIDDEN(raw_waitid(P_PIDFD, kWorker, WSTOPPED | WNOHANG)), kSetupBrokerFds},
    {"waitid_pid", Expect::kKilled, FORBIDDEN(raw_waitid(P_PID, f.child, WEXITED | WNOHANG)),
     kSetupBrokerFds},
    {"waitid_all", Expect::kKilled, FORBIDDEN(raw_waitid(P_ALL, 0, WEXITED | WNOHANG)),
     kSetupBrokerFds},
    {"waitid_other_fd", Expect::kKilled,
     FORBIDDEN(raw_waitid(P_PIDFD, kChannel, WEXITED | WNOHANG)), kSetupBrokerFds},

    // --- Shutdown: the control socket's directory only.
    {"newfstatat_control_dir", Expect::kAllowed,
     +[](const ProbeFds&) { return stat_at(kControlDir, ".", AT_SYMLINK_NOFOLLOW) == 0; },
     kSetupBrokerFds},
    {"newfstatat_cwd", Expect::kKilled, FORBIDDEN(stat_at(AT_FDCWD, "/", AT_SYMLINK_NOFOLLOW)),
     kSetupBrokerFds},
    {"newfstatat_following_links", Expect::kKilled, FORBIDDEN(stat_at(kControlDir, ".", 0)),
     kSetupBrokerFds},
    {"fstatat_by_path_without_nofollow", Expect::kKilled,
     FORBIDDEN(stat_at(kControlDir, kNoSuchFile, 0)), kSetupBrokerFds},
    {"unlinkat_control_dir", Expect::kAllowed,
     +[](const ProbeFds&) { return unlinkat(kControlDir, kNoSuchFile, 0) == -1 && errno == ENOENT; },
     kSetupBrokerFds},
    {"unlinkat_removedir", Expect::kKilled,
     FORBIDDEN(unlinkat(kControlDir, kNoSuchFile, AT_REMOVEDIR)), kSetupBrokerFds},
    {"unlinkat_cwd", Expect::kKilled, FORBIDDEN(unlinkat(AT_FDCWD, kNoSuchFile, 0)),
     kSetupBrokerFds},
    // --- Shutdown: the --pesto-socket directory, the same rows.
    {"newfstatat_pesto_dir", Expect::kAllowed,
     +[](const ProbeFds&) { return stat_at(kPestoDir, ".", AT_SYMLINK_NOFOLLOW) == 0; },
     kSetupBrokerFds},
    {"newfstatat_pesto_dir_following_links", Expect::kKilled,
     FORBIDDEN(stat_at(kPestoDir, ".", 0)), kSetupBrokerFds},
    {"unlinkat_pesto_dir", Expect::kAllowed,
     +[](const ProbeFds&) { return unlinkat(kPestoDir, kNoSuchFile, 0) == -1 && errno == ENOENT; },
     kSetupBrokerFds},
    {"unlinkat_pesto_dir_removedir", Expect::kKilled,
     FORBIDDEN(unlinkat(kPestoDir, kNoSuchFile, AT_REMOVEDIR)), kSetupBrokerFds},
    {"exit_group", Expect::kAllowed, +[](const ProbeFds&) -> bool { _exit(0); }, kSetupBrokerFds},

    // --- Memory and time.
    {"malloc_brk_mmap_munmap", Expect::kAllowed,
     +[](const ProbeFds&) {
       for (size_t size = 16; size <= (8u << 20); size *= 4) {
         void* p = std::malloc(size);  // large sizes: mmap and munmap
         if (p == nullptr) return false;
         std::free(p);
       }
       void* a = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
       return syscall(SYS_brk, 0) > 0 && a != MAP_FAILED && munmap(a, 4096) == 0;
     },
     kSetupBrokerFds},
    {"malloc_trim", Expect::kAllowed,
     +[](const ProbeFds& f) {
       bool released = true;
#ifndef SLUICE_SANITIZE
       // Free blocks in the middle of the heap: malloc_trim returns their
       // pages with madvise(MADV_DONTNEED). Not under the sanitizers, whose
       // allocator is not glibc's: glibc's, first used by malloc_trim,
       // would initialise itself with getrandom (and sluiced loads no
       // filter in those builds).
       std::vector<void*> blocks;
       for (int i = 0; i < 64; ++i) blocks.push_back(std::malloc(16384));
       for (size_t i = 0; i + 1 < blocks.size(); i += 2) std::free(blocks[i]);
       released = malloc_trim(0) == 1;
       for (size_t i = 1; i < blocks.size(); i += 2) std::free(blocks[i]);
#endif
       return released && madvise(f.page, 4096, MADV_DONTNEED) == 0;
     },
     kSetupBrokerFds},
    {"madvise_dontfork", Expect::kKilled, FORBIDDEN(madvise(f.page, 4096, MADV_DONTFORK)),
     kSetupBrokerFds},
    {"mmap_exec", Expect::kKilled,
     FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
     kSetupBrokerFds},
    {"mmap_growsdown", Expect::kKilled,
     FORBIDDEN(mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_GROWSDOWN,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
     kSetupBrokerFds},
    {"mprotect", Expect::kKilled, FORBIDDEN(mprotect(f.page, 4096, PROT_READ)), kSetupBrokerFds},
    {"mremap", Expect::kKilled, FORBIDDEN(mremap(f.page, 4096, 8192, MREMAP_MAYMOVE)),
     kSetupBrokerFds},
    {"clock_gettime_syscall", Expect::kAllowed,
     +[](const ProbeFds&) {
       timespec ts;
       return syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts) == 0;
     },
     kSetupBrokerFds},
    {"restart_syscall", Expect::kAllowed,
     // With nothing to restart the kernel answers EINTR.
     +[](const ProbeFds&) { return syscall(SYS_restart_syscall) == -1 && errno == EINTR; },
     kSetupBrokerFds},

    // --- abort(): SIGABRT to the broker itself, and nothing else.
    {"abort", Expect::kAborts, +[](const ProbeFds&) -> bool { std::abort(); }, kSetupBrokerFds},
    {"sigprocmask_getpid_gettid", Expect::kAllowed,
     +[](const ProbeFds&) {
       sigset_t none;
       sigemptyset(&none);
       return sigprocmask(SIG_BLOCK, &none, nullptr) == 0 && syscall(SYS_getpid) == getpid() &&
              syscall(SYS_gettid) == gettid();
     },
     kSetupBrokerFds},
    {"sigaction_sigabrt_default", Expect::kAllowed,
     +[](const ProbeFds&) {
       struct sigaction dfl = {};
       dfl.sa_handler = SIG_DFL;
       return sigaction(SIGABRT, &dfl, nullptr) == 0;
     },
     kSetupBrokerFds},
    {"sigaction_other_signal", Expect::kKilled,
     +[](const ProbeFds&) {
       struct sigaction ign = {};
       ign.sa_handler = SIG_IGN;
       (void)sigaction(SIGTERM, &ign, nullptr);
       return false;
     },
     kSetupBrokerFds},
    {"signal_handler_return", Expect::kKilled,
     // The handler runs, and its return (rt_sigreturn) is killed: sluiced
     // takes its signals through the signalfd and installs no handler.
     +[](const ProbeFds&) {
       (void)raise(SIGABRT);
       return false;
     },
     kSetupBrokerFds | kSetupAbortHandler},
    {"tgkill_other_process", Expect::kKilled,
     FORBIDDEN(syscall(SYS_tgkill, kNoSuchPid, kNoSuchPid, SIGABRT)), kSetupBrokerFds},
    {"tgkill_self_sigterm", Expect::kKilled,
     FORBIDDEN(syscall(SYS_tgkill, getpid(), gettid(), SIGTERM)), kSetupBrokerFds},
    {"kill_worker_by_pid", Expect::kKilled, FORBIDDEN(kill(f.child, SIGKILL)), kSetupBrokerFds},

    // --- What the broker never needs after start-up.
    {"openat", Expect::kKilled, FORBIDDEN(openat(AT_FDCWD, "/", O_RDONLY | O_DIRECTORY)),
     kSetupBrokerFds},
    {"openat_control_dir", Expect::kKilled, FORBIDDEN(openat(kControlDir, ".", O_RDONLY)),
     kSetupBrokerFds},
    {"execve", Expect::kKilled,
     +[](const ProbeFds&) {
       char* const argv[] = {const_cast<char*>("true"), nullptr};
       execve("/bin/true", argv, nullptr);
       return false;
     },
     kSetupBrokerFds},
    {"fork", Expect::kKilled, FORBIDDEN(syscall(SYS_fork)), kSetupBrokerFds},
    {"pidfd_open", Expect::kKilled, FORBIDDEN(syscall(SYS_pidfd_open, f.child, 0)),
     kSetupBrokerFds},
    {"fcntl_getfl", Expect::kKilled, FORBIDDEN(fcntl(kChannel, F_GETFL)), kSetupBrokerFds},
    {"fcntl_dupfd", Expect::kKilled, FORBIDDEN(fcntl(kChannel, F_DUPFD, 0)), kSetupBrokerFds},
    {"fcntl_setfl", Expect::kKilled, FORBIDDEN(fcntl(f.tcp4, F_SETFL, O_NONBLOCK)),
     kSetupBrokerFds},
    {"ioctl", Expect::kKilled, FORBIDDEN(ioctl(f.tcp4, FIONREAD, nullptr)), kSetupBrokerFds},
    {"prctl", Expect::kKilled, FORBIDDEN(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)), kSetupBrokerFds},
    {"connect", Expect::kKilled, FORBIDDEN(connect(f.tcp4, nullptr, 0)), kSetupBrokerFds},
    {"accept4", Expect::kKilled, FORBIDDEN(accept4(f.listener, nullptr, nullptr, SOCK_CLOEXEC)),
     kSetupBrokerFds},
    {"socketpair", Expect::kKilled,
     +[](const ProbeFds&) {
       int sv[2];
       (void)socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
       return false;
     },
     kSetupBrokerFds},
    {"setuid", Expect::kKilled, FORBIDDEN(setuid(0)), kSetupBrokerFds},
  };
  return probes;
}

}  // namespace sluice::testing
