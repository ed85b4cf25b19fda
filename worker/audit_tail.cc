// The previous run's last line (see audit_tail.h): read backwards from the
// end of the audit log before the sandbox, judged by the audit line format's
// strict parser inside it.
#include "worker/audit_tail.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "base/strings.h"

namespace sluice {
namespace {

/// Returns an AuditTailBytes of kind kError saying `what`.
AuditTailBytes tail_error(std::string what) {
  AuditTailBytes out;
  out.kind = AuditTailBytes::Kind::kError;
  out.error = std::move(what);
  return out;
}

/// Reads exactly `len` bytes at `offset` of `fd` into `out`. Returns "" on
/// success, else what went wrong: the errno of pread, or the end of the file
/// before `len` bytes (it shrank). Retries EINTR and short reads; the loop
/// ends because each pass reads at least one byte or returns. Needs `pread64`.
std::string pread_exactly(int fd, char* out, size_t len, uint64_t offset) noexcept {
  size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, out + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return "pread: " + errno_text(errno);
    if (n == 0) return "the file shrank while its last line was read";
    done += static_cast<size_t>(n);
  }
  return "";
}

}  // namespace

AuditTailBytes read_audit_tail(int tail_fd, int sink_fd) noexcept {
  struct stat tail_st;
  if (::fstat(tail_fd, &tail_st) != 0) {
    return tail_error("fstat of the read-only audit log descriptor: " + errno_text(errno));
  }
  AuditTailBytes out;
  if (!S_ISREG(tail_st.st_mode)) return out;  // kNotAFile: /dev/null for a stderr sink
  struct stat sink_st;
  if (::fstat(sink_fd, &sink_st) != 0) {
    return tail_error("fstat of the audit sink: " + errno_text(errno));
  }
  if (sink_st.st_dev != tail_st.st_dev || sink_st.st_ino != tail_st.st_ino) {
    return tail_error(
        "the read-only descriptor sluiced gave is not the audit log the worker appends to");
  }
  const uint64_t size = static_cast<uint64_t>(tail_st.st_size);
  if (size == 0) {
    out.kind = AuditTailBytes::Kind::kEmpty;
    return out;
  }

  // `tail` holds the file's bytes [begin, size); chunks are read backwards
  // until the newline before the last line turns up, the file's start is
  // reached, or kMaxAuditTailBytes are read.
  const uint64_t floor = size > kMaxAuditTailBytes ? size - kMaxAuditTailBytes : 0;
  std::string tail;
  uint64_t begin = size;
  bool ends_with_newline = false;
  size_t line_start = std::string::npos;  // index in `tail` where the last line begins
  while (begin > floor) {
    const size_t len = static_cast<size_t>(std::min<uint64_t>(kAuditTailChunkBytes, begin - floor));
    std::string chunk(len, '\0');
    if (std::string err = pread_exactly(tail_fd, chunk.data(), len, begin - len); !err.empty()) {
      return tail_error(std::move(err));
    }
    const bool first = tail.empty();
    if (first) ends_with_newline = chunk.back() == '\n';
    tail.insert(0, chunk);
    begin -= len;
    // Search only the new chunk; the file's final "\n" ends the last line,
    // it does not begin it.
    const size_t search = first && ends_with_newline ? len - 1 : len;
    const size_t nl = search == 0 ? std::string::npos : tail.rfind('\n', search - 1);
    if (nl != std::string::npos) {
      line_start = nl + 1;
      break;
    }
  }
  if (line_start == std::string::npos) {
    if (begin > 0) {  // stopped at kMaxAuditTailBytes without finding its start
      out.kind = AuditTailBytes::Kind::kTooLong;
      out.unterminated = !ends_with_newline;
      return out;
    }
    line_start = 0;  // the file holds one line
  }
  const size_t line_end = ends_with_newline ? tail.size() - 1 : tail.size();
  out.unterminated = !ends_with_newline;
  if (line_end - line_start + 1 > kMaxAuditLineBytes) {
    out.kind = AuditTailBytes::Kind::kTooLong;
    return out;
  }
  out.kind = AuditTailBytes::Kind::kLine;
  out.line = tail.substr(line_start, line_end - line_start);
  return out;
}

AuditLink link_audit_tail(const AuditTailBytes& bytes) {
  using Kind = AuditTailBytes::Kind;
  AuditLink link;
  switch (bytes.kind) {
    case Kind::kNotAFile:
      link.tail = AuditTail::kNone;
      return link;
    case Kind::kEmpty:
      link.tail = AuditTail::kEmpty;
      return link;
    case Kind::kError:
      link.tail = AuditTail::kUnreadable;
      link.error = "the last line could not be read: " + bytes.error;
      return link;
    case Kind::kTooLong:
      link.tail = AuditTail::kUnreadable;
      link.newline_first = bytes.unterminated;
      link.error = "the last line is longer than " + std::to_string(kMaxAuditLineBytes) +
                   " bytes, the longest line sluice writes, so sluice did not write it" +
                   (bytes.unterminated ? "; it had no final newline, so this run added one" : "");
      return link;
    case Kind::kLine:
      break;
  }
  // The line as the verifier will hash it: with the "\n" it has, or the one
  // the writer adds before its start record.
  const std::string text = bytes.line + "\n";
  link.prev = sha256(text.data(), text.size());
  if (bytes.unterminated) {
    link.tail = AuditTail::kUnreadable;
    link.newline_first = true;
    link.error = "the file did not end with a newline: its last line (" +
                 std::to_string(bytes.line.size()) +
                 " bytes) was cut short by a crash or a full disk during a write, or was edited; "
                 "this run added the newline";
    return link;
  }
  Result<AuditLine> parsed = parse_audit_line(bytes.line);
  if (!parsed) {
    link.tail = AuditTail::kUnreadable;
    link.error = "the last line is not an audit line (" + parsed.error().message + ")";
    return link;
  }
  link.tail = AuditTail::kLinked;
  return link;
}

}  // namespace sluice
