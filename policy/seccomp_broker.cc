// sluiced's seccomp allowlists: the syscalls of the broker loop after start-up
// (broker/main.cc), its host side (broker/broker_host.cc), listener factory
// (broker/listener_factory.cc) and its side of the namespace helper's channel
// (broker/namespace_helper.cc); and the namespace helper's own, smaller one
// (its channel, its log, the listener factory). Everything before a filter
// (options, policy file, control socket, fork/exec of the worker, the helper's
// setns, capabilities, /proc reads) is deliberately not here. Descriptor
// arguments are pinned to the fixed numbers of seccomp_broker.h. Default
// action: KILL_PROCESS (seccomp_table.cc). Reviewed like the other tables:
// golden exports (tests/sandbox/golden/broker.pfc and helper.pfc) and a death
// test per row and per argument condition (tests/sandbox/broker_probes.cc).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <cstdint>

#include "policy/seccomp.h"
#include "policy/seccomp_broker.h"

namespace sluice {
namespace {

/// A 32-bit argument (int, unsigned) equal to `value`. Masked to 32 bits so
/// that garbage in the upper half of the register cannot slip past.
scmp_arg_cmp eq32(unsigned arg, uint32_t value) {
  return {arg, SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, value};
}

/// A 64-bit argument (pointer, size) equal to `value`.
scmp_arg_cmp eq64(unsigned arg, uint64_t value) {
  return {arg, SCMP_CMP_EQ, value, 0};
}

/// The only socket types the listener factory creates.
constexpr uint32_t kStream = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
constexpr uint32_t kDgram = SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC;

/// The listener factory's rows (listener_factory.cc), shared by sluiced and
/// its namespace helper: the same sockets, options, bind and listen.
std::vector<SyscallRule> listener_factory_rows() {
  return {
      {"socket",
       {eq32(0, AF_INET), eq32(1, kStream), eq32(2, 0)},
       "IPv4 TCP listener; sluiced also: a fresh socket for OpenSockets"},
      {"socket",
       {eq32(0, AF_INET), eq32(1, kDgram), eq32(2, 0)},
       "IPv4 UDP listener; sluiced also: a fresh socket for OpenSockets"},
      {"socket",
       {eq32(0, AF_INET6), eq32(1, kStream), eq32(2, 0)},
       "IPv6 TCP listener; sluiced also: a fresh socket for OpenSockets"},
      {"socket",
       {eq32(0, AF_INET6), eq32(1, kDgram), eq32(2, 0)},
       "IPv6 UDP listener; sluiced also: a fresh socket for OpenSockets"},
      {"setsockopt",
       {eq32(1, SOL_SOCKET), eq32(2, SO_REUSEADDR)},
       "TCP: re-bind a port whose old connections are in TIME_WAIT"},
      {"setsockopt",
       {eq32(1, SOL_SOCKET), eq32(2, SO_REUSEPORT)},
       "a rebind (wire::kListenerReplaces): the new listener, and sluiced's escrowed copies of "
       "the ones on its port, share the port until the old ones close; the kernel admits that "
       "only among sockets of one owner"},
      {"setsockopt",
       {eq32(1, IPPROTO_IP), eq32(2, IP_PKTINFO)},
       "IPv4 UDP: datagrams tell the worker which local address they were sent to"},
      {"setsockopt",
       {eq32(1, IPPROTO_IPV6), eq32(2, IPV6_RECVPKTINFO)},
       "IPv6 and dual-stack UDP: datagrams tell the worker their local address"},
      {"setsockopt",
       {eq32(1, IPPROTO_TCP), eq32(2, TCP_NODELAY)},
       "TCP listeners: no Nagle delay, inherited by every accepted connection"},
      {"setsockopt",
       {eq32(1, SOL_SOCKET), eq32(2, SO_KEEPALIVE)},
       "TCP listeners: keepalive, inherited by every accepted connection"},
      {"setsockopt",
       {eq32(1, IPPROTO_IPV6), eq32(2, IPV6_V6ONLY)},
       "IPv6: V6ONLY=1, or 0 for a dual-stack [::] listener"},
      {"setsockopt",
       {eq32(1, SOL_SOCKET), eq32(2, SO_BINDTODEVICE)},
       "a listener bound to an interface by name (rule with %IFNAME)"},
      {"setsockopt",
       {eq32(1, SOL_SOCKET), eq32(2, SO_BINDTOIFINDEX)},
       "a SPLICE listener bound to the target namespace's loopback by index (1 in every "
       "namespace), whatever its owner named the interfaces"},
      {"bind", {}, "bind the listener; checked against the bind policy first"},
      {"listen", {eq32(1, SOMAXCONN)}, "TCP listeners listen with the kernel's maximum backlog"},
      {"close", {}, "close the process's copy of a listener once it is sent"},
  };
}

/// The log row for a stderr that is a socket (a journal stream;
/// broker/isolation.cc unblock_log), shared by sluiced and its helper.
SyscallRule log_socket_row(int log_fd) {
  return {"sendto",
          {eq32(0, static_cast<uint32_t>(log_fd)), eq32(3, MSG_DONTWAIT | MSG_NOSIGNAL), eq64(4, 0),
           eq32(5, 0)},
          "log lines when stderr is a socket (a journal stream; broker/isolation.cc unblock_log): "
          "send(MSG_DONTWAIT) never waits for a stalled reader, and changes no file description "
          "that others share; no address, no other fd"};
}

/// The rows of memory, time and abort() that every sluiced process needs.
std::vector<SyscallRule> libc_rows(uint32_t self) {
  return {
      {"exit_group", {}, "exit() at shutdown or after a fatal error"},
      {"brk", {}, "malloc: grow the heap (strings of log lines and reasons)"},
      {"mmap",
       {arg_flags_within(2, PROT_READ | PROT_WRITE)},
       "malloc of a large block; prot only READ|WRITE (or NONE), never EXEC"},
      {"munmap", {}, "free of a large block"},
      {"clock_gettime", {}, "bounded waits (monotonic_ns) when the vDSO falls back to a syscall"},
      {"restart_syscall", {}, "the kernel restarts an interrupted poll or recvmsg"},
      // abort() after a failed CHECK: it must be able to die by SIGABRT.
      {"rt_sigprocmask", {}, "abort() unblocks SIGABRT"},
      {"rt_sigaction", {eq32(0, SIGABRT)}, "abort() resets SIGABRT to its default action"},
      {"getpid", {}, "abort() raises SIGABRT on this process"},
      {"gettid", {}, "abort() raises SIGABRT on this thread"},
      {"tgkill", {eq32(0, self), eq32(2, SIGABRT)}, "abort() raises SIGABRT on itself only"},
  };
}

/// Appends `more` to `rules`.
void append(std::vector<SyscallRule>& rules, std::vector<SyscallRule> more) {
  rules.insert(rules.end(), more.begin(), more.end());
}

}  // namespace

std::vector<SyscallRule> broker_seccomp_rules(int self_pid) {
  const uint32_t self = static_cast<uint32_t>(self_pid);
  using namespace broker_fd;  // NOLINT: the fixed fd names read best unqualified here
  std::vector<SyscallRule> rules = {
      // --- The worker channel and the loop (main.cc, broker_host.cc) ---
      {"poll",
       {},
       "wait on the channel (a request, or room for a reply that waits), the signalfd, the "
       "worker's pidfd and the namespace helper's, and for room on the notify socket while fd "
       "store operations wait (fd_store_queue.h); poll's array is not an argument seccomp "
       "can see, so this row has no condition"},
      {"recvmsg",
       {eq32(0, kChannel), eq32(2, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)},
       "receive one request from the worker (base/scm_rights.cc receive_message)"},
      {"sendmsg",
       {eq32(0, kChannel), eq32(2, MSG_NOSIGNAL)},
       "send a reply and its fds to the worker; MSG_NOSIGNAL: a dead worker gives EPIPE, "
       "not SIGPIPE. The channel is non-blocking (set before the filter): a full one gives "
       "EAGAIN, and the reply waits for POLLOUT"},
      {"read", {eq32(0, kSignal)}, "read a signalfd_siginfo (SIGTERM, SIGINT, SIGCHLD, SIGHUP)"},
      {"write", {eq32(0, kLog)}, "log lines to stderr (base/log.cc)"},
      log_socket_row(kLog),
      // --- systemd's readiness protocol (sd_notify.cc) ---
      {"sendto",
       {eq32(0, kNotify), eq32(3, MSG_DONTWAIT | MSG_NOSIGNAL), eq64(4, 0), eq32(5, 0)},
       "READY=1, STATUS=, WATCHDOG=1, RELOADING=1 and STOPPING=1 to the service manager on the "
       "NOTIFY_SOCKET connected before the filter: no address (it cannot be sent elsewhere), "
       "never waits (MSG_DONTWAIT), no SIGPIPE; /dev/null on that number without "
       "NOTIFY_SOCKET, where sendto fails"},
      {"sendmsg",
       {eq32(0, kNotify), eq32(2, MSG_DONTWAIT | MSG_NOSIGNAL)},
       "FDSTORE=1 with one listener or the worker's state to the service manager's fd store "
       "(fd_store.h), so that a restart of sluiced refuses nothing; on the NOTIFY_SOCKET "
       "connected before the filter, never waits, no SIGPIPE. seccomp cannot see the msghdr: "
       "an address in it could reach another datagram socket, which a compromised sluiced "
       "could reach as root anyway (THREAT_MODEL.md)"},
  };
  // --- The listener factory (listener_factory.cc), the broker's purpose ---
  append(rules, listener_factory_rows());
  append(
      rules,
      {
          // --- The namespace helper (namespace_helper.cc): SPLICE listeners.
          {"sendmsg",
           {eq32(0, kHelperChannel), eq32(2, MSG_NOSIGNAL)},
           "ask the namespace helper for the SPLICE listeners of a worker request; "
           "MSG_NOSIGNAL: a dead helper gives EPIPE, and sluiced stops"},
          {"recvmsg",
           {eq32(0, kHelperChannel), eq32(2, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)},
           "the namespace helper's answer and its listeners, once poll says it is there "
           "(never waits: a stopped helper must not stop sluiced)"},
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_ACCEPTCONN)},
           "check that a TCP socket from the namespace helper listens (check_opened_listener)"},
          {"getsockopt",
           {eq32(1, IPPROTO_IP), eq32(2, IP_PKTINFO)},
           "check that an IPv4 UDP socket from the namespace helper reports local addresses"},
          {"getsockopt",
           {eq32(1, IPPROTO_IPV6), eq32(2, IPV6_RECVPKTINFO)},
           "check that an IPv6 UDP socket from the namespace helper reports local addresses"},
          {"getsockname", {}, "check the address and port a namespace helper's socket is bound to"},
          {"waitid",
           {eq32(0, P_PIDFD), eq32(1, kHelper), eq32(3, WEXITED | WNOHANG)},
           "learn that the namespace helper exited (its exit ends sluiced), and reap it"},
          {"shutdown",
           {eq32(0, kHelperChannel), eq32(1, SHUT_RDWR)},
           "stop the namespace helper at shutdown by closing its channel"},

          // --- Policy reload on SIGHUP (broker/policy_reader.cc) ---
          {"sendmsg",
           {eq32(0, kPolicyReader), eq32(2, MSG_DONTWAIT | MSG_NOSIGNAL)},
           "ask the policy reader to read the --policy file again (PolicyRead); never waits, "
           "and a dead reader gives EPIPE, not SIGPIPE"},
          {"recvmsg",
           {eq32(0, kPolicyReader), eq32(2, MSG_DONTWAIT | MSG_CMSG_CLOEXEC)},
           "the policy reader's PolicyText and its memfd, once poll says it is there"},
          {"dup3",
           {eq32(1, kPolicyStaging), eq32(2, O_CLOEXEC)},
           "move a reloaded policy text to the one number sluiced reads from"},
          {"dup3",
           {eq32(0, kPolicyStaging), eq32(1, kPolicyText), eq32(2, O_CLOEXEC)},
           "put a parsed policy text in force: it replaces the old one on its fixed number"},
          {"pread64",
           {eq32(0, kPolicyStaging)},
           "read a reloaded policy text without moving the offset the worker reads from"},

          // --- PeerQuery (broker_host.cc answer_peer): who a control client is.
          // The fd is the worker's, received moments earlier: no fixed number.
          // SO_DOMAIN and SO_TYPE also check the namespace helper's sockets.
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_DOMAIN)},
           "PeerQuery: check first that the fd is an AF_UNIX socket (check_peer_socket); the "
           "family of a namespace helper's socket"},
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_TYPE)},
           "PeerQuery: check first that the fd is a SOCK_STREAM socket (check_peer_socket); the "
           "type of a namespace helper's socket"},
          {"setsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_LINGER)},
           "close a worker's fd without lingering (close_without_linger): a TCP socket with "
           "SO_LINGER would block the broker's close() on its unsent data"},
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_PEERCRED)},
           "PeerQuery: the control client's pid, uid and gid, as only the broker sees them"},
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_PEERGROUPS)},
           "PeerQuery: the control client's supplementary groups, for `control gid=` lines"},
          {"shutdown",
           {eq32(0, kChannel), eq32(1, SHUT_RDWR)},
           "stop the worker by closing its channel: needs no permission to signal it"},

          // --- The worker's lifetime (main.cc, worker_launch.cc) ---
          {"pidfd_send_signal",
           {eq32(0, kWorker), eq32(1, SIGTERM), eq64(2, 0), eq32(3, 0)},
           "ask the worker to stop at shutdown"},
          {"pidfd_send_signal",
           {eq32(0, kWorker), eq32(1, SIGKILL), eq64(2, 0), eq32(3, 0)},
           "kill a worker that misbehaved or did not stop in time"},
          {"waitid",
           {eq32(0, P_PIDFD), eq32(1, kWorker), eq32(3, WEXITED | WNOHANG)},
           "reap the worker and learn its exit status"},

          // --- Worker restarts (worker_launcher.cc, listener_escrow.cc, main.cc) ---
          {"sendmsg",
           {eq32(0, kLauncherChannel), eq32(2, MSG_NOSIGNAL)},
           "ask the worker launcher for a new worker, with the policy text in force; "
           "MSG_NOSIGNAL: a dead launcher gives EPIPE"},
          {"recvmsg",
           {eq32(0, kLauncherChannel), eq32(2, MSG_CMSG_CLOEXEC)},
           "the launcher's answer with the new worker's pidfd and channel (after poll)"},
          {"dup3",
           {eq32(1, kChannel), eq32(2, O_CLOEXEC)},
           "put a new worker's channel on the fixed number the rows above allow"},
          {"dup3",
           {eq32(1, kWorker), eq32(2, O_CLOEXEC)},
           "put a new worker's pidfd on the fixed number the rows above allow"},
          {"waitid",
           {eq32(0, P_PIDFD), eq32(1, kLauncher), eq32(3, WEXITED | WNOHANG)},
           "learn that the worker launcher exited (no more restarts), and reap it"},
          {"fcntl",
           {eq32(1, F_DUPFD_CLOEXEC)},
           "the escrow's own copy of each listener issued, and the copies handed to a new "
           "worker (listener_escrow.cc); a copy only, close-on-exec"},
          {"getsockopt",
           {eq32(1, SOL_SOCKET), eq32(2, SO_COOKIE)},
           "the escrow keys each listener by its socket cookie, which the worker's StoreState "
           "names"},
          {"fcntl",
           {eq32(1, F_GET_SEALS)},
           "StoreState: check that the worker's memfds are sealed (their content is final)"},
          {"newfstatat",
           {eq32(3, AT_EMPTY_PATH)},
           "StoreState: fstat of the worker's memfds (regular file, size limits); glibc's "
           "fstat is newfstatat(fd, \"\", AT_EMPTY_PATH), which names no path"},
          {"dup3",
           {eq32(1, kStateStaging), eq32(2, O_CLOEXEC)},
           "StoreState: put the cookie list on the one number pread64 reads"},
          {"pread64",
           {eq32(0, kStateStaging)},
           "StoreState: read the cookie list from the worker's sealed memfd (at most 8 bytes "
           "per escrowed listener), only on kStateStaging; pread writes nothing"},

          // --- Rebinds (broker/port_holders.h): who else holds the port ---
          {"pread64",
           {arg_masked_eq32(0, kSocketTablesMask, static_cast<uint32_t>(kSocketTables))},
           "before a rebind shares its port: read the side's /proc/net socket tables from "
           "offset 0; only on fds 24-31, opened read-only before the filter; pread writes "
           "nothing"},

          // --- Shutdown (control_socket.cc) ---
          {"newfstatat",
           {eq32(0, kControlDir), eq32(3, AT_SYMLINK_NOFOLLOW)},
           "check that the control socket file is still the one this broker created"},
          {"unlinkat", {eq32(0, kControlDir), eq32(2, 0)}, "remove the control socket file"},
          {"newfstatat",
           {eq32(0, kPestoDir), eq32(3, AT_SYMLINK_NOFOLLOW)},
           "check that the --pesto-socket file is still the one this broker created"},
          {"unlinkat", {eq32(0, kPestoDir), eq32(2, 0)}, "remove the --pesto-socket file"},
      });
  // --- Memory, time and abort() (libc) ---
  append(rules, libc_rows(self));
  rules.push_back(
      {"madvise",
       {eq32(2, MADV_DONTNEED)},
       "malloc_trim() once the start-up is over (main.cc): the heap the start-up freed (the "
       "filter's build above all, about 90 KiB) goes back to the kernel; only DONTNEED, which "
       "drops this process's own pages"});
  return rules;
}

std::vector<SyscallRule> helper_seccomp_rules(int self_pid) {
  using namespace helper_fd;  // NOLINT: the fixed fd names read best unqualified here
  std::vector<SyscallRule> rules = {
      // --- Its channel to sluiced and its log (namespace_helper.cc) ---
      {"recvmsg",
       {eq32(0, kChannel), eq32(2, MSG_CMSG_CLOEXEC)},
       "wait for sluiced's next OpenListeners (blocking: the helper has nothing else to do)"},
      {"sendmsg",
       {eq32(0, kChannel), eq32(2, MSG_NOSIGNAL)},
       "answer sluiced with the listeners; MSG_NOSIGNAL: a dead sluiced gives EPIPE"},
      {"write", {eq32(0, kLog)}, "log lines to sluiced's stderr (base/log.cc)"},
      log_socket_row(kLog),
  };
  // --- The listener factory, inside the target namespace: its only purpose ---
  append(rules, listener_factory_rows());
  append(rules, libc_rows(static_cast<uint32_t>(self_pid)));
  return rules;
}

}  // namespace sluice
