// main() of the integration tests: before anything else (and before any
// thread exists, which unshare(CLONE_NEWUSER) requires), move this process
// into namespaces of its own, with only loopback, brought up here. Every
// daemon the tests start inherits them: no port on the host is touched.
//
// SLUICE_TEST_NS picks the setting (ctest runs the suite once with each):
//   user  a new user + network namespace, as `unshare -Urn`: sluiced is uid 0
//         of a user namespace and holds its capabilities there (the default);
//   net   a new network namespace only, for a real root: sluiced is root of
//         the initial user namespace, so the worker switches to uid 65534 and
//         the broker (without CAP_KILL) cannot signal it. Skipped when the
//         tests do not run as real root.
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/integration/netns_util.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

using sluice::test::enter_net_namespace;
using sluice::test::enter_user_namespace;

/// True when this process is root of the initial user namespace.
bool is_real_root() {
  if (geteuid() != 0) return false;
  int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
  char buf[128] = {};
  ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
  if (fd >= 0) close(fd);
  unsigned long inside = 1, outside = 1, count = 0;
  return n > 0 && std::sscanf(buf, "%lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 &&
         outside == 0 && count == 4294967295UL;
}

/// Skips every test: used when the chosen namespace setting is unavailable.
class SkipAll : public testing::Environment {
 public:
  void SetUp() override { GTEST_SKIP() << "SLUICE_TEST_NS=net needs real root"; }
};

}  // namespace

/// Enters the namespaces, then runs every test.
int main(int argc, char** argv) {
  testing::InitGoogleTest(&argc, argv);
  // gtest_discover_tests lists the tests without running them: no namespace needed.
  if (GTEST_FLAG_GET(list_tests)) return RUN_ALL_TESTS();
  const char* mode = std::getenv("SLUICE_TEST_NS");
  bool net_only = mode != nullptr && std::strcmp(mode, "net") == 0;
  if (net_only && !is_real_root()) {
    testing::AddGlobalTestEnvironment(new SkipAll);
    return RUN_ALL_TESTS();
  }
  if ((!net_only && !enter_user_namespace()) || !enter_net_namespace()) {
    std::fprintf(stderr,
                 "integration tests need user and network namespaces "
                 "(kernel.unprivileged_userns_clone=1)\n");
    return 1;
  }
  return RUN_ALL_TESTS();
}
