#include "tests/integration/daemon.h"

#include "base/check.h"
#include "tests/integration/tcp_util.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace sluice::test {
namespace {

/// Converts a waitpid status into an exit code or 128 + signal.
int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

/// Polls waitpid for `pid` for at most `timeout_ms`; returns the decoded
/// status or -1 if it is still running.
int wait_bounded(pid_t pid, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return decode_status(status);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

/// Reads a whole file, or "" if it cannot be read.
std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Builds a NULL-terminated argv for execv.
std::vector<char*> c_argv(const std::vector<std::string>& argv) {
  std::vector<char*> out;
  for (const std::string& a : argv) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

std::string bin(const std::string& name) {
  return std::string(SLUICE_BIN_DIR) + "/" + name;
}

RunResult run_command(const std::vector<std::string>& argv, int timeout_ms) {
  char out_tmpl[] = "/tmp/sluice-run-out-XXXXXX";
  char err_tmpl[] = "/tmp/sluice-run-err-XXXXXX";
  int out_fd = mkstemp(out_tmpl);
  int err_fd = mkstemp(err_tmpl);
  RunResult result;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    auto args = c_argv(argv);
    execv(args[0], args.data());
    _exit(127);
  }
  result.status = wait_bounded(pid, timeout_ms);
  if (result.status == -1) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  close(out_fd);
  close(err_fd);
  result.out = read_file(out_tmpl);
  result.err = read_file(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  return result;
}

Daemon::Daemon() {
  char tmpl[] = "/tmp/sluice-test-XXXXXX";
  dir_ = mkdtemp(tmpl);
  socket_ = dir_ + "/control.sock";
  log_path_ = dir_ + "/sluiced.log";
}

Daemon::~Daemon() {
  if (pid_ > 0 && exit_status_ == -1) {
    kill(pid_, SIGTERM);
    if (wait_bounded(pid_, 5000) == -1) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  unlink(log_path_.c_str());
  unlink(socket_.c_str());
  unlink(pesto_path().c_str());
  rmdir(dir_.c_str());
}

void Daemon::start(const std::vector<std::string>& args, bool drop_bind_cap) {
  std::vector<std::string> argv = {bin("sluiced"), "-c", socket_};
  argv.insert(argv.end(), args.begin(), args.end());
  int log_fd = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(log_fd, 0);
  exit_status_ = -1;  // a restart: the earlier run's status is not this one's
  pid_ = fork();
  ASSERT_GE(pid_, 0);
  if (pid_ == 0) {
    // A test that crashes must not leave a daemon running: sluiced gets
    // SIGTERM when the test process dies (its worker follows it).
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) _exit(126);
    if (drop_bind_cap && prctl(PR_CAPBSET_DROP, CAP_NET_BIND_SERVICE, 0, 0, 0) != 0) _exit(126);
    const int out = stderr_fd_ >= 0 ? stderr_fd_ : log_fd;
    dup2(out, 1);
    dup2(out, 2);
    if (child_setup_) child_setup_();
    auto c = c_argv(argv);
    execv(c[0], c.data());
    _exit(127);
  }
  close(log_fd);
}

bool Daemon::wait_ready(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      exit_status_ = decode_status(status);
      return false;
    }
    if (access(socket_.c_str(), F_OK) == 0 && ctl({"--timeout", "2"}).status == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

int Daemon::wait_exit(int timeout_ms) {
  if (exit_status_ != -1) return exit_status_;
  exit_status_ = wait_bounded(pid_, timeout_ms);
  return exit_status_;
}

void Daemon::signal(int sig) {
  kill(pid_, sig);
}

/// Returns the first child of `parent` whose command name is `comm`, or -1.
static pid_t child_named(pid_t parent, const std::string& comm) {
  std::istringstream children(read_file("/proc/" + std::to_string(parent) + "/task/" +
                                        std::to_string(parent) + "/children"));
  pid_t child;
  while (children >> child) {
    std::string name = read_file("/proc/" + std::to_string(child) + "/comm");
    while (!name.empty() && name.back() == '\n') name.pop_back();
    if (name == comm) return child;
  }
  return -1;
}

pid_t Daemon::worker_pid() const {
  return child_named(pid_, "sluice-worker");
}

pid_t Daemon::launcher_pid() const {
  return child_named(pid_, "sluice-launcher");
}

pid_t Daemon::helper_pid() const {
  return child_named(pid_, "sluiced-netns");  // a fork of sluiced, never exec'd
}

RunResult Daemon::ctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {bin("sluicectl")};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back(socket_);
  return run_command(argv);
}

std::string Daemon::log() const {
  return read_file(log_path_);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string proc_status_field(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field + ":", 0) == 0) {
      size_t start = line.find_first_not_of(" \t", field.size() + 1);
      return start == std::string::npos ? "" : line.substr(start);
    }
  }
  return "";
}

std::string proc_stat_field(pid_t pid, int n) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(in, stat);
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || n < 3) return "";
  std::istringstream fields(stat.substr(close + 1));
  std::string field;
  for (int i = 3; i <= n; ++i) {
    if (!(fields >> field)) return "";
  }
  return field;
}

PolicyFileFixture::PolicyFileFixture(const std::string& text) {
  char tmpl[] = "/tmp/sluice-policy-XXXXXX";
  const char* dir = ::mkdtemp(tmpl);
  CHECK(dir != nullptr);
  dir_ = dir;
  path_ = dir_ + "/policy";
  std::ofstream(path_) << text;
  ::chmod(dir_.c_str(), 0755);
  ::chmod(path_.c_str(), 0644);
}

void PolicyFileFixture::rewrite(const std::string& text) {
  const std::string tmp = path_ + ".new";
  std::ofstream(tmp) << text;
  ::chmod(tmp.c_str(), 0644);
  CHECK(::rename(tmp.c_str(), path_.c_str()) == 0);
}

PolicyFileFixture::~PolicyFileFixture() {
  ::unlink(path_.c_str());
  ::rmdir(dir_.c_str());
}

bool real_root_run() {
  const char* mode = std::getenv("SLUICE_TEST_NS");
  return mode != nullptr && std::string(mode) == "net";
}

size_t count_of(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

void expect_forwarding(int target_listener, uint16_t port, const Daemon& d) {
  UniqueFd client = connect_tcp("127.0.0.1", port, 5000);
  ASSERT_TRUE(client.valid()) << d.log();
  UniqueFd conn = accept_one(target_listener, 5000);
  EXPECT_TRUE(conn.valid()) << "the daemon stopped forwarding\n" << d.log();
}

bool wait_for_log(const Daemon& d, const std::string& needle, size_t count) {
  for (int i = 0; i < 500; ++i) {
    if (count_of(d.log(), needle) >= count) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace sluice::test
