// Fixed descriptor numbers of sluiced after start-up. The broker moves its few
// long-lived descriptors to these numbers before it loads its seccomp filter,
// so that the filter (seccomp_broker.cc) can allow fd-specific syscalls on
// exactly these descriptors: messages only on the worker channel, signals only
// through the worker's pidfd, unlinking only inside the control socket's
// directory. The same idea as the worker's fixed fds in schema/broker_wire.h.
// The namespace helper (a fork of sluiced inside the target namespace) has
// its own, smaller set (helper_fd below).
#pragma once

namespace sluice::broker_fd {

/// Log lines (base/log.h): the broker logs to its stderr.
inline constexpr int kLog = 2;
/// SOCK_SEQPACKET to the worker (recvmsg, sendmsg).
inline constexpr int kChannel = 3;
/// signalfd for SIGTERM, SIGINT and SIGCHLD (read).
inline constexpr int kSignal = 4;
/// pidfd of the worker (pidfd_send_signal, waitid). A pidfd, not a pid: it can
/// never signal a recycled pid.
inline constexpr int kWorker = 5;
/// O_PATH directory of the control socket (newfstatat, unlinkat at shutdown).
inline constexpr int kControlDir = 6;
/// O_PATH directory of the --pesto-socket file (newfstatat, unlinkat at
/// shutdown); /dev/null when there is none.
inline constexpr int kPestoDir = 7;
/// SOCK_SEQPACKET to the namespace helper (broker/namespace_helper.h): SPLICE
/// listeners are asked for there, blocking (sendmsg, recvmsg); shut down at
/// exit. /dev/null without --netns.
inline constexpr int kHelperChannel = 8;
/// pidfd of the namespace helper (poll, waitid): its exit ends sluiced.
/// /dev/null without --netns.
inline constexpr int kHelper = 9;
/// systemd's NOTIFY_SOCKET, connected before the filter (broker/sd_notify.h):
/// datagrams with no address (sendto). /dev/null without NOTIFY_SOCKET.
inline constexpr int kNotify = 10;
/// SOCK_SEQPACKET to the policy reader (broker/policy_reader.h): PolicyRead
/// out, PolicyText and its memfd in, never waiting (sendmsg, recvmsg).
/// /dev/null without --policy.
inline constexpr int kPolicyReader = 11;
/// The policy in force, as text: a sealed memfd (the worker's at start, or
/// the last reload's). Replaced only by dup3 from kPolicyStaging. Every new
/// worker gets it through the launcher (sendmsg to kLauncherChannel).
inline constexpr int kPolicyText = 12;
/// A reloaded policy text while sluiced reads and parses it (dup3 onto it,
/// pread64, close); closed otherwise.
inline constexpr int kPolicyStaging = 13;
/// SOCK_SEQPACKET to the worker launcher (broker/worker_launcher.h):
/// LaunchWorker out, WorkerLaunched and the new worker's pidfd and channel
/// back (sendmsg, recvmsg), after which sluiced moves those two onto kWorker
/// and kChannel (dup3).
inline constexpr int kLauncherChannel = 14;
/// pidfd of the worker launcher (poll, waitid): its exit ends restarts.
inline constexpr int kLauncher = 15;
/// The cookie list of a StoreState while sluiced reads it (dup3 onto it,
/// pread64, close); closed otherwise (broker/listener_escrow.h).
inline constexpr int kStateStaging = 16;
/// pidfd of the process --netns named by its PID (poll): its exit is the
/// container stopping, which sluiced reports. /dev/null otherwise.
inline constexpr int kTarget = 17;
/// The socket tables sluiced reads before a rebind shares a port
/// (broker/port_holders.h): /proc/net/{tcp,tcp6,udp,udp6} of sluiced's side on
/// 24-27, of the target namespace on 28-31 (pread64; /dev/null where there is
/// none). Eight numbers from a multiple of 8, so that the filter admits them
/// with one masked compare (fd & ~7 == 24); 18-23 stay unused.
inline constexpr int kSocketTables = 24;
inline constexpr int kTargetSocketTables = kSocketTables + 4;
inline constexpr unsigned kSocketTablesMask = ~7u;
static_assert((kSocketTables & 7) == 0, "one masked compare admits all eight");
/// The first number not reserved above.
inline constexpr int kFirstFree = 32;

}  // namespace sluice::broker_fd

/// Fixed descriptor numbers of sluiced's namespace helper after its start-up,
/// for its own filter (helper_seccomp_rules): it keeps nothing else.
namespace sluice::helper_fd {

/// Log lines: sluiced's stderr, inherited.
inline constexpr int kLog = 2;
/// SOCK_SEQPACKET to sluiced (recvmsg blocking, sendmsg).
inline constexpr int kChannel = 3;
/// The first number not reserved above; everything from here is closed.
inline constexpr int kFirstFree = 4;

}  // namespace sluice::helper_fd
