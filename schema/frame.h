// Checks of Cap'n Proto stream framing done by hand, before any decode.
//
// Debian's Cap'n Proto 0.9.2 predates the 2026 segment-count-overflow fix: a
// one-word header claiming a huge segment count or size makes the library's
// own size estimate overflow, and FlatArrayMessageReader has no cap on the
// segment count. So every reader of untrusted frames calls check_frame() on
// the bytes it has so far, and decodes only a frame it calls complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace sluice {

/// Limit: bytes of one control message (frame header included). Two full
/// tables of kMaxRulesPerTable rules with 15-byte interface names encode to
/// about 1 MiB; 4 MiB leaves room without letting one client pin much memory.
inline constexpr size_t kMaxControlMessageBytes = 4u << 20;
/// Limit: segments in one frame. Our encoders produce a handful (the message
/// builder grows segments geometrically); 64 allows any honest encoder and
/// keeps the segment table tiny.
inline constexpr uint32_t kMaxControlSegments = 64;

enum class FrameStatus {
  kNeedMore,  // the header or body is still incomplete; read more bytes
  kComplete,  // `frame_bytes` bytes form one whole frame
  kInvalid,   // the header breaks a limit; `error` says which. Drop the peer.
};

/// Why check_frame() called a frame invalid. Callers switch on this, never on
/// the text of `FrameCheck::message`.
enum class FrameError {
  kNone,             // the frame is not invalid (kNeedMore or kComplete)
  kTooManySegments,  // the segment table claims more than kMaxControlSegments
  kTooLarge,         // the segments add up to more than the caller's byte limit
  kEmpty,            // every segment is empty: there is no message at all
};

struct FrameCheck {
  FrameStatus status = FrameStatus::kNeedMore;
  size_t frame_bytes = 0;                // total frame size, once the segment table is complete
  FrameError error = FrameError::kNone;  // set exactly when status is kInvalid
  std::string message;                   // for people: what broke which limit
};

/// Inspects the first `len` bytes of a stream (8-byte aligned at `data`).
/// Returns kComplete with the frame size when a whole frame is there,
/// kNeedMore when more bytes are needed (also while the segment table itself
/// is incomplete), and kInvalid with its FrameError when the segment count
/// exceeds kMaxControlSegments (kTooManySegments), the total exceeds
/// `max_bytes` (kTooLarge), or every segment is empty (kEmpty). Pure: it
/// allocates only the message of an invalid frame, and throws nothing.
FrameCheck check_frame(const uint8_t* data, size_t len, size_t max_bytes) noexcept;

}  // namespace sluice
