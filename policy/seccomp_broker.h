// Fixed descriptor numbers of sluiced after start-up. The broker moves its few
// long-lived descriptors to these numbers before it loads its seccomp filter,
// so that the filter (seccomp_broker.cc) can allow fd-specific syscalls on
// exactly these descriptors: messages only on the worker channel, signals only
// through the worker's pidfd, unlinking only inside the control socket's
// directory. The same idea as the worker's fixed fds in schema/broker_wire.h.
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
/// The first number not reserved above.
inline constexpr int kFirstFree = 8;

}  // namespace sluice::broker_fd
