// The namespace helper: the one process that opens listening sockets inside
// the target namespace (sluiced --netns), for the SPLICE table (-T/-U).
//
// Why a process of its own: a socket is created in the network namespace of
// the process that calls socket(), and sluiced must stay in its own namespace
// (its HOST listeners, and the fresh sockets of OpenSockets, belong there).
// Neither sluiced nor the worker ever calls setns on itself. So at start,
// while sluiced still holds its capabilities, it forks this helper, which:
//   1. asks for SIGKILL when sluiced dies (PR_SET_PDEATHSIG);
//   2. joins the target namespace (join_target_namespace: its user namespace
//      first, then its network namespace; for real root the network
//      namespace alone, see probe_target_namespace), as the worker's child
//      does;
//   3. closes every descriptor but its channel (moved to helper_fd::kChannel)
//      and stderr;
//   4. reads net.ipv4.ip_unprivileged_port_start of the target namespace;
//   5. drops every capability but CAP_NET_BIND_SERVICE (drop_capabilities,
//      the broker's own stage), which it holds in a namespace its user owns,
//      or, for real root, in the initial one, above the container's;
//   6. loads its own seccomp allowlist (helper_seccomp_rules: the listener
//      factory, its channel and stderr; no fork, exec, setns or open);
//   7. says HelperReady with what the kernel there allows, then answers
//      OpenListeners (only SPLICE entries) from sluiced until its channel
//      closes.
// It never talks to the worker, and it parses nothing but fixed-size
// requests from sluiced, which it validates again. sluiced checks the bind
// policy before it asks (with the helper's kernel facts), and checks every
// socket that comes back (check_opened_listener) before handing it on.
// The helper's death ends sluiced, as the worker's does.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/target_namespace.h"
#include "schema/broker_wire.h"

namespace sluice {

/// Limit: how long sluiced waits at start for the helper's HelperReady. The
/// helper only joins two namespaces, reads one sysctl, drops capabilities and
/// loads a filter: milliseconds. 30 s only catches a helper that can never
/// be ready (stopped, or stuck in the kernel), so that sluiced fails with a
/// message instead of hanging; it is no measure of speed.
inline constexpr int kHelperStartTimeoutMs = 30000;

/// A running namespace helper, ready to answer.
struct NamespaceHelper {
  pid_t pid = -1;
  UniqueFd pidfd;                           // pidfd_open(pid): its exit ends sluiced
  UniqueFd channel;                         // sluiced's end of the SOCK_SEQPACKET pair, blocking
  bool has_bind_cap = false;                // CAP_NET_BIND_SERVICE in the target namespace
  uint32_t unprivileged_port_start = 1024;  // the target namespace's sysctl
};

/// Forks the helper into `target` and waits, at most kHelperStartTimeoutMs,
/// for its HelperReady. The helper does not judge the bind policy: sluiced
/// does, with every fact (the policy file, the target namespace's kernel,
/// the initial rules' grants, declared after the fork), before it asks. Call
/// before sluiced drops its capabilities (joining needs them, or the
/// ownership of the namespace) and loads its filter (which has no fork).
/// Fails with one line that says what happened: the helper could not join
/// (its own error line is logged just before), died, or sent something
/// else. Needs `socketpair`, `fork`, `pidfd_open`, `poll`, `recvmsg`,
/// `waitpid`.
Result<NamespaceHelper> start_namespace_helper(const TargetNamespace& target);

/// Limit: how long a request's SPLICE listeners wait for the helper's
/// answer. The helper only binds and listens, so a healthy one answers in
/// milliseconds even on a loaded machine; a helper stopped by a signal
/// (SIGSTOP, from root or from sluiced's own user) or stuck in the kernel
/// never does. Past it, those listeners fail with ETIMEDOUT (the worker's
/// commit rolls back and names rule, port and errno), and the worker's
/// channel, which waits meanwhile to keep its answers in order, is served
/// again. 5 s is half sluicectl's default --timeout, so that its user reads
/// the per-rule error and not the client's own timeout. It bounds a stall,
/// it measures no speed.
inline constexpr int kHelperAnswerTimeoutMs = 5000;

/// Sends the helper on `channel` one OpenListeners with `sequence` for
/// `specs` (each a well-formed SPLICE entry that sluiced's bind policy
/// allowed). Never waits for the answer: read_helper_answer() takes it.
/// Fails when the helper is gone. Needs `sendmsg`.
Result<void> send_helper_request(int channel, uint64_t sequence,
                                 std::span<const wire::ListenerSpec> specs);

/// Reads the helper's answer to the request `sequence` from `channel`
/// without waiting (MSG_DONTWAIT; EAGAIN when it has not come yet). With
/// `specs` (the request's entries) it checks the reply (length, magic, type,
/// sequence, counts, statuses) and every socket (check_opened_listener), and
/// fills `status` (one per spec: kStatusOk, an errno, or
/// kStatusPolicyDenied) and `fds` (one per spec, valid for kStatusOk). With
/// no `specs` (an answer nobody waits for any more: it came after
/// kHelperAnswerTimeoutMs) it checks the envelope and closes the sockets.
/// Fails when the helper closed its channel (EPIPE) or sent anything else
/// (EPROTO); the sockets that came are closed. Needs `recvmsg`, and what
/// check_opened_listener() needs.
Result<void> read_helper_answer(int channel, uint64_t sequence,
                                std::span<const wire::ListenerSpec> specs,
                                std::span<int32_t> status, std::vector<UniqueFd>* fds);

/// Checks that `fd` is the listening socket `spec` asked for: SO_DOMAIN,
/// SO_TYPE, SO_ACCEPTCONN for TCP, IP_PKTINFO or IPV6_RECVPKTINFO on for UDP,
/// and getsockname's address and port. The Error names the first mismatch.
/// Needs `getsockopt` and `getsockname`.
Result<void> check_opened_listener(int fd, const wire::ListenerSpec& spec);

/// The helper's loop: receives OpenListeners on `channel` (blocking),
/// refuses anything but a well-formed one whose entries are all SPLICE
/// entries, opens each entry with open_listener() (sluiced checked the bind
/// policy before it asked: it alone holds every fact of it), and
/// answers ListenersOpened with the sockets. Returns 0 when sluiced closes
/// the channel, 1 after logging what was wrong (a malformed request, a
/// failed send). Needs `recvmsg`, `sendmsg`, and what open_listener() needs.
int serve_helper_requests(int channel) noexcept;

/// Returns the helper's exit code, or -1 while it runs; logs once it has
/// exited, as an error (sluiced cannot serve SPLICE without it). Needs
/// `waitid` (P_PIDFD, WEXITED|WNOHANG).
int poll_helper_exit(const NamespaceHelper& helper);

/// Stops the helper at shutdown: closes its channel (it exits on end of
/// file) and waits up to kWorkerStopTimeoutMs for it. A helper that does not
/// exit is left to its PR_SET_PDEATHSIG. Needs `shutdown`, `poll`, `waitid`,
/// `clock_gettime`.
void stop_namespace_helper(const NamespaceHelper& helper);

}  // namespace sluice
