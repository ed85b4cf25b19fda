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

}  // namespace sluice::test
