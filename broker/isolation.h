// The broker's own isolation, in named stages that main() runs in this order:
//   1. sanitize_inherited_fds  (first thing: a known fd table)
//      unblock_log             (then: a log that never blocks the broker)
//   2. raise_nofile_limit      (before the worker is forked, which inherits it)
//   3. read_unprivileged_port_start (while /proc is still reachable)
//   4. drop_capabilities       (after the worker is forked: see main.cc)
//   5. place_fds               (the fixed numbers the seccomp filter expects)
//   6. install_broker_seccomp  (last)
// Each stage says why it is there and why it is safe at that point.
#pragma once

#include <linux/capability.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// CAP_NET_BIND_SERVICE as a bit mask of /proc/self/status (bit 10).
inline constexpr uint64_t kBindCapMask = 1ULL << 10;

/// The capability sets of /proc/self/status.
struct CapSets {
  uint64_t inh = 0, prm = 0, eff = 0, bnd = 0, amb = 0;
};

/// Stage 1: makes sure fds 0, 1 and 2 are open (on /dev/null when closed, so
/// that no socket ever lands on them and log writes cannot hit a socket) and
/// closes every other inherited fd, which the broker never asked for, except
/// the `activated` fds from 3 on that the service manager passed
/// (LISTEN_FDS, broker/socket_activation.h): main() adopts or closes each.
/// Fails when /dev/null cannot be opened or close_range fails.
Result<void> sanitize_inherited_fds(int activated = 0);

/// Stage 1, second half: makes sluiced's log (fd 2, broker_fd::kLog) one
/// that never blocks it (security review item 15), without setting
/// O_NONBLOCK on a file description anything else shares:
///   - a pipe or a terminal: fd 2 becomes a new, non-blocking file
///     description of it, opened through /proc/self/fd/2 (as
///     stderr_for_worker() does for the worker). The old description, which
///     fd 1, the shell and other processes may share and which they may
///     need blocking, is left exactly as it was;
///   - a socket (a service manager's journal stream): cannot be reopened;
///     lines go out with send(MSG_DONTWAIT) instead (log_set_socket_sink),
///     which is non-blocking per call and changes no description;
///   - anything else (a regular file, /dev/null): kept; a write there does
///     not wait for a reader;
///   - another user's terminal, which may not be reopened (EACCES; runuser
///     or sudo -u from someone's session): kept, with no warning.
/// A line the sink pushes back is dropped and counted (base/log.h). Returns
/// what was done, for a debug line. Fails, leaving fd 2 as it was, when
/// stderr cannot be examined or reopened (no /proc; a pipe whose reader is
/// gone: writes then fail with EPIPE and never wait either).
Result<std::string> unblock_log();

/// Stage 2: raises the RLIMIT_NOFILE soft limit to the hard limit. Each
/// OpenListeners briefly holds up to 253 sockets in the broker, and the worker
/// (which inherits the limit) holds every listener and connection.
/// Fails with the errno of setrlimit.
Result<void> raise_nofile_limit();

/// Stage 3: reads net.ipv4.ip_unprivileged_port_start; returns 1024 (the
/// kernel default) with a warning when it cannot be read or parsed.
uint32_t read_unprivileged_port_start();
/// Reads net.ipv4.ip_local_port_range of sluiced's namespace into `*first`
/// and `*last`; false (with a warning) when it cannot be read or parsed.
bool read_local_port_range(uint32_t* first, uint32_t* last);

/// Parses the Cap* lines of /proc/self/status text. Fails when one of CapInh,
/// CapPrm, CapEff, CapBnd or CapAmb is missing or malformed.
Result<CapSets> parse_cap_status(std::string_view status);

/// Checks that nothing beyond CAP_NET_BIND_SERVICE is left in the effective,
/// permitted, inheritable and ambient sets, and (when `bounding_cleared`) in
/// the bounding set. The Error names the set and its value.
Result<void> check_caps_dropped(const CapSets& caps, bool bounding_cleared);

/// Stage 4: cuts capabilities to CAP_NET_BIND_SERVICE (kept only if it was
/// permitted) with libcap-ng, clears the bounding set while CAP_SETPCAP is
/// still held (or, without it, leaves it: NO_NEW_PRIVS makes it irrelevant),
/// clears the ambient set, sets NO_NEW_PRIVS, and reads the result back from
/// /proc/self/status. Returns whether CAP_NET_BIND_SERVICE is effective.
/// Fails, naming what is left, if anything else remains. With
/// `keep_bind_cap` false (the policy reader), nothing at all is kept.
Result<bool> drop_capabilities(bool keep_bind_cap = true);

/// CAP_SETUID and CAP_SETGID as a bit mask of /proc/self/status: what the
/// worker launcher of real root keeps (its workers switch to their own user).
inline constexpr uint64_t kSetidCapMask = (1ULL << CAP_SETUID) | (1ULL << CAP_SETGID);
/// CAP_SETFCAP as a bit mask of /proc/self/status: what the worker launcher
/// of uid 0 in a user namespace keeps (its workers map uid 0).
inline constexpr uint64_t kSetfcapMask = 1ULL << CAP_SETFCAP;

/// Returns the capabilities a worker's start needs, which the worker
/// launcher keeps (isolation.cc says why for each): kSetidCapMask for real
/// root in the initial user namespace, kSetfcapMask for uid 0 in another
/// user namespace, 0 for anyone else. Reads /proc/self/uid_map.
uint64_t launcher_capabilities_needed();

/// The worker launcher's capability cut (broker/worker_launcher.cc, its
/// stage 3), with libcap-ng: the capabilities of `keep` (a /proc/self/status
/// mask of launcher_capabilities_needed(), limited to what is permitted) stay
/// in the effective, permitted and bounding sets and nothing else anywhere
/// (the bounding set is cut only while CAP_SETPCAP is held). The ambient set
/// is cleared and NO_NEW_PRIVS set. Reads the result back from
/// /proc/self/status and returns it. Fails, naming the set, when anything
/// else is left.
Result<CapSets> cut_launcher_capabilities(uint64_t keep);

/// One descriptor and the fixed number it must end up on.
struct FdPlacement {
  UniqueFd* fd;
  int target;
};

/// Stage 5: moves each `*fd` to its `target` number (with CLOEXEC). All are
/// first moved above every target, so that one already sitting on another's
/// target is never overwritten; a target held by anything else is a bug
/// (CHECKed). Fails with the errno of fcntl/dup3.
Result<void> place_fds(std::span<const FdPlacement> placements);

/// Stage 6: loads policy/seccomp_broker.cc's allowlist (KILL_PROCESS by
/// default). Skipped with a warning in sanitizer builds, whose runtime needs
/// more syscalls. Fails with the libseccomp error.
Result<void> install_broker_seccomp();

/// The namespace helper's last stage: loads helper_seccomp_rules()
/// (KILL_PROCESS by default). Skipped with a warning in sanitizer builds, as
/// install_broker_seccomp(). Fails with the libseccomp error.
Result<void> install_helper_seccomp();

}  // namespace sluice
