// The audit log writer: a start record per run, then one audit line per
// commit attempt, a view of the commit's record (to_audit_line in
// worker/commit_record.h; schema/audit_line.h renders both; docs/AUDIT.md
// specifies them). Each line is chained to the previous one with SHA-256,
// the start record to the file's last line before the run
// (worker/audit_tail.h). A line goes out with one write(2) when the sink has
// room; what a non-blocking sink pushes back waits, bounded, for the sink to
// drain. client/audit_verify.cc reads the lines back.
//
// Everything here runs inside the worker's seccomp sandbox, so it uses only
// `write`, `epoll_ctl` (through the event loop) and `clock_gettime`
// (CLOCK_REALTIME, normally through the vDSO). The UTC time is formatted by
// schema/audit_line.cc without gmtime_r or strftime: glibc's first time
// conversion initialises the time zone, which opens /etc/localtime, and
// `open` is not on the worker's allowlist.
#include "worker/audit.h"

#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "base/check.h"
#include "base/strings.h"

namespace sluice {
namespace {

static_assert(kMaxAuditCommentBytes == control::kMaxCommentBytes,
              "an audit line holds every comment the control protocol accepts");

/// Limit: write(2) attempts for one line. Only EINTR is retried (nothing was
/// written); a sink that keeps failing must not hold up the event loop.
constexpr int kMaxWriteAttempts = 4;

}  // namespace

/// Returns CLOCK_REALTIME in milliseconds since the epoch, clamped to the
/// range a line can show; 0 if the clock cannot be read (never expected).
/// Needs `clock_gettime(CLOCK_REALTIME)` (normally served by the vDSO).
int64_t realtime_millis() noexcept {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return 0;
  int64_t ms = static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
  return std::clamp<int64_t>(ms, 0, kMaxAuditUnixMillis);
}

std::string AuditLog::format_line(const CommitRecord& record, uint64_t sequence,
                                  int64_t unix_millis, const Sha256Digest& prev) const {
  AuditLine line = to_audit_line(record, prev);
  line.seq = sequence;
  line.time = audit_time_text(unix_millis);
  return render_audit_line(line);
}

std::string AuditLog::format_start(const AuditRunStart& start, int64_t unix_millis) const {
  AuditLine line;
  line.seq = 1;
  line.time = audit_time_text(unix_millis);
  line.start = true;
  line.run = start.run;
  line.pid = start.pid;
  line.uid = start.uid;
  line.gid = start.gid;
  line.tail = start.link.tail;
  line.tail_error = start.link.error;
  line.prev = start.link.prev;
  return render_audit_line(line);
}

void AuditLog::start(const AuditRunStart& start) noexcept {
  CHECK_MSG(!started_, "a run has one start record");
  started_ = true;
  std::string line = format_start(start, realtime_millis());
  sequence_ = 1;
  prev_ = sha256(line.data(), line.size());
  // The "\n" ends a line the previous run left cut short; it is that line's,
  // not this one's, so the chain does not include it.
  if (start.link.newline_first) line.insert(0, 1, '\n');
  enqueue(sequence_, std::move(line));
}

CommitRecord AuditLog::write(CommitRecord record) noexcept {
  CHECK_MSG(started_, "the start record comes before the first commit record");
  record.unix_millis = realtime_millis();
  record.sequence = sequence_ + 1;
  std::string line = render_audit_line(to_audit_line(record, prev_));
  // The chain continues from the line as formatted, written or not: a lost
  // line then shows as a broken chain, which is the signal it deserves.
  sequence_ = record.sequence;
  prev_ = sha256(line.data(), line.size());
  enqueue(record.sequence, std::move(line));
  return record;
}

void AuditLog::enqueue(uint64_t sequence, std::string text) noexcept {
  if (pending_bytes_ + text.size() > kMaxAuditBacklogBytes) {
    ++failed_writes_;
    if (warn_limit_.allow()) {
      LOG_WARN(
          "audit line %llu dropped: the audit sink on fd %d has not taken the last %zu bytes; "
          "the audit chain will show the gap (%llu lines lost so far); make sure whatever "
          "reads sluiced's stderr keeps reading, or use --audit-log FILE",
          static_cast<unsigned long long>(sequence), fd_, pending_bytes_,
          static_cast<unsigned long long>(failed_writes_));
    }
    return;
  }
  pending_bytes_ += text.size();
  pending_.push_back(Waiting{sequence, std::move(text), 0});
  flush();
}

bool AuditLog::flush() noexcept {
  while (!pending_.empty()) {
    Waiting& head = pending_.front();
    // Only EINTR (nothing written) is retried at once.
    ssize_t n = -1;
    int err = 0;
    for (int attempt = 0; attempt < kMaxWriteAttempts; ++attempt) {
      n = ::write(fd_, head.text.data() + head.sent, head.text.size() - head.sent);
      err = n < 0 ? errno : 0;
      if (!(n < 0 && err == EINTR)) break;
    }
    if (n > 0) {
      head.sent += static_cast<size_t>(n);
      pending_bytes_ -= static_cast<size_t>(n);
      if (head.sent == head.text.size()) pending_.pop_front();
      continue;
    }
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
      watch();
      return false;
    }
    drop_head(n == 0 ? EIO : err);
  }
  return true;
}

void AuditLog::on_event(uint32_t /*events*/) noexcept {
  flush();
}

void AuditLog::drop_head(int err) noexcept {
  Waiting& head = pending_.front();
  ++failed_writes_;
  if (warn_limit_.allow()) {
    if (head.sent == 0) {
      LOG_WARN(
          "audit line %llu was not written to fd %d: %s; the audit chain will show it "
          "missing (%llu lines not written so far); check the --audit-log sink",
          static_cast<unsigned long long>(head.sequence), fd_, errno_text(err).c_str(),
          static_cast<unsigned long long>(failed_writes_));
    } else {
      LOG_WARN(
          "audit line %llu was cut short on fd %d: %zu of %zu bytes written (%s); the audit "
          "chain will show a damaged line (%llu lines not written whole so far)",
          static_cast<unsigned long long>(head.sequence), fd_, head.sent, head.text.size(),
          errno_text(err).c_str(), static_cast<unsigned long long>(failed_writes_));
    }
  }
  pending_bytes_ -= head.text.size() - head.sent;
  pending_.pop_front();
}

void AuditLog::watch() noexcept {
  if (watching_ || loop_ == nullptr) return;
  // Edge-triggered: one wake-up each time the reader makes room. A sink that
  // cannot be watched (epoll refuses it) is retried on the next write().
  if (loop_->add(fd_, EPOLLOUT | EPOLLET, this)) watching_ = true;
}

}  // namespace sluice
