// Frame checks done before any Cap'n Proto decode: segment-count and size
// limits, incomplete headers, and the one-word huge-segment attack.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "schema/frame.h"

namespace sluice {
namespace {

/// Builds a frame header: segment count and sizes (in words), then `body_words` zero words.
std::vector<uint64_t> make_frame(std::vector<uint32_t> sizes, size_t body_words) {
  size_t header_bytes = ((4 + 4 * sizes.size()) + 7) & ~size_t{7};
  std::vector<uint64_t> words(header_bytes / 8 + body_words, 0);
  auto* p = reinterpret_cast<uint8_t*>(words.data());
  uint32_t count_minus_one = static_cast<uint32_t>(sizes.size() - 1);
  std::memcpy(p, &count_minus_one, 4);
  for (size_t i = 0; i < sizes.size(); ++i) std::memcpy(p + 4 + 4 * i, &sizes[i], 4);
  return words;
}

/// Checks the first `len` bytes of `w` against a 4 MiB limit.
FrameCheck check(const std::vector<uint64_t>& w, size_t len) {
  return check_frame(reinterpret_cast<const uint8_t*>(w.data()), len, kMaxControlMessageBytes);
}

TEST(Frame, CompleteSingleSegment) {
  auto w = make_frame({3}, 3);
  EXPECT_EQ(check(w, 32).status, FrameStatus::kComplete);
  EXPECT_EQ(check(w, 32).frame_bytes, 32u);
  EXPECT_EQ(check(w, 32).error, FrameError::kNone);
  EXPECT_EQ(check(w, 31).error, FrameError::kNone);
  EXPECT_EQ(check(w, 31).status, FrameStatus::kNeedMore);
  EXPECT_EQ(check(w, 7).status, FrameStatus::kNeedMore);
}

TEST(Frame, MultiSegmentHeaderIsPadded) {
  auto w = make_frame({1, 2}, 3);  // header 12 bytes, padded to 16
  EXPECT_EQ(check(w, 8).status, FrameStatus::kNeedMore);
  EXPECT_EQ(check(w, 16 + 24).status, FrameStatus::kComplete);
  EXPECT_EQ(check(w, 16 + 24).frame_bytes, 40u);
}

TEST(Frame, HugeSegmentCountIsRefused) {
  // Regression: a header claiming 2^32 segments (count-1 = 0xffffffff) must
  // not wrap to zero or make anyone allocate.
  std::vector<uint64_t> w(1, 0);
  uint32_t all_ones = 0xffffffff;
  std::memcpy(w.data(), &all_ones, 4);
  FrameCheck c = check(w, 8);
  EXPECT_EQ(c.status, FrameStatus::kInvalid);
  EXPECT_EQ(c.error, FrameError::kTooManySegments);
  EXPECT_NE(c.message.find("segments"), std::string::npos);
}

TEST(Frame, SegmentCountJustOverTheLimitIsRefused) {
  std::vector<uint32_t> sizes(kMaxControlSegments + 1, 1);
  auto w = make_frame(sizes, 0);
  EXPECT_EQ(check(w, 8).status, FrameStatus::kInvalid);
  EXPECT_EQ(check(w, 8).error, FrameError::kTooManySegments);
  std::vector<uint32_t> ok_sizes(kMaxControlSegments, 1);
  auto w2 = make_frame(ok_sizes, kMaxControlSegments);
  EXPECT_EQ(check(w2, w2.size() * 8).status, FrameStatus::kComplete);
}

TEST(Frame, OneHugeSegmentIsRefusedBeforeAnyBody) {
  // Regression: one word claiming a 2^32-1-word segment.
  auto w = make_frame({0xffffffff}, 0);
  FrameCheck c = check(w, 8);
  EXPECT_EQ(c.status, FrameStatus::kInvalid);
  EXPECT_EQ(c.error, FrameError::kTooLarge);
  EXPECT_NE(c.message.find("limit"), std::string::npos);
}

TEST(Frame, TotalJustOverTheLimitIsRefused) {
  uint32_t words = static_cast<uint32_t>(kMaxControlMessageBytes / 8);  // + 8 header bytes > limit
  auto w = make_frame({words}, 0);
  EXPECT_EQ(check(w, 8).status, FrameStatus::kInvalid);
  EXPECT_EQ(check(w, 8).error, FrameError::kTooLarge);
  auto ok = make_frame({words - 1}, 0);
  EXPECT_EQ(check(ok, 8).status, FrameStatus::kNeedMore);
}

TEST(Frame, EmptyFrameIsRefused) {
  auto w = make_frame({0}, 0);
  EXPECT_EQ(check(w, 8).status, FrameStatus::kInvalid);
  EXPECT_EQ(check(w, 8).error, FrameError::kEmpty);
  EXPECT_FALSE(check(w, 8).message.empty());
}

}  // namespace
}  // namespace sluice
