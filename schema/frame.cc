#include "schema/frame.h"

#include <cstring>

namespace sluice {
namespace {

/// Reads a little-endian uint32 at `p` (the wire format is little-endian).
uint32_t read_le32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 |
         static_cast<uint32_t>(p[2]) << 16 | static_cast<uint32_t>(p[3]) << 24;
}

}  // namespace

FrameCheck check_frame(const uint8_t* data, size_t len, size_t max_bytes) noexcept {
  FrameCheck out;
  if (len < 8) return out;  // need the first word: count-1 and the first size
  uint32_t count_minus_one = read_le32(data);
  // The wire field is count - 1, so UINT32_MAX would wrap to a count of 0:
  // compare before adding one.
  if (count_minus_one >= kMaxControlSegments) {
    out.status = FrameStatus::kInvalid;
    out.error = FrameError::kTooManySegments;
    out.message = "frame claims " + std::to_string(static_cast<uint64_t>(count_minus_one) + 1) +
                  " segments; at most " + std::to_string(kMaxControlSegments) + " are accepted";
    return out;
  }
  size_t count = count_minus_one + 1;
  // Segment table: one uint32 count, `count` uint32 sizes, padded to a word.
  size_t header_bytes = ((4 + 4 * count) + 7) & ~static_cast<size_t>(7);
  if (len < header_bytes) return out;
  uint64_t total_words = 0;
  for (size_t i = 0; i < count; ++i) {
    total_words += read_le32(data + 4 + 4 * i);  // at most 64 * 2^32: no overflow in 64 bits
  }
  uint64_t total = header_bytes + total_words * 8;
  if (total > max_bytes) {
    out.status = FrameStatus::kInvalid;
    out.error = FrameError::kTooLarge;
    out.message = "frame of " + std::to_string(total) + " bytes exceeds the limit of " +
                  std::to_string(max_bytes) + " bytes";
    return out;
  }
  out.frame_bytes = static_cast<size_t>(total);
  if (total_words == 0) {
    out.status = FrameStatus::kInvalid;
    out.error = FrameError::kEmpty;
    out.message = "frame has no content (every segment is empty)";
    return out;
  }
  out.status = len >= total ? FrameStatus::kComplete : FrameStatus::kNeedMore;
  return out;
}

}  // namespace sluice
