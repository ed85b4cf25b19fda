// Entering namespaces for tests: the integration tests' own user + network
// namespace (namespace_main.cc), and the "container" of the target namespace
// tests (container_main.cc). Both run before any thread exists, which
// unshare(CLONE_NEWUSER) requires.
#pragma once

namespace sluice::test {

/// Enters a new user namespace as uid/gid 0, mapped to the current ids (as
/// `unshare -U -r` does). Returns false, with perror, on failure.
bool enter_user_namespace();

/// Enters a new network namespace and brings up its lo. Returns false, with
/// perror, on failure.
bool enter_net_namespace();

/// Adds the address `text` (IPv4 as a /32 alias "lo:N", IPv6 as a /128) to lo
/// of the current network namespace, as a container network gives one to its
/// interface. Needs CAP_NET_ADMIN there. Returns false, with perror, on failure.
bool add_address_to_lo(const char* text);

}  // namespace sluice::test
