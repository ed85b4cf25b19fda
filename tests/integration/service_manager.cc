// The emulated service manager (tests/integration/service_manager.h).
#include "tests/integration/service_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <sstream>

#include "base/scm_rights.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Limit: descriptors one datagram may carry, as many as one SCM_RIGHTS
/// message can (systemd takes what comes; sluiced sends one at a time).
constexpr size_t kMaxFdsPerMessage = kScmMaxFds;

/// The value of `key` in a newline-separated KEY=VALUE datagram, or "".
std::string value_of(const std::string& msg, const std::string& key) {
  std::istringstream lines(msg);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.compare(0, key.size() + 1, key + "=") == 0) return line.substr(key.size() + 1);
  }
  return "";
}

/// True when `a` and `b` are descriptors of one open file (for sockets, of
/// one socket), as the manager tells a duplicate apart.
bool same_file(int a, int b) {
  struct stat sa, sb;
  return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
         sa.st_ino == sb.st_ino;
}

}  // namespace

UniqueFd unit_socket(const std::string& path, int type, bool listen_too) {
  UniqueFd fd(socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  unlink(path.c_str());
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  if (listen_too) {
    EXPECT_EQ(listen(fd.get(), 64), 0);
  }
  return fd;
}

ServiceManager::ServiceManager() {
  char tmpl[] = "/tmp/sluice-manager-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  EXPECT_NE(dir, nullptr);
  dir_ = dir != nullptr ? dir : "/tmp";
  path_ = dir_ + "/notify";
  fd_.reset(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  EXPECT_TRUE(fd_.valid());
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0)
      << std::strerror(errno);
}

ServiceManager::~ServiceManager() {
  unlink(path_.c_str());
  rmdir(dir_.c_str());
}

std::string ServiceManager::wait_for(const std::string& needle, int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int i = 0; i < 1000000 && Clock::now() < deadline; ++i) {
    std::string msg = receive(50);
    if (!msg.empty() && msg.find(needle) != std::string::npos) return msg;
  }
  return "";
}

void ServiceManager::drain() {
  for (int i = 0; i < 100000 && !receive(0).empty(); ++i) {
  }
}

std::vector<std::string> ServiceManager::stored_names() const {
  std::vector<std::string> names;
  for (const auto& [name, fd] : store_) names.push_back(name);
  return names;
}

void ServiceManager::store(const std::string& name, UniqueFd fd) {
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(fd));
  apply("FDSTORE=1\nFDNAME=" + name, std::move(fds));
}

void ServiceManager::prepare(Daemon& d,
                             const std::vector<std::pair<std::string, int>>& unit_fds) const {
  // Plain numbers and one joined string, computed here: the child may only
  // dup and set its environment.
  std::vector<int> sources;
  std::string names;
  for (const auto& [name, fd] : unit_fds) {
    sources.push_back(fd);
    names += (names.empty() ? "" : ":") + name;
  }
  for (const auto& [name, fd] : store_) {
    sources.push_back(fd.get());
    names += (names.empty() ? "" : ":") + name;
  }
  const std::string notify = path_;
  d.set_child_setup([sources, names, notify] {
    const int n = static_cast<int>(sources.size());
    // Above the whole block first, so that no source is overwritten before
    // it is moved; dup2 leaves the targets without CLOEXEC.
    std::vector<int> high;
    for (int fd : sources) high.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 3 + n + 16));
    for (int i = 0; i < n; ++i) {
      if (high[static_cast<size_t>(i)] < 0 || dup2(high[static_cast<size_t>(i)], 3 + i) != 3 + i) {
        _exit(125);
      }
    }
    setenv("NOTIFY_SOCKET", notify.c_str(), 1);
    if (n > 0) {
      setenv("LISTEN_FDS", std::to_string(n).c_str(), 1);
      setenv("LISTEN_PID", std::to_string(getpid()).c_str(), 1);
      setenv("LISTEN_FDNAMES", names.c_str(), 1);
    }
  });
}

std::string ServiceManager::receive(int timeout_ms) {
  pollfd p = {fd_.get(), POLLIN, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return "";
  char buf[4096];
  auto got = receive_message(fd_.get(), buf, sizeof(buf) - 1, kMaxFdsPerMessage, MSG_DONTWAIT);
  if (!got.ok() || got->len == 0) return "";
  std::string msg(buf, got->len);
  messages_.push_back(msg);
  apply(msg, std::move(got->fds));
  return msg;
}

void ServiceManager::apply(const std::string& msg, std::vector<UniqueFd> fds) {
  const std::string name = value_of(msg, "FDNAME");
  if (value_of(msg, "FDSTOREREMOVE") == "1") {
    std::erase_if(store_, [&](const auto& entry) { return entry.first == name; });
  }
  if (value_of(msg, "FDSTORE") != "1") return;  // fds of any other message are closed
  for (UniqueFd& fd : fds) {
    bool known = false;
    for (const auto& entry : store_) known = known || same_file(entry.second.get(), fd.get());
    if (!known) store_.emplace_back(name.empty() ? "stored" : name, std::move(fd));
  }
}

}  // namespace sluice::test
