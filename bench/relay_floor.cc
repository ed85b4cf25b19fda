// relay_floor: the least a user-space TCP relay can do, as a reference line
// for bench/peers. It is not a forwarder: no limits, no timeouts, no splice,
// no counters, no sandbox, no commits; it listens on 127.0.0.1 and copies
// bytes both ways through a 16 KiB buffer per direction, with edge-triggered
// epoll, back-pressure, half-close (shutdown) and a reset passed on as a
// close. What a relay with features costs more than this is the price of its
// features; what this one costs against a direct connection is the price of
// being a relay at all, on this machine.
//
//   relay_floor [--threads N] [--handoff] LISTEN_PORT:TARGET_PORT...
//
// With N threads (at most kMaxThreads) the relay runs N event loops:
// - by default every loop waits on every listener, level-triggered with
//   EPOLLEXCLUSIVE (one sleeping loop is woken per new connection), accepts
//   one connection per report and keeps the connections it accepted, as
//   nginx's workers do (accepting until EAGAIN there measured about 3 %
//   fewer connections per second with two threads: a burst goes to whichever
//   loop woke first, and each wake-up ends with an accept that finds none);
// - with --handoff the first loop alone accepts and connects, and hands each
//   connected pair to the others in turn (a queue and an eventfd each), so
//   that listeners stay in one thread.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

/// Limit: event loops; two cores are what the benchmark machine has, and a
/// few more let it be tried on larger ones.
constexpr int kMaxThreads = 16;
/// Bytes buffered per direction: as much as one recv() takes at a time.
constexpr size_t kBufferBytes = 16384;
/// Limit: connections accepted per wake-up of a loop from an edge-triggered
/// listener, so that one listener cannot starve the others (it re-arms
/// itself); a level-triggered one accepts one per report.
constexpr int kAcceptsPerWake = 64;

/// An epoll cookie: what kind of fd it stands for.
struct Handler {
  enum Kind { kListener, kQueue, kSide } kind;
};

/// One direction of a connection: bytes read from `from` not yet sent to `to`.
struct Direction {
  char buf[kBufferBytes];
  size_t off = 0, len = 0;
  bool eof = false;   // `from` sent its FIN
  bool shut = false;  // the FIN went on to `to`
};

struct Connection;

/// The cookie of one of a connection's two sockets.
struct Side : Handler {
  Connection* conn = nullptr;
  int index = 0;  // 0: the client, 1: the target
};

/// A client and its target, and the two directions between them.
struct Connection {
  int fd[2] = {-1, -1};
  Direction dir[2];  // dir[0]: client -> target; dir[1]: target -> client
  Side side[2];
  bool closed = false;
};

/// A listener and the port it forwards to.
struct Listener : Handler {
  int fd = -1;
  uint16_t target_port = 0;
  bool level = false;  // shared by every loop, level-triggered: one accept per report
};

class Loop;
std::vector<std::unique_ptr<Loop>> g_loops;
std::vector<std::unique_ptr<Listener>> g_listeners;
bool g_handoff = false;

/// Exits with a message naming what failed and its errno.
[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "relay_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

/// One event loop with its connections; the queue is how the accepting loop
/// hands it connections with --handoff.
class Loop {
 public:
  /// Makes the epoll instance and the queue's eventfd.
  Loop() {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
    queue_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (ep_ < 0 || queue_fd_ < 0) die("epoll_create1/eventfd");
    queue_cookie_.kind = Handler::kQueue;
    watch(queue_fd_, EPOLLIN, &queue_cookie_);
  }

  /// Adds `fd` to this loop's epoll set with `events` and `cookie`.
  void watch(int fd, uint32_t events, Handler* cookie) {
    struct epoll_event ev = {};
    ev.events = events;
    ev.data.ptr = cookie;
    if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
  }

  /// Hands `conn` (connected or connecting) to this loop from another
  /// thread; wakes it when its queue was empty.
  void post(Connection* conn) {
    bool was_empty;
    {
      std::lock_guard<std::mutex> lock(mu_);
      was_empty = queue_.empty();
      queue_.push_back(conn);
    }
    const uint64_t one = 1;
    if (was_empty && write(queue_fd_, &one, sizeof(one)) < 0) die("write(eventfd)");
  }

  /// Serves events forever.
  [[noreturn]] void run() {
    struct epoll_event events[64];
    for (;;) {
      const int n = epoll_wait(ep_, events, 64, -1);
      if (n < 0 && errno != EINTR) die("epoll_wait");
      for (int i = 0; i < n; ++i)
        dispatch(static_cast<Handler*>(events[i].data.ptr), events[i].events);
      for (Connection* conn : graveyard_) delete conn;
      graveyard_.clear();
    }
  }

 private:
  /// Handles one event.
  void dispatch(Handler* h, uint32_t events) {
    if (h->kind == Handler::kListener) {
      accept_from(*static_cast<Listener*>(h));
    } else if (h->kind == Handler::kQueue) {
      take_queue();
    } else {
      Side* side = static_cast<Side*>(h);
      Connection* conn = side->conn;
      if (conn->closed) return;
      // Readable: this side's bytes go to the other; writable: the other
      // side's bytes come through. Either pump may close the connection.
      if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) pump(conn, side->index);
      if (!conn->closed && (events & (EPOLLOUT | EPOLLERR))) pump(conn, 1 - side->index);
    }
  }

  /// Accepts up to kAcceptsPerWake clients of `l` (one if level-triggered),
  /// connects each to its target, and serves it here or hands it to the next
  /// loop in turn.
  void accept_from(Listener& l) {
    for (int i = 0; i < (l.level ? 1 : kAcceptsPerWake); ++i) {
      const int client = accept4(l.fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (client < 0) {
        if (errno == ECONNABORTED || errno == EINTR) continue;  // that client only
        if (errno == EAGAIN) return;                            // the queue is empty
        // Out of descriptors or memory: an edge-triggered listener gives up
        // until the next client; a level-triggered one would be reported at
        // every wait. A reference for the benchmark's loads, far below the
        // limits, has no business there: it stops.
        if (l.level) die("accept4");
        return;
      }
      const int target = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (target < 0) {
        close(client);
        continue;
      }
      const int one = 1;
      setsockopt(target, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      struct sockaddr_in to = {};
      to.sin_family = AF_INET;
      to.sin_port = htons(l.target_port);
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(target, reinterpret_cast<struct sockaddr*>(&to), sizeof(to)) != 0 &&
          errno != EINPROGRESS) {
        close(client);
        close(target);
        continue;
      }
      auto* conn = new Connection;
      conn->fd[0] = client;
      conn->fd[1] = target;
      if (g_handoff && g_loops.size() > 1) {
        next_ = next_ % (g_loops.size() - 1) + 1;  // loops 1..N-1 in turn
        g_loops[next_]->post(conn);
      } else {
        start(conn);
      }
    }
    if (l.level) return;  // epoll reports the rest
    // The cap was reached with clients still queued: the edge is spent, so
    // come back after this batch through the queue's eventfd.
    const uint64_t one = 1;
    if (write(queue_fd_, &one, sizeof(one)) < 0) die("write(eventfd)");
    requeue_.push_back(&l);
  }

  /// Serves the connections handed over, and a listener left at its cap.
  void take_queue() {
    uint64_t count;
    if (read(queue_fd_, &count, sizeof(count)) < 0 && errno != EAGAIN) die("read(eventfd)");
    std::vector<Connection*> batch;
    {
      std::lock_guard<std::mutex> lock(mu_);
      batch.swap(queue_);
    }
    for (Connection* conn : batch) start(conn);
    std::vector<Listener*> again;
    again.swap(requeue_);
    for (Listener* l : again) accept_from(*l);
  }

  /// Registers both sockets of `conn` with this loop.
  void start(Connection* conn) {
    for (int s = 0; s < 2; ++s) {
      conn->side[s].kind = Handler::kSide;
      conn->side[s].conn = conn;
      conn->side[s].index = s;
      watch(conn->fd[s], EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &conn->side[s]);
    }
  }

  /// Moves what socket `from` of `conn` sends to the other socket until
  /// either would block; passes the FIN on; closes the connection on an
  /// error or when both directions are done.
  void pump(Connection* conn, int from) {
    Direction& d = conn->dir[from];
    const int src = conn->fd[from];
    const int dst = conn->fd[1 - from];
    for (;;) {
      if (d.len > 0) {
        const ssize_t n = send(dst, d.buf + d.off, d.len, MSG_NOSIGNAL);
        if (n < 0) {
          if (errno == EAGAIN) return;  // the destination's writable edge resumes
          return finish(conn);
        }
        d.off += static_cast<size_t>(n);
        d.len -= static_cast<size_t>(n);
        continue;
      }
      if (d.eof) break;
      const ssize_t n = recv(src, d.buf, sizeof(d.buf), 0);
      if (n > 0) {
        d.off = 0;
        d.len = static_cast<size_t>(n);
      } else if (n == 0) {
        d.eof = true;
      } else if (errno == EAGAIN) {
        return;
      } else {
        return finish(conn);
      }
    }
    if (!d.shut) {
      d.shut = true;
      shutdown(dst, SHUT_WR);
    }
    if (conn->dir[0].shut && conn->dir[1].shut) finish(conn);
  }

  /// Closes both sockets of `conn`; frees it after the batch.
  void finish(Connection* conn) {
    if (conn->closed) return;
    conn->closed = true;
    close(conn->fd[0]);
    close(conn->fd[1]);
    graveyard_.push_back(conn);
  }

  int ep_ = -1;
  int queue_fd_ = -1;
  Handler queue_cookie_{};
  std::mutex mu_;
  std::vector<Connection*> queue_;
  std::vector<Connection*> graveyard_;
  std::vector<Listener*> requeue_;  // listeners left at kAcceptsPerWake
  size_t next_ = 0;                 // the loop the last handed-off connection went to
};

/// Opens a listener on 127.0.0.1:`port`.
int listen_on(uint16_t port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  struct sockaddr_in at = {};
  at.sin_family = AF_INET;
  at.sin_port = htons(port);
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&at), sizeof(at)) != 0) die("bind");
  if (listen(fd, SOMAXCONN) != 0) die("listen");
  return fd;
}

/// Prints the usage and exits with status 2.
[[noreturn]] void usage() {
  std::fprintf(stderr,
               "usage: relay_floor [--threads N] [--handoff] LISTEN_PORT:TARGET_PORT...\n"
               "  N from 1 to %d (default 1); --handoff: the first thread accepts and hands\n"
               "  connections to the others, instead of every thread accepting\n",
               kMaxThreads);
  std::exit(2);
}

/// Parses a port, 1 to 65535; exits with the usage otherwise.
uint16_t parse_port(const std::string& text) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < 1 || v > 65535) usage();
  return static_cast<uint16_t>(v);
}

}  // namespace

/// Parses the command line, opens the listeners, and runs the loops.
int main(int argc, char** argv) {
  int threads = 1;
  std::vector<std::pair<uint16_t, uint16_t>> forwards;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
      if (threads < 1 || threads > kMaxThreads) usage();
    } else if (arg == "--handoff") {
      g_handoff = true;
    } else if (const size_t colon = arg.find(':'); colon != std::string::npos) {
      forwards.emplace_back(parse_port(arg.substr(0, colon)), parse_port(arg.substr(colon + 1)));
    } else {
      usage();
    }
  }
  if (forwards.empty()) usage();
  for (int t = 0; t < threads; ++t) g_loops.push_back(std::make_unique<Loop>());
  for (const auto& [listen_port, target_port] : forwards) {
    auto l = std::make_unique<Listener>();
    l->kind = Handler::kListener;
    l->fd = listen_on(listen_port);
    l->target_port = target_port;
    if (g_handoff || threads == 1) {
      g_loops[0]->watch(l->fd, EPOLLIN | EPOLLET, l.get());
    } else {
      l->level = true;
      for (auto& loop : g_loops) loop->watch(l->fd, EPOLLIN | EPOLLEXCLUSIVE, l.get());
    }
    g_listeners.push_back(std::move(l));
  }
  for (int t = 1; t < threads; ++t) std::thread([t] { g_loops[t]->run(); }).detach();
  g_loops[0]->run();
}
