// Shared pieces of the libFuzzer targets in tests/fuzz/ (see docs/FUZZING.md).
//
// Each target's logic is a plain function, sluice::fuzz::*_one_input, declared
// here. The target's own file wraps it in LLVMFuzzerTestOneInput unless
// SLUICE_FUZZ_NO_MAIN is defined; regression_test.cc defines it, links all
// targets into one gtest binary (built by g++ in the normal build), and feeds
// every crash ever found, and every seed of the corpus, to the same function.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

/// Aborts with the failed condition and `what` when `cond` is false: a broken
/// contract is a crash, so that libFuzzer saves the input as a reproducer.
#define FUZZ_CHECK(cond, what)                                                                 \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      std::fprintf(stderr, "fuzz check failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   what);                                                                      \
      std::abort();                                                                            \
    }                                                                                          \
  } while (0)

namespace sluice::fuzz {

/// The control frames (schema/frame.h, schema/codec.h): requests as the
/// worker decodes them, responses as sluicectl decodes them.
int control_one_input(const uint8_t* data, size_t size);
/// The broker's checks of worker datagrams (broker/broker_host.h).
int broker_wire_one_input(const uint8_t* data, size_t size);
/// The audit log verifier (client/audit_verify.h), whole and in chunks.
int audit_verify_one_input(const uint8_t* data, size_t size);
/// sluicectl --file: split_option_file and the command line around it.
int option_file_one_input(const uint8_t* data, size_t size);
/// The rule-text parser (schema/rules/spec_parser.h).
int spec_one_input(const uint8_t* data, size_t size);
/// pesto's protocol v2 (schema/pesto_wire.h): an update split in two feeds,
/// and a hello.
int pesto_wire_one_input(const uint8_t* data, size_t size);
/// The worker's state blob (schema/codec.h decode_state_blob), as a
/// restarted worker reads it from sluiced.
int state_blob_one_input(const uint8_t* data, size_t size);

/// Returns true when every byte of `text` is printable ASCII, or '\n' when
/// `newlines` is set: what may reach a terminal from a hostile peer.
inline bool printable(std::string_view text, bool newlines = false) {
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\n' && newlines) continue;
    if (c < 0x20 || c >= 0x7f) return false;
  }
  return true;
}

/// A copy of some bytes in memory aligned for capnp::word (8 bytes), with
/// zero padding up to the next word: libFuzzer's buffers have no alignment.
class AlignedBytes {
 public:
  /// Copies `size` bytes from `data`.
  AlignedBytes(const void* data, size_t size) : words_(size / 8 + 1, 0), size_(size) {
    if (size > 0) std::memcpy(words_.data(), data, size);
  }
  /// Returns the first byte (8-byte aligned).
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(words_.data()); }
  /// Returns the number of bytes copied (the padding excluded).
  size_t size() const { return size_; }

 private:
  std::vector<uint64_t> words_;
  size_t size_;
};

}  // namespace sluice::fuzz
