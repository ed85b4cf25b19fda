// When sluiced replaces a worker that died (see restart_policy.h).
#include "broker/restart_policy.h"

#include <signal.h>
#include <string.h>

#include <charconv>

namespace sluice {
namespace {

/// Parses a decimal number of `text` within [lo, hi].
std::optional<uint32_t> parse_number(std::string_view text, uint32_t lo, uint32_t hi) {
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty() || value < lo ||
      value > hi) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

Result<RestartLimit> parse_restart_limit(std::string_view text) {
  const size_t slash = text.find('/');
  const auto count = slash == std::string_view::npos
                         ? std::nullopt
                         : parse_number(text.substr(0, slash), 0, kMaxRestartCount);
  const auto seconds = slash == std::string_view::npos
                           ? std::nullopt
                           : parse_number(text.substr(slash + 1), 1, kMaxRestartSeconds);
  if (!count || !seconds) {
    return Err(EINVAL, "--worker-restarts takes COUNT/SECONDS, COUNT 0.." +
                           std::to_string(kMaxRestartCount) +
                           " (0: never restart) and SECONDS 1.." +
                           std::to_string(kMaxRestartSeconds) + ", for example 30/60");
  }
  return RestartLimit{*count, *seconds};
}

std::string describe_worker_end(int code) {
  if (code > 128) {
    const int sig = code - 128;
    const char* name = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + " (SIG" + (name ? name : "?") + ")" +
           (sig == SIGSYS ? ": a syscall outside its seccomp allowlist, a bug to report" : "");
  }
  return "exited with status " + std::to_string(code);
}

std::optional<uint64_t> RestartPolicy::on_death(uint64_t now_ns, bool served) {
  const uint64_t window_ns = uint64_t{limit_.seconds} * 1000000000ULL;
  while (!deaths_.empty() && now_ns - deaths_.front() >= window_ns) deaths_.pop_front();
  deaths_.push_back(now_ns);
  unserved_streak_ = served ? 0 : unserved_streak_ + 1;
  gave_up_ = GiveUp::kNo;
  if (limit_.count == 0 || deaths_.size() >= limit_.count) {
    gave_up_ = GiveUp::kTooMany;
    return std::nullopt;
  }
  if (unserved_streak_ >= kMaxFailedRestarts) {
    gave_up_ = GiveUp::kFailedStarts;
    return std::nullopt;
  }
  ++restarts_;
  if (unserved_streak_ <= 1) return 0;
  return kFirstBackoffMs << (unserved_streak_ - 2);
}

}  // namespace sluice
