// main() of the integration tests: before anything else (and before any
// thread exists, which unshare(CLONE_NEWUSER) requires), move this process
// into a new user and network namespace with only loopback, brought up here.
// Every daemon the tests start inherits it: no port on the host is touched.
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdio>
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

/// Enters a new user + network namespace as uid/gid 0 and brings up lo.
bool enter_test_namespace() {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWUSER | CLONE_NEWNET)");
    return false;
  }
  if (!write_file("/proc/self/setgroups", "deny") ||
      !write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
      !write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
    std::perror("writing the id maps");
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

}  // namespace

/// Enters the namespace, then runs every test.
int main(int argc, char** argv) {
  // gtest_discover_tests lists the tests without running them: no namespace needed.
  bool listing = false;
  for (int i = 1; i < argc; ++i) listing |= std::strstr(argv[i], "gtest_list_tests") != nullptr;
  if (!listing && !enter_test_namespace()) {
    std::fprintf(stderr,
                 "integration tests need user and network namespaces "
                 "(kernel.unprivileged_userns_clone=1)\n");
    return 1;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
