// systemd's readiness protocol (sd_notify(3)), spoken by sluiced itself:
// no libsystemd. The service manager names a datagram socket in
// NOTIFY_SOCKET (a path, or an abstract name written with a leading '@');
// sluiced connects to it before its seccomp filter, on a fixed fd
// (broker_fd::kNotify), and sends newline-separated KEY=VALUE datagrams:
//   READY=1     once the worker's first WorkerStatus arrives: the initial
//               rules are committed and served (schema/broker_wire.h); kept
//               and tried again while the manager's queue is full;
//   STATUS=...  the generation and the listener count, as the worker
//               reports them, at most once a second (kStatusMinIntervalNs);
//               from a worker's death until its replacement reports, that no
//               worker serves and why;
//   WATCHDOG=1  every WATCHDOG_USEC/2 while sluiced runs its loop AND the
//               worker's last heartbeat is fresh (kWorkerStatusStaleMs): a
//               wedged worker stops the pings, and systemd restarts sluiced;
//   RELOADING=1 on SIGHUP with --policy, with MONOTONIC_USEC= (systemd 253's
//               Type=notify-reload wants it) and a STATUS=; then, once the
//               reload is over, READY=1 and a STATUS= that says whether the
//               new policy is in force or why the old one stays;
//   STOPPING=1  on SIGTERM/SIGINT, and when sluiced gives up on workers
//               that die (with a STATUS= that says so).
// The worker never sees the socket (its environment is empty; sluiced
// unsets NOTIFY_SOCKET for its children), so NotifyAccess=main suffices.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"

namespace sluice {

/// Limit: STATUS= lines at most once a second: a commit loop (a script, a
/// scan storm) must not flood the service manager; the last state is
/// always sent once the second is over.
inline constexpr uint64_t kStatusMinIntervalNs = 1000000000ULL;

/// Limit: bytes of a reload's STATUS= text (a parse error quotes the file's
/// path and one line): far below a notify datagram's practical size, and
/// readable in `systemctl status`.
inline constexpr size_t kMaxStatusBytes = 512;

/// Limit: how soon READY=1, or a reload's message, is tried again when the
/// manager's queue had no room for it (EAGAIN, ENOBUFS: a first commit's fd
/// store puts filled it):
/// soon enough that readiness is not noticeably late, seldom enough to cost
/// nothing. The loop sends no fd store operation while READY=1 waits
/// (ready_waits()), so what the manager reads makes room for it.
inline constexpr uint64_t kReadyRetryNs = 10 * 1000000ULL;
/// Limit: messages held while the manager's queue is full, oldest first: the
/// first READY=1 and a reload's (RELOADING=1, then READY=1 and its STATUS=).
/// systemd stays in "reloading" until the READY=1 after RELOADING=1
/// arrives, so neither may be lost to a full queue; 8 hold the first
/// READY=1 and three reloads' worth, and beyond that the oldest reload
/// message is dropped (logged), since only the newest pair matters. The
/// first READY=1 is never dropped.
inline constexpr size_t kMaxHeldNotifications = 8;

/// A parsed NOTIFY_SOCKET: the address to connect to and its length.
struct NotifyAddress {
  sockaddr_un addr = {};
  socklen_t len = 0;
};

/// Parses NOTIFY_SOCKET: an absolute path ("/run/systemd/notify"), or an
/// abstract name ("@name", whose '@' becomes the leading NUL). Fails on an
/// empty value, a relative path, an empty abstract name, or one longer than
/// sun_path (108 bytes; 107 for a path, which needs its NUL).
Result<NotifyAddress> parse_notify_socket(std::string_view value);

/// Makes the AF_UNIX SOCK_DGRAM socket (CLOEXEC, NONBLOCK) connected to
/// `value` (parse_notify_socket()). Connected now, before the seccomp
/// filter: later sends need only `sendto` on its fixed fd with no address.
/// Fails with the address and errno.
Result<UniqueFd> connect_notify_socket(std::string_view value);

/// Parses WATCHDOG_USEC (`usec`) and WATCHDOG_PID (`pid`, may be null) for
/// the process `self`: returns the watchdog interval in microseconds, or 0
/// when there is none for this process (unset, or WATCHDOG_PID names
/// another process). Fails on a value that is not a positive decimal number.
Result<uint64_t> parse_watchdog(const char* usec, const char* pid, pid_t self);

/// The STATUS= line for `generation` and `listeners`, and the number of
/// worker restarts when there were any (no newline).
std::string status_line(uint64_t generation, uint32_t listeners, uint32_t restarts = 0);

/// The first message: READY=1, the STATUS= line, and MAINPID=`main_pid`.
std::string ready_message(uint64_t generation, uint32_t listeners, pid_t main_pid);

/// The reload's first message at `now_ns` (CLOCK_MONOTONIC): RELOADING=1,
/// MONOTONIC_USEC= in microseconds, and a STATUS= line.
std::string reloading_message(uint64_t now_ns);

/// Sends sluiced's notifications on a connected datagram socket, with the
/// rate limit and the watchdog's rules. Time is passed in (monotonic ns), so
/// that tests drive it without sleeping.
class Notifier {
 public:
  /// `fd`: the connected notify socket (not owned), or -1 to send nothing.
  /// `watchdog_usec`: 0 for no watchdog. `main_pid`: sluiced's pid.
  Notifier(int fd, uint64_t watchdog_usec, pid_t main_pid);

  /// True when a notify socket was given.
  bool enabled() const noexcept { return fd_ >= 0; }
  /// Takes the worker's latest report (`seen`: one has arrived; its numbers
  /// and arrival time `at_ns`), and sends what is due at `now_ns`: READY=1
  /// with the first report (kept and tried again while the manager's queue
  /// is full: a lost READY=1 would fail the start), STATUS= after a change (rate-limited),
  /// WATCHDOG=1 when its half-interval passed and the report is fresh (or none arrived yet:
  /// start-up is bounded by the unit's TimeoutStartSec instead). Needs `sendto` on the fd.
  void update(uint64_t now_ns, bool seen, uint64_t generation, uint32_t listeners,
              uint64_t at_ns) noexcept;
  /// Milliseconds until update() has something to do, for poll(); -1 when
  /// nothing is scheduled.
  int timeout_ms(uint64_t now_ns) const noexcept;
  /// Sends reloading_message(`now_ns`) (SIGHUP with --policy); held and
  /// tried again by update() every kReadyRetryNs while the manager's queue is
  /// full. Needs `sendto`.
  void reloading(uint64_t now_ns) noexcept;
  /// Ends a reload: READY=1 (only once the first READY=1 went out) and
  /// STATUS=`status`, sanitised and cut at kMaxStatusBytes; held like
  /// reloading()'s message, and never ahead of it. Needs `sendto`.
  void reloaded(const std::string& status) noexcept;
  /// Sends STOPPING=1 and STATUS=stopping, followed by ": `why`" when it is
  /// not empty (SIGTERM/SIGINT; sluiced giving up on its workers). Needs
  /// `sendto`.
  void stopping(const std::string& why = "") noexcept;
  /// The worker died at `now_ns`: sends STATUS=`status` at once (once per
  /// death, which the restart policy bounds, so past the rate limit), and
  /// sends no "serving" line until worker_serves(). Needs `sendto`.
  void worker_down(uint64_t now_ns, const std::string& status) noexcept;
  /// The current worker has reported: after worker_down(), the next update()
  /// sends the serving STATUS= line again (rate-limited). Otherwise nothing.
  void worker_serves() noexcept;
  /// True from worker_down() until worker_serves().
  bool worker_is_down() const noexcept { return down_; }
  /// Records how many workers were started after one died, for STATUS=
  /// (sent with the next update, rate-limited). READY=1 is never sent again:
  /// a restart is not a new start.
  void set_restarts(uint32_t restarts) noexcept;
  /// True once READY=1 was sent.
  bool ready_sent() const noexcept { return ready_sent_; }
  /// True while READY=1, or a reload's message, waits for room in the
  /// manager's queue (tried again every kReadyRetryNs by update()).
  bool ready_waits() const noexcept { return !held_.empty(); }

 private:
  /// Sends one datagram (MSG_DONTWAIT | MSG_NOSIGNAL); a failure is logged
  /// at debug level (the manager may be gone at shutdown) and dropped.
  /// Returns 0, or the errno of the failure.
  int send(const std::string& msg) noexcept;
  /// Sends `msg` after every message held before it; holds it when the
  /// manager's queue is full (EAGAIN, ENOBUFS). Other failures drop it, as
  /// send() does. `now_ns`: when to try again is counted from it (0: at the
  /// next update()). `ready`: it is the first READY=1 (ready_went_out()
  /// once it is out).
  void send_or_hold(std::string msg, uint64_t now_ns, bool ready = false) noexcept;
  /// Sends the held messages in order until one finds the queue full.
  void flush_held(uint64_t now_ns) noexcept;
  /// The first READY=1 went out at `now_ns` (or failed for good): STATUS=
  /// lines follow, rate-limited from then.
  void ready_went_out(uint64_t now_ns) noexcept;

  /// One message the manager's queue had no room for.
  struct Held {
    std::string msg;
    bool ready;  // the first READY=1
  };

  int fd_;
  uint64_t watchdog_ns_;  // the ping interval: WATCHDOG_USEC/2 in ns, 0 for none
  pid_t main_pid_;
  bool ready_queued_ = false;      // the first READY=1 was sent or is held
  bool ready_sent_ = false;        // ... and went out
  std::deque<Held> held_;          // what the queue had no room for, oldest first
  uint64_t held_retry_at_ns_ = 0;  // with held_: when to try again
  bool status_pending_ = false;    // a change not yet sent (rate limit)
  uint64_t sent_generation_ = 0;   // what the last STATUS= said
  uint32_t sent_listeners_ = 0;
  uint64_t generation_ = 0;  // the latest report
  uint32_t listeners_ = 0;
  uint32_t restarts_ = 0;        // worker restarts, for STATUS=
  uint64_t status_at_ns_ = 0;    // when the last STATUS= went out
  uint64_t watchdog_at_ns_ = 0;  // when the last WATCHDOG=1 went out, 0: never
  bool stale_logged_ = false;    // the stale-worker warning was logged
  bool down_ = false;            // no worker serves (worker_down() until worker_serves())
};

}  // namespace sluice
