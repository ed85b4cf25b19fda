// The codec between the plain control messages (schema/control_types.h) and
// schema/control.capnp.
//
// Decoding happens here and nowhere else: a frame becomes plain, checked
// values inside one try-block, and no capnp Reader outlives the decode call
// (Cap'n Proto validates lazily, so a Reader could throw long after). Callers
// pass only frames that check_frame() (schema/frame.h) called complete.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "base/result.h"
#include "schema/control_types.h"

namespace sluice::control {

/// Encodes a request as one framed message (standard stream framing).
std::string encode_request(const Request& request);
/// Encodes a response as one framed message.
std::string encode_response(const Response& response);

/// Decodes one complete frame (8-byte aligned, `len` bytes) into a Request.
/// Fails with a sanitised message on any malformed input: bad pointers,
/// limits, unknown union members or enum values, addresses that are not 16
/// bytes, over-long texts, too many rules or tables, a bad magic number.
Result<Request> decode_request(const void* frame, size_t len);
/// Decodes one complete frame into a Response, with the same checks.
Result<Response> decode_response(const void* frame, size_t len);

/// The worker's state blob (control.capnp StateBlob): what a worker that
/// replaces a dead one resumes from. It is untrusted input: the decoder
/// checks it as a control frame, and the worker then commits its tables (or,
/// with `unconfirmed`, the rollback tables) through check_commit and the
/// policy like any commit.
struct StateBlob {
  uint64_t generation = 0;
  TableSet tables;
  /// A commit that waits for confirmation (sluicectl --confirm-within): the
  /// tables above are its, unconfirmed; a worker that resumes rolls back.
  struct Unconfirmed {
    uint64_t rollback_generation = 0;  // the generation the commit replaced
    TableSet rollback_tables;          // its tables
    uint32_t seconds = 0;              // as the commit asked
  };
  std::optional<Unconfirmed> unconfirmed;
};
/// Encodes a state blob as one framed message.
std::string encode_state_blob(const StateBlob& blob);
/// Decodes `len` bytes at `frame` (8-byte aligned) that must be exactly one
/// frame (check_frame, kMaxControlMessageBytes) into a StateBlob, with the
/// checks of decode_request on its tables. Fails with a sanitised message.
Result<StateBlob> decode_state_blob(const void* frame, size_t len);

/// SHA-256 of the canonical Cap'n Proto encoding of `tables`. Equal tables
/// give equal digests whatever order their fields were set in.
Sha256Digest digest_tables(const TableSet& tables);

}  // namespace sluice::control
