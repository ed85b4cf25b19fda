#include "schema/codec.h"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstdio>
#include <cstring>
#include <exception>

#include "base/strings.h"
#include "schema/codec_internal.h"
#include "schema/control.capnp.h"
#include "schema/frame.h"

namespace sluice::control {
namespace cp = ::sluice::capnp_control;

static_assert(cp::PROTOCOL_VERSION == kProtocolVersion);

// The codec's helpers, shared with codec_stats.cc through codec_internal.h.
namespace codec_detail {

/// True when the model enumerator `model` and the control.capnp enumerator
/// `wire` have the same ordinal. The codec casts these enums to and from each
/// other by ordinal, so the asserts below make any reordering, insertion or
/// renumbering on either side break the build instead of the wire.
template <typename Model, typename Wire>
constexpr bool same_ordinal(Model model, Wire wire) {
  return static_cast<uint16_t>(model) == static_cast<uint16_t>(wire);
}

static_assert(same_ordinal(Pif::kHost, cp::Pif::HOST));
static_assert(same_ordinal(Pif::kSplice, cp::Pif::SPLICE));

static_assert(same_ordinal(Proto::kTcp, cp::Proto::TCP));
static_assert(same_ordinal(Proto::kUdp, cp::Proto::UDP));

static_assert(same_ordinal(ErrorCode::kMalformed, cp::ErrorCode::MALFORMED));
static_assert(same_ordinal(ErrorCode::kUnsupportedVersion, cp::ErrorCode::UNSUPPORTED_VERSION));
static_assert(same_ordinal(ErrorCode::kUnknownRequest, cp::ErrorCode::UNKNOWN_REQUEST));
static_assert(same_ordinal(ErrorCode::kNotPermitted, cp::ErrorCode::NOT_PERMITTED));
static_assert(same_ordinal(ErrorCode::kTooLarge, cp::ErrorCode::TOO_LARGE));
static_assert(same_ordinal(ErrorCode::kOutOfOrder, cp::ErrorCode::OUT_OF_ORDER));
static_assert(same_ordinal(ErrorCode::kTimeout, cp::ErrorCode::TIMEOUT));
static_assert(same_ordinal(ErrorCode::kBusy, cp::ErrorCode::BUSY));
/// The last code the decoder accepts; a code appended to the schema must be
/// appended to ErrorCode too, and this moved to it.
constexpr ErrorCode kLastErrorCode = ErrorCode::kBusy;

static_assert(same_ordinal(FailureKind::kInvalid, cp::FailureKind::INVALID));
static_assert(same_ordinal(FailureKind::kConflict, cp::FailureKind::CONFLICT));
static_assert(same_ordinal(FailureKind::kPolicyDenied, cp::FailureKind::POLICY_DENIED));
static_assert(same_ordinal(FailureKind::kBindFailed, cp::FailureKind::BIND_FAILED));
static_assert(same_ordinal(FailureKind::kCapacity, cp::FailureKind::CAPACITY));
static_assert(same_ordinal(FailureKind::kStale, cp::FailureKind::STALE_GENERATION));
static_assert(same_ordinal(FailureKind::kConfirmPending, cp::FailureKind::CONFIRM_PENDING));
/// The last failure kind the decoder accepts.
constexpr FailureKind kLastFailureKind = FailureKind::kConfirmPending;

static_assert(same_ordinal(Outcome::kApplied, cp::Outcome::APPLIED));
static_assert(same_ordinal(Outcome::kRejected, cp::Outcome::REJECTED));
static_assert(same_ordinal(Outcome::kDryRun, cp::Outcome::DRY_RUN));
static_assert(same_ordinal(Outcome::kStale, cp::Outcome::STALE));
/// The last outcome the decoder accepts.
constexpr Outcome kLastOutcome = Outcome::kStale;

/// Reader limits: the traversal limit matches the frame limit (every word may
/// be visited once); nesting is at most Response > State > Table > Rule plus
/// margin, so 16 refuses deep-nesting attacks early.
capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = kMaxControlMessageBytes / sizeof(capnp::word);
  options.nestingLimit = 16;
  return options;
}

/// Writes the rule model into a capnp Rule builder.
void encode_rule(const Rule& rule, cp::Rule::Builder out) {
  out.setProto(rule.proto == Proto::kTcp ? cp::Proto::TCP : cp::Proto::UDP);
  out.setListen(kj::arrayPtr(rule.listen.data(), rule.listen.size()));
  out.setIfname(rule.ifname);
  out.setFirst(rule.first);
  out.setLast(rule.last);
  out.setTo(rule.to);
  out.setTarget(kj::arrayPtr(rule.target.data(), rule.target.size()));
  out.setDualStack(rule.dual_stack);
  out.setWeak(rule.weak);
  out.setScan(rule.scan);
}

/// Writes every table of `tables` into a List(Table) builder of kPifCount entries.
void encode_tables(const TableSet& tables, capnp::List<cp::Table>::Builder out) {
  for (size_t i = 0; i < kPifCount; ++i) {
    const Table& table = tables.tables[i];
    auto t = out[static_cast<unsigned>(i)];
    t.setPif(table.pif == Pif::kHost ? cp::Pif::HOST : cp::Pif::SPLICE);
    auto rules = t.initRules(static_cast<unsigned>(table.rules.size()));
    for (size_t r = 0; r < table.rules.size(); ++r) {
      encode_rule(table.rules[r], rules[static_cast<unsigned>(r)]);
    }
  }
}

/// Converts a wire protocol, refusing values this build does not know.
Proto decode_proto(cp::Proto proto) {
  switch (proto) {
    case cp::Proto::TCP:
      return Proto::kTcp;
    case cp::Proto::UDP:
      return Proto::kUdp;
  }
  throw DecodeError{"unknown protocol value " + std::to_string(static_cast<unsigned>(proto))};
}

/// Converts a capnp Pif enum, rejecting values this build does not know.
Pif decode_pif(cp::Pif pif) {
  switch (pif) {
    case cp::Pif::HOST:
      return Pif::kHost;
    case cp::Pif::SPLICE:
      return Pif::kSplice;
  }
  throw DecodeError{"unknown pif value " + std::to_string(static_cast<unsigned>(pif))};
}

/// Copies a Data field that must be exactly 16 bytes into an Addr.
Addr decode_addr(capnp::Data::Reader data, const char* what) {
  if (data.size() != 16) {
    throw DecodeError{std::string(what) + " address has " + std::to_string(data.size()) +
                      " bytes; exactly 16 are required"};
  }
  Addr out;
  std::memcpy(out.data(), data.begin(), 16);
  return out;
}

/// Copies a Text field, rejecting texts over `max` bytes or with embedded NULs.
std::string decode_text(capnp::Text::Reader text, size_t max, const char* what) {
  if (text.size() > max) {
    throw DecodeError{std::string(what) + " is " + std::to_string(text.size()) +
                      " bytes; at most " + std::to_string(max) + " are accepted"};
  }
  std::string out(text.cStr(), text.size());
  if (out.find('\0') != std::string::npos) throw DecodeError{std::string(what) + " contains NUL"};
  return out;
}

/// Converts one capnp Rule into the model, checking field shapes only (the
/// validator checks semantics).
Rule decode_rule(cp::Rule::Reader in) {
  Rule rule;
  rule.proto = decode_proto(in.getProto());
  rule.listen = decode_addr(in.getListen(), "listen");
  rule.ifname = decode_text(in.getIfname(), kMaxIfNameLen, "interface name");
  rule.first = in.getFirst();
  rule.last = in.getLast();
  rule.to = in.getTo();
  // The default target has two spellings on the wire (:: and the
  // v4-mapped ::ffff:0.0.0.0); both decode to the one canonical form, so
  // every check, the digest and the listing see the same rule.
  rule.target = canonical_target(decode_addr(in.getTarget(), "target"));
  rule.dual_stack = in.getDualStack();
  rule.weak = in.getWeak();
  rule.scan = in.getScan();
  return rule;
}

/// Converts a List(Table): at most one table per pif, at most
/// kMaxRulesPerTable rules each. Missing pifs stay empty.
TableSet decode_tables(capnp::List<cp::Table>::Reader in) {
  if (in.size() > kPifCount) {
    throw DecodeError{std::to_string(in.size()) + " tables sent; there are only " +
                      std::to_string(kPifCount) + " pifs"};
  }
  TableSet out;
  bool seen[kPifCount] = {};
  for (auto t : in) {
    Pif pif = decode_pif(t.getPif());
    size_t index = static_cast<size_t>(pif);
    if (seen[index]) throw DecodeError{std::string("table ") + pif_name(pif) + " sent twice"};
    seen[index] = true;
    auto rules = t.getRules();
    if (rules.size() > kMaxRulesPerTable) {
      throw DecodeError{std::string("table ") + pif_name(pif) + " has " +
                        std::to_string(rules.size()) + " rules; at most " +
                        std::to_string(kMaxRulesPerTable) + " are accepted"};
    }
    Table& table = out.of(pif);
    table.rules.reserve(rules.size());
    for (auto r : rules) table.rules.push_back(decode_rule(r));
  }
  return out;
}

/// Checks the magic number of a hello.
void check_magic(uint32_t magic) {
  if (magic != cp::MAGIC) {
    char hex[16];
    std::snprintf(hex, sizeof(hex), "0x%08x", magic);
    throw DecodeError{std::string("hello has magic ") + hex +
                      ", which is not the sluice control protocol; is this a sluice socket?"};
  }
}

/// Serialises a finished builder with standard framing.
std::string to_frame(capnp::MallocMessageBuilder& builder) {
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

/// `what` up to a "\nstack:" that kj appends to what() (code addresses).
std::string cut_at_stack(const char* what) {
  std::string text(what);
  const size_t stack = text.find("\nstack:");
  if (stack != std::string::npos) text.resize(stack);
  return text;
}

/// Runs `body` on a FlatArrayMessageReader of the frame, inside the one
/// try-block that turns every capnp exception and DecodeError into an Error.
template <typename T, typename Body>
Result<T> decode_frame(const void* frame, size_t len, Body body) {
  if (len % sizeof(capnp::word) != 0 ||
      reinterpret_cast<uintptr_t>(frame) % alignof(capnp::word) != 0) {
    return Err(EBADMSG, "frame is not a whole number of aligned 8-byte words");
  }
  try {
    kj::ArrayPtr<const capnp::word> words(static_cast<const capnp::word*>(frame),
                                          len / sizeof(capnp::word));
    capnp::FlatArrayMessageReader reader(words, reader_options());
    return body(reader);
  } catch (const DecodeError& e) {
    return Err(EBADMSG, sanitize(e.message));
  } catch (const kj::Exception& e) {
    // Cap'n Proto's own: its description only. what() adds kj's source file
    // and line and a stack of code addresses, which would tell a client
    // where the worker is loaded; the description may quote raw bytes.
    return Err(EBADMSG, "malformed message: " + sanitize(e.getDescription().cStr(), 200));
  } catch (const std::exception& e) {
    // Anything else (std::bad_alloc): its name, never more than 200 bytes.
    return Err(EBADMSG, "malformed message: " + sanitize(cut_at_stack(e.what()), 200));
  }
}

/// Writes a failure into its builder.
void encode_failure(const Failure& f, cp::Failure::Builder out) {
  out.setPif(f.pif == Pif::kHost ? cp::Pif::HOST : cp::Pif::SPLICE);
  out.setRule(f.rule);
  out.setText(f.text);
  out.setPort(f.port);
  out.setErrno(f.err);
  out.setErrnoName(f.err != 0 ? errno_name(f.err) : "");
  out.setKind(static_cast<cp::FailureKind>(static_cast<uint16_t>(f.kind)));
  out.setMessage(f.message);
  out.setOtherRule(f.other_rule);
}

/// Reads a failure; the errno name is derived, never trusted from the wire.
Failure decode_failure(cp::Failure::Reader in) {
  Failure f;
  f.pif = decode_pif(in.getPif());
  f.rule = in.getRule();
  f.text = decode_text(in.getText(), kMaxTextBytes, "failure rule text");
  f.port = in.getPort();
  f.err = in.getErrno();
  auto kind = static_cast<uint16_t>(in.getKind());
  if (kind > static_cast<uint16_t>(kLastFailureKind)) {
    throw DecodeError{"unknown failure kind " + std::to_string(kind)};
  }
  f.kind = static_cast<FailureKind>(kind);
  f.message = decode_text(in.getMessage(), kMaxTextBytes, "failure message");
  f.other_rule = in.getOtherRule();
  return f;
}

/// Writes a commit result into its builder.
void encode_commit_result(const CommitResult& r, cp::CommitResult::Builder out) {
  out.setApplied(r.applied);
  out.setDryRun(r.dry_run);
  out.setGeneration(r.generation);
  out.setDigest(kj::arrayPtr(r.digest.data(), r.digest.size()));
  out.setKept(r.kept);
  out.setOpened(r.opened);
  out.setClosed(r.closed);
  out.setRebound(r.rebound);
  auto failures = out.initFailures(static_cast<unsigned>(r.failures.size()));
  for (size_t i = 0; i < r.failures.size(); ++i) {
    encode_failure(r.failures[i], failures[static_cast<unsigned>(i)]);
  }
  out.setDurationMicros(r.duration_micros);
  out.setFailureCount(r.failure_count);
  auto warnings = out.initWarnings(static_cast<unsigned>(r.warnings.size()));
  for (size_t i = 0; i < r.warnings.size(); ++i) {
    encode_failure(r.warnings[i], warnings[static_cast<unsigned>(i)]);
  }
}

/// Reads a commit result.
CommitResult decode_commit_result(cp::CommitResult::Reader in) {
  CommitResult r;
  r.applied = in.getApplied();
  r.dry_run = in.getDryRun();
  r.generation = in.getGeneration();
  auto digest = in.getDigest();
  if (digest.size() != r.digest.size()) throw DecodeError{"digest is not 32 bytes"};
  std::memcpy(r.digest.data(), digest.begin(), digest.size());
  r.kept = in.getKept();
  r.opened = in.getOpened();
  r.closed = in.getClosed();
  r.rebound = in.getRebound();
  auto failures = in.getFailures();
  if (failures.size() > kMaxFailures) throw DecodeError{"too many failures"};
  for (auto f : failures) r.failures.push_back(decode_failure(f));
  r.duration_micros = in.getDurationMicros();
  r.failure_count = in.getFailureCount();
  auto warnings = in.getWarnings();
  if (warnings.size() > kMaxFailures) throw DecodeError{"too many warnings"};
  for (auto f : warnings) r.warnings.push_back(decode_failure(f));
  return r;
}

/// Writes a list of texts (rule listings) into a List(Text) builder.
void encode_texts(const std::vector<std::string>& texts, capnp::List<capnp::Text>::Builder out) {
  for (size_t i = 0; i < texts.size(); ++i) out.set(static_cast<unsigned>(i), texts[i]);
}

/// Reads a List(Text) of at most 2 * kMaxRulesPerTable rule listings.
std::vector<std::string> decode_texts(capnp::List<capnp::Text>::Reader in, const char* what) {
  if (in.size() > 2 * kMaxRulesPerTable) throw DecodeError{std::string("too many ") + what};
  std::vector<std::string> out;
  for (auto t : in) out.push_back(decode_text(t, kMaxTextBytes, what));
  return out;
}

/// Writes one history entry.
void encode_history_entry(const HistoryEntry& e, cp::HistoryEntry::Builder out) {
  out.setSequence(e.sequence);
  out.setUnixMillis(e.unix_millis);
  out.setPid(e.pid);
  out.setUid(e.uid);
  out.setGid(e.gid);
  out.setComment(e.comment);
  out.setOutcome(static_cast<cp::Outcome>(static_cast<uint16_t>(e.outcome)));
  out.setGenerationBefore(e.generation_before);
  out.setGenerationAfter(e.generation_after);
  encode_texts(e.added, out.initAdded(static_cast<unsigned>(e.added.size())));
  encode_texts(e.removed, out.initRemoved(static_cast<unsigned>(e.removed.size())));
  out.setKept(e.kept);
  out.setOpened(e.opened);
  out.setClosed(e.closed);
  out.setRebound(e.rebound);
  out.setFailures(e.failures);
  out.setDurationMicros(e.duration_micros);
}

/// Reads one history entry.
HistoryEntry decode_history_entry(cp::HistoryEntry::Reader in) {
  HistoryEntry e;
  e.sequence = in.getSequence();
  e.unix_millis = in.getUnixMillis();
  e.pid = in.getPid();
  e.uid = in.getUid();
  e.gid = in.getGid();
  e.comment = decode_text(in.getComment(), kMaxCommentBytes, "comment");
  auto outcome = static_cast<uint16_t>(in.getOutcome());
  if (outcome > static_cast<uint16_t>(kLastOutcome)) {
    throw DecodeError{"unknown outcome " + std::to_string(outcome)};
  }
  e.outcome = static_cast<Outcome>(outcome);
  e.generation_before = in.getGenerationBefore();
  e.generation_after = in.getGenerationAfter();
  e.added = decode_texts(in.getAdded(), "added rules");
  e.removed = decode_texts(in.getRemoved(), "removed rules");
  e.kept = in.getKept();
  e.opened = in.getOpened();
  e.closed = in.getClosed();
  e.rebound = in.getRebound();
  e.failures = in.getFailures();
  e.duration_micros = in.getDurationMicros();
  return e;
}

/// Writes a pending confirmation.
void encode_pending(const PendingConfirm& p, cp::PendingConfirm::Builder out) {
  out.setGeneration(p.generation);
  out.setRollbackGeneration(p.rollback_generation);
  out.setDeadlineUnixMillis(p.deadline_unix_millis);
  out.setRemainingMillis(p.remaining_millis);
  out.setPid(p.pid);
  out.setUid(p.uid);
}

/// Reads a pending confirmation.
PendingConfirm decode_pending(cp::PendingConfirm::Reader in) {
  PendingConfirm p;
  p.generation = in.getGeneration();
  p.rollback_generation = in.getRollbackGeneration();
  p.deadline_unix_millis = in.getDeadlineUnixMillis();
  p.remaining_millis = in.getRemainingMillis();
  p.pid = in.getPid();
  p.uid = in.getUid();
  return p;
}

}  // namespace codec_detail

using namespace codec_detail;  // NOLINT: the helpers read best unqualified

std::string encode_request(const Request& request) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::Request>();
  root.setId(request.id);
  if (const auto* hello = std::get_if<ClientHello>(&request.body)) {
    auto h = root.initHello();
    h.setMagic(cp::MAGIC);
    h.setProtocolVersion(hello->protocol_version);
    h.setClientVersion(hello->client_version);
  } else if (const auto* commit = std::get_if<CommitRequest>(&request.body)) {
    auto c = root.initCommit();
    encode_tables(commit->tables, c.initTables(kPifCount));
    c.setExpectedGeneration(commit->expected_generation);
    c.setDryRun(commit->dry_run);
    c.setComment(commit->comment);
    c.setEndRemovedFlows(commit->end_removed_flows);
    c.setConfirmWithinSeconds(commit->confirm_within_seconds);
  } else if (std::holds_alternative<ConfirmRequest>(request.body)) {
    root.setConfirm();
  } else if (const auto* history = std::get_if<HistoryRequest>(&request.body)) {
    root.setHistory(history->limit);
  } else if (std::holds_alternative<StatsRequest>(request.body)) {
    root.setStats();
  } else {
    root.setGetState();
  }
  return to_frame(builder);
}

std::string encode_response(const Response& response) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::Response>();
  root.setId(response.id);
  if (const auto* hello = std::get_if<ServerHello>(&response.body)) {
    auto h = root.initHello();
    h.setMagic(cp::MAGIC);
    h.setProtocolVersion(hello->protocol_version);
    h.setServerVersion(hello->server_version);
    auto caps = h.initCapabilities();
    caps.setIpv4(hello->caps.ipv4);
    caps.setIpv6(hello->caps.ipv6);
    caps.setTcp(hello->caps.tcp);
    caps.setUdp(hello->caps.udp);
    caps.setScan(hello->caps.scan);
    caps.setIfname(hello->caps.ifname);
    auto limits = h.initLimits();
    limits.setRulesPerTable(hello->rules_per_table);
    limits.setListenersPerTable(hello->listeners_per_table);
    limits.setMessageBytes(hello->message_bytes);
    auto pifs = h.initPifs(static_cast<unsigned>(hello->pifs.size()));
    for (size_t i = 0; i < hello->pifs.size(); ++i) {
      auto p = pifs[static_cast<unsigned>(i)];
      p.setPif(hello->pifs[i].pif == Pif::kHost ? cp::Pif::HOST : cp::Pif::SPLICE);
      p.setName(hello->pifs[i].name);
    }
    h.setEphemeralFirst(hello->ephemeral_first);
    h.setEphemeralLast(hello->ephemeral_last);
    h.setTargetNamespace(hello->target_namespace);
  } else if (const auto* state = std::get_if<State>(&response.body)) {
    auto s = root.initState();
    s.setGeneration(state->generation);
    s.setDigest(kj::arrayPtr(state->digest.data(), state->digest.size()));
    encode_tables(state->tables, s.initTables(kPifCount));
    if (state->pending_confirm) encode_pending(*state->pending_confirm, s.initPendingConfirm());
    s.setUnbound(state->unbound);
  } else if (const auto* confirm = std::get_if<ConfirmResult>(&response.body)) {
    auto c = root.initConfirm();
    c.setConfirmed(confirm->confirmed);
    c.setGeneration(confirm->generation);
    c.setMessage(confirm->message);
  } else if (const auto* result = std::get_if<CommitResult>(&response.body)) {
    encode_commit_result(*result, root.initCommit());
  } else if (std::holds_alternative<Welcome>(response.body)) {
    root.setWelcome();
  } else if (const auto* stats = std::get_if<Stats>(&response.body)) {
    encode_stats(*stats, root.initStats());
  } else if (const auto* history = std::get_if<History>(&response.body)) {
    auto entries = root.initHistory(static_cast<unsigned>(history->entries.size()));
    for (size_t i = 0; i < history->entries.size(); ++i) {
      encode_history_entry(history->entries[i], entries[static_cast<unsigned>(i)]);
    }
  } else {
    const auto& error = std::get<ProtocolError>(response.body);
    auto e = root.initError();
    e.setCode(static_cast<cp::ErrorCode>(static_cast<uint16_t>(error.code)));
    e.setMessage(error.message);
  }
  return to_frame(builder);
}

Result<Request> decode_request(const void* frame, size_t len) {
  return decode_frame<Request>(frame, len, [](capnp::MessageReader& reader) -> Result<Request> {
    auto root = reader.getRoot<cp::Request>();
    Request out;
    out.id = root.getId();
    switch (root.which()) {
      case cp::Request::HELLO: {
        auto h = root.getHello();
        check_magic(h.getMagic());
        ClientHello hello;
        hello.protocol_version = h.getProtocolVersion();
        hello.client_version = decode_text(h.getClientVersion(), kMaxTextBytes, "client version");
        out.body = std::move(hello);
        return out;
      }
      case cp::Request::GET_STATE:
        out.body = GetState{};
        return out;
      case cp::Request::COMMIT: {
        auto c = root.getCommit();
        CommitRequest commit;
        commit.tables = decode_tables(c.getTables());
        commit.expected_generation = c.getExpectedGeneration();
        commit.dry_run = c.getDryRun();
        commit.comment = decode_text(c.getComment(), kMaxCommentBytes, "comment");
        commit.end_removed_flows = c.getEndRemovedFlows();
        commit.confirm_within_seconds = c.getConfirmWithinSeconds();
        if (commit.confirm_within_seconds > kMaxConfirmWithinSeconds) {
          throw DecodeError{"confirmWithinSeconds is " +
                            std::to_string(commit.confirm_within_seconds) + "; at most " +
                            std::to_string(kMaxConfirmWithinSeconds) + " are accepted"};
        }
        out.body = std::move(commit);
        return out;
      }
      case cp::Request::HISTORY: {
        uint32_t limit = root.getHistory();
        if (limit > kMaxHistory) {
          throw DecodeError{"history of " + std::to_string(limit) + " entries asked; at most " +
                            std::to_string(kMaxHistory) + " are kept"};
        }
        out.body = HistoryRequest{limit};
        return out;
      }
      case cp::Request::STATS:
        out.body = StatsRequest{};
        return out;
      case cp::Request::CONFIRM:
        out.body = ConfirmRequest{};
        return out;
    }
    throw DecodeError{"unknown request kind " +
                      std::to_string(static_cast<unsigned>(root.which()))};
  });
}

Result<Response> decode_response(const void* frame, size_t len) {
  return decode_frame<Response>(frame, len, [](capnp::MessageReader& reader) -> Result<Response> {
    auto root = reader.getRoot<cp::Response>();
    Response out;
    out.id = root.getId();
    switch (root.which()) {
      case cp::Response::HELLO: {
        auto h = root.getHello();
        check_magic(h.getMagic());
        ServerHello hello;
        hello.protocol_version = h.getProtocolVersion();
        hello.server_version = decode_text(h.getServerVersion(), kMaxTextBytes, "server version");
        auto caps = h.getCapabilities();
        hello.caps = ServerCaps{caps.getIpv4(), caps.getIpv6(), caps.getTcp(),
                                caps.getUdp(),  caps.getScan(), caps.getIfname()};
        auto limits = h.getLimits();
        hello.rules_per_table = limits.getRulesPerTable();
        hello.listeners_per_table = limits.getListenersPerTable();
        hello.message_bytes = limits.getMessageBytes();
        auto pifs = h.getPifs();
        if (pifs.size() > kPifCount) throw DecodeError{"hello lists more pifs than exist"};
        for (auto p : pifs) {
          hello.pifs.push_back(
              PifInfo{decode_pif(p.getPif()), decode_text(p.getName(), 64, "pif name")});
        }
        hello.ephemeral_first = h.getEphemeralFirst();
        hello.ephemeral_last = h.getEphemeralLast();
        hello.target_namespace = h.getTargetNamespace();
        out.body = std::move(hello);
        return out;
      }
      case cp::Response::STATE: {
        auto s = root.getState();
        State state;
        state.generation = s.getGeneration();
        auto digest = s.getDigest();
        if (digest.size() != state.digest.size()) throw DecodeError{"digest is not 32 bytes"};
        std::memcpy(state.digest.data(), digest.begin(), digest.size());
        state.tables = decode_tables(s.getTables());
        if (s.hasPendingConfirm()) state.pending_confirm = decode_pending(s.getPendingConfirm());
        state.unbound = s.getUnbound();
        out.body = std::move(state);
        return out;
      }
      case cp::Response::COMMIT:
        out.body = decode_commit_result(root.getCommit());
        return out;
      case cp::Response::WELCOME:
        out.body = Welcome{};
        return out;
      case cp::Response::STATS:
        out.body = decode_stats(root.getStats());
        return out;
      case cp::Response::CONFIRM: {
        auto c = root.getConfirm();
        out.body = ConfirmResult{c.getConfirmed(), c.getGeneration(),
                                 decode_text(c.getMessage(), kMaxTextBytes, "confirm message")};
        return out;
      }
      case cp::Response::HISTORY: {
        auto entries = root.getHistory();
        if (entries.size() > kMaxHistory) throw DecodeError{"too many history entries"};
        History history;
        for (auto e : entries) history.entries.push_back(decode_history_entry(e));
        out.body = std::move(history);
        return out;
      }
      case cp::Response::ERROR: {
        auto e = root.getError();
        auto code = static_cast<uint16_t>(e.getCode());
        if (code > static_cast<uint16_t>(kLastErrorCode)) {
          throw DecodeError{"unknown error code " + std::to_string(code)};
        }
        out.body = ProtocolError{static_cast<ErrorCode>(code),
                                 decode_text(e.getMessage(), kMaxTextBytes, "error message")};
        return out;
      }
    }
    throw DecodeError{"unknown response kind " +
                      std::to_string(static_cast<unsigned>(root.which()))};
  });
}

Sha256Digest digest_tables(const TableSet& tables) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::State>();
  encode_tables(tables, root.initTables(kPifCount));
  kj::Array<capnp::word> canonical = capnp::AnyStruct::Reader(root.asReader()).canonicalize();
  auto bytes = canonical.asBytes();
  return sha256(bytes.begin(), bytes.size());
}

std::string encode_state_blob(const StateBlob& blob) {
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::STATE_BLOB_MAGIC);
  root.setGeneration(blob.generation);
  encode_tables(blob.tables, root.initTables(kPifCount));
  if (blob.unconfirmed) {
    root.setUnconfirmed(true);
    root.setRollbackGeneration(blob.unconfirmed->rollback_generation);
    encode_tables(blob.unconfirmed->rollback_tables, root.initRollbackTables(kPifCount));
    root.setConfirmSeconds(blob.unconfirmed->seconds);
  }
  return to_frame(builder);
}

Result<StateBlob> decode_state_blob(const void* frame, size_t len) {
  // The header first, as for a control frame: the blob is not trusted.
  if (reinterpret_cast<uintptr_t>(frame) % alignof(capnp::word) != 0) {
    return Err(EBADMSG, "state blob is not 8-byte aligned");
  }
  FrameCheck check = check_frame(static_cast<const uint8_t*>(frame), len, kMaxControlMessageBytes);
  if (check.status != FrameStatus::kComplete || check.frame_bytes != len) {
    return Err(EBADMSG, "state blob is not one whole frame" +
                            (check.message.empty() ? std::string() : ": " + check.message));
  }
  return decode_frame<StateBlob>(frame, len, [](capnp::FlatArrayMessageReader& reader) {
    auto root = reader.getRoot<cp::StateBlob>();
    if (root.getMagic() != cp::STATE_BLOB_MAGIC) throw DecodeError{"state blob has a bad magic"};
    StateBlob out;
    out.generation = root.getGeneration();
    out.tables = decode_tables(root.getTables());
    if (root.getUnconfirmed()) {
      StateBlob::Unconfirmed u;
      u.rollback_generation = root.getRollbackGeneration();
      u.rollback_tables = decode_tables(root.getRollbackTables());
      u.seconds = root.getConfirmSeconds();
      out.unconfirmed = std::move(u);
    }
    return out;
  });
}

}  // namespace sluice::control
