// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
// with the real encoders: control frames from the codec, broker datagrams
// from the broker_wire.h structs, audit lines from the worker's formatter,
// pesto updates and hellos from pesto_wire.h.
// Run it once after a format changes, and commit the result:
//   cmake --build build --target fuzz_corpus_gen
//   build/bin/fuzz_corpus_gen tests/fuzz/corpus
// The output is deterministic (fixed times and values), so a rerun with an
// unchanged format changes no file. No gtest: a plain program.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/sha256.h"
#include "schema/broker_wire.h"
#include "schema/codec.h"
#include "schema/control.capnp.h"
#include "schema/pesto_wire.h"
#include "worker/audit.h"

namespace sluice {
namespace {

namespace cp = ::sluice::capnp_control;

/// 2026-11-24T17:03:11.123Z, the time of every audit seed.
constexpr int64_t kSeedMillis = 1795539791123;

std::string g_root;  // the corpus directory given on the command line

/// Writes `bytes` to ROOT/TARGET/NAME, creating the directories; exits on error.
void put(const std::string& target, const std::string& name, const std::string& bytes) {
  std::string dir = g_root + "/" + target;
  if (::mkdir(g_root.c_str(), 0755) != 0 && errno != EEXIST) std::perror(g_root.c_str());
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) std::perror(dir.c_str());
  std::string path = dir + "/" + name;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() ||
      std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
}

/// Returns the raw bytes of a trivially copyable struct.
template <typename T>
std::string raw(const T& value) {
  return std::string(reinterpret_cast<const char*>(&value), sizeof(value));
}

/// Returns an address parsed from text; exits on a typo.
Addr addr(const char* text) {
  Addr out{};
  if (!parse_addr(text, &out)) {
    std::fprintf(stderr, "bad address %s\n", text);
    std::exit(1);
  }
  return out;
}

/// Returns a table set with a rule of every shape in both tables.
TableSet sample_tables() {
  TableSet t;
  Rule a;
  a.dual_stack = true;
  a.first = 22;
  a.last = 80;
  a.to = 32;
  Rule b;
  b.listen = addr("192.0.2.1");
  b.ifname = "eth0";
  b.first = b.last = 5000;
  b.to = 6000;
  b.target = addr("192.0.2.5");
  b.proto = Proto::kUdp;
  b.weak = true;
  Rule c;
  c.listen = addr("::1");
  c.first = 8000;
  c.last = 8010;
  c.to = 9000;
  c.target = addr("2001:db8::5");
  t.of(Pif::kHost).rules = {a, b, c};
  Rule d;
  d.dual_stack = true;
  d.ifname = "lo";
  d.first = d.last = d.to = 20000;
  d.scan = true;
  t.of(Pif::kSplice).rules = {d};
  return t;
}

/// Returns tables the validator refuses: a conflict, port 0, an IPv4
/// listener to an IPv6 target, a SPLICE rule with an address.
TableSet invalid_tables() {
  TableSet t;
  Rule a;
  a.dual_stack = true;
  a.first = 1000;
  a.last = 2000;
  a.to = 1000;
  Rule b = a;
  b.dual_stack = false;
  b.listen = addr("127.0.0.1");
  b.first = b.last = b.to = 1500;
  Rule zero;
  zero.first = zero.last = zero.to = 0;
  Rule cross;
  cross.listen = addr("10.0.0.1");
  cross.first = cross.last = cross.to = 7000;
  cross.target = addr("::1");
  t.of(Pif::kHost).rules = {a, b, zero, cross};
  Rule splice;
  splice.listen = addr("10.0.0.2");
  splice.first = splice.last = splice.to = 3000;
  t.of(Pif::kSplice).rules = {splice};
  return t;
}

/// Returns `frame` (one standard-framed message of root type T) rebuilt in
/// segments of 8 words each, so that the segment table has many entries.
template <typename T>
std::string multi_segment(const std::string& frame) {
  std::vector<capnp::word> words(frame.size() / sizeof(capnp::word));
  std::memcpy(words.data(), frame.data(), frame.size());
  capnp::FlatArrayMessageReader reader(kj::arrayPtr(words.data(), words.size()));
  capnp::MallocMessageBuilder builder(8, capnp::AllocationStrategy::FIXED_SIZE);
  builder.setRoot(reader.getRoot<T>());
  kj::Array<capnp::word> flat = capnp::messageToFlatArray(builder);
  auto bytes = flat.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

/// Seeds of control_fuzzer: every request and response kind.
void control_seeds() {
  using namespace control;
  const std::string t = "control_fuzzer";
  auto req = [](uint64_t id, decltype(Request::body) body) {
    return encode_request(Request{id, std::move(body)});
  };
  auto resp = [](uint64_t id, decltype(Response::body) body) {
    return encode_response(Response{id, std::move(body)});
  };
  put(t, "req_hello", req(1, ClientHello{kProtocolVersion, "sluicectl 0.1.0"}));
  put(t, "req_get_state", req(2, GetState{}));
  put(t, "req_history", req(3, HistoryRequest{20}));
  CommitRequest commit{sample_tables(), 7, false, "open web", false};
  put(t, "req_commit", req(4, commit));
  put(t, "req_commit_multisegment", multi_segment<cp::Request>(req(4, commit)));
  put(t, "req_commit_dry_run", req(5, CommitRequest{invalid_tables(), 0, true, "naïve", true}));
  put(t, "req_pipelined",
      req(1, ClientHello{kProtocolVersion, "x"}) + req(2, GetState{}) + req(3, commit));

  ServerHello hello;
  hello.server_version = "sluiced 0.1.0";
  hello.rules_per_table = 4096;
  hello.listeners_per_table = 327680;
  hello.message_bytes = 4u << 20;
  hello.pifs = {{Pif::kHost, "HOST"}, {Pif::kSplice, "SPLICE"}};
  hello.ephemeral_first = 32768;
  hello.ephemeral_last = 60999;
  put(t, "resp_hello", resp(0, hello));
  State state{3, sha256("tables", 6), sample_tables()};
  put(t, "resp_state", resp(2, state));
  put(t, "resp_state_multisegment", multi_segment<cp::Response>(resp(2, state)));
  CommitResult applied;
  applied.applied = true;
  applied.generation = 8;
  applied.digest = sha256("after", 5);
  applied.kept = 1;
  applied.opened = 2;
  applied.rebound = 1;
  applied.duration_micros = 1500;
  put(t, "resp_commit_applied", resp(4, applied));
  CommitResult rejected;
  rejected.generation = 7;
  rejected.failures = {
      {FailureKind::kBindFailed, Pif::kHost, 0, "TCP [*]:22-80 => 32-90", 22, 98,
       "HOST rule 0 (TCP [*]:22-80 => 32-90), port 22: bind failed: EADDRINUSE"},
      {FailureKind::kPolicyDenied, Pif::kHost, 1, "UDP [192.0.2.1%eth0]:5000", 5000, 13,
       "denied by the bind policy \x1b[31mred\x1b[0m"},
      {FailureKind::kStale, Pif::kHost, -1, "", 0, 0, "the tables changed since generation 6"}};
  put(t, "resp_commit_rejected", resp(4, rejected));
  HistoryEntry entry;
  entry.sequence = 12;
  entry.unix_millis = kSeedMillis;
  entry.pid = 4242;
  entry.uid = 1000;
  entry.gid = 100;
  entry.comment = "open web \xe2\x80\x94 ticket #12";
  entry.generation_before = 7;
  entry.generation_after = 8;
  entry.added = {"HOST TCP [*]:80 => 80"};
  entry.removed = {"HOST TCP [*]:22 => 22", "SPLICE UDP [::1]:53 => 53"};
  entry.kept = 3;
  entry.opened = 1;
  entry.closed = 1;
  HistoryEntry stale = entry;
  stale.sequence = 13;
  stale.outcome = Outcome::kStale;
  stale.comment = "";
  put(t, "resp_history", resp(3, History{{entry, stale}}));
  put(t, "resp_error", resp(9, ProtocolError{ErrorCode::kOutOfOrder, "hello sent twice"}));
  put(t, "resp_welcome", resp(1, Welcome{}));
  // A whole conversation as sluicectl sees it: the Hello, the Welcome to its
  // own hello (request 1), then the answers to its requests 2, 3, ...
  put(t, "session",
      resp(0, hello) + resp(1, Welcome{}) + resp(2, state) + resp(3, History{{entry}}) +
          resp(4, applied) +
          resp(5, ProtocolError{ErrorCode::kTimeout, "the request took too long"}));
  // A one-word header claiming 2^32 segments: check_frame must refuse it.
  put(t, "frame_huge_segment_count", std::string("\xff\xff\xff\xff\x01\x00\x00\x00", 8));
}

/// Returns a ListenerSpec for `text` (an address), `port`, and options.
wire::ListenerSpec listener(wire::WireProto proto, const char* text, uint16_t port,
                            const char* ifname = "", bool dual_stack = false) {
  wire::ListenerSpec spec{};
  Addr a = addr(text);
  spec.proto = static_cast<uint8_t>(proto);
  spec.family =
      static_cast<uint8_t>(addr_is_v4(a) ? wire::WireFamily::kInet : wire::WireFamily::kInet6);
  spec.port = port;
  spec.flags = dual_stack ? wire::kListenerDualStack : 0;
  std::memcpy(spec.addr, a.data(), sizeof(spec.addr));
  std::strncpy(spec.ifname, ifname, sizeof(spec.ifname) - 1);
  return spec;
}

/// Seeds of broker_wire_fuzzer: a control byte (state, pad, fd count) and a
/// datagram, as broker_wire_fuzzer.cc describes.
void broker_seeds() {
  const std::string t = "broker_wire_fuzzer";
  const std::string await_hello(1, '\x00'), ready(1, '\x01'), ready_padded(1, '\x03');
  wire::HelloMsg hello{};
  hello.header = wire::header(wire::BrokerMsg::kHello, 1);
  hello.version = wire::kBrokerWireVersion;
  put(t, "hello", await_hello + raw(hello));
  put(t, "hello_out_of_state", ready + raw(hello));
  put(t, "hello_with_fd", std::string(1, '\x04') + raw(hello));

  wire::OpenListenersMsg open{};
  open.header = wire::header(wire::BrokerMsg::kOpenListeners, 2);
  open.entries[0] = listener(wire::WireProto::kTcp, "127.0.0.1", 8080);
  open.entries[1] = listener(wire::WireProto::kUdp, "::1", 53, "lo");
  open.entries[2] = listener(wire::WireProto::kTcp, "::", 80, "", true);
  open.entries[3] = listener(wire::WireProto::kTcp, "10.1.2.3", 22, "eth0");
  open.count = 4;
  put(t, "open_listeners_full", ready + raw(open));
  // The same request cut after its last entry; the pad bit restores the size.
  size_t used = offsetof(wire::OpenListenersMsg, entries) + 4 * sizeof(wire::ListenerSpec);
  put(t, "open_listeners_padded", ready_padded + raw(open).substr(0, used));
  wire::OpenListenersMsg privileged{};
  privileged.header = open.header;
  privileged.entries[0] = listener(wire::WireProto::kUdp, "0.0.0.0", 443);
  privileged.entries[1] = listener(wire::WireProto::kTcp, "fd00::1", 25, "veth-a");
  privileged.count = 2;
  used = offsetof(wire::OpenListenersMsg, entries) + 2 * sizeof(wire::ListenerSpec);
  put(t, "open_listeners_privileged", ready_padded + raw(privileged).substr(0, used));

  wire::PeerQueryMsg query{};
  query.header = wire::header(wire::BrokerMsg::kPeerQuery, 3);
  put(t, "peer_query", std::string(1, '\x05') + raw(query));  // ready, one fd
  put(t, "peer_query_without_fd", ready + raw(query));

  // SPLICE: listeners inside the target namespace, on its loopback or off it.
  wire::OpenListenersMsg splice{};
  splice.header = wire::header(wire::BrokerMsg::kOpenListeners, 5);
  splice.entries[0] = listener(wire::WireProto::kTcp, "::", 8080, "lo", true);
  splice.entries[0].flags |= wire::kListenerSplice;
  splice.entries[1] = listener(wire::WireProto::kUdp, "127.0.0.1", 53);
  splice.entries[1].flags |= wire::kListenerSplice;
  splice.entries[2] = listener(wire::WireProto::kTcp, "0.0.0.0", 80);  // HOST beside them
  splice.entries[3] = listener(wire::WireProto::kTcp, "::", 8081, "eth0", true);
  splice.entries[3].flags |= wire::kListenerSplice;  // off the loopback: refused
  splice.count = 4;
  used = offsetof(wire::OpenListenersMsg, entries) + 4 * sizeof(wire::ListenerSpec);
  put(t, "open_listeners_splice", ready_padded + raw(splice).substr(0, used));
  splice.count = 3;
  splice.entries[3] = {};
  put(t, "open_listeners_splice_on_loopback", ready_padded + raw(splice).substr(0, used));

  // Fresh sockets for the host-side connections of SPLICE rules.
  wire::OpenSocketsMsg sockets{};
  sockets.header = wire::header(wire::BrokerMsg::kOpenSockets, 6);
  sockets.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
  sockets.proto = static_cast<uint8_t>(wire::WireProto::kUdp);
  sockets.count = 32;
  put(t, "open_sockets", ready + raw(sockets));
  sockets.count = wire::kMaxSocketsPerMessage + 1;
  put(t, "open_sockets_too_many", ready + raw(sockets));

  // The worker's status for sluiced's service-manager notifications.
  wire::WorkerStatusMsg status{};
  status.header = wire::header(wire::BrokerMsg::kWorkerStatus, 7);
  status.generation = 42;
  status.listeners = 3;
  put(t, "worker_status", ready + raw(status));
  status.reserved = 1;
  put(t, "worker_status_reserved", ready + raw(status));

  // The declaration of the initial rules' privileged ports, right after
  // Hello (bit 7 of the control byte: the host awaits it).
  const std::string await_initial(1, '\x80'), await_initial_padded(1, '\x82');
  wire::InitialPortsMsg initial{};
  initial.header = wire::header(wire::BrokerMsg::kInitialPorts, 2);
  initial.flags = wire::kInitialPortsLast;
  initial.grants[0].listener = listener(wire::WireProto::kTcp, "127.0.0.1", 80);
  initial.grants[0].last_port = 80;
  initial.grants[1].listener = listener(wire::WireProto::kUdp, "::", 1, "", true);
  initial.grants[1].last_port = 1023;
  initial.grants[2].listener = listener(wire::WireProto::kTcp, "fd00::1", 22, "eth0");
  initial.grants[2].last_port = 25;
  initial.count = 3;
  used = offsetof(wire::InitialPortsMsg, grants) + 3 * sizeof(wire::PortGrant);
  put(t, "initial_ports", await_initial_padded + raw(initial).substr(0, used));
  put(t, "initial_ports_out_of_state", ready_padded + raw(initial).substr(0, used));
  wire::InitialPortsMsg none{};
  none.header = initial.header;
  none.flags = wire::kInitialPortsLast;
  put(t, "initial_ports_none", await_initial + raw(none));

  // The worker's state for a restart: two fds (bits 2..6 of the control byte
  // hold 2), then one with the fd of a PeerQuery only; a restarted worker's
  // Resume out of its state.
  wire::StoreStateMsg store{};
  store.header = wire::header(wire::BrokerMsg::kStoreState, 9);
  store.generation = 3;
  store.listeners = 2;
  put(t, "store_state", std::string(1, static_cast<char>(1 | (2 << 2))) + raw(store));
  put(t, "store_state_one_fd", std::string(1, static_cast<char>(1 | (1 << 2))) + raw(store));
  wire::ResumeMsg resume{};
  resume.header = wire::header(wire::BrokerMsg::kResume, 3);
  put(t, "resume_out_of_state", ready + raw(resume));
}

/// Returns an audit record: `outcome`, generations `before` -> `after`.
CommitRecord record(control::Outcome outcome, uint64_t before, uint64_t after) {
  CommitRecord r;
  r.outcome = outcome;
  r.peer.pid = 4242;
  r.peer.uid = 1000;
  r.peer.gid = 100;
  r.comment = "open web";
  r.generation_before = before;
  r.generation_after = after;
  r.digest_before = sha256("a", 1);
  r.digest_after = sha256(outcome == control::Outcome::kApplied ? "b" : "a", 1);
  r.added = {"HOST TCP [*]:80 => 80"};
  r.removed = {"HOST TCP [*]:22 => 22"};
  r.kept = 3;
  r.opened = 1;
  r.closed = 1;
  r.duration_micros = 1234;
  return r;
}

/// Returns a run's start record: run id bytes `tag`.., sluiced pid 4241,
/// and `link`. Not newline_first: the seeds add such a "\n" themselves.
std::string start_line(const AuditLink& link, uint8_t tag, int64_t millis) {
  AuditRunStart start;
  for (size_t i = 0; i < start.run.size(); ++i) start.run[i] = static_cast<uint8_t>(tag + i);
  start.pid = 4241;
  start.uid = 1000;
  start.gid = 100;
  start.link = link;
  return AuditLog(-1).format_start(start, millis);
}

/// Returns one run of `records` joined: a start record with `link` (seq 1),
/// then the records, seq 2...
std::string chain(const std::vector<CommitRecord>& records, const AuditLink& link,
                  uint8_t tag = 0x11) {
  AuditLog formatter(-1);
  std::string out = start_line(link, tag, kSeedMillis);
  Sha256Digest prev = sha256(out.data(), out.size());
  for (size_t i = 0; i < records.size(); ++i) {
    std::string line = formatter.format_line(
        records[i], i + 2, kSeedMillis + static_cast<int64_t>(i + 1) * 1000, prev);
    prev = sha256(line.data(), line.size());
    out += line;
  }
  return out;
}

/// Returns the link of a run to the last line of `log` (which ends in "\n").
AuditLink link_after(const std::string& log) {
  size_t start = log.rfind('\n', log.size() - 2);
  start = start == std::string::npos ? 0 : start + 1;
  AuditLink link;
  link.tail = AuditTail::kLinked;
  link.prev = sha256(log.data() + start, log.size() - start);
  return link;
}

/// Seeds of audit_verify_fuzzer: intact logs of every outcome and of linked
/// runs, and damaged ones (an edit, a cut line, a cut head, a deleted or
/// re-chained earlier run, an unreadable tail, an empty file).
void audit_seeds() {
  using control::Outcome;
  const std::string t = "audit_verify_fuzzer";
  AuditLink empty;
  empty.tail = AuditTail::kEmpty;
  std::string intact = chain({record(Outcome::kApplied, 0, 1), record(Outcome::kApplied, 1, 2),
                              record(Outcome::kDryRun, 2, 2)},
                             empty);
  put(t, "intact", intact);
  CommitRecord rejected = record(Outcome::kRejected, 2, 2);
  rejected.comment = "tab\there, quote \" and \x1b escape, caf\xc3\xa9";
  rejected.failures = {{control::FailureKind::kConflict, Pif::kHost, 1, "TCP [*]:80 => 80", 0, 0,
                        "HOST rules 0 and 1 both listen on port 80"},
                       {control::FailureKind::kBindFailed, Pif::kSplice, 0, "UDP [::1]:53 => 53",
                        53, 98, "bind failed: EADDRINUSE"}};
  CommitRecord stale = record(Outcome::kStale, 5, 5);
  stale.added.clear();
  stale.removed.clear();
  stale.comment.clear();
  put(t, "failures_and_escapes",
      chain({record(Outcome::kApplied, 1, 2), rejected, stale, record(Outcome::kApplied, 2, 3)},
            empty));
  std::string second = chain({record(Outcome::kApplied, 0, 1)}, link_after(intact), 0x22);
  put(t, "two_runs", intact + second);
  put(t, "deleted_first_run", second);
  std::string rechained = chain({record(Outcome::kApplied, 0, 1), record(Outcome::kRejected, 1, 1),
                                 record(Outcome::kDryRun, 1, 1)},
                                empty);
  put(t, "rechained_first_run", rechained + second);
  put(t, "truncated_last_line", intact.substr(0, intact.size() - 40));
  std::string edited = intact;
  size_t at = edited.find("open web", edited.find('\n'));
  edited.replace(at, 8, "shut web");
  put(t, "edited_second_line", edited);
  size_t first_nl = intact.find('\n');
  put(t, "starts_inside_a_run", intact.substr(first_nl + 1));
  // A run that found the last line cut short: it ended that line, and says
  // why it could not use it.
  std::string cut = intact.substr(0, intact.size() - 40) + "\n";
  AuditLink unreadable;
  unreadable.tail = AuditTail::kUnreadable;
  unreadable.prev = link_after(cut).prev;
  unreadable.error =
      "the file did not end with a newline: its last line (300 bytes) was cut short by a crash "
      "or a full disk during a write, or was edited; this run added the newline";
  put(t, "unreadable_tail", cut + chain({record(Outcome::kApplied, 0, 1)}, unreadable, 0x33));
  AuditLink none;  // the sink was sluiced's stderr: nothing to link to
  put(t, "stderr_runs",
      chain({record(Outcome::kApplied, 0, 1)}, none) +
          chain({record(Outcome::kApplied, 0, 1)}, none, 0x44));
  put(t, "empty", "");
}

/// Seeds of option_file_fuzzer: option files as a person writes them.
void option_file_seeds() {
  const std::string t = "option_file_fuzzer";
  put(t, "basic",
      "# forwarding for the web tier\n"
      "-t 22 -A\n"
      "\n"
      "  -u 53   # DNS\n"
      "--comment 'fix #12 now'\n");
  put(t, "delete_and_clear",
      "-A -t 8080:80\n-D -t 85\n-C SPLICE\n-T 5432\n--dry-run --json\n--timeout=30\n");
  put(t, "quotes",
      "--comment \"it's \"'\"quoted\"'\n-t '127.0.0.1/8080:80' -u\t\"[::1]/53\"\r\n-s -d\n");
  put(t, "specs", "-t all,~22 -u auto\n-T none\n-t 192.0.2.1%eth0/1000-2000:3000-4000\n");
  put(t, "errors", "-t\n22\n--history 5\n");
  put(t, "unclosed_quote", "-t 22\n--comment 'oops\n");
}

/// Seeds of spec_fuzzer: a selector byte (option and context, see
/// spec_fuzzer.cc), then a spec.
void spec_seeds() {
  const std::string t = "spec_fuzzer";
  const char* specs[] = {"22",
                         "22-80:32-90",
                         "22,25",
                         "192.0.2.1/22",
                         "%eth0/22",
                         "2000-5000,~3000-3010",
                         "~20000-20010",
                         "all",
                         "auto",
                         "8000-8010,auto",
                         "0.0.0.0/5000:192.0.2.5/6000",
                         "[::1]/5000:[::2]/6000",
                         "192.0.2.1%eth0/22",
                         "none",
                         "65535",
                         "[::]/8080:fd00::5/80",
                         "::1/15001:::1/16001",
                         "15100-15101,~15100,15100",
                         "22:2001:db8::1"};
  for (size_t i = 0; i < sizeof(specs) / sizeof(specs[0]); ++i) {
    // Vary the option letter (low two bits) and the context (next three).
    char selector = static_cast<char>((i & 3) | ((i % 6) << 2));
    put(t, "spec_" + std::to_string(i), std::string(1, selector) + specs[i]);
  }
}

/// Returns the pesto tables of `tables`: each rule with its canonical record.
std::vector<pesto::WireTable> pesto_tables(const TableSet& tables, uint32_t caps) {
  std::vector<pesto::WireTable> out;
  for (const Table& table : tables.tables) {
    pesto::WireTable t{table.pif, caps, {}};
    for (const Rule& rule : table.rules) t.rules.push_back({rule, pesto::encode_rule(rule)});
    out.push_back(std::move(t));
  }
  return out;
}

/// Returns the bytes of a pesto record.
std::string record_bytes(const pesto::RuleRecord& record) {
  return std::string(reinterpret_cast<const char*>(record.data()), record.size());
}

/// Seeds of pesto_wire_fuzzer: a control byte (where the update is split,
/// see pesto_wire_fuzzer.cc), then an update or a hello.
void pesto_seeds() {
  const std::string t = "pesto_wire_fuzzer";
  const std::string whole(1, '\xff'), half(1, '\x80'), early(1, '\x10');
  std::vector<pesto::WireTable> tables = pesto_tables(sample_tables(), 0);
  const std::string update = pesto::encode_update(tables);
  put(t, "update_both", half + update);
  put(t, "update_both_whole", whole + update);
  put(t, "update_splice_first", early + pesto::encode_update({tables[1], tables[0]}));
  put(t, "update_empty", whole + std::string(1, '\0'));
  put(t, "update_host_emptied", half + pesto::encode_update({{Pif::kHost, 0, {}}}));
  // 0.0.0.0/8080:0.0.0.0/80 as pesto spells it: the target ::ffff:0.0.0.0.
  Rule v4;
  v4.listen = addr("0.0.0.0");
  v4.first = v4.last = 8080;
  v4.to = 80;
  pesto::RuleRecord v4_record = pesto::encode_rule(v4);
  v4_record[16 + 10] = v4_record[16 + 11] = 0xff;
  pesto::WireTable v4_table{Pif::kHost, 0, {{v4, v4_record}}};
  put(t, "update_v4_default_target", half + pesto::encode_update({v4_table}));
  pesto::WireTable full{Pif::kSplice, 0, {}};
  for (uint16_t port = 1; full.rules.size() < pesto::kMaxRules; port += 7) {
    Rule r;
    r.dual_stack = true;
    r.first = r.last = r.to = port;
    full.rules.push_back({r, pesto::encode_rule(r)});
  }
  put(t, "update_full_table", half + pesto::encode_update({full}));
  // Refusals: trailing bytes, TAP, a count above 255, a name not padded.
  put(t, "update_trailing", half + update + std::string(1, '\x01'));
  put(t, "update_tap", early + std::string("\x02\x00\x00\x00\x00\x00", 6));
  put(t, "update_count_256", early + std::string("\x01\x00\x00\x01\x00\x00", 6));
  std::string bad = record_bytes(tables[0].rules[1].record);
  bad[32 + 6] = 'x';  // after "eth0" and its NUL
  put(t, "update_ifname_not_padded", half + std::string("\x01\x00\x00\x00\x01", 5) + bad + '\0');

  std::vector<pesto::WireTable> offered = pesto_tables(sample_tables(), pesto::kCapAll);
  const std::string hello = pesto::encode_hello(offered);
  put(t, "hello_both", half + hello);
  put(t, "hello_empty", half + pesto::encode_hello({}));
  std::string v1 = hello;
  v1[11] = 1;
  put(t, "hello_version_1", half + v1);
  put(t, "hello_v4_default_target", half + pesto::encode_hello({v4_table}));
}

/// Seeds of state_blob_fuzzer: blobs as the worker writes them (empty, one
/// rule, both tables with every field), one cut short, one with a wrong magic.
void state_blob_seeds() {
  const std::string t = "state_blob_fuzzer";
  control::StateBlob empty;
  put(t, "empty_tables", control::encode_state_blob(empty));
  control::StateBlob one;
  one.generation = 7;
  Rule r;
  r.listen = addr_v4(127, 0, 0, 1);
  r.first = r.last = 8080;
  r.to = 8000;
  one.tables.of(Pif::kHost).rules = {r};
  put(t, "one_rule", control::encode_state_blob(one));
  control::StateBlob both = one;
  Rule s = r;
  s.proto = Proto::kUdp;
  s.dual_stack = true;
  s.listen = Addr{};
  s.ifname = "lo";
  s.weak = true;
  s.scan = true;
  s.first = 5000;
  s.last = 5010;
  both.tables.of(Pif::kSplice).rules = {s};
  both.generation = UINT64_MAX;
  const std::string full = control::encode_state_blob(both);
  put(t, "both_tables", full);
  put(t, "cut_short", full.substr(0, full.size() / 2));
  capnp::MallocMessageBuilder builder;
  auto root = builder.initRoot<cp::StateBlob>();
  root.setMagic(cp::MAGIC);  // the control protocol's, not the blob's
  auto words = capnp::messageToFlatArray(builder);
  put(t, "wrong_magic",
      std::string(reinterpret_cast<const char*>(words.asBytes().begin()), words.asBytes().size()));
}

}  // namespace
}  // namespace sluice

/// Writes every seed corpus under argv[1]. Returns 0, or 1 on a write error.
int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR (normally tests/fuzz/corpus)\n", argv[0]);
    return 2;
  }
  sluice::g_root = argv[1];
  sluice::control_seeds();
  sluice::broker_seeds();
  sluice::audit_seeds();
  sluice::option_file_seeds();
  sluice::spec_seeds();
  sluice::pesto_seeds();
  sluice::state_blob_seeds();
  return 0;
}
