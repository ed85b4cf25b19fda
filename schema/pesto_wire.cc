// pesto's protocol v2 (see pesto_wire.h): the 56-byte rule record, the
// server's hello and the client's update, encoded and checked field by field.
// Pure: no I/O, no exceptions. Every refusal names the table, the rule index
// and the bytes of the input it is about, counted from 0, ranges inclusive.
#include "schema/pesto_wire.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/check.h"
#include "base/strings.h"

namespace sluice::pesto {
namespace {

// Offsets of the fields of a rule record.
constexpr size_t kOffAddr = 0;
constexpr size_t kOffTaddr = 16;
constexpr size_t kOffIfName = 32;
constexpr size_t kOffFirst = 48;
constexpr size_t kOffLast = 50;
constexpr size_t kOffTo = 52;
constexpr size_t kOffProto = 54;
constexpr size_t kOffFlags = 55;
static_assert(kOffTaddr == kOffAddr + sizeof(Addr) && kOffIfName == kOffTaddr + sizeof(Addr));
static_assert(kOffIfName + kIfNameSize == kOffFirst);
static_assert(kOffFlags + 1 == kRuleBytes);
static_assert(kIfNameSize == kMaxIfNameLen + 1, "the model's interface names fit a record");

/// Bytes of a table header in an update: pif u8, count u32.
constexpr size_t kUpdateTableHeaderBytes = 5;
static_assert(kMaxUpdateBytes == 2 * (kUpdateTableHeaderBytes + kMaxRules * kRuleBytes) + 1);
/// Bytes of a table header in a hello: pif u8, name, caps u32, count u32.
constexpr size_t kHelloTableHeaderBytes = 1 + kPifNameSize + 4 + 4;

/// Reads a big-endian u16 at `p`.
uint16_t read_be16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

/// Reads a big-endian u32 at `p`.
uint32_t read_be32(const uint8_t* p) noexcept {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | static_cast<uint32_t>(p[3]);
}

/// Writes `v` big-endian at `p`.
void write_be16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

/// Appends `v` big-endian to `out`.
void put_be32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out->push_back(static_cast<char>(v >> shift));
}

/// Appends the bytes of `record` to `out`.
void put_record(std::string* out, const RuleRecord& record) {
  out->append(reinterpret_cast<const char*>(record.data()), record.size());
}

/// Returns "bytes A-B" for `len` bytes from `offset` ("byte A" for one).
std::string byte_range(size_t offset, size_t len) {
  if (len == 1) return "byte " + std::to_string(offset);
  return "bytes " + std::to_string(offset) + "-" + std::to_string(offset + len - 1);
}

/// Returns "0x" and two hex digits of `v`.
std::string hex8(unsigned v) {
  static const char kDigits[] = "0123456789abcdef";
  return std::string("0x") + kDigits[(v >> 4) & 0xf] + kDigits[v & 0xf];
}

/// Sets the model table of wire id `id`; false for TAP and unknown ids.
bool pif_of_wire(uint8_t id, Pif* out) noexcept {
  if (id == kPifHost) {
    *out = Pif::kHost;
    return true;
  }
  if (id == kPifSplice) {
    *out = Pif::kSplice;
    return true;
  }
  return false;
}

/// Returns "table id 2 (TAP)" and the like, for messages about an id.
std::string wire_id_text(uint8_t id) {
  const char* name = id == kPifHost     ? "HOST"
                     : id == kPifTap    ? "TAP"
                     : id == kPifSplice ? "SPLICE"
                                        : "unknown";
  return "table id " + std::to_string(id) + " (" + name + ")";
}

/// Sets `*failure` to `error` and `message`; returns false.
bool refuse(WireFailure* failure, WireError error, std::string message) {
  failure->error = error;
  failure->message = std::move(message);
  return false;
}

/// Returns the label of rule `index` of `pif` at `offset`, for messages:
/// "HOST rule 3 (bytes 81-136)".
std::string rule_where(Pif pif, size_t index, size_t offset) {
  return std::string(wire_pif_name(pif)) + " rule " + std::to_string(index) + " (" +
         byte_range(offset, kRuleBytes) + ")";
}

/// Checks the table name of a hello at `name` (kPifNameSize bytes, at
/// `offset` of the input) against `pif`'s. Returns false with `*failure` set.
bool check_table_name(const uint8_t* name, size_t offset, Pif pif, WireFailure* failure) {
  const std::string where =
      std::string(wire_pif_name(pif)) + " table name (" + byte_range(offset, kPifNameSize) + ")";
  const void* nul = std::memchr(name, 0, kPifNameSize);
  if (nul == nullptr) {
    return refuse(failure, WireError::kBadName,
                  where + ": no NUL within " + std::to_string(kPifNameSize) + " bytes");
  }
  size_t len = static_cast<size_t>(static_cast<const uint8_t*>(nul) - name);
  std::string_view text(reinterpret_cast<const char*>(name), len);
  if (text != wire_pif_name(pif)) {
    return refuse(failure, WireError::kBadName,
                  where + ": \"" + sanitize(text, 32) + "\" is not " + wire_pif_name(pif));
  }
  for (size_t i = len + 1; i < kPifNameSize; ++i) {
    if (name[i] != 0) {
      return refuse(failure, WireError::kBadName,
                    where + ": " + byte_range(offset + i, 1) + " after the NUL is " +
                        hex8(name[i]) + "; the name must be NUL-padded");
    }
  }
  return true;
}

}  // namespace

uint8_t wire_pif(Pif pif) noexcept {
  return pif == Pif::kHost ? kPifHost : kPifSplice;
}

const char* wire_pif_name(Pif pif) noexcept {
  return pif == Pif::kHost ? "HOST" : "SPLICE";
}

uint32_t caps_bits(const ServerCaps& caps) noexcept {
  return (caps.ipv4 ? kCapIpv4 : 0) | (caps.ipv6 ? kCapIpv6 : 0) | (caps.tcp ? kCapTcp : 0) |
         (caps.udp ? kCapUdp : 0) | (caps.scan ? kCapScan : 0) | (caps.ifname ? kCapIfName : 0);
}

RuleRecord encode_rule(const Rule& rule) noexcept {
  CHECK_MSG(rule.ifname.size() <= kMaxIfNameLen && rule.ifname.find('\0') == std::string::npos,
            "an interface name the validator refuses reached the pesto encoder");
  RuleRecord out{};
  std::memcpy(out.data() + kOffAddr, rule.listen.data(), sizeof(Addr));
  const Addr target = canonical_target(rule.target);
  std::memcpy(out.data() + kOffTaddr, target.data(), sizeof(Addr));
  std::memcpy(out.data() + kOffIfName, rule.ifname.data(), rule.ifname.size());
  write_be16(out.data() + kOffFirst, rule.first);
  write_be16(out.data() + kOffLast, rule.last);
  write_be16(out.data() + kOffTo, rule.to);
  out[kOffProto] = rule.proto == Proto::kTcp ? kProtoTcp : kProtoUdp;
  out[kOffFlags] = static_cast<uint8_t>((rule.dual_stack ? kFlagDualStack : 0) |
                                        (rule.weak ? kFlagWeak : 0) | (rule.scan ? kFlagScan : 0));
  return out;
}

bool decode_rule(const RuleRecord& record, const std::string& where, Rule* out,
                 WireFailure* failure) {
  const uint8_t* ifname = record.data() + kOffIfName;
  if (ifname[kIfNameSize - 1] != 0) {
    return refuse(failure, WireError::kBadIfName, where + ": interface name is not NUL-terminated");
  }
  const size_t ifname_len = strnlen(reinterpret_cast<const char*>(ifname), kIfNameSize);
  for (size_t i = ifname_len + 1; i < kIfNameSize; ++i) {
    if (ifname[i] != 0) {
      return refuse(failure, WireError::kBadIfName,
                    where + ": interface name has " + hex8(ifname[i]) + " after its NUL (rule " +
                        byte_range(kOffIfName + i, 1) + "); it must be zero-padded");
    }
  }

  const uint8_t proto = record[kOffProto];
  if (proto != kProtoTcp && proto != kProtoUdp) {
    return refuse(failure, WireError::kBadProto,
                  where + ": protocol " + std::to_string(proto) + " is neither TCP (" +
                      std::to_string(kProtoTcp) + ") nor UDP (" + std::to_string(kProtoUdp) + ")");
  }

  const uint8_t flags = record[kOffFlags];
  if ((flags & ~kFlagsAll) != 0) {
    return refuse(failure, WireError::kBadFlags,
                  where + ": unknown flag bits " + hex8(flags & ~kFlagsAll) +
                      " (known: " + hex8(kFlagsAll) + ")");
  }
  Addr listen;
  std::memcpy(listen.data(), record.data() + kOffAddr, sizeof(Addr));
  const bool dual_stack = (flags & kFlagDualStack) != 0;
  if (dual_stack && !addr_is_zero(listen)) {
    return refuse(failure, WireError::kBadFlags,
                  where + ": dual-stack flag on address " + format_addr(listen) +
                      "; only :: listens on both families");
  }

  const uint16_t first = read_be16(record.data() + kOffFirst);
  const uint16_t last = read_be16(record.data() + kOffLast);
  const uint16_t to = read_be16(record.data() + kOffTo);
  if (first == 0 || to == 0) {
    return refuse(failure, WireError::kBadPorts,
                  where + ": port 0 (" + std::to_string(first) + "-" + std::to_string(last) +
                      " => " + std::to_string(to) + "); ports start at 1");
  }
  if (first > last) {
    return refuse(failure, WireError::kBadPorts,
                  where + ": first port " + std::to_string(first) + " is above last port " +
                      std::to_string(last));
  }
  const uint32_t to_last = static_cast<uint32_t>(to) + (last - first);
  if (to_last > kMaxPort) {
    return refuse(failure, WireError::kBadPorts,
                  where + ": ports " + std::to_string(first) + "-" + std::to_string(last) +
                      " map to " + std::to_string(to) + "-" + std::to_string(to_last) +
                      ", beyond " + std::to_string(kMaxPort));
  }

  Rule rule;
  rule.proto = proto == kProtoTcp ? Proto::kTcp : Proto::kUdp;
  rule.listen = listen;
  rule.ifname.assign(reinterpret_cast<const char*>(ifname), ifname_len);
  rule.first = first;
  rule.last = last;
  rule.to = to;
  Addr target;
  std::memcpy(target.data(), record.data() + kOffTaddr, sizeof(Addr));
  // The default target has two spellings (:: and ::ffff:0.0.0.0); the model
  // keeps one, as the control codec does, and the record keeps the bytes.
  rule.target = canonical_target(target);
  rule.dual_stack = dual_stack;
  rule.weak = (flags & kFlagWeak) != 0;
  rule.scan = (flags & kFlagScan) != 0;
  *out = std::move(rule);
  return true;
}

std::string encode_hello(const std::vector<WireTable>& tables) {
  std::string out(kMagic.begin(), kMagic.end());
  put_be32(&out, kVersion);
  put_be32(&out, kPifNameSize);
  put_be32(&out, kIfNameSize);
  for (const WireTable& table : tables) {
    CHECK_MSG(table.rules.size() <= kMaxRules, "a table pesto cannot take reached the hello");
    out.push_back(static_cast<char>(wire_pif(table.pif)));
    std::string name = wire_pif_name(table.pif);
    name.resize(kPifNameSize, '\0');
    out += name;
    put_be32(&out, table.caps);
    put_be32(&out, static_cast<uint32_t>(table.rules.size()));
    for (const WireRule& rule : table.rules) put_record(&out, rule.record);
  }
  out.push_back(static_cast<char>(kPifEnd));
  return out;
}

bool decode_hello(const uint8_t* data, size_t len, std::vector<WireTable>* out,
                  WireFailure* failure) {
  // Refuses the input for ending inside `what`.
  auto truncated = [&](const std::string& what) {
    return refuse(failure, WireError::kTruncated,
                  "the hello ends at byte " + std::to_string(len) + ", inside " + what);
  };
  if (len < kMagic.size()) return truncated("the magic (" + byte_range(0, kMagic.size()) + ")");
  if (std::memcmp(data, kMagic.data(), kMagic.size()) != 0) {
    return refuse(failure, WireError::kBadMagic,
                  "hello magic (" + byte_range(0, kMagic.size()) + ") is \"" +
                      sanitize(std::string_view(reinterpret_cast<const char*>(data), 8)) +
                      "\", not \"basil:s\\x00\"");
  }
  if (len < kHelloHeaderBytes) {
    return truncated("the header (" + byte_range(0, kHelloHeaderBytes) + ")");
  }
  const uint32_t version = read_be32(data + 8);
  if (version == 0 || version > kVersion) {
    return refuse(failure, WireError::kBadVersion,
                  "hello version (" + byte_range(8, 4) + ") is " + std::to_string(version) +
                      "; pesto speaks 1 to " + std::to_string(kVersion));
  }
  const uint32_t name_size = read_be32(data + 12);
  const uint32_t ifname_size = read_be32(data + 16);
  if (name_size != kPifNameSize || ifname_size != kIfNameSize) {
    return refuse(failure, WireError::kBadSizes,
                  "hello sizes (" + byte_range(12, 8) + ") are " + std::to_string(name_size) +
                      " and " + std::to_string(ifname_size) + ", not " +
                      std::to_string(kPifNameSize) + " and " + std::to_string(kIfNameSize));
  }

  // pesto also refuses more than 3 tables; with two ids allowed and none
  // repeated, a third table is always refused as one or the other.
  std::vector<WireTable> tables;
  bool seen[kPifCount] = {};
  size_t pos = kHelloHeaderBytes;
  for (;;) {
    if (pos >= len) return truncated("the list of tables (no terminating 0x00)");
    const uint8_t id = data[pos];
    if (id == kPifEnd) {
      ++pos;
      break;
    }
    const std::string id_where = "hello table " + std::to_string(tables.size()) + " (" +
                                 byte_range(pos, 1) + "): " + wire_id_text(id);
    Pif pif;
    if (!pif_of_wire(id, &pif)) {
      return refuse(failure, WireError::kBadPif, id_where + " is not one a server offers");
    }
    if (seen[static_cast<size_t>(pif)]) {
      return refuse(failure, WireError::kDuplicatePif, id_where + " comes a second time");
    }
    seen[static_cast<size_t>(pif)] = true;
    if (len - pos < kHelloTableHeaderBytes) {
      return truncated(std::string("the header of table ") + wire_pif_name(pif) + " (" +
                       byte_range(pos, kHelloTableHeaderBytes) + ")");
    }
    if (!check_table_name(data + pos + 1, pos + 1, pif, failure)) return false;
    WireTable table;
    table.pif = pif;
    table.caps = read_be32(data + pos + 1 + kPifNameSize);
    const size_t count_at = pos + 1 + kPifNameSize + 4;
    const uint32_t count = read_be32(data + count_at);
    if (count > kMaxRules) {
      return refuse(failure, WireError::kTooManyRules,
                    std::string(wire_pif_name(pif)) + " rule count (" + byte_range(count_at, 4) +
                        ") is " + std::to_string(count) + "; pesto takes at most " +
                        std::to_string(kMaxRules));
    }
    pos += kHelloTableHeaderBytes;
    table.rules.reserve(count);
    for (uint32_t i = 0; i < count; ++i) {
      const std::string where = rule_where(pif, i, pos);
      if (len - pos < kRuleBytes) return truncated(where);
      WireRule rule;
      std::memcpy(rule.record.data(), data + pos, kRuleBytes);
      if (!decode_rule(rule.record, where, &rule.rule, failure)) return false;
      table.rules.push_back(std::move(rule));
      pos += kRuleBytes;
    }
    tables.push_back(std::move(table));
  }
  if (pos != len) {
    return refuse(failure, WireError::kTrailing,
                  "hello: " + byte_range(pos, len - pos) +
                      (len - pos == 1 ? " follows" : " follow") + " the terminating 0x00 at byte " +
                      std::to_string(pos - 1));
  }
  *out = std::move(tables);
  return true;
}

std::string encode_update(const std::vector<WireTable>& tables) {
  std::string out;
  for (const WireTable& table : tables) {
    out.push_back(static_cast<char>(wire_pif(table.pif)));
    put_be32(&out, static_cast<uint32_t>(table.rules.size()));
    for (const WireRule& rule : table.rules) put_record(&out, rule.record);
  }
  out.push_back(static_cast<char>(kPifEnd));
  return out;
}

UpdateDecoder::UpdateDecoder(std::vector<Pif> offered) : offered_(std::move(offered)) {}

UpdateDecoder::Status UpdateDecoder::feed(const uint8_t* data, size_t len) {
  size_t at = 0;
  while (at < len) {
    if (status_ == Status::kInvalid) return status_;
    // The limit comes first: a byte beyond it is refused whatever it is, so
    // the longest valid update followed by any byte is kTooLarge.
    if (consumed_ >= kMaxUpdateBytes) {
      return fail(WireError::kTooLarge, "update " + byte_range(consumed_, 1) +
                                            " is beyond the limit of " +
                                            std::to_string(kMaxUpdateBytes) + " bytes");
    }
    if (expect_ == Expect::kDone) {
      return fail(WireError::kTrailing, "update " + byte_range(consumed_, 1) +
                                            " follows the terminating 0x00 at byte " +
                                            std::to_string(consumed_ - 1));
    }
    const size_t unit = expect_ == Expect::kPif ? 1 : expect_ == Expect::kCount ? 4 : kRuleBytes;
    const size_t take = std::min({unit - part_len_, len - at, kMaxUpdateBytes - consumed_});
    std::memcpy(part_.data() + part_len_, data + at, take);
    part_len_ += take;
    at += take;
    consumed_ += take;
    if (part_len_ == unit) {
      Status status = take_unit();
      part_len_ = 0;
      if (status == Status::kInvalid) return status;
    }
  }
  return status_;
}

UpdateDecoder::Status UpdateDecoder::take_unit() {
  const size_t start = consumed_ - part_len_;
  switch (expect_) {
    case Expect::kPif: {
      const uint8_t id = part_[0];
      if (id == kPifEnd) {
        expect_ = Expect::kDone;
        status_ = Status::kComplete;
        return status_;
      }
      const std::string where = "update table " + std::to_string(tables_.size()) + " (" +
                                byte_range(start, 1) + "): " + wire_id_text(id);
      Pif pif;
      if (!pif_of_wire(id, &pif) ||
          std::find(offered_.begin(), offered_.end(), pif) == offered_.end()) {
        std::string offered;
        for (Pif p : offered_) offered += std::string(offered.empty() ? "" : ", ") + pif_name(p);
        return fail(WireError::kBadPif, where + " was not offered (offered: " +
                                            (offered.empty() ? "none" : offered) + ")");
      }
      for (const WireTable& table : tables_) {
        if (table.pif == pif) return fail(WireError::kDuplicatePif, where + " comes a second time");
      }
      tables_.push_back(WireTable{pif, 0, {}});
      expect_ = Expect::kCount;
      return status_;
    }
    case Expect::kCount: {
      WireTable& table = tables_.back();
      const uint32_t count = read_be32(part_.data());
      if (count > kMaxRules) {
        return fail(WireError::kTooManyRules, std::string(wire_pif_name(table.pif)) +
                                                  " rule count (" + byte_range(start, 4) + ") is " +
                                                  std::to_string(count) + "; at most " +
                                                  std::to_string(kMaxRules) + " are accepted");
      }
      table.rules.reserve(count);
      remaining_ = count;
      expect_ = count == 0 ? Expect::kPif : Expect::kRule;
      return status_;
    }
    case Expect::kRule: {
      WireTable& table = tables_.back();
      WireRule rule;
      std::memcpy(rule.record.data(), part_.data(), kRuleBytes);
      const std::string where = rule_where(table.pif, table.rules.size(), start);
      if (!decode_rule(rule.record, where, &rule.rule, &failure_)) {
        status_ = Status::kInvalid;
        return status_;
      }
      table.rules.push_back(std::move(rule));
      if (--remaining_ == 0) expect_ = Expect::kPif;
      return status_;
    }
    case Expect::kDone:
      break;
  }
  CHECK_MSG(false, "a unit was taken after the terminator");
  return Status::kInvalid;
}

UpdateDecoder::Status UpdateDecoder::finish() {
  if (status_ != Status::kNeedMore) return status_;
  if (consumed_ == 0) return Status::kNeedMore;  // closed without a byte: no update
  const size_t start = consumed_ - part_len_;
  std::string inside;
  switch (expect_) {
    case Expect::kPif:
      return fail(WireError::kTruncated, "the update ends at byte " + std::to_string(consumed_) +
                                             ", before the next table id or the terminating 0x00");
    case Expect::kCount:
      inside = std::string("the ") + wire_pif_name(tables_.back().pif) + " rule count (" +
               byte_range(start, 4) + ")";
      break;
    case Expect::kRule:
      inside = rule_where(tables_.back().pif, tables_.back().rules.size(), start);
      break;
    case Expect::kDone:
      CHECK_MSG(false, "an update both complete and incomplete");
  }
  return fail(WireError::kTruncated,
              "the update ends at byte " + std::to_string(consumed_) + ", inside " + inside);
}

UpdateDecoder::Status UpdateDecoder::fail(WireError error, std::string message) {
  status_ = Status::kInvalid;
  failure_.error = error;
  failure_.message = std::move(message);
  return status_;
}

}  // namespace sluice::pesto
