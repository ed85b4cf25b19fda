// The previous run's last line: how a new run of the worker links its start
// record to what the audit log already holds (docs/AUDIT.md, "Runs").
//
// sluiced opens --audit-log FILE a second time, read-only, and hands that
// descriptor to the worker as wire::kWorkerFdAuditTail (/dev/null when the
// sink is stderr). sluiced never reads it, so it parses nothing it did not
// write. The worker takes the file's last line in two steps:
//  1. read_audit_tail(), before its sandbox: fstat and pread copy the last
//     line's bytes, reading backwards from the end in bounded chunks, and the
//     worker closes the descriptor. Nothing is parsed yet, just as argv is
//     only copied before the sandbox. The worker's seccomp allowlist has no
//     fstat, and pread64 only on auto-scan's fds 16 to 23, so this is the
//     only time the file can be read.
//  2. link_audit_tail(), inside the sandbox: the strict parser of
//     schema/audit_line.h judges the bytes. The result is what the start
//     record says: its tail, its prev and, when the line was unusable, why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/sha256.h"
#include "schema/audit_line.h"

namespace sluice {

/// Limit: bytes of the file's end read to find its last line: the longest
/// line sluice writes (kMaxAuditLineBytes, its newline included), plus the
/// newline before it, which shows where it begins. A longer last line was not
/// written by sluice; it is reported as unreadable without reading further,
/// so a huge file without newlines costs at most this much memory and time.
inline constexpr size_t kMaxAuditTailBytes = kMaxAuditLineBytes + 1;

/// Limit: bytes per pread while reading backwards: one page. An ordinary line
/// (about 700 bytes) is found with one read, the longest with 17.
inline constexpr size_t kAuditTailChunkBytes = 4096;

/// The file's last line as read before the sandbox: bytes only, unparsed.
struct AuditTailBytes {
  enum class Kind : uint8_t {
    kNotAFile,  // the descriptor is not a regular file: the sink is stderr
    kEmpty,     // the file has no bytes: the log starts here
    kLine,      // `line` holds the last line
    kTooLong,   // the last line is longer than kMaxAuditLineBytes
    kError,     // `error` says what failed
  };
  Kind kind = Kind::kNotAFile;
  std::string line;           // kLine: the last line, without its "\n"
  bool unterminated = false;  // kLine, kTooLong: the file does not end with "\n"
  std::string error;          // kError: what failed, and the errno
};

/// Reads the last line of the audit log on `tail_fd` (kWorkerFdAuditTail,
/// read-only), after checking that it is the file that `sink_fd`
/// (kWorkerFdAudit) appends to: same device and inode. Reads backwards from
/// the end in chunks of kAuditTailChunkBytes, at most kMaxAuditTailBytes in
/// all. Returns kNotAFile when `tail_fd` is not a regular file (sluiced puts
/// /dev/null there when the sink is its stderr); kError with the reason when
/// fstat or pread fails, the file shrinks while it is read, or the two
/// descriptors name different files. Never parses. Needs `fstat` and
/// `pread64` on `tail_fd`, which the worker's seccomp filter does not allow
/// (pread64 only on auto-scan's fds): call it before the sandbox.
AuditTailBytes read_audit_tail(int tail_fd, int sink_fd) noexcept;

/// What a run's start record says about the lines before it.
struct AuditLink {
  AuditTail tail = AuditTail::kNone;
  Sha256Digest prev{};  // what `tail` says: the last line's SHA-256, or zeros
  std::string error;    // `tailError`: why the last line could not be used
  /// The file ends inside a line (no final "\n"): the writer puts a "\n"
  /// before the start record, so that the record is a line of its own and
  /// the cut line shows as one damaged line (whose hash is `prev`).
  bool newline_first = false;
};

/// Judges `bytes` with the strict parser (parse_audit_line): a last line that
/// parses is kLinked, with prev its SHA-256 ("\n" included); a stream sink is
/// kNone, an empty file kEmpty (prev zeros). Anything else is kUnreadable with
/// the reason in `error`: a line that does not parse, a file that does not
/// end with a newline (a cut-short write), a line too long for sluice to
/// have written, or a read error; prev is then the SHA-256 of the line as the
/// verifier will see it when it was read whole, else zeros. Never fails; no
/// syscalls.
AuditLink link_audit_tail(const AuditTailBytes& bytes);

}  // namespace sluice
