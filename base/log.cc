#include "base/log.h"

#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "base/check.h"

namespace sluice {
namespace {

// Process-wide log sink. main() sets it once before any thread exists; this is
// the single piece of global state in the project, because a CHECK anywhere
// must be able to report without being handed a logger.
const char* g_role = "sluice";
int g_fd = 2;
LogLevel g_min = LogLevel::kInfo;
// Lines a non-blocking log fd pushed back (EAGAIN), and whether the last of
// them was cut after part of it went out. sluiced hands the worker such an fd
// when stderr is a pipe or a terminal, so a reader that stops never blocks
// the worker; the lines are lost instead, and a notice says how many.
uint64_t g_dropped = 0;
bool g_dropped_mid_line = false;
// Every line dropped so far, reported or not; read by --stats while other
// threads log.
std::atomic<uint64_t> g_dropped_total{0};
// The rate limit of log_set_rate_limit(); burst 0 is off.
LogRateLimit g_limit(0, 0, false);
// The log fd is a socket: send with MSG_DONTWAIT instead of write.
bool g_socket = false;

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warning";
    case LogLevel::kError:
      return "error";
  }
  return "?";
}

/// What write_all() did with a line.
enum class Wrote { kAll, kPushedBack, kFailed };

/// Writes all of `buf` to the log fd (send with MSG_DONTWAIT for a socket
/// sink), retrying on EINTR. Returns kAll, kPushedBack when the fd has no
/// room (EAGAIN; the rest is dropped, and a line cut after part of it went
/// out is remembered so that the next notice starts a line of its own), or
/// kFailed on any other error. Counts nothing: the caller decides what was
/// lost.
Wrote write_all(const char* buf, size_t len) noexcept {
  bool some = false;
  while (len > 0) {
    ssize_t n =
        g_socket ? ::send(g_fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) : ::write(g_fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (some) g_dropped_mid_line = true;  // cleared once the notice ends the line
      return Wrote::kPushedBack;
    }
    if (n <= 0) return Wrote::kFailed;
    some = true;
    buf += n;
    len -= static_cast<size_t>(n);
  }
  return Wrote::kAll;
}

/// Counts one line lost to a sink that pushed back.
void count_dropped() noexcept {
  ++g_dropped;
  ++g_dropped_total;
}

/// Before the next line after lines were dropped: says how many, ending a
/// line that was cut first. Returns false when the notice did not go out
/// (the fd still pushes back); the count stays for the next try.
bool report_dropped() noexcept {
  if (g_dropped == 0) return true;
  char buf[160];
  int n = std::snprintf(buf, sizeof(buf),
                        "%s%s: warning: %llu log line%s dropped: stderr was not being read\n",
                        g_dropped_mid_line ? "\n" : "", g_role,
                        static_cast<unsigned long long>(g_dropped), g_dropped == 1 ? "" : "s");
  if (n <= 0 || write_all(buf, std::min(static_cast<size_t>(n), sizeof(buf) - 1)) != Wrote::kAll) {
    return false;
  }
  g_dropped = 0;
  g_dropped_mid_line = false;
  return true;
}

/// Before the next line after the rate limit held lines back: says how
/// many. Returns false when the notice did not go out; the count stays.
bool report_suppressed() noexcept {
  const uint64_t k = g_limit.suppressed();
  if (k == 0) return true;
  char note[200];
  int m = std::snprintf(note, sizeof(note),
                        "%s: warning: %llu log line%s suppressed (at most %u at once, then %u "
                        "a second)\n",
                        g_role, static_cast<unsigned long long>(k), k == 1 ? "" : "s",
                        g_limit.burst(), g_limit.per_second());
  if (m <= 0 ||
      write_all(note, std::min(static_cast<size_t>(m), sizeof(note) - 1)) != Wrote::kAll) {
    return false;
  }
  g_limit.take_suppressed();
  return true;
}

}  // namespace

void log_init(const char* role, int fd, LogLevel min_level) noexcept {
  g_role = role;
  g_fd = fd;
  g_min = min_level;
}

void log_set_level(LogLevel min_level) noexcept {
  g_min = min_level;
}

void log_set_rate_limit(uint32_t burst, uint32_t per_second) noexcept {
  g_limit = LogRateLimit(burst, per_second, false);
}

void log_set_socket_sink(bool socket) noexcept {
  g_socket = socket;
}

uint64_t log_dropped_total() noexcept {
  return g_dropped_total.load();
}

bool log_enabled(LogLevel level) noexcept {
  return level >= g_min;
}

LogLevel log_level() noexcept {
  return g_min;
}

void log_write(LogLevel level, const char* func, const char* fmt, ...) noexcept {
  if (!log_enabled(level)) return;
  // The worker's data-path threads log too (worker/data_thread.h): one line
  // at a time through the sink and its counters. Recursive: the rate limit
  // may log its own note from inside.
  static std::recursive_mutex mu;
  std::lock_guard<std::recursive_mutex> lock(mu);
  if (g_limit.burst() != 0 && level != LogLevel::kError && !g_limit.allow()) return;
  // Limit: one line is at most 4 KiB; longer messages are cut, never allocated.
  char buf[4096];
  int off = std::snprintf(buf, sizeof(buf), "%s: %s: ", g_role, level_name(level));
  // The function only at debug level: it locates a line for a developer, and
  // an operator's error says what failed in words ("run:" or "operator():"
  // would only be noise to them).
  if (level == LogLevel::kDebug) {
    off += std::snprintf(buf + off, sizeof(buf) - static_cast<size_t>(off), "%s: ", func);
  }
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf + off, sizeof(buf) - static_cast<size_t>(off), fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(off) + (n < 0 ? 0 : static_cast<size_t>(n));
  if (len > sizeof(buf) - 2) len = sizeof(buf) - 2;
  buf[len++] = '\n';
  // Notices first, so that they stand where the lines went missing; a line
  // whose notice did not go out is lost too (the sink still pushes back).
  if (!report_dropped() || !report_suppressed()) {
    count_dropped();
    return;
  }
  if (write_all(buf, len) == Wrote::kPushedBack) count_dropped();
}

bool LogRateLimit::allow() noexcept {
  return allow_at(monotonic_ns());
}

uint64_t LogRateLimit::take_suppressed() noexcept {
  const uint64_t n = suppressed_;
  suppressed_ = 0;
  return n;
}

uint64_t LogRateLimit::note_held_back(uint64_t now_ns, const char* what) noexcept {
  if (suppressed_ == 0) return 0;
  refill(now_ns);
  if (tokens_ == 0) return 0;
  --tokens_;
  return say_held_back("about", what);
}

uint64_t LogRateLimit::say_held_back(const char* relation, const char* what) noexcept {
  const uint64_t k = take_suppressed();
  log_write(LogLevel::kWarn, __func__,
            "%llu more line%s %s %s %s held back (at most %u at once, then %u a second)",
            static_cast<unsigned long long>(k), k == 1 ? "" : "s", relation, what,
            k == 1 ? "was" : "were", burst_, per_second_);
  return k;
}

void LogRateLimit::refill(uint64_t now) noexcept {
  if (last_ns_ != 0 && per_second_ != 0) {
    const uint64_t earned = elapsed_ns(now, last_ns_) * per_second_ / 1000000000ULL;
    if (earned > 0) {
      tokens_ = static_cast<uint32_t>(earned + tokens_ > burst_ ? burst_ : earned + tokens_);
      last_ns_ = now;
    }
  } else {
    last_ns_ = now;
  }
}

bool LogRateLimit::allow_at(uint64_t now) noexcept {
  refill(now);
  if (tokens_ == 0) {
    ++suppressed_;
    return false;
  }
  --tokens_;
  if (notes_ && suppressed_ != 0) say_held_back("like", "the next");
  return true;
}

uint64_t monotonic_ns() noexcept {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

void check_failed(const char* func, const char* file, int line, const char* cond,
                  const char* msg) noexcept {
  char buf[1024];
  int n = std::snprintf(buf, sizeof(buf), "%s: CHECK failed in %s (%s:%d): %s%s%s\n", g_role, func,
                        file, line, cond, msg[0] ? ": " : "", msg);
  if (n > 0) {
    write_all(buf, static_cast<size_t>(n) < sizeof(buf) ? static_cast<size_t>(n) : sizeof(buf) - 1);
  }
  std::abort();
}

}  // namespace sluice
