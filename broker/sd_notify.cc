// systemd's readiness protocol (see sd_notify.h).
#include "broker/sd_notify.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "base/log.h"
#include "base/strings.h"
#include "schema/broker_wire.h"

namespace sluice {
namespace {

/// Parses a positive decimal number without sign, spaces or overflow.
/// Returns 0 for anything else.
uint64_t parse_positive(const char* text) {
  if (text == nullptr || *text == '\0') return 0;
  uint64_t value = 0;
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return 0;
    const uint64_t digit = static_cast<uint64_t>(*p - '0');
    if (value > (UINT64_MAX - digit) / 10) return 0;
    value = value * 10 + digit;
  }
  return value;
}

}  // namespace

Result<NotifyAddress> parse_notify_socket(std::string_view value) {
  NotifyAddress out;
  out.addr.sun_family = AF_UNIX;
  const size_t room = sizeof(out.addr.sun_path);
  if (value.empty()) return Err(EINVAL, "NOTIFY_SOCKET is empty");
  if (value[0] == '@') {
    if (value.size() < 2) return Err(EINVAL, "NOTIFY_SOCKET names an empty abstract socket");
    if (value.size() > room) {
      return Err(ENAMETOOLONG, "NOTIFY_SOCKET's abstract name is longer than " +
                                   std::to_string(room - 1) + " bytes");
    }
    // The abstract namespace: a leading NUL, and exactly the name's bytes.
    out.addr.sun_path[0] = '\0';
    std::memcpy(out.addr.sun_path + 1, value.data() + 1, value.size() - 1);
    out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size());
    return out;
  }
  if (value[0] != '/') {
    return Err(EINVAL, "NOTIFY_SOCKET " + sanitize(std::string(value), 64) +
                           " is neither an absolute path nor an @abstract name");
  }
  if (value.size() >= room) {
    return Err(ENAMETOOLONG,
               "NOTIFY_SOCKET's path is longer than " + std::to_string(room - 1) + " bytes");
  }
  if (value.find('\0') != std::string_view::npos) return Err(EINVAL, "NOTIFY_SOCKET holds a NUL");
  std::memcpy(out.addr.sun_path, value.data(), value.size());
  out.len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + value.size() + 1);
  return out;
}

Result<UniqueFd> connect_notify_socket(std::string_view value) {
  auto addr = parse_notify_socket(value);
  if (!addr) return Err(addr.error());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) {
    int err = errno;
    return SysErr(err, "socket for NOTIFY_SOCKET");
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr->addr), addr->len) != 0) {
    int err = errno;
    return Err(err, "cannot connect to NOTIFY_SOCKET " + sanitize(std::string(value), 108) + ": " +
                        errno_text(err) + "; is the service manager's socket there (Type=notify)?");
  }
  return fd;
}

Result<uint64_t> parse_watchdog(const char* usec, const char* pid, pid_t self) {
  if (usec == nullptr) return uint64_t{0};
  if (pid != nullptr) {
    const uint64_t for_pid = parse_positive(pid);
    if (for_pid == 0) return Err(EINVAL, "WATCHDOG_PID is not a pid");
    if (for_pid != static_cast<uint64_t>(self)) return uint64_t{0};
  }
  const uint64_t value = parse_positive(usec);
  if (value == 0) return Err(EINVAL, "WATCHDOG_USEC is not a positive number of microseconds");
  return value;
}

std::string status_line(uint64_t generation, uint32_t listeners, uint32_t restarts) {
  std::string line = "STATUS=serving generation " + std::to_string(generation) + ", " +
                     std::to_string(listeners) + (listeners == 1 ? " listener" : " listeners");
  if (restarts > 0) {
    line +=
        ", " + std::to_string(restarts) + (restarts == 1 ? " worker restart" : " worker restarts");
  }
  return line;
}

std::string ready_message(uint64_t generation, uint32_t listeners, pid_t main_pid) {
  return "READY=1\n" + status_line(generation, listeners) + "\nMAINPID=" + std::to_string(main_pid);
}

void Notifier::set_restarts(uint32_t restarts) noexcept {
  if (restarts == restarts_) return;
  restarts_ = restarts;
  if (ready_sent_) status_pending_ = true;
}

Notifier::Notifier(int fd, uint64_t watchdog_usec, pid_t main_pid)
    : fd_(fd), watchdog_ns_(watchdog_usec * 1000 / 2), main_pid_(main_pid) {}

int Notifier::send(const std::string& msg) noexcept {
  if (fd_ < 0) return EBADF;
  // A connected socket: send() is sendto() with no address.
  if (::send(fd_, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0) {
    const int err = errno;
    LOG_DEBUG("NOTIFY_SOCKET: %s", errno_text(err).c_str());
    return err;
  }
  return 0;
}

namespace {

/// True when `err` (from Notifier::send) means the manager's queue had no
/// room: worth another try once it has read.
bool queue_full(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS;
}

}  // namespace

void Notifier::send_or_hold(std::string msg, uint64_t now_ns, bool ready) noexcept {
  if (fd_ < 0) return;
  if (held_.empty()) {
    // Any other failure will not heal by waiting: the message is dropped
    // (for the first READY=1, the start then fails as it would anyway).
    if (!queue_full(send(msg))) {
      if (ready) ready_went_out(now_ns);
      return;
    }
    held_retry_at_ns_ = now_ns == 0 ? 0 : now_ns + kReadyRetryNs;
  }
  if (held_.size() >= kMaxHeldNotifications) {
    // Never the first READY=1: a start that never reports ready fails.
    auto oldest = held_.front().ready ? held_.begin() + 1 : held_.begin();
    LOG_WARN("the service manager reads no notifications; an older one is dropped: %s",
             sanitize(oldest->msg, kMaxStatusBytes).c_str());
    held_.erase(oldest);
  }
  held_.push_back({std::move(msg), ready});
}

void Notifier::flush_held(uint64_t now_ns) noexcept {
  // Limit: at most the held messages, each sent once or kept.
  while (!held_.empty() && now_ns >= held_retry_at_ns_) {
    if (queue_full(send(held_.front().msg))) {
      held_retry_at_ns_ = now_ns + kReadyRetryNs;
      return;
    }
    // Sent, or failed for good (logged by send()).
    if (held_.front().ready) ready_went_out(now_ns);
    held_.pop_front();
  }
}

void Notifier::ready_went_out(uint64_t now_ns) noexcept {
  ready_sent_ = true;
  status_at_ns_ = now_ns;
}

void Notifier::update(uint64_t now_ns, bool seen, uint64_t generation, uint32_t listeners,
                      uint64_t at_ns) noexcept {
  if (fd_ < 0) return;
  flush_held(now_ns);
  if (seen) {
    generation_ = generation;
    listeners_ = listeners;
    if (!ready_queued_) {
      // READY=1 with the first report; a full queue holds it (send_or_hold).
      ready_queued_ = true;
      sent_generation_ = generation;
      sent_listeners_ = listeners;
      send_or_hold(ready_message(generation, listeners, main_pid_), now_ns, true);
    } else if (ready_sent_ && (generation != sent_generation_ || listeners != sent_listeners_)) {
      status_pending_ = true;
    }
  }
  if (status_pending_ && !down_ && now_ns - status_at_ns_ >= kStatusMinIntervalNs) {
    send(status_line(generation_, listeners_, restarts_));
    sent_generation_ = generation_;
    sent_listeners_ = listeners_;
    status_at_ns_ = now_ns;
    status_pending_ = false;
  }
  if (watchdog_ns_ == 0 || (watchdog_at_ns_ != 0 && now_ns - watchdog_at_ns_ < watchdog_ns_)) {
    return;
  }
  const uint64_t stale_ns = uint64_t{wire::kWorkerStatusStaleMs} * 1000000ULL;
  if (seen && now_ns - at_ns > stale_ns) {
    // The worker's loop has not run for three heartbeats: no ping, so that
    // systemd's WatchdogSec ends a sluiced whose forwarding is wedged.
    if (!stale_logged_) {
      LOG_WARN("the worker has not reported for %llu ms; the systemd watchdog is no longer fed",
               static_cast<unsigned long long>((now_ns - at_ns) / 1000000ULL));
      stale_logged_ = true;
    }
    watchdog_at_ns_ = now_ns;  // look again in one interval
    return;
  }
  stale_logged_ = false;
  send("WATCHDOG=1");
  watchdog_at_ns_ = now_ns;
}

int Notifier::timeout_ms(uint64_t now_ns) const noexcept {
  if (fd_ < 0) return -1;
  uint64_t due = UINT64_MAX;
  if (!held_.empty()) due = held_retry_at_ns_;
  if (status_pending_) due = std::min(due, status_at_ns_ + kStatusMinIntervalNs);
  if (watchdog_ns_ != 0) due = std::min(due, watchdog_at_ns_ + watchdog_ns_);
  if (due == UINT64_MAX) return -1;
  if (due <= now_ns) return 0;
  // Round up, so that the wake-up is never early (which would spin).
  const uint64_t ms = (due - now_ns + 999999ULL) / 1000000ULL;
  return ms > 60000 ? 60000 : static_cast<int>(ms);
}

std::string reloading_message(uint64_t now_ns) {
  return "RELOADING=1\nMONOTONIC_USEC=" + std::to_string(now_ns / 1000) +
         "\nSTATUS=reloading the policy";
}

void Notifier::reloading(uint64_t now_ns) noexcept {
  send_or_hold(reloading_message(now_ns), now_ns);
}

void Notifier::reloaded(const std::string& status) noexcept {
  // Before the first READY=1 the initial rules are not served yet: that
  // READY=1 still waits for the worker (update()). Once it is sent or held,
  // the reload's messages follow it in order, and this READY=1 ends the reload.
  const std::string line = "STATUS=" + sanitize(status, kMaxStatusBytes);
  send_or_hold(ready_queued_ ? "READY=1\n" + line : line, 0);
}

void Notifier::stopping(const std::string& why) noexcept {
  send("STOPPING=1\nSTATUS=stopping" + (why.empty() ? "" : ": " + sanitize(why, kMaxStatusBytes)));
}

void Notifier::worker_down(uint64_t now_ns, const std::string& status) noexcept {
  down_ = true;
  if (fd_ < 0) return;
  send("STATUS=" + sanitize(status, kMaxStatusBytes));
  status_at_ns_ = now_ns;
  // The serving line goes out again once the next worker reports.
  status_pending_ = ready_sent_;
}

void Notifier::worker_serves() noexcept {
  if (!down_) return;
  down_ = false;
  if (ready_sent_) status_pending_ = true;
}

}  // namespace sluice
