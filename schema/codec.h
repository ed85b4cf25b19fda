// The codec between plain C++ control messages and schema/control.capnp.
//
// Decoding happens here and nowhere else: a frame becomes plain, checked
// values inside one try-block, and no capnp Reader outlives the decode call
// (Cap'n Proto validates lazily, so a Reader could throw long after). Callers
// pass only frames that check_frame() (schema/frame.h) called complete.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"
#include "base/sha256.h"
#include "schema/model.h"

namespace sluice::control {

/// The protocol version this build speaks (control.capnp protocolVersion).
inline constexpr uint32_t kProtocolVersion = 1;

struct PifInfo {
  Pif pif = Pif::kHost;
  std::string name;
  bool operator==(const PifInfo&) const = default;
};

struct ServerHello {
  uint32_t protocol_version = kProtocolVersion;
  std::string server_version;
  ServerCaps caps;
  uint32_t rules_per_table = 0;
  uint32_t listeners_per_table = 0;
  uint32_t message_bytes = 0;
  std::vector<PifInfo> pifs;
  uint16_t ephemeral_first = 0;
  uint16_t ephemeral_last = 0;
  bool operator==(const ServerHello&) const = default;
};

struct ClientHello {
  uint32_t protocol_version = kProtocolVersion;
  std::string client_version;
  bool operator==(const ClientHello&) const = default;
};

struct GetState {
  bool operator==(const GetState&) const = default;
};

struct State {
  uint64_t generation = 0;
  Sha256Digest digest{};
  TableSet tables;
  bool operator==(const State&) const = default;
};

enum class ErrorCode {
  kMalformed,
  kUnsupportedVersion,
  kUnknownRequest,
  kNotPermitted,
  kTooLarge,
  kOutOfOrder,
  kTimeout,
};

struct ProtocolError {
  ErrorCode code = ErrorCode::kMalformed;
  std::string message;
  bool operator==(const ProtocolError&) const = default;
};

struct Request {
  uint64_t id = 0;
  std::variant<ClientHello, GetState> body;
  bool operator==(const Request&) const = default;
};

struct Response {
  uint64_t id = 0;
  std::variant<ServerHello, State, ProtocolError> body;
  bool operator==(const Response&) const = default;
};

/// Limit: bytes of a version string or error message accepted from a peer.
/// Longer texts are a malformed message (they only ever hold a line of prose).
inline constexpr size_t kMaxTextBytes = 1024;

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

/// SHA-256 of the canonical Cap'n Proto encoding of `tables`. Equal tables
/// give equal digests whatever order their fields were set in.
Sha256Digest digest_tables(const TableSet& tables);

/// Returns a short name for an error code ("malformed", "unsupported-version"...).
const char* error_code_name(ErrorCode code) noexcept;

}  // namespace sluice::control
