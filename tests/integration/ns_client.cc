#include "tests/integration/ns_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/kept_port.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

/// Limit: bytes of one request or answer line.
constexpr size_t kMaxLine = 4096;

/// Reads one line from `fd` into `out` (without the newline), waiting at
/// most `timeout_ms` for it; false on EOF, an error, a timeout or a line
/// over kMaxLine.
bool read_line(int fd, std::string* out, int timeout_ms) {
  out->clear();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    struct pollfd p = {fd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) != 1) return false;
    char c;
    if (read(fd, &c, 1) != 1) return false;
    if (c == '\n') return true;
    if (out->size() >= kMaxLine) return false;
    out->push_back(c);
  }
}

/// Writes `line` and a newline to `fd`; false on failure.
bool write_line(int fd, const std::string& line) {
  const std::string out = line + "\n";
  return send(fd, out.data(), out.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(out.size());
}

/// Joins the user namespace and then the network namespace of `pid`; false
/// when either fails.
bool join(pid_t pid) {
  for (const char* ns : {"user", "net"}) {
    const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + ns;
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool joined = setns(fd, 0) == 0;
    close(fd);
    if (!joined) return false;
  }
  return true;
}

/// The child: answers requests on `fd` until it closes or says "exit".
[[noreturn]] void serve(int fd, pid_t pid) {
  if (!join(pid)) {
    write_line(fd, "failed");
    _exit(1);
  }
  write_line(fd, "ready");
  std::vector<UniqueFd> held;
  UniqueFd kept_udp;            // udp-send's socket, which udp-await reads
  std::vector<UniqueFd> burst;  // udp-burst's sockets, one per new client
  std::unique_ptr<KeptPortProber> prober;
  std::string line;
  // Limit: the child serves one test; an idle minute means the test is gone.
  while (read_line(fd, &line, 60000)) {
    std::istringstream in(line);
    std::string verb, addr, text;
    unsigned port = 0;
    in >> verb;
    std::string answer = "error";
    if (verb == "tcp" || verb == "udp") {
      in >> addr >> port;
      std::getline(in, text);
      if (!text.empty() && text[0] == ' ') text.erase(0, 1);
      if (verb == "tcp") {
        // connect_tcp sets 5 s receive timeouts: each recv is bounded.
        UniqueFd c = connect_tcp(addr, static_cast<uint16_t>(port), 5000);
        std::string got;
        if (c.valid() && send(c.get(), text.data(), text.size(), MSG_NOSIGNAL) ==
                             static_cast<ssize_t>(text.size())) {
          char buf[4096];
          while (got.size() < text.size()) {
            ssize_t n = recv(c.get(), buf, sizeof(buf), 0);
            if (n <= 0) break;
            got.append(buf, static_cast<size_t>(n));
          }
        }
        answer = "= " + got;
      } else {
        UniqueFd u = bind_udp(addr);
        Datagram reply = request(u.get(), addr, static_cast<uint16_t>(port), text);
        answer = "= " + (reply.ok ? reply.payload : std::string());
      }
    } else if (verb == "udp-send") {
      in >> addr >> port;
      std::getline(in, text);
      if (!text.empty() && text[0] == ' ') text.erase(0, 1);
      if (!kept_udp.valid()) kept_udp = bind_udp(addr);
      answer = send_udp(kept_udp.get(), addr, static_cast<uint16_t>(port), text) ? "ok" : "failed";
    } else if (verb == "udp-await" && kept_udp.valid()) {
      int timeout_ms = 0;
      in >> timeout_ms;
      std::getline(in, text);
      if (!text.empty() && text[0] == ' ') text.erase(0, 1);
      // Limit: the answer must come before ask()'s 30 s.
      const Datagram reply = await_reply(kept_udp.get(), text, std::min(timeout_ms, 25000));
      answer = "= " + (reply.ok ? reply.payload : std::string());
    } else if (verb == "udp-burst") {
      // Limit: 1000 clients, within the child's descriptors.
      unsigned count = 0;
      in >> addr >> port >> count;
      burst.clear();
      bool sent = count <= 1000;
      for (unsigned i = 0; sent && i < count; ++i) {
        burst.push_back(bind_udp(addr));
        sent =
            burst.back().valid() && send_udp(burst.back().get(), addr, static_cast<uint16_t>(port),
                                             "burst " + std::to_string(i));
      }
      answer = sent ? "ok" : "failed";
    } else if (verb == "udp-burst-await") {
      int timeout_ms = 0;
      in >> timeout_ms;
      // Limit: the answer must come before ask()'s 30 s.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(std::min(timeout_ms, 25000));
      size_t replied = 0;
      for (const UniqueFd& u : burst) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                              deadline - std::chrono::steady_clock::now())
                              .count();
        if (recv_udp(u.get(), static_cast<int>(std::max<long long>(left, 0))).ok) ++replied;
      }
      answer = std::to_string(replied);
    } else if (verb == "hold" || verb == "hold-shared") {
      in >> addr >> port;
      struct sockaddr_storage ss;
      socklen_t len = make_addr(addr, static_cast<uint16_t>(port), &ss);
      UniqueFd s(socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
      const int one = 1;
      const bool shared = verb == "hold-shared";
      const bool bound =
          s.valid() &&
          (!shared || setsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0) &&
          bind(s.get(), reinterpret_cast<sockaddr*>(&ss), len) == 0 && listen(s.get(), 8) == 0;
      if (bound) held.push_back(std::move(s));
      answer = bound ? "ok" : "failed";
    } else if (verb == "listening") {
      in >> port;
      answer = test::listening(static_cast<uint16_t>(port)) ? "yes" : "no";
    } else if (verb == "probe-start") {
      in >> port;
      prober = std::make_unique<KeptPortProber>(static_cast<uint16_t>(port),
                                                KeptPortProber::Target::kEcho);
      answer = "ok";
    } else if (verb == "probe-await" && prober) {
      prober->await_probe();
      answer = "ok";
    } else if (verb == "probe-stop" && prober) {
      prober->stop();
      answer = std::to_string(prober->ok()) + " " + std::to_string(prober->refused()) + " " +
               std::to_string(prober->reset());
    } else if (verb == "exit") {
      break;
    }
    if (!write_line(fd, answer)) break;
  }
  if (prober) prober->stop();
  _exit(0);
}

}  // namespace

NsClient::NsClient(pid_t pid) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
  child_ = fork();
  if (child_ == 0) {
    close(sv[0]);
    serve(sv[1], pid);
  }
  close(sv[1]);
  sock_.reset(sv[0]);
  std::string line;
  ok_ = child_ > 0 && read_line(sock_.get(), &line, 10000) && line == "ready";
}

NsClient::~NsClient() {
  if (sock_.valid()) write_line(sock_.get(), "exit");
  sock_.reset();
  if (child_ <= 0) return;
  for (int i = 0; i < 250; ++i) {  // bounded: 5 s
    if (waitpid(child_, nullptr, WNOHANG) == child_) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(child_, SIGKILL);
  waitpid(child_, nullptr, 0);
}

std::string NsClient::ask(const std::string& line) {
  std::string answer;
  if (!ok_ || !write_line(sock_.get(), line) || !read_line(sock_.get(), &answer, 30000)) return "";
  return answer;
}

std::string NsClient::tcp_echo(const std::string& addr, uint16_t port, const std::string& text) {
  const std::string a = ask("tcp " + addr + " " + std::to_string(port) + " " + text);
  return a.rfind("= ", 0) == 0 ? a.substr(2) : "";
}

std::string NsClient::udp_request(const std::string& addr, uint16_t port, const std::string& text) {
  const std::string a = ask("udp " + addr + " " + std::to_string(port) + " " + text);
  return a.rfind("= ", 0) == 0 ? a.substr(2) : "";
}

bool NsClient::udp_send(const std::string& addr, uint16_t port, const std::string& text) {
  return ask("udp-send " + addr + " " + std::to_string(port) + " " + text) == "ok";
}

std::string NsClient::udp_await(const std::string& text, int timeout_ms) {
  const std::string a = ask("udp-await " + std::to_string(timeout_ms) + " " + text);
  return a.rfind("= ", 0) == 0 ? a.substr(2) : "";
}

bool NsClient::udp_burst(const std::string& addr, uint16_t port, size_t count) {
  return ask("udp-burst " + addr + " " + std::to_string(port) + " " + std::to_string(count)) ==
         "ok";
}

size_t NsClient::udp_burst_replies(int timeout_ms) {
  const std::string a = ask("udp-burst-await " + std::to_string(timeout_ms));
  return a.empty() || a == "error" ? 0 : std::stoul(a);
}

bool NsClient::hold_tcp(const std::string& addr, uint16_t port) {
  return ask("hold " + addr + " " + std::to_string(port)) == "ok";
}

bool NsClient::hold_tcp_shared(const std::string& addr, uint16_t port) {
  return ask("hold-shared " + addr + " " + std::to_string(port)) == "ok";
}

bool NsClient::listening(uint16_t port) {
  return ask("listening " + std::to_string(port)) == "yes";
}

bool NsClient::start_prober(uint16_t port) {
  return ask("probe-start " + std::to_string(port)) == "ok";
}

void NsClient::await_probe() {
  ask("probe-await");
}

std::string NsClient::stop_prober() {
  return ask("probe-stop");
}

}  // namespace sluice::test
