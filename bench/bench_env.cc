#include "bench/bench_env.h"

#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "bench/loopback.h"

namespace sluice::bench {
namespace {

/// Limit: echoes one PingPong run records. At a 10 us round trip this is 40 s
/// of ping-pong, longer than any phase of the benchmark; the run stops when it
/// is full (the round-trip count shows it), and 32 MiB is cheap.
constexpr size_t kMaxStamps = size_t{1} << 22;
/// Limit: how long one PingPong run may last, even if the caller never stops
/// it; the longest phase of the benchmark lasts about 5 s.
constexpr uint64_t kMaxPingPongNs = 120'000'000'000ULL;
/// How often blocked server threads look at their stop flag: short enough
/// that stopping is quick, long enough to cost nothing.
constexpr int kStopPollMs = 50;

/// Writes `text` to `path`; false on failure.
bool write_file(const char* path, const std::string& text) {
  UniqueFd fd(open(path, O_WRONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  return write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size());
}

/// Converts a waitpid status into an exit code or 128 + signal.
int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// Polls waitpid for `pid` for at most `timeout_ms`; returns the decoded
/// status, or -1 while it still runs.
int wait_bounded(pid_t pid, int timeout_ms) {
  uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_status(status);
    if (r < 0 || now_ns() > deadline) return -1;
    sleep_ms(5);
  }
}

/// Builds a NULL-terminated argv for exec (pointing into `argv`).
std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

/// Forks and execs `argv` with stdout and stderr on `out_fd`. Returns the
/// child's pid, or -1 when fork fails. Between fork and exec the child calls
/// only async-signal-safe functions: the parent may have threads.
pid_t spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> args = c_argv(argv);
  pid_t pid = fork();
  if (pid == 0) {
    // The benchmark ignores SIGPIPE; its children start as from a shell.
    // (Debian 12's pasta even refuses to start when SIGPIPE is ignored.)
    signal(SIGPIPE, SIG_DFL);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

/// Sets SO_RCVTIMEO and SO_SNDTIMEO on `fd` to `timeout_ms`.
void set_timeouts(int fd, int timeout_ms) {
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/// Writes all of `len` bytes; false on error or timeout.
bool send_all(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
    if (n <= 0) return false;
    data += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

/// Echoes everything read from `fd` until EOF, an error, or `stop` (checked
/// every kStopPollMs). Returns the number of bytes echoed.
size_t echo_until_eof(int fd, const std::atomic<bool>* stop) {
  set_timeouts(fd, kStopPollMs);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  char buf[4096];  // one ping-pong byte at a time; any size works
  size_t total = 0;
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (stop != nullptr && stop->load()) return total;
      continue;
    }
    if (n <= 0 || !send_all(fd, buf, static_cast<size_t>(n))) return total;
    total += static_cast<size_t>(n);
  }
}

}  // namespace

uint64_t now_ns() noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_ms(int ms) noexcept {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

Result<void> enter_private_namespace() {
  uid_t uid = geteuid();
  gid_t gid = getegid();
  if (unshare(CLONE_NEWUSER) != 0) {
    return Err(errno, std::string("unshare(CLONE_NEWUSER): ") + std::strerror(errno) +
                          " (enable kernel.unprivileged_userns_clone)");
  }
  if (!write_file("/proc/self/setgroups", "deny") ||
      !write_file("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
      !write_file("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1")) {
    return Err(errno, std::string("writing the user namespace's id maps: ") + std::strerror(errno));
  }
  if (unshare(CLONE_NEWNET) != 0) {
    return Err(errno, std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
  }
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  struct ifreq ifr = {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_UP | IFF_LOOPBACK | IFF_RUNNING;
  if (!fd.valid() || ioctl(fd.get(), SIOCSIFFLAGS, &ifr) != 0) {
    return Err(errno, std::string("bringing up lo: ") + std::strerror(errno));
  }
  return Ok();
}

int run_quiet(const std::vector<std::string>& argv, int timeout_ms) {
  UniqueFd null(open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!null.valid()) return -1;
  pid_t pid = spawn(argv, null.get());
  if (pid < 0) return -1;
  int status = wait_bounded(pid, timeout_ms);
  if (status == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  return status;
}

std::string self_exe() {
  char buf[4096];  // PATH_MAX
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

Child::~Child() {
  stop();
}

Result<void> Child::start(const std::vector<std::string>& argv, const std::string& log_path) {
  UniqueFd log(open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return Err(errno, "cannot open " + log_path + ": " + std::strerror(errno));
  pid_ = spawn(argv, log.get());
  if (pid_ < 0) return Err(errno, std::string("fork: ") + std::strerror(errno));
  status_ = -1;
  return Ok();
}

bool Child::running() {
  if (pid_ < 0 || status_ != -1) return false;
  int status = 0;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    status_ = decode_status(status);
    return false;
  }
  return true;
}

int Child::stop(int timeout_ms) {
  if (!running()) return status_;
  kill(pid_, SIGTERM);
  status_ = wait_bounded(pid_, timeout_ms);
  if (status_ == -1) {
    kill(pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    status_ = decode_status(status);
  }
  return status_;
}

Sluiced::Sluiced() {
  char tmpl[] = "/tmp/sluice-bench-XXXXXX";
  const char* dir = mkdtemp(tmpl);
  dir_ = dir != nullptr ? dir : "/tmp";
  socket_ = dir_ + "/control.sock";
  log_ = dir_ + "/sluiced.log";
  audit_ = dir_ + "/audit.log";
}

Sluiced::~Sluiced() {
  child_.stop();
  unlink(socket_.c_str());
  unlink(log_.c_str());
  unlink(audit_.c_str());
  rmdir(dir_.c_str());
}

Result<void> Sluiced::start(const std::string& bin_dir, const std::vector<std::string>& rule_args) {
  std::vector<std::string> argv = {bin_dir + "/sluiced", "-q",  "-c", socket_,
                                   "--audit-log",        audit_};
  argv.insert(argv.end(), rule_args.begin(), rule_args.end());
  Result<void> started = child_.start(argv, log_);
  if (!started.ok()) return started;
  // Limit: 10 s for sluiced to start the worker and answer; it takes
  // milliseconds, so only a broken build or namespace gets here.
  uint64_t deadline = now_ns() + 10'000'000'000ULL;
  while (now_ns() < deadline) {
    if (!child_.running()) return Err("sluiced exited at start-up:\n" + log_tail());
    if (access(socket_.c_str(), F_OK) == 0 && connect(2000).ok()) return Ok();
    sleep_ms(20);
  }
  return Err("sluiced did not answer within 10 s:\n" + log_tail());
}

Result<ControlConnection> Sluiced::connect(int timeout_ms) const {
  Result<ControlConnection> conn = ControlConnection::connect(socket_, timeout_ms);
  if (!conn.ok()) return conn;
  Result<control::ServerHello> hello = conn->handshake();
  if (!hello.ok()) return Err(hello.error());
  return conn;
}

std::string Sluiced::log_tail(size_t bytes) const {
  std::ifstream in(log_);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return all.size() > bytes ? all.substr(all.size() - bytes) : all;
}

Result<UniqueFd> listen_local(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Err(errno, std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sin = loopback(port);
  if (bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) != 0 ||
      listen(fd.get(), 1024) != 0) {
    return Err(errno,
               "cannot listen on 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  }
  return fd;
}

UniqueFd connect_local(uint16_t port, int timeout_ms) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return fd;
  set_timeouts(fd.get(), timeout_ms);
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct sockaddr_in sin = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) != 0) {
    return UniqueFd();
  }
  return fd;
}

TargetServer::~TargetServer() {
  stop();
}

Result<void> TargetServer::start(uint16_t port, Mode mode) {
  Result<UniqueFd> fd = listen_local(port);
  if (!fd.ok()) return Err(fd.error());
  listen_ = std::move(*fd);
  mode_ = mode;
  // Accept-and-close drains the queue until EAGAIN: the listener must not block.
  if (mode == Mode::kAcceptAndClose) fcntl(listen_.get(), F_SETFL, O_NONBLOCK);
  stop_ = false;
  thread_ = std::thread([this] { serve(); });
  return Ok();
}

void TargetServer::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  listen_.reset();
}

void TargetServer::serve() noexcept {
  while (!stop_) {
    struct pollfd pfd = {listen_.get(), POLLIN, 0};
    if (poll(&pfd, 1, kStopPollMs) != 1) continue;
    if (mode_ == Mode::kEcho) {
      UniqueFd conn(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.valid()) echo_until_eof(conn.get(), &stop_);
      continue;
    }
    // Accept-and-close: take everything queued; the peer sees EOF.
    // Limit: 1024 accepts per wake-up, the backlog, so stop stays prompt.
    for (int i = 0; i < 1024; ++i) {
      UniqueFd conn(accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!conn.valid()) break;
    }
  }
}

int echo_server_main(uint16_t port) {
  Result<UniqueFd> fd = listen_local(port);
  if (!fd.ok()) {
    std::fprintf(stderr, "echo server: %s\n", fd.error().message.c_str());
    return 1;
  }
  // Limit: 60 s to be reached and served; the benchmark needs about 2 s.
  uint64_t deadline = now_ns() + 60'000'000'000ULL;
  while (now_ns() < deadline) {
    struct pollfd pfd = {fd->get(), POLLIN, 0};
    if (poll(&pfd, 1, kStopPollMs) != 1) continue;
    UniqueFd conn(accept4(fd->get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (conn.valid() && echo_until_eof(conn.get(), nullptr) > 0) return 0;
  }
  return 1;
}

PingPong::~PingPong() {
  stop();
}

Result<void> PingPong::connect(uint16_t port, int timeout_ms) {
  uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ULL;
  std::string last = "no attempt";
  while (now_ns() < deadline) {
    // A recv timeout of 5 s: far above any stall we look for, so a stall
    // shows as a gap, and a dead path as a failure instead of a hang.
    UniqueFd fd = connect_local(port, 5000);
    char b = 'x';
    if (!fd.valid()) {
      last = std::strerror(errno);
    } else if (send_all(fd.get(), &b, 1) && recv(fd.get(), &b, 1, 0) == 1) {
      fd_ = std::move(fd);
      return Ok();
    } else {
      last = "no echo";
    }
    sleep_ms(20);
  }
  return Err("no echo through 127.0.0.1:" + std::to_string(port) + ": " + last);
}

void PingPong::start() {
  stop();
  stamps_.assign(kMaxStamps + 1, 0);  // touches every page now, not during the run
  count_ = 0;
  failures_ = 0;
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void PingPong::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void PingPong::run() noexcept {
  uint64_t start = now_ns();
  stamps_[0] = start;
  char b = 'x';
  while (!stop_ && count_ < kMaxStamps) {
    if (send(fd_.get(), &b, 1, MSG_NOSIGNAL) != 1 || recv(fd_.get(), &b, 1, 0) != 1) {
      ++failures_;
      return;
    }
    uint64_t t = now_ns();
    stamps_[++count_] = t;
    if (t - start > kMaxPingPongNs) return;
  }
}

std::vector<uint64_t> PingPong::gaps(uint64_t from_ns, uint64_t to_ns) const {
  std::vector<uint64_t> out;
  auto first = std::lower_bound(stamps_.begin() + 1, stamps_.begin() + 1 + count_, from_ns);
  size_t i = static_cast<size_t>(first - stamps_.begin());
  if (i > 0) --i;  // the echo before the window: its gap ends inside
  for (; i < count_ && stamps_[i] <= to_ns; ++i) out.push_back(stamps_[i + 1] - stamps_[i]);
  return out;
}

std::vector<uint64_t> PingPong::all_gaps() const {
  std::vector<uint64_t> out;
  out.reserve(count_);
  for (size_t i = 0; i < count_; ++i) out.push_back(stamps_[i + 1] - stamps_[i]);
  return out;
}

Summary summarize(std::vector<double> values) {
  Summary s;
  s.n = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.median = values.size() % 2 == 1
                 ? values[values.size() / 2]
                 : (values[values.size() / 2 - 1] + values[values.size() / 2]) / 2;
  size_t p99 = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(values.size())));
  s.p99 = values[std::min(values.size() - 1, p99 > 0 ? p99 - 1 : 0)];
  s.max = values.back();
  return s;
}

std::vector<double> to_ms(const std::vector<uint64_t>& ns) {
  std::vector<double> out;
  out.reserve(ns.size());
  for (uint64_t v : ns) out.push_back(static_cast<double>(v) / 1e6);
  return out;
}

}  // namespace sluice::bench
