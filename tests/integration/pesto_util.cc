#include "tests/integration/pesto_util.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

namespace sluice::test {

std::string real_pesto() {
  return SLUICE_REAL_PESTO;
}

RunResult run_pesto(const std::vector<std::string>& args, const std::string& sock) {
  std::vector<std::string> argv = {real_pesto()};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(sock);
  return run_command(argv);
}

const std::string& container_host_policy() {
  static const PolicyFileFixture policy(
      "# Podman publishes these privileged ports at run time.\n"
      "bind allow tcp,udp 53,80,443 *\n"
      "bind allow tcp,udp 1024-65535 *\n");
  return policy.path();
}

void start_with_pesto(Daemon& d, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"--pesto-socket", d.pesto_path()};
  argv.insert(argv.end(), args.begin(), args.end());
  d.start(argv);
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

std::vector<std::string> host_rules(Daemon& d) {
  RunResult r = d.ctl();
  EXPECT_EQ(r.status, 0) << r.err;
  std::vector<std::string> out;
  size_t at = r.out.find("HOST\n");
  if (at == std::string::npos) return out;
  at += 5;
  while (r.out.compare(at, 4, "    ") == 0) {
    size_t end = r.out.find('\n', at);
    if (end == std::string::npos) break;
    std::string line = r.out.substr(at + 4, end - at - 4);
    if (line != "(no rules)") out.push_back(line);
    at = end + 1;
  }
  return out;
}

RawPesto::RawPesto(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (!fd.valid() || path.size() >= sizeof(addr.sun_path)) return;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) return;
  fd_ = std::move(fd);
}

bool RawPesto::read_hello(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  pesto::WireFailure failure;
  for (int reads = 0; reads < 10000; ++reads) {
    failure = {};
    if (!hello_.empty() && pesto::decode_hello(reinterpret_cast<const uint8_t*>(hello_.data()),
                                               hello_.size(), &tables_, &failure)) {
      return true;
    }
    if (!hello_.empty() && failure.error != pesto::WireError::kTruncated) {
      failure_ = failure.message;
      return false;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    struct pollfd p = {fd_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = read(fd_.get(), buf, sizeof(buf));
    if (n <= 0) {
      failure_ = n == 0 ? "the server closed the connection" : std::strerror(errno);
      return false;
    }
    hello_.append(buf, static_cast<size_t>(n));
  }
  failure_ = "no whole hello within " + std::to_string(timeout_ms) + " ms (" +
             std::to_string(hello_.size()) + " bytes)";
  return false;
}

bool RawPesto::send(const std::string& bytes) {
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::send(fd_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

bool RawPesto::closed_by_server(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int reads = 0; reads < 10000; ++reads) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    struct pollfd p = {fd_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[4096];
    ssize_t n = read(fd_.get(), buf, sizeof(buf));
    if (n <= 0) return true;  // EOF, or ECONNRESET
  }
  return false;
}

std::vector<pesto::WireTable> pesto_tables(const std::string& path) {
  RawPesto raw(path);
  EXPECT_TRUE(raw.valid()) << "cannot connect to " << path;
  if (!raw.valid()) return {};
  EXPECT_TRUE(raw.read_hello()) << raw.failure();
  return raw.tables();
}

pesto::RuleRecord make_record(bool tcp, const std::string& listen, uint16_t first, uint16_t last,
                              uint16_t to, const std::string& target, uint8_t flags) {
  Rule rule;
  rule.proto = tcp ? Proto::kTcp : Proto::kUdp;
  EXPECT_TRUE(parse_addr(listen, &rule.listen)) << listen;
  if (!target.empty()) {
    EXPECT_TRUE(parse_addr(target, &rule.target)) << target;
  }
  rule.first = first;
  rule.last = last;
  rule.to = to;
  pesto::RuleRecord record = pesto::encode_rule(rule);
  // The target as given, even where the model would make it canonical.
  if (!target.empty()) std::memcpy(record.data() + 16, rule.target.data(), 16);
  record[55] = flags;
  return record;
}

}  // namespace sluice::test
