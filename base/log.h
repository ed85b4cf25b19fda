// Logging: one macro family that adds the process role and the function name,
// writing to a descriptor chosen before the sandbox (stderr by default). It
// formats into a stack buffer and makes one write(2), so it needs no syscall
// beyond `write` and works under every seccomp allowlist in the project.
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
/// Formats and writes one line: "role: LEVEL: func: message\n". Never fails
/// loudly: a short or failed write is dropped.
void log_write(LogLevel level, const char* func, const char* fmt, ...) noexcept
    __attribute__((format(printf, 3, 4)));

/// A token bucket for per-connection errors: at most `burst` lines, refilled at
/// `per_second`. Returns true if a line may be written now.
class LogRateLimit {
 public:
  LogRateLimit(uint32_t burst, uint32_t per_second) noexcept
      : burst_(burst), per_second_(per_second), tokens_(burst) {}
  /// Takes one token if available; counts what was suppressed.
  bool allow() noexcept;
  /// Lines suppressed since the last allowed one.
  uint64_t suppressed() const noexcept { return suppressed_; }

 private:
  uint32_t burst_, per_second_;
  uint32_t tokens_;
  uint64_t last_ns_ = 0;
  uint64_t suppressed_ = 0;
};

/// Monotonic clock in nanoseconds (clock_gettime through the vDSO).
uint64_t monotonic_ns() noexcept;

}  // namespace sluice

#define LOG_DEBUG(...) ::sluice::log_write(::sluice::LogLevel::kDebug, __func__, __VA_ARGS__)
#define LOG_INFO(...) ::sluice::log_write(::sluice::LogLevel::kInfo, __func__, __VA_ARGS__)
#define LOG_WARN(...) ::sluice::log_write(::sluice::LogLevel::kWarn, __func__, __VA_ARGS__)
#define LOG_ERROR(...) ::sluice::log_write(::sluice::LogLevel::kError, __func__, __VA_ARGS__)
