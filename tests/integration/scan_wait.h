// Bounded waits for auto-scan changes, shared by the scan tests of both
// directions (netns_scan_test.cc, netns_splice_scan_test.cc). Scans run
// about once a second; every wait reports the time it measured, so that no
// test passes or fails by the machine's speed.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace sluice::test {

/// Limit: how long a wait for one scan change may take before the test
/// fails: a scan takes about a second; 15 s leaves room for a loaded machine.
inline constexpr auto kScanDeadline = std::chrono::seconds(15);

/// Polls `done` every 20 ms until it holds or `deadline` passes. Returns the
/// milliseconds it took, or -1 when it never held.
inline long long wait_ms(const std::function<bool()>& done,
                         std::chrono::milliseconds deadline = kScanDeadline) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  for (;;) {  // bounded by `deadline`
    if (done()) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
    }
    if (Clock::now() - start > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace sluice::test
