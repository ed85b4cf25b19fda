// The target namespace (sluiced --netns PATH|PID [--userns PATH], or pasta's
// trailing PID): the network namespace of a container, where HOST rules
// connect and their default target, the namespace's loopback, lives.
//
// The design: the worker runs inside the target network namespace, while
// every listening socket is still made by sluiced in its own namespace and
// handed over. A socket keeps the namespace it was created in, so the
// worker accepts on the host side and connects on the namespace side, with
// no per-connection round trip. sluiced opens the namespace files at start
// (they are the administrator's input, like the rest of its command line),
// checks what they are, and proves that they can be joined by joining them
// in a throwaway child; the worker's child process joins them between fork
// and exec, before the worker sandboxes itself. Neither sluiced nor the
// worker ever calls setns on itself.
//
// Joining a user namespace owned by the user that runs sluiced needs no
// capability: the owner holds every capability inside it, which setns
// (CAP_SYS_ADMIN in the namespace joined) and the network namespace it owns
// then require. Real root joins the network namespace alone: it holds
// CAP_SYS_ADMIN over every user namespace, and its uid is not mapped in a
// rootless container's, where the worker could not sandbox itself
// (probe_target_namespace).
#pragma once

#include <sys/types.h>

#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// The namespace files of a target namespace, opened and checked.
struct TargetNamespace {
  UniqueFd netns;    // a network namespace (NS_GET_NSTYPE == CLONE_NEWNET)
  UniqueFd userns;   // its user namespace to join first; invalid: none to join
  std::string name;  // what the administrator gave, for messages
  // The process --netns named by its PID (0 for a path): sluiced watches it
  // with a pidfd, opened once its helpers are forked so that it stays in
  // sluiced alone, and says at once when it exits (the container stopping).
  pid_t pid = 0;
  // True when probe_target_namespace chose to join the network namespace
  // alone although it has a user namespace of its own (see there).
  bool net_only = false;
};

/// Opens the target namespace: `netns` is a path to a network namespace file
/// (/run/netns/NAME, /proc/PID/ns/net) or a PID, `userns` an optional path to
/// a user namespace file. For a PID without `userns`, the PID's user namespace
/// is joined too when it is not sluiced's own (as pasta does). Fails with one
/// line that says what is wrong and what to do: a PID that does not exist, a
/// file that is not a namespace of the right type, one that cannot be opened.
/// Needs `openat`, `ioctl(NS_GET_NSTYPE)`, `fstat`.
Result<TargetNamespace> open_target_namespace(const std::string& netns, const std::string& userns);

/// Joins the target namespace: its user namespace first when there is one,
/// then its network namespace. For the worker's child, between fork and exec.
/// Returns 0, or the errno of the setns that failed (the caller reports it).
int join_target_namespace(const TargetNamespace& target) noexcept;

/// Proves that the target namespace can be joined, in throwaway children that
/// join it and exit, so that sluiced reports a namespace it may not join at
/// start, with what to do, instead of a worker that dies; and decides how to
/// join it. A child that joins also makes a user namespace inside, as the
/// worker's sandbox will; the kernel refuses that (EPERM) when sluiced's uid or
/// gid is not mapped in the user namespace joined (real root and a rootless
/// container). So, with a user namespace to join:
///   - real root (sluiced in the initial user namespace, with CAP_SYS_ADMIN
///     over every user namespace) joins the network namespace alone;
///   - otherwise the user namespace is joined first, as `nsenter -U -n` does
///     for the owner; a sandbox test that fails there (ids not mapped: a
///     container of another user) is an error that says to run sluiced as
///     the container's owner or as real root.
/// Joining the network namespace alone closes `target.userns` and sets
/// `target.net_only`: the worker and the helper then stay in sluiced's user
/// namespace. Fails with one line that says what to do. Needs `fork`, `setns`
/// and `unshare` (in the children), `waitpid`, and reads /proc/self/uid_map.
Result<void> probe_target_namespace(TargetNamespace& target);

/// True when sluiced runs in the initial user namespace, whose uid_map is the
/// identity over the whole range ("0 0 4294967295"); false also when the map
/// cannot be read.
bool in_initial_user_namespace();

}  // namespace sluice
