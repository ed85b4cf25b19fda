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

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

/// Writes `text` to `path`; returns false on failure.
bool write_file(const char* path, const std::string& text) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

/// Enters a new user namespace as uid/gid 0 (mapped to the current ids).
bool enter_user_namespace() {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER) != 0) {
    std::perror("unshare(CLONE_NEWUSER)");
    return false;
  }
  if (!write_file("/proc/self/setgroups", "deny") ||
      !write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
      !write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
    std::perror("writing the id maps");
    return false;
  }
  return true;
}

/// Enters a new network namespace and brings up lo.
bool enter_net_namespace() {
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET)");
    return false;
  }
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  bool ok = fd >= 0 && ioctl(fd, SIOCSIFFLAGS, &ifr) == 0;
  if (!ok) std::perror("bringing up lo");
  if (fd >= 0) close(fd);
  return ok;
}

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
