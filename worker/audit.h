// The audit log: one JSON line per commit attempt (applied, rejected, dry-run
// or stale), written to the audit fd that sluiced opened (--audit-log FILE,
// append-only, or stderr). Each line carries `prev`, the SHA-256 of the
// previous line, so that `sluicectl --verify-audit FILE` detects edits,
// deletions and reordering. Each run of the worker begins with a start
// record whose prev is the SHA-256 of the file's last line before it
// (worker/audit_tail.h), so runs link too: deleting or rewriting a whole
// earlier run shows as well. The line format itself is schema/audit_line.h,
// shared with the verifier; a commit line is a view of the commit's one
// record (worker/commit_record.h); this file adds the sequence, the time, the
// chain, and the sink.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/sha256.h"
#include "schema/audit_line.h"
#include "worker/audit_tail.h"
#include "worker/commit_record.h"
#include "worker/event_loop.h"

namespace sluice {

/// Limit: audit bytes held while the sink does not take them. sluiced hands
/// the worker a non-blocking sink when stderr is a pipe or a terminal, so a
/// reader that stops (a paused pager, a stuck log collector) pushes back
/// instead of freezing the worker and all forwarding with it. 1 MiB holds
/// 16 lines of the largest size and well over a thousand ordinary ones
/// (about 700 bytes), so a reader that pauses loses nothing, and one that
/// never comes back costs bounded memory. Past it, lines are dropped and
/// counted, and the chain shows the gap.
inline constexpr size_t kMaxAuditBacklogBytes = 1 << 20;

/// What a run's start record says: who the run is, and what it links to.
struct AuditRunStart {
  AuditRunId run{};  // 128 random bits, drawn before the sandbox
  int32_t pid = 0;   // sluiced's pid, uid and gid as the worker saw them
  uint32_t uid = 0;  // before its sandbox (getppid, getuid, getgid)
  uint32_t gid = 0;
  AuditLink link;  // link_audit_tail() of the file's last line
};

/// Returns CLOCK_REALTIME in milliseconds since the epoch, clamped to the
/// range an audit line can show; 0 if the clock cannot be read (never
/// expected). Needs `clock_gettime(CLOCK_REALTIME)` (normally the vDSO).
int64_t realtime_millis() noexcept;

class AuditLog : public EventHandler {
 public:
  /// Writes to `fd` (not owned: it is the fixed audit fd). start() must come
  /// first. Without attach(), lines the sink pushes back wait for the next
  /// write() or flush().
  explicit AuditLog(int fd) noexcept : fd_(fd) {}

  /// Lets the log watch its sink for room (EPOLLOUT, edge-triggered) on
  /// `loop` once the sink has pushed back, and write what waits when there
  /// is room. Registration is lazy: a regular file never pushes back, and
  /// epoll refuses regular files.
  void attach(EventLoop* loop) noexcept { loop_ = loop; }

  /// Writes the run's start record as line 1 of the run (seq 1, the UTC time
  /// now), preceded by a "\n" when `start.link.newline_first`, and keeps its
  /// SHA-256 as the next `prev`. Call it once, before write() and before the
  /// worker serves anything; calling it twice is a bug (CHECK). A sink that
  /// fails is handled as for write(). Needs `write` and
  /// `clock_gettime(CLOCK_REALTIME)`.
  void start(const AuditRunStart& start) noexcept;

  /// Stamps `record` with the next sequence number and the UTC time
  /// (record.sequence, record.unix_millis) and returns it, stamped. Formats
  /// it as one JSON line with `prev`, and keeps the line's SHA-256 as the
  /// next `prev`. The line goes out with one write(2) when nothing waits
  /// before it; what a non-blocking sink does not take waits, in order, up to
  /// kMaxAuditBacklogBytes, and goes out as the sink drains. A line that
  /// cannot be written, or does not fit the backlog, is counted and logged
  /// (rate-limited) and does not stop the commit: forwarding must not depend
  /// on the audit sink; the record is stamped either way. start() must have
  /// been called (CHECK). Needs `write`, `clock_gettime(CLOCK_REALTIME)`, and
  /// `epoll_ctl` once attached.
  CommitRecord write(CommitRecord record) noexcept;

  /// Writes what waits until the sink pushes back or nothing is left. Returns
  /// true when nothing is left. Lines the sink refuses with an error other
  /// than EAGAIN are dropped and counted.
  bool flush() noexcept;

  /// The sink has room again (EPOLLOUT): writes what waits.
  void on_event(uint32_t events) noexcept override;

  /// Bytes of audit lines formatted and not yet taken by the sink.
  size_t pending_bytes() const noexcept { return pending_bytes_; }

  /// Builds the JSON line for `record` without writing it (write() uses it;
  /// tests call it with a fixed time): to_audit_line() of the record with
  /// `sequence` and the UTC time of `unix_millis` in place of its stamps, and
  /// `prev`, rendered by render_audit_line(). Returns the line, newline
  /// included, at most kMaxAuditLineBytes long and pure ASCII (see
  /// docs/AUDIT.md). Times outside years 1970..9999 are clamped into them.
  /// Never fails; no syscalls.
  std::string format_line(const CommitRecord& record, uint64_t sequence, int64_t unix_millis,
                          const Sha256Digest& prev) const;

  /// Builds the start record of `start` at the UTC time of `unix_millis`
  /// without writing it (start() uses it; tests call it with a fixed time):
  /// seq 1, the run id, sluiced's ids, and the link's tail, tailError and
  /// prev. Returns the line, newline included, without the "\n" that
  /// newline_first puts before it. Never fails; no syscalls.
  std::string format_start(const AuditRunStart& start, int64_t unix_millis) const;

  /// Returns the sequence number the next line will carry (1 for the first).
  uint64_t next_sequence() const { return sequence_ + 1; }

  /// Returns how many lines were not written whole (write errors, or no room
  /// in the backlog).
  uint64_t failed_writes() const noexcept { return failed_writes_; }

 private:
  /// A line waiting for the sink; `sent` bytes of it are written already.
  struct Waiting {
    uint64_t sequence;
    std::string text;
    size_t sent = 0;
  };

  /// Queues `text` (line `sequence`, whose SHA-256 the chain already holds)
  /// for the sink and writes what it can; counts it as lost when the backlog
  /// has no room for it.
  void enqueue(uint64_t sequence, std::string text) noexcept;
  /// Counts the oldest waiting line as lost (write error `err`) and drops it.
  void drop_head(int err) noexcept;
  /// Starts watching the sink for room, once.
  void watch() noexcept;

  int fd_;
  bool started_ = false;
  uint64_t sequence_ = 0;
  Sha256Digest prev_{};
  uint64_t failed_writes_ = 0;
  std::deque<Waiting> pending_;
  size_t pending_bytes_ = 0;
  EventLoop* loop_ = nullptr;
  bool watching_ = false;
  /// Warnings about a failing sink: a full disk must not flood the log.
  LogRateLimit warn_limit_{4, 1};
};

}  // namespace sluice
