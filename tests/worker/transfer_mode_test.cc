// The small-transfer path's decisions (worker/transfer_mode.h): when a
// direction switches from copying to splicing, and when a short recv() means
// the source is drained or at its FIN.
#include "worker/transfer_mode.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(TransferMode, ShortDirectionsCopyAndLongOnesSplice) {
  EXPECT_FALSE(should_splice(0, 0, true));
  EXPECT_FALSE(should_splice(100, 0, true));
  EXPECT_FALSE(should_splice(kSpliceAfterBytes - 1, 0, true));
  EXPECT_TRUE(should_splice(kSpliceAfterBytes, 0, true));
  EXPECT_TRUE(should_splice(uint64_t{1} << 40, 0, true));
}

TEST(TransferMode, SmallMessagesCopyHoweverManyBytesTheyCarried) {
  // A kept-alive request/response connection of small messages never fills
  // the buffer: it keeps the copy path, whose latency is lower.
  EXPECT_FALSE(should_splice(kSpliceAfterBytes, 0, false));
  EXPECT_FALSE(should_splice(uint64_t{1} << 40, 0, false));
}

TEST(TransferMode, HeldBytesGoOutBeforeTheSwitch) {
  // Bytes a short send() left behind must reach the destination before any
  // spliced byte, or the stream would be reordered.
  EXPECT_FALSE(should_splice(kSpliceAfterBytes, 1, true));
  EXPECT_FALSE(should_splice(uint64_t{1} << 40, kCopyChunk, true));
}

TEST(TransferMode, AShortReadMeansDrainedUnlessTheSourceEnded) {
  EXPECT_TRUE(read_drained(100, kCopyChunk, false));
  EXPECT_TRUE(read_drained(kCopyChunk - 1, kCopyChunk, false));
  // A full read may have left more behind: read again.
  EXPECT_FALSE(read_drained(kCopyChunk, kCopyChunk, false));
  // After a FIN, hang-up or error, the next read must see the 0 or the error.
  EXPECT_FALSE(read_drained(100, kCopyChunk, true));
}

TEST(TransferMode, AShortReadAfterAFinAloneReachedTheFin) {
  EXPECT_TRUE(read_reached_fin(100, kCopyChunk, true));
  // A full read may stop before the FIN: read again.
  EXPECT_FALSE(read_reached_fin(kCopyChunk, kCopyChunk, true));
  // Without a FIN reported before the read, a short read is only drained.
  EXPECT_FALSE(read_reached_fin(100, kCopyChunk, false));
}

TEST(TransferMode, TheCopyPathIsBoundedByOneChunkPerDirection) {
  // What a direction may hold back is one chunk at most, and the switch
  // comes before a direction copies much more than that.
  EXPECT_LE(kCopyChunk, size_t{16 * 1024});
  EXPECT_LE(kSpliceAfterBytes, uint64_t{1} << 20);
}

}  // namespace
}  // namespace sluice
