// Helpers shared by the audit tests: sample records and run starts,
// well-formed runs made with the real formatter, and splitting a log into its
// lines.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/sha256.h"
#include "worker/audit.h"

namespace sluice::testing {

/// 2026-11-24T17:03:11.123Z in milliseconds since the epoch.
inline constexpr int64_t kSampleMillis = 1795539791123;

/// Returns an applied record with generations `before` -> `before + 1`, one
/// added and one removed rule, and a plain comment.
inline CommitRecord sample_record(uint64_t before = 7) {
  CommitRecord r;
  r.outcome = control::Outcome::kApplied;
  r.peer.pid = 4242;
  r.peer.uid = 1000;
  r.peer.gid = 100;
  r.comment = "open web";
  r.generation_before = before;
  r.generation_after = before + 1;
  r.digest_before = sha256("a", 1);
  r.digest_after = sha256("b", 1);
  r.added = {"HOST TCP [*]:80 => 80"};
  r.removed = {"HOST TCP [*]:22 => 22"};
  r.kept = 3;
  r.opened = 1;
  r.closed = 1;
  r.rebound = 0;
  r.duration_micros = 1234;
  return r;
}

/// One line to build into a chain: its seq and the record it holds.
struct ChainItem {
  uint64_t seq;
  CommitRecord record;
};

/// Returns the link of a run that found the file empty.
inline AuditLink empty_link() {
  AuditLink link;
  link.tail = AuditTail::kEmpty;
  return link;
}

/// Returns the link of a run that found `last_line` (its "\n" included) at
/// the end of the file.
inline AuditLink link_to(std::string_view last_line) {
  AuditLink link;
  link.tail = AuditTail::kLinked;
  link.prev = sha256(last_line.data(), last_line.size());
  return link;
}

/// Returns a run's start: run id bytes `tag`, `tag` + 1, ...; sluiced pid
/// 77, uid 1000, gid 100; and `link`.
inline AuditRunStart sample_start(const AuditLink& link, uint8_t tag = 0x11) {
  AuditRunStart start;
  for (size_t i = 0; i < start.run.size(); ++i) start.run[i] = static_cast<uint8_t>(tag + i);
  start.pid = 77;
  start.uid = 1000;
  start.gid = 100;
  start.link = link;
  return start;
}

/// Returns the lines of a well-formed run: its start record (seq 1, with
/// `link`, run id `tag`), then one line per item with the item's seq, each
/// line's prev the hash of the line before it. The start record does not
/// carry the "\n" of a newline_first link.
inline std::vector<std::string> chain_lines(const std::vector<ChainItem>& items,
                                            const AuditLink& link = empty_link(),
                                            uint8_t tag = 0x11) {
  AuditLog formatter(-1);
  std::vector<std::string> lines;
  lines.push_back(formatter.format_start(sample_start(link, tag), kSampleMillis));
  Sha256Digest prev = sha256(lines.back().data(), lines.back().size());
  for (size_t i = 0; i < items.size(); ++i) {
    lines.push_back(formatter.format_line(items[i].record, items[i].seq,
                                          kSampleMillis + static_cast<int64_t>(i) + 1, prev));
    prev = sha256(lines.back().data(), lines.back().size());
  }
  return lines;
}

/// Returns a run of a start record and `count` applied lines, seq 1 to
/// count + 1, generations `first_generation` upwards without gaps.
inline std::vector<std::string> log_run(size_t count, uint64_t first_generation = 1,
                                        const AuditLink& link = empty_link(), uint8_t tag = 0x11) {
  std::vector<ChainItem> items;
  for (size_t i = 0; i < count; ++i) {
    items.push_back({i + 2, sample_record(first_generation + i)});
  }
  return chain_lines(items, link, tag);
}

/// Concatenates lines into one file's contents.
inline std::string join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) out += l;
  return out;
}

/// Splits `text` after each "\n"; a final piece without "\n" is kept as is.
inline std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    size_t len = nl == std::string_view::npos ? text.size() : nl + 1;
    out.emplace_back(text.substr(0, len));
    text.remove_prefix(len);
  }
  return out;
}

/// Returns the hex SHA-256 of `line`.
inline std::string hash_hex(std::string_view line) {
  return to_hex(sha256(line.data(), line.size()));
}

}  // namespace sluice::testing
