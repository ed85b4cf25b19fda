// The worker's seccomp allowlist: one row per syscall (or per allowed argument
// combination) with the reason the worker needs it. Loaded as the last stage
// of worker/sandbox.cc, after which the worker only runs its event loop.
//
// What the worker can NOT do, on purpose (default action: kill the process):
// bind, listen (every listening socket comes from the broker), open/openat
// (its root is an empty tmpfs anyway), execve/execveat, ptrace, clone/fork,
// unshare, mount, ioctl, prctl, socket() of any family but AF_INET/AF_INET6,
// any PROT_EXEC mapping, fcntl(F_SETFL) (it would clear O_APPEND on the audit
// log) and splice() at a file offset (it would write inside the audit log).
//
// Resources the loop needs (the epoll fd, the broker and control sockets) are
// created before the filter is loaded, so epoll_create1 is not granted; the
// epoll fd must be passed to enter_sandbox() to survive its stage 1. Arguments of int type are
// compared on their low 32 bits (arg_eq32); flag words allow no bit outside a mask
// (arg_flags_within). Syscalls are named as on x86_64; a name this
// architecture lacks fails build_seccomp_filter(), it is never dropped.
#include <fcntl.h>
#include <linux/futex.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "policy/seccomp.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

/// The socket(2) flags the worker may add to a type.
constexpr uint32_t kSockTypeFlags = SOCK_NONBLOCK | SOCK_CLOEXEC;

/// Memory protections the worker may ask for: never PROT_EXEC (nor
/// PROT_GROWSDOWN/UP or arch bits), so no new code can be mapped.
constexpr uint32_t kProtAllowed = PROT_READ | PROT_WRITE;

/// Appends the socket() rows for `family` x `type`: protocol 0 or `proto`.
/// One row per protocol, because libseccomp 2.5 refuses two comparisons of
/// the same argument in one row.
void add_socket_rows(std::vector<SyscallRule>& rules, int family, int type, int proto,
                     const char* reason) {
  for (uint32_t p : {0u, static_cast<uint32_t>(proto)}) {
    rules.push_back(
        {"socket",
         {arg_eq32(0, static_cast<uint32_t>(family)),
          arg_masked_eq32(1, ~kSockTypeFlags, static_cast<uint32_t>(type)), arg_eq32(2, p)},
         reason});
  }
}

/// Returns a getsockopt/setsockopt row for exactly (level, optname).
SyscallRule sockopt_row(const char* name, int level, int optname, const char* reason) {
  return {name,
          {arg_eq32(1, static_cast<uint32_t>(level)), arg_eq32(2, static_cast<uint32_t>(optname))},
          reason};
}

/// Returns an fcntl row for exactly `cmd`, plus `more` conditions.
SyscallRule fcntl_row(int cmd, std::vector<scmp_arg_cmp> more, const char* reason) {
  std::vector<scmp_arg_cmp> conds{arg_eq32(1, static_cast<uint32_t>(cmd))};
  conds.insert(conds.end(), more.begin(), more.end());
  return {"fcntl", std::move(conds), reason};
}

}  // namespace

std::vector<SyscallRule> worker_seccomp_rules(int self_pid) {
  const uint32_t self = static_cast<uint32_t>(self_pid);
  std::vector<SyscallRule> r;

  // --- Event loop (the epoll fd exists before the filter).
  r.push_back({"epoll_wait", {}, "edge-triggered event loop: wait for readiness"});
  r.push_back({"epoll_pwait", {}, "event loop variant with a signal mask (glibc may use it)"});
  r.push_back({"epoll_ctl", {}, "event loop: add, modify and remove watched fds"});

  // --- TCP data path.
  r.push_back({"accept4",
               {arg_flags_within(3, kSockTypeFlags)},
               "accept on broker-provided listeners; flags only NONBLOCK|CLOEXEC"});
  add_socket_rows(r, AF_INET, SOCK_STREAM, IPPROTO_TCP, "TCP connection to an IPv4 target");
  add_socket_rows(r, AF_INET6, SOCK_STREAM, IPPROTO_TCP, "TCP connection to an IPv6 target");
  add_socket_rows(r, AF_INET, SOCK_DGRAM, IPPROTO_UDP, "UDP flow socket toward an IPv4 target");
  add_socket_rows(r, AF_INET6, SOCK_DGRAM, IPPROTO_UDP, "UDP flow socket toward an IPv6 target");
  r.push_back({"connect", {}, "non-blocking connect to a TCP target; a UDP flow socket's target"});
  // Offsets must be NULL: the data path splices socket -> pipe -> socket,
  // where an offset means nothing. A file offset would let a compromised
  // worker write at any position of a file it holds, such as the audit log
  // (fd 5), instead of only appending to it.
  r.push_back({"splice",
               {arg_eq64(1, 0), arg_eq64(3, 0),
                arg_flags_within(5, SPLICE_F_NONBLOCK | SPLICE_F_MOVE | SPLICE_F_MORE)},
               "zero-copy TCP forwarding socket -> pipe -> socket; offsets NULL, flags only "
               "NONBLOCK|MOVE|MORE"});
  r.push_back({"pipe2",
               {arg_flags_within(1, O_NONBLOCK | O_CLOEXEC)},
               "grow the splice pipe pool; flags only NONBLOCK|CLOEXEC"});
  r.push_back(
      {"shutdown", {}, "propagate a half-close; stop a rolled-back listener sluiced still holds"});
  r.push_back({"close", {}, "close connections, flows, pipes and dropped clients"});

  // --- fcntl: the commands the data path uses, nothing that changes owners,
  // locks, leases or duplicates fds. No F_GETFL and no F_SETFL: every fd the
  // worker makes is created non-blocking (SOCK_NONBLOCK, O_NONBLOCK), and
  // sluiced creates the listeners it sends that way. F_SETFL would let a compromised worker clear
  // O_APPEND on the audit log (fd 5) or on stderr (fds 1 and 2), and then
  // overwrite earlier audit lines.
  r.push_back(fcntl_row(F_GETFD, {}, "read FD_CLOEXEC (checks on received fds)"));
  r.push_back(fcntl_row(F_SETFD, {arg_flags_within(2, FD_CLOEXEC)}, "set FD_CLOEXEC only"));
  r.push_back(fcntl_row(F_GETPIPE_SZ, {}, "read a splice pipe's size"));
  r.push_back(fcntl_row(F_SETPIPE_SZ, {}, "size splice pipes deliberately (DEPENDENCIES.md)"));
  // Worker restarts (worker/state_store.cc): the state handed to sluiced
  // after each change is two memfds, sealed so that sluiced can check that
  // their content is final. Seals only ever restrict a memfd; any other file
  // refuses F_ADD_SEALS.
  r.push_back(fcntl_row(
      F_ADD_SEALS, {arg_flags_within(2, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)},
      "seal the state memfds for sluiced (restarts); seals only, no other bits"));

  // --- I/O on sockets, pipes, the broker channel, the control socket, the log.
  r.push_back({"read", {}, "control frames, pipes; generic reads"});
  // Auto-scan re-reads /proc/net/{tcp,tcp6,udp,udp6} of both sides from
  // offset 0 each second (worker/port_scan.cc); no lseek is granted, and a
  // seq_file continues at the offset given. Only on the eight fixed fds they
  // sit on (16-19: the target namespace's, which the worker opened; 20-23:
  // sluiced's side's, which sluiced opened; one masked comparison,
  // fd & ~7 == 16), so no other file's earlier bytes can be re-read; pread
  // writes nothing.
  r.push_back({"pread64",
               {arg_masked_eq32(0, wire::kWorkerFdScanMask,
                                static_cast<uint32_t>(wire::kWorkerFdScanFirst))},
               "auto-scan: read both sides' /proc/net tables from offset 0; only on fds 16-23 "
               "(16-19 the target namespace's, 20-23 sluiced's side's), placed before the "
               "sandbox"});
  r.push_back({"pread64",
               {arg_eq32(0, static_cast<uint32_t>(wire::kWorkerFdPolicy))},
               "the policy text sluiced put on fd 6, read from its start: sluiced and every "
               "earlier worker share that file's offset, so a read() could start anywhere"});
  r.push_back({"write", {}, "log lines, audit records, control replies, the state memfds"});
  // An anonymous file in memory: no path, no filesystem; the worker's root
  // is empty anyway. Only close-on-exec and sealable (never MFD_HUGETLB or
  // MFD_EXEC).
  r.push_back({"memfd_create",
               {arg_eq32(1, MFD_CLOEXEC | MFD_ALLOW_SEALING)},
               "the state blob and the cookie list for sluiced (worker restarts); flags exactly "
               "CLOEXEC|ALLOW_SEALING"});
  r.push_back({"readv", {}, "scatter reads of control frames"});
  r.push_back({"writev", {}, "gather writes of control replies and audit records"});
  r.push_back({"recvfrom",
               {},
               "recv() on control clients; a TCP connection's first bytes (the copy path)"});
  r.push_back(
      {"sendto", {}, "send() of control replies; a TCP connection's first bytes (the copy path)"});
  r.push_back({"recvmsg",
               {},
               "broker replies with SCM_RIGHTS listeners, drained with MSG_DONTWAIT until EAGAIN"});
  r.push_back({"sendmsg",
               {},
               "broker requests, with MSG_DONTWAIT once the loop runs: the worker never waits "
               "for sluiced"});

  // --- UDP data path (worker/udp_batch.cc): every datagram moves in batches
  // through these two, on non-blocking sockets.
  r.push_back({"recvmmsg",
               {arg_flags_within(3, MSG_DONTWAIT), arg_eq64(4, 0)},
               "UDP: up to 32 datagrams (with their IP_PKTINFO/IPV6_PKTINFO) per call from a "
               "listener or flow; flags only MSG_DONTWAIT, and no timeout (the loop waits)"});
  r.push_back({"sendmmsg",
               {arg_flags_within(3, MSG_DONTWAIT)},
               "UDP: a run of datagrams per call to a target, or to a client from the address it "
               "sent to (IP_PKTINFO/IPV6_PKTINFO); flags only MSG_DONTWAIT"});

  r.push_back({"getsockname", {}, "check received listeners and accepted sockets"});
  r.push_back(
      {"getpeername", {}, "TCP connect results; check that a received UDP socket has no peer"});

  // --- getsockopt: checks of received fds, connect results, peer credentials.
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_ERROR, "result of a non-blocking connect"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_TYPE, "check a received listener's type"));
  r.push_back(
      sockopt_row("getsockopt", SOL_SOCKET, SO_DOMAIN, "check a received listener's family"));
  r.push_back(
      sockopt_row("getsockopt", SOL_SOCKET, SO_PROTOCOL, "check a received listener's protocol"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_ACCEPTCONN,
                          "check that a received TCP socket is listening"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_PEERCRED,
                          "control client pid for logs; sluiced tells its real ids (PeerQuery)"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_RCVBUF, "buffer sizes for stats"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_COOKIE,
                          "name each listener held to sluiced's escrow (StoreState, restarts)"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_SNDBUF, "buffer sizes for stats"));
  r.push_back(sockopt_row("getsockopt", IPPROTO_TCP, TCP_INFO, "connection state for stats"));
  r.push_back(sockopt_row("getsockopt", SOL_SOCKET, SO_BINDTODEVICE,
                          "notice that a %IFNAME listener's interface was removed or re-created "
                          "(it names the interface; binding to one stays refused below)"));
  r.push_back(sockopt_row("getsockopt", IPPROTO_IP, IP_PKTINFO,
                          "check that a received IPv4 UDP socket reports local addresses"));
  r.push_back(sockopt_row("getsockopt", IPPROTO_IPV6, IPV6_RECVPKTINFO,
                          "check that a received IPv6 UDP socket reports local addresses"));

  // --- setsockopt: per-connection tuning, and the TTL floor with which a
  // closing listener stops taking connections; nothing that binds
  // (SO_BINDTODEVICE), reuses ports, or changes marks or (BPF) filters. UDP
  // needs none: the broker sets IP_PKTINFO/IPV6_RECVPKTINFO before bind, and
  // flow sockets take ICMP errors as plain errnos (no IP_RECVERR).
  r.push_back(sockopt_row("setsockopt", SOL_SOCKET, SO_LINGER, "RST propagation (linger 0)"));
  r.push_back(sockopt_row("setsockopt", SOL_SOCKET, SO_KEEPALIVE, "TCP keepalive on connections"));
  r.push_back(sockopt_row("setsockopt", SOL_SOCKET, SO_OOBINLINE,
                          "forward a connection's urgent byte in its stream, not drop it"));
  r.push_back(sockopt_row("setsockopt", SOL_SOCKET, SO_RCVBUF, "size socket buffers"));
  r.push_back(sockopt_row("setsockopt", SOL_SOCKET, SO_SNDBUF, "size socket buffers"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_TCP, TCP_NODELAY, "no Nagle delay on forwarding"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_TCP, TCP_KEEPIDLE, "keepalive timing"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_TCP, TCP_KEEPINTVL, "keepalive timing"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_TCP, TCP_KEEPCNT, "keepalive timing"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_IPV6, IPV6_V6ONLY,
                          "IPv6 target sockets that must not fall back to IPv4"));
  // TcpListener::stop_new_connections: a floor of 255 makes the kernel drop
  // new SYNs (and nothing already queued) before the drain and the close; the
  // connections accepted then get 0 back, and so do the listeners a dead worker
  // held (CommitEngine::adopt), which it may have stopped before it died.
  // Affects only the worker's own sockets.
  r.push_back(sockopt_row("setsockopt", IPPROTO_IP, IP_MINTTL,
                          "a closing TCP listener completes no new handshake (TTL floor)"));
  r.push_back(sockopt_row("setsockopt", IPPROTO_IPV6, IPV6_MINHOPCOUNT,
                          "a closing IPv6 TCP listener completes no new handshake (hop floor)"));

  // --- Memory (glibc malloc, Cap'n Proto segments). Never executable.
  r.push_back({"brk", {}, "glibc malloc main arena"});
  r.push_back({"mmap",
               {arg_flags_within(2, kProtAllowed)},
               "large allocations; prot only READ|WRITE (or NONE), never EXEC"});
  r.push_back({"munmap", {}, "free large allocations"});
  r.push_back({"mremap", {arg_flags_within(3, MREMAP_MAYMOVE)}, "realloc of large allocations"});
  r.push_back({"mprotect",
               {arg_flags_within(2, kProtAllowed)},
               "glibc malloc arena growth; never PROT_EXEC"});
  // MADV_FREE is not granted: glibc 2.36 malloc never issues it.
  r.push_back({"madvise",
               {arg_eq32(2, MADV_DONTNEED)},
               "glibc malloc returns memory (heap shrink, malloc_trim)"});
  // futex: only the process-private wait and wake a single-threaded process
  // can reach (glibc's pthread_once, kj's Mutex and Once). No shared futexes,
  // no requeue and no PI operations, the part of futex with a history of
  // kernel exploits (CVE-2014-3153).
  r.push_back({"futex",
               {arg_eq32(1, FUTEX_WAKE_PRIVATE)},
               "wake after a one-time initialisation (pthread_once, kj::Once)"});
  r.push_back({"futex",
               {arg_eq32(1, FUTEX_WAIT_PRIVATE)},
               "wait on a lock held elsewhere (glibc, kj::Mutex); never reached single-threaded"});

  // --- Time, exit, signals.
  r.push_back({"clock_gettime", {}, "timeouts (vDSO fallback when the clocksource has none)"});
  r.push_back({"exit_group", {}, "_exit() and exit()"});
  r.push_back({"exit", {}, "end of a thread; can only end the caller"});
  r.push_back({"rt_sigreturn", {}, "return from a signal handler"});
  r.push_back({"restart_syscall", {}, "kernel restart of an interrupted syscall"});
  r.push_back({"rt_sigprocmask", {}, "abort() and raise() mask signals around tgkill"});
  r.push_back({"getpid", {}, "raise(): tgkill needs the pid (abort on a CHECK failure)"});
  r.push_back({"gettid", {}, "raise(): tgkill needs the tid (abort on a CHECK failure)"});
  r.push_back({"tgkill",
               {arg_eq32(0, self), arg_eq32(2, SIGABRT)},
               "abort() on a CHECK failure: SIGABRT to the worker itself only"});
  return r;
}

}  // namespace sluice
