#include "worker/tcp_connection.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

#include <cstring>
#include <new>

#include "base/log.h"
#include "base/strings.h"
#include "worker/transfer_mode.h"

namespace sluice {
namespace {

/// Limit: bytes asked of one splice() call. The pipe's capacity bounds what
/// moves anyway; asking for more than it holds costs nothing.
constexpr size_t kSpliceChunk = 1u << 20;

/// Events that let a socket's bytes be read (EOF and errors included: the
/// splice then reports them; urgent data too).
constexpr uint32_t kReadable = EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLHUP | EPOLLERR;
/// Events that let bytes be written to a socket.
constexpr uint32_t kWritable = EPOLLOUT | EPOLLHUP | EPOLLERR;
/// Events after which the socket's next read must be taken to its 0 or its
/// error (read_drained).
constexpr uint32_t kEnding = EPOLLRDHUP | EPOLLHUP | EPOLLERR;

/// Records in `dir` what an event of its source (`events`) says of the
/// source's end: a FIN, hang-up or error (eof_seen), and a FIN with no
/// hang-up or error, now or before (fin_seen).
template <typename Direction>
void note_ending(Direction& dir, uint32_t events) noexcept {
  const uint32_t end = events & kEnding;
  if (end == 0) return;
  dir.fin_seen = end == EPOLLRDHUP && (!dir.eof_seen || dir.fin_seen);
  dir.eof_seen = true;
}

}  // namespace

TcpConnection::TcpConnection(Forwarder& owner, UniqueFd client, UniqueFd target, bool connected,
                             std::shared_ptr<const Route> route, uint16_t target_port,
                             uint64_t connect_deadline_ns)
    : owner_(owner),
      client_(std::move(client)),
      target_(std::move(target)),
      route_(std::move(route)),
      connected_(connected),
      target_port_(target_port),
      connect_deadline_ns_(connect_deadline_ns),
      last_active_ns_(monotonic_ns()) {}

void TcpConnection::idle_timed_out() noexcept {
  if (closed_) return;
  ++owner_.counters().closed_idle;
  ++route_->counters->closed_idle;
  if (log_enabled(LogLevel::kDebug) && owner_.conn_log().allow()) {
    LOG_DEBUG("%s: no byte either way for %llu s (--idle-timeout); the connection is reset",
              route_->text.c_str(),
              static_cast<unsigned long long>(owner_.limits().idle_timeout_ns / 1000000000ULL));
  }
  close_all(true, ConnEnd::kIdle);
}

void TcpConnection::connect_timed_out() noexcept {
  if (connected_ || closed_) return;
  ++owner_.counters().connect_failed;
  ++route_->counters->failed;
  if (owner_.conn_log().allow()) {
    LOG_WARN(
        "%s: port %u of the target did not answer within %llu s (--connect-timeout); the client "
        "is reset",
        route_->text.c_str(), static_cast<unsigned>(target_port_),
        static_cast<unsigned long long>(owner_.limits().connect_timeout_ns / 1000000000ULL));
  }
  close_all(true, ConnEnd::kConnectTimeout);
}

Result<void> TcpConnection::start() noexcept {
  // EPOLLPRI: the kernel reports it only while urgent data waits, so the
  // common path never sees it (note_urgent).
  constexpr uint32_t kEvents = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  auto a = owner_.loop().add(client_.get(), kEvents, this);
  if (!a) return a;
  auto b = owner_.loop().add(target_.get(), kEvents, &target_side_);
  if (!b) return b;
  return Ok();
}

bool TcpConnection::pump_up() noexcept {
  return settle(pump(client_.get(), target_.get(), up_, &owner_.counters().bytes_to_target,
                     &route_->counters->bytes_to_target));
}

bool TcpConnection::pump_down() noexcept {
  return settle(pump(target_.get(), client_.get(), down_, &owner_.counters().bytes_to_client,
                     &route_->counters->bytes_to_client));
}

bool TcpConnection::settle(Pump r) noexcept {
  if (r == Pump::kError) {
    close_all(true, ConnEnd::kReset);
    return false;
  }
  if (up_.write_shut && down_.write_shut) {
    close_all(false, ConnEnd::kClosed);
    return false;
  }
  return true;
}

void TcpConnection::on_event(uint32_t events) noexcept {
  // Only the direction a socket's readiness can move is pumped: with edge
  // triggering, each pump runs until its source or destination would block,
  // and that socket's next edge resumes it. No syscall is spent on a side
  // that has nothing to do: a writable edge (epoll reports EPOLLOUT with
  // every readable one) matters only to a direction holding undelivered
  // bytes; one with none is resumed by its source's readable edge.
  note_ending(up_, events);         // even before the connect completes
  if (up_.eof_seen) note_fin(up_);  // the kernel has the FIN, maybe behind unread bytes
  if (closed_) return;
  // Before the connect completes too: the first read must see it.
  if ((events & EPOLLPRI) != 0) note_urgent(client_.get(), up_);
  if (!connected_) return;  // the target's first event pumps both
  if ((events & kReadable) != 0 && !pump_up()) return;
  if ((events & kWritable) != 0 && down_.pending() && !pump_down()) return;
  if ((events & EPOLLERR) != 0) reset_on_error(client_.get());
}

void TcpConnection::note_urgent(int from, Direction& dir) noexcept {
  if (dir.urgent) return;
  dir.urgent = true;
  // The urgent byte stays in the stream, where the copy path reads it, and
  // reaches the destination as an ordinary byte: without this, recv() would
  // skip it, and the byte would be lost. Set before the byte is first read.
  const int on = 1;
  setsockopt(from, SOL_SOCKET, SO_OOBINLINE, &on, sizeof(on));
}

void TcpConnection::reset_on_error(int fd) noexcept {
  if (closed_) return;
  // An error the pumps did not meet: the socket's own direction had ended
  // (its FIN came first) and the other had nothing to write, so no call saw
  // it. A reset after a FIN is still a reset: pass it on.
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0) return;
  close_all(true, ConnEnd::kReset);
}

void TcpConnection::on_target_event(uint32_t events) noexcept {
  note_ending(down_, events);
  if (down_.eof_seen) note_fin(down_);
  if (closed_) return;
  if ((events & EPOLLPRI) != 0) note_urgent(target_.get(), down_);
  if (!connected_) {
    finish_connect(events);
    if (!connected_ || closed_) return;
    // The client may have sent (or closed) while the target was connecting.
    if (pump_up()) pump_down();
    return;
  }
  if ((events & kReadable) != 0 && !pump_down()) return;
  if ((events & kWritable) != 0 && up_.pending() && !pump_up()) return;
  if ((events & EPOLLERR) != 0) reset_on_error(target_.get());
}

void TcpConnection::finish_connect(uint32_t events) noexcept {
  // Writable with neither error nor hang-up is a completed connect: a socket
  // still in SYN_SENT is never writable, and a failed one reports EPOLLERR
  // (and EPOLLHUP). No getsockopt(SO_ERROR) for the common case.
  if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == EPOLLOUT) {
    connected_ = true;
    moved_ = true;  // the idle timeout counts from the handshake, not the accept
    return;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  if (getsockopt(target_.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  if (err == 0) {
    // Another event first (rare): ask the peer to be sure.
    struct sockaddr_storage peer;
    socklen_t plen = sizeof(peer);
    if (getpeername(target_.get(), reinterpret_cast<struct sockaddr*>(&peer), &plen) == 0) {
      connected_ = true;
      moved_ = true;
      return;
    }
    if (errno == ENOTCONN) return;  // still in progress
    err = errno;
  }
  ++owner_.counters().connect_failed;
  ++route_->counters->failed;
  if (owner_.conn_log().allow()) {
    LOG_WARN("%s", describe_connect_failure(*route_, target_port_, err).c_str());
  }
  close_all(true, ConnEnd::kConnectFailed, err);  // the client sees a reset, as if refused
}

TcpConnection::Pump TcpConnection::pump(int from, int to, Direction& dir, Counter* byte_counter,
                                        Counter* rule_counter) noexcept {
  if (dir.write_shut) return Pump::kFinished;
  if (!dir.splicing) {
    Pump r = pump_copy(from, to, dir, byte_counter, rule_counter);
    if (!dir.splicing) return r;
  }
  Pump r = pump_splice(from, to, dir, byte_counter, rule_counter);
  if (r == Pump::kIdle && (dir.urgent || dir.copy_only) && !dir.pipe.read_end.valid()) {
    // splice() stops at the urgent mark for good, or no pipe could be had;
    // no pipe holds bytes: copy from here on (through the mark).
    dir.splicing = false;
    return pump_copy(from, to, dir, byte_counter, rule_counter);
  }
  return r;
}

TcpConnection::Pump TcpConnection::finish(int to, Direction& dir) noexcept {
  // When the other direction is finished too, settle() closes both sockets
  // next, and the close sends the FIN: `to` has nothing left to read (its
  // own FIN was read and delivered), so the kernel sends no reset.
  const Direction& other = &dir == &up_ ? down_ : up_;
  if (!other.write_shut) shutdown(to, SHUT_WR);
  dir.write_shut = true;
  owner_.give_pipe(std::move(dir.pipe));
  return Pump::kFinished;
}

TcpConnection::Pump TcpConnection::pump_copy(int from, int to, Direction& dir,
                                             Counter* byte_counter,
                                             Counter* rule_counter) noexcept {
  if (dir.held_len > 0) {
    ssize_t n = send(to, dir.held.get() + dir.held_off, dir.held_len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? Pump::kIdle : Pump::kError;
    count_delivered(dir, static_cast<size_t>(n), byte_counter, rule_counter);
    dir.held_off += static_cast<size_t>(n);
    dir.held_len -= static_cast<size_t>(n);
    // A short send means the destination is full; its writable edge resumes.
    if (dir.held_len > 0) return Pump::kIdle;
    dir.held.reset();
    dir.held_off = 0;
  }
  char* buf = owner_.copy_buffer();
  for (;;) {
    if (dir.read_eof) return finish(to, dir);  // everything the source sent was delivered
    if (!dir.urgent && !dir.copy_only &&
        should_splice(dir.delivered, dir.held_len, dir.read_full,
                      owner_.limits().splice_after_bytes)) {
      dir.splicing = true;
      return Pump::kIdle;
    }
    ssize_t got = recv(from, buf, kCopyChunk, MSG_DONTWAIT);
    if (got == 0) {
      reached_eof(dir);
      continue;
    }
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN ? Pump::kIdle : Pump::kError;
    }
    moved_ = true;
    const size_t n = static_cast<size_t>(got);
    if (n == kCopyChunk) dir.read_full = true;
    ssize_t sent = send(to, buf, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno != EAGAIN && errno != EINTR) return Pump::kError;
      sent = 0;
    }
    count_delivered(dir, static_cast<size_t>(sent), byte_counter, rule_counter);
    if (static_cast<size_t>(sent) < n) {
      // The destination is full: keep the rest (at most kCopyChunk) and
      // read no more until it is delivered (back-pressure, as a full pipe).
      dir.held_len = n - static_cast<size_t>(sent);
      dir.held.reset(new (std::nothrow) char[dir.held_len]);
      if (!dir.held) return Pump::kError;
      std::memcpy(dir.held.get(), buf + sent, dir.held_len);
      return Pump::kIdle;
    }
    // recv() also stops short at an urgent mark with bytes behind it: after
    // urgent data, only EAGAIN or 0 say where the stream is.
    if (dir.urgent) continue;
    if (read_reached_fin(n, kCopyChunk, dir.fin_seen)) {
      reached_eof(dir);  // the next recv() would return 0
      continue;
    }
    if (read_drained(n, kCopyChunk, dir.eof_seen)) return Pump::kIdle;
  }
}

TcpConnection::Pump TcpConnection::pump_splice(int from, int to, Direction& dir,
                                               Counter* byte_counter,
                                               Counter* rule_counter) noexcept {
  if (!dir.pipe.read_end.valid()) {
    auto pipe = owner_.take_pipe();
    if (!pipe) {
      // Out of descriptors: the copy path needs no pipe, so the transfer
      // goes on, copying, instead of being cut off.
      if (owner_.conn_log().allow()) {
        LOG_WARN("%s; the connection copies instead", pipe.error().message.c_str());
      }
      dir.copy_only = true;
      return Pump::kIdle;
    }
    dir.pipe = std::move(pipe).value();
  }
  for (;;) {
    bool progress = false;
    if (!dir.read_eof) {
      ssize_t n = splice(from, nullptr, dir.pipe.write_end.get(), nullptr, kSpliceChunk,
                         SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        dir.pipe.bytes += static_cast<size_t>(n);
        progress = true;
        moved_ = true;
      } else if (n == 0 && dir.urgent) {
        // At an urgent mark with the FIN behind it, splice() returns 0 as
        // if at the end: the copy path reads on once the pipe is empty.
      } else if (n == 0) {
        reached_eof(dir);
        progress = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        return Pump::kError;
      }
    }
    if (dir.pipe.bytes > 0) {
      ssize_t n = splice(dir.pipe.read_end.get(), nullptr, to, nullptr, dir.pipe.bytes,
                         SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        dir.pipe.bytes -= static_cast<size_t>(n);
        count_delivered(dir, static_cast<size_t>(n), byte_counter, rule_counter);
        progress = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return Pump::kError;
      }
    }
    // Everything the source sent has been delivered: forward its FIN.
    if (dir.read_eof && dir.pipe.bytes == 0) return finish(to, dir);
    if (!progress) {
      // Nothing in flight: the pipe goes back to the pool, so an idle
      // connection holds no pipe (pipes are counted per user, DEPENDENCIES.md).
      if (dir.pipe.bytes == 0) owner_.give_pipe(std::move(dir.pipe));
      return Pump::kIdle;
    }
  }
}

void TcpConnection::log_line(ConnEnd how, int err) noexcept {
  LOG_INFO("%s", connection_ended_line(*route_, *record_, target_port_, monotonic_ns(),
                                       up_.delivered, down_.delivered, how, err)
                     .c_str());
}

void TcpConnection::close_all(bool reset, ConnEnd how, int err) noexcept {
  if (closed_) return;
  closed_ = true;
  if (record_) log_line(how, err);
  if (reset) {
    struct linger lg = {1, 0};
    setsockopt(client_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    setsockopt(target_.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  }
  // No epoll_ctl(DEL) first: closing the only descriptor of a socket takes it
  // out of the epoll set, and events already in this batch are ignored
  // (closed_). Two syscalls less per connection.
  client_.reset();
  target_.reset();
  owner_.give_pipe(std::move(up_.pipe));
  owner_.give_pipe(std::move(down_.pipe));
  owner_.end_connection(this);
}

}  // namespace sluice
