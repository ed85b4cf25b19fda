// pesto's protocol v2: the messages sluiced's pesto endpoint (sluiced
// --pesto-socket) exchanges with an unmodified pesto client, byte for byte as
// pasta speaks them (docs/PROTOCOL.md, "The pesto endpoint").
//
//   server, on accept:  magic "basil:s\0" | version u32 = 2 | pif name size
//                       u32 = 128 | ifnamsiz u32 = 16, then for each table by
//                       ascending pif id: pif u8 | name[128] | caps u32 |
//                       count u32 | count x rule; then 0x00
//   client, to edit:    for each table: pif u8 | count u32 | count x rule;
//                       then 0x00; then it closes. No reply.
//
// All integers are big-endian. A rule is 56 bytes (RuleRecord). The model
// (schema/model.h) maps onto it one to one, with one exception: the model
// keeps the default target canonical (all zero), while the wire may spell it
// ::ffff:0.0.0.0. Decoding keeps each rule's original record next to its
// model form, so a server can send a rule back with the bytes it received
// (pesto's --delete compares bytes).
//
// Everything here is pure: no I/O, no allocation beyond the results, no
// exceptions. The decoders check every field before it is used and name the
// first offending byte range in their error.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "schema/model.h"

namespace sluice::pesto {

/// The server's greeting magic, NUL included.
inline constexpr std::array<uint8_t, 8> kMagic = {'b', 'a', 's', 'i', 'l', ':', 's', '\0'};
/// The protocol version this endpoint speaks (pesto accepts 1..2).
inline constexpr uint32_t kVersion = 2;
/// Bytes of a table name on the wire (PIF_NAME_SIZE), NUL-padded.
inline constexpr uint32_t kPifNameSize = 128;
/// Bytes of an interface name in a rule (IFNAMSIZ), NUL-terminated.
inline constexpr uint32_t kIfNameSize = 16;
/// Bytes of one rule record.
inline constexpr size_t kRuleBytes = 56;
/// Limit: rules of one table on the wire. The count is a u32, but pesto
/// refuses a server that announces more than 255 (its own table size), so a
/// larger table cannot be offered at all.
inline constexpr uint32_t kMaxRules = 255;
/// Bytes of the fixed hello header (magic, version, two sizes).
inline constexpr size_t kHelloHeaderBytes = 20;
/// Limit: bytes of a whole update from a client: two tables of kMaxRules
/// rules, their headers and the terminator. Anything longer is refused.
inline constexpr size_t kMaxUpdateBytes = 2 * (5 + kMaxRules * kRuleBytes) + 1;

/// Table ids on the wire (pif ids). 0 ends the list of tables.
inline constexpr uint8_t kPifEnd = 0;
inline constexpr uint8_t kPifHost = 1;
inline constexpr uint8_t kPifTap = 2;  // never offered
inline constexpr uint8_t kPifSplice = 3;

/// Capability bits of a table.
inline constexpr uint32_t kCapIpv4 = 0x01;
inline constexpr uint32_t kCapIpv6 = 0x02;
inline constexpr uint32_t kCapTcp = 0x04;
inline constexpr uint32_t kCapUdp = 0x08;
inline constexpr uint32_t kCapScan = 0x10;
inline constexpr uint32_t kCapIfName = 0x20;
inline constexpr uint32_t kCapAll = 0x3f;

/// Rule flag bits.
inline constexpr uint8_t kFlagDualStack = 0x01;
inline constexpr uint8_t kFlagWeak = 0x02;
inline constexpr uint8_t kFlagScan = 0x04;
inline constexpr uint8_t kFlagsAll = 0x07;

/// Rule protocol numbers.
inline constexpr uint8_t kProtoTcp = 6;
inline constexpr uint8_t kProtoUdp = 17;

/// One rule as it travels: 56 bytes, no padding.
using RuleRecord = std::array<uint8_t, kRuleBytes>;

/// A rule decoded from the wire: its model form (target canonical) and the
/// bytes it came as.
struct WireRule {
  Rule rule;
  RuleRecord record{};
  bool operator==(const WireRule&) const = default;
};

/// One table of a hello or an update.
struct WireTable {
  Pif pif = Pif::kHost;
  uint32_t caps = 0;  // in a hello only; 0 in an update
  std::vector<WireRule> rules;
  bool operator==(const WireTable&) const = default;
};

/// Why a decoder refused its input. Callers switch on this, never on text.
enum class WireError {
  kNone,
  kTruncated,     // the input ended inside a message (a decoder given all of it)
  kBadMagic,      // hello: not "basil:s\0"
  kBadVersion,    // hello: version 0 or above kVersion
  kBadSizes,      // hello: pif name size not 128 or ifnamsiz not 16
  kBadPif,        // a table id that is not offered (or TAP, or unknown)
  kDuplicatePif,  // the same table twice
  kTooManyRules,  // a count above kMaxRules
  kBadName,       // hello: a table name without NUL, or not the pif's name
  kBadIfName,     // a rule's interface name without NUL, or not zero-padded
  kBadProto,      // a rule's protocol is neither 6 nor 17
  kBadFlags,      // unknown flag bits, or dual-stack on an address other than ::
  kBadPorts,      // port 0, first > last, or to + (last - first) beyond 65535
  kTrailing,      // bytes after the terminating 0x00
  kTooLarge,      // an update longer than kMaxUpdateBytes (wins over kTrailing)
};

/// A refusal: the kind, and a message for the log naming the table, the
/// rule index and the byte offset.
struct WireFailure {
  WireError error = WireError::kNone;
  std::string message;
};

/// Returns the wire id of a model table (kPifHost, kPifSplice).
uint8_t wire_pif(Pif pif) noexcept;
/// Returns the table's name as sent in a hello ("HOST", "SPLICE").
const char* wire_pif_name(Pif pif) noexcept;
/// Returns the capability bits of `caps` (kCapIpv4 ...).
uint32_t caps_bits(const ServerCaps& caps) noexcept;

/// Encodes `rule` as a record: the default target as all zero bytes. The
/// interface name must fit (at most kMaxIfNameLen bytes, no NUL: CHECK); the
/// validator refuses any other name first.
RuleRecord encode_rule(const Rule& rule) noexcept;
/// Decodes one record, checking every field: the interface name is
/// NUL-terminated and zero-padded, the protocol is TCP or UDP, only known
/// flags are set and dual-stack only on ::, ports are non-zero with first <=
/// last and the mapped range within 65535. The target comes back canonical
/// (canonical_target). Returns true with `*out` set, or false with
/// `*failure` set; `where` prefixes its message ("HOST rule 3 (bytes 81-136)").
bool decode_rule(const RuleRecord& record, const std::string& where, Rule* out,
                 WireFailure* failure);

/// Encodes the server's hello: the header, then `tables` in the order given
/// (callers pass ascending pif ids), each with its name, caps and records,
/// then the terminator. Every table must hold at most kMaxRules rules
/// (CHECK); callers refuse the session first.
std::string encode_hello(const std::vector<WireTable>& tables);
/// Decodes a whole hello (for clients and tests): checks what pesto checks
/// (magic, version, sizes, at most 3 tables, pif ids known and not repeated,
/// counts, names with NUL) and every rule, and that nothing follows the
/// terminator. Stricter than pesto in one point: a name must be NUL-padded
/// (what encode_hello writes). Caps are taken as they are; version 1 is
/// accepted, as pesto accepts it, and read with the same layout. Returns
/// true with `*out` set, or false with `*failure` set (`*out` unchanged).
bool decode_hello(const uint8_t* data, size_t len, std::vector<WireTable>* out,
                  WireFailure* failure);

/// Encodes a client's update: each table's pif, count and records, then the
/// terminator. Records and counts are sent as they are, unchecked (tests use
/// this to send what pesto, or a hostile client, would).
std::string encode_update(const std::vector<WireTable>& tables);

/// Decodes a client's update incrementally, as bytes arrive: the server
/// feeds what it read, and learns when the update is complete, still
/// incomplete, or refused.
class UpdateDecoder {
 public:
  enum class Status { kNeedMore, kComplete, kInvalid };
  /// A decoder for an update to the tables `offered` (the tables the server
  /// sent in its hello). Any other table id is refused.
  explicit UpdateDecoder(std::vector<Pif> offered);
  /// Takes the next `len` bytes. Returns kComplete once the terminator was
  /// read (every byte after it is kTrailing), kInvalid on the first bad
  /// field (then failure() says which, and later calls return kInvalid),
  /// kNeedMore otherwise. Never buffers more than one record. The result,
  /// failure() and consumed() do not depend on how the input is split. A
  /// byte beyond kMaxUpdateBytes is kTooLarge whatever it is; no valid update
  /// is longer, so only a byte after the longest one can get there.
  Status feed(const uint8_t* data, size_t len);
  /// The peer closed: kComplete if the update was complete, kInvalid with
  /// kTruncated when it stopped inside one. A client that closes before
  /// sending any byte made no update: then kNeedMore is returned, and the
  /// caller treats it as a read-only session.
  Status finish();
  /// The tables received, in the order they came. Complete only after kComplete.
  const std::vector<WireTable>& tables() const { return tables_; }
  /// Why the update was refused (error kNone unless kInvalid).
  const WireFailure& failure() const { return failure_; }
  /// Bytes taken so far: up to and including the terminator, or the field
  /// that was refused; a refused trailing or excess byte is not taken.
  size_t consumed() const { return consumed_; }

 private:
  /// Refuses the update with `error` and `message`; returns kInvalid.
  Status fail(WireError error, std::string message);
  /// Handles one complete unit in part_: a table header or a record.
  Status take_unit();

  enum class Expect { kPif, kCount, kRule, kDone };
  std::vector<Pif> offered_;
  std::vector<WireTable> tables_;
  Expect expect_ = Expect::kPif;
  std::array<uint8_t, kRuleBytes> part_{};
  size_t part_len_ = 0;
  uint32_t remaining_ = 0;  // records left in the current table
  size_t consumed_ = 0;
  Status status_ = Status::kNeedMore;
  WireFailure failure_;
};

}  // namespace sluice::pesto
