// The audit log: one JSON line per commit attempt (applied, rejected, dry-run
// or stale), written to the audit fd that sluiced opened (--audit-log FILE,
// append-only, or stderr). Each line carries `prev`, the SHA-256 of the
// previous line, so that `sluicectl --verify-audit FILE` detects edits,
// deletions and reordering. A worker restart starts a new chain segment
// (prev of 64 zeros and "chain":"start"); the verifier reports each segment.
// The line format itself is schema/audit_line.h, shared with the verifier;
// the line is a view of the commit's one record (worker/commit_record.h);
// this file adds the sequence, the time, the chain, and the sink.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/sha256.h"
#include "schema/audit_line.h"
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

class AuditLog : public EventHandler {
 public:
  /// Writes to `fd` (not owned: it is the fixed audit fd). The first line
  /// written starts a new chain segment. Without attach(), lines the sink
  /// pushes back wait for the next write() or flush().
  explicit AuditLog(int fd) noexcept : fd_(fd) {}

  /// Lets the log watch its sink for room (EPOLLOUT, edge-triggered) on
  /// `loop` once the sink has pushed back, and write what waits when there
  /// is room. Registration is lazy: a regular file never pushes back, and
  /// epoll refuses regular files.
  void attach(EventLoop* loop) noexcept { loop_ = loop; }

  /// Stamps `record` with the next sequence number and the UTC time
  /// (record.sequence, record.unix_millis) and returns it, stamped. Formats
  /// it as one JSON line with `prev`, and keeps the line's SHA-256 as the
  /// next `prev`. The line goes out with one write(2) when nothing waits
  /// before it; what a non-blocking sink does not take waits, in order, up to
  /// kMaxAuditBacklogBytes, and goes out as the sink drains. A line that
  /// cannot be written, or does not fit the backlog, is counted and logged
  /// (rate-limited) and does not stop the commit: forwarding must not depend
  /// on the audit sink; the record is stamped either way. Needs `write`,
  /// `clock_gettime(CLOCK_REALTIME)`, and `epoll_ctl` once attached.
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
  /// `prev` (64 zeros when `chain_start`), rendered by render_audit_line().
  /// Returns the line, newline included, at most kMaxAuditLineBytes long and
  /// pure ASCII (see docs/AUDIT.md). Times outside years 1970..9999 are
  /// clamped into them. Never fails; no syscalls.
  std::string format_line(const CommitRecord& record, uint64_t sequence, int64_t unix_millis,
                          const Sha256Digest& prev, bool chain_start) const;

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

  /// Counts the oldest waiting line as lost (write error `err`) and drops it.
  void drop_head(int err) noexcept;
  /// Starts watching the sink for room, once.
  void watch() noexcept;

  int fd_;
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
