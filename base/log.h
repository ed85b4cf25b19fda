// Logging: one macro family that adds the process role (and, at debug level, the function name),
// writing to a descriptor chosen before the sandbox (stderr by default). It
// formats into a stack buffer and makes one write(2), so it needs no syscall
// beyond `write` and works under every seccomp allowlist in the project (a
// socket sink, log_set_socket_sink(), uses `sendto` instead).
//
// A process may also cap how fast it logs (log_set_rate_limit(): sluiced
// does, so that neither a flood of requests nor a compromised worker can
// fill its log), and a sink that pushes back (a non-blocking pipe or
// terminal whose reader stopped, a full socket) never blocks the caller:
// the line is dropped and counted, and a notice says how many once lines go
// out again.
#pragma once

#include <cstdarg>
#include <cstdint>

namespace sluice {

enum class LogLevel : int { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

/// Sets the role shown in every line ("sluiced", "worker", "sluicectl"), the
/// fd written to, and the lowest level printed. Call once from main().
void log_init(const char* role, int fd, LogLevel min_level) noexcept;
/// Changes the lowest level printed (for -d / -q).
void log_set_level(LogLevel min_level) noexcept;
/// Returns true when `level` would be printed.
bool log_enabled(LogLevel level) noexcept;
/// The lowest level printed now, for a forked helper that logs as its parent.
LogLevel log_level() noexcept;
/// Formats and writes one line: "role: LEVEL: message\n", with the function
/// after the level at debug level only ("role: debug: func: message\n"). Never fails
/// loudly: a short or failed write is dropped. Under a rate limit
/// (log_set_rate_limit), a line beyond it is suppressed and counted, and the
/// next line that goes out is preceded by a notice of how many were.
void log_write(LogLevel level, const char* func, const char* fmt, ...) noexcept
    __attribute__((format(printf, 3, 4)));

/// A token bucket for per-connection errors: at most `burst` lines, refilled at
/// `per_second`. Returns true if a line may be written now. With `notes`
/// (the default, for a limiter of one kind of line), the first line let
/// through after some were held back is preceded by a warning that says how
/// many: "K more lines like the next were held back (...)"; a ticker says it
/// once they stop coming with note_held_back(). The process-wide limit
/// (log_set_rate_limit) reports its own, without.
class LogRateLimit {
 public:
  LogRateLimit(uint32_t burst, uint32_t per_second, bool notes = true) noexcept
      : burst_(burst), per_second_(per_second), tokens_(burst), notes_(notes) {}
  /// Takes one token if available (at monotonic_ns()); counts a refusal as
  /// suppressed.
  bool allow() noexcept;
  /// As allow(), at the monotonic time `now_ns` (for tests: a clock of
  /// their own). Times must not go backwards.
  bool allow_at(uint64_t now_ns) noexcept;
  /// Lines suppressed since the last take_suppressed().
  uint64_t suppressed() const noexcept { return suppressed_; }
  /// Returns the lines suppressed so far and starts counting from zero.
  uint64_t take_suppressed() noexcept;
  /// For a ticker, so that a count is said even when no line of the kind
  /// follows: when lines were held back and a token is free at `now_ns`,
  /// takes it and logs a warning "K more lines about `what` were held back
  /// (...)", then counts from zero. Returns the count said (0: nothing).
  uint64_t note_held_back(uint64_t now_ns, const char* what) noexcept;
  uint32_t burst() const noexcept { return burst_; }
  uint32_t per_second() const noexcept { return per_second_; }

 private:
  uint32_t burst_, per_second_;
  uint32_t tokens_;
  uint64_t last_ns_ = 0;
  uint64_t suppressed_ = 0;
  bool notes_;
  /// Refills the bucket for the time up to `now`.
  void refill(uint64_t now) noexcept;
  /// Logs "K more lines `relation` `what` were held back (...)" for the lines
  /// held back so far and counts from zero; returns K.
  uint64_t say_held_back(const char* relation, const char* what) noexcept;
};

/// Caps the lines this process logs below kError: `burst` at once, then
/// `per_second` (a token bucket, LogRateLimit). Errors always go out: a
/// process writes them on its way out, where they matter most. The lines
/// held back are counted, and the next line written is preceded by
/// "role: warning: K log lines suppressed (...)". `burst` 0 turns the
/// limit off (the default).
void log_set_rate_limit(uint32_t burst, uint32_t per_second) noexcept;

/// Declares the log fd a socket (a service manager's journal stream): lines
/// then go out with send(MSG_DONTWAIT | MSG_NOSIGNAL), which never blocks
/// and never raises SIGPIPE, without changing the file description that
/// other processes may share (O_NONBLOCK would change it for all of them).
/// Needs `sendto` on the log fd with exactly those flags.
void log_set_socket_sink(bool socket) noexcept;

/// Log lines lost so far: refused by a sink that pushed back. Lines the rate
/// limit held back are not counted here.
uint64_t log_dropped_total() noexcept;

/// Monotonic clock in nanoseconds (clock_gettime through the vDSO).
uint64_t monotonic_ns() noexcept;

/// Nanoseconds from `since` to `now`; 0 when `since` is the later one. The
/// event loop reads `now` once per tick, before its tickers run, and a ticker
/// may stamp a later time meanwhile (a commit it finishes admits the next
/// client): that must read as "just now", never wrap around to "long ago".
constexpr uint64_t elapsed_ns(uint64_t now, uint64_t since) noexcept {
  return now > since ? now - since : 0;
}

}  // namespace sluice

#define LOG_DEBUG(...) ::sluice::log_write(::sluice::LogLevel::kDebug, __func__, __VA_ARGS__)
#define LOG_INFO(...) ::sluice::log_write(::sluice::LogLevel::kInfo, __func__, __VA_ARGS__)
#define LOG_WARN(...) ::sluice::log_write(::sluice::LogLevel::kWarn, __func__, __VA_ARGS__)
#define LOG_ERROR(...) ::sluice::log_write(::sluice::LogLevel::kError, __func__, __VA_ARGS__)
