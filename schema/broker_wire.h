// The worker <-> broker protocol: every message that crosses that boundary.
//
// Transport: a SOCK_SEQPACKET socketpair, one message per datagram. Every
// message is one fixed-layout struct of a static_asserted size, starts with a
// WireHeader whose `type` is a BrokerMsg, and carries a known number of fds.
// The broker checks the exact length, the type and its state before it looks
// at anything else, and exits on anything it did not permit: a worker that
// sends a malformed request is compromised. No Cap'n Proto here: the broker
// includes this header and links nothing that parses.
//
// Exchange (worker = client side in worker/broker_client.*, broker = host side
// in broker/broker_host.*):
//   worker -> broker  Hello                       (once, first)
//   broker -> worker  HelloReply
//   worker -> broker  InitialPorts {count, flags, grants[count]}  (one or more,
//                     right after HelloReply; the last has kInitialPortsLast;
//                     no reply): the privileged ports of the initial rules
//   worker -> broker  OpenListeners  {count, entries[count]}          (any number)
//   broker -> worker  ListenersOpened {count, status[count]} + one fd per
//                     entry whose status is kStatusOk, in entry order
//   worker -> broker  PeerQuery + the fd of one accepted control connection
//                                                                    (any number)
//   broker -> worker  PeerReply {the peer's pid, uid, gid as the broker sees
//                     them, and the access the control policy grants}
//   worker -> broker  OpenSockets {family, proto, count}   (only with a target
//                     namespace; any number)
//   broker -> worker  SocketsOpened {count, status} + `count` fresh sockets made
//                     in sluiced's network namespace: unbound, unconnected,
//                     non-blocking, close-on-exec
//   worker -> broker  WorkerStatus {generation, listeners} (any number, no
//                     reply): the tables in force are served; sent once the
//                     initial commit is in force, on every change and every
//                     kWorkerStatusIntervalMs as a heartbeat (readiness and
//                     the watchdog under systemd, broker/sd_notify.h)
//   worker -> broker  StoreState {generation, listeners} + 2 sealed memfds (no
//                     reply, any number): the blob of the tables in force and
//                     the socket cookies of every listener the worker holds;
//                     sluiced closes its escrowed copies of the others
//   worker -> broker  Resume        (a restarted worker only, once, first
//                     request after InitialPorts)
//   broker -> worker  ResumeReply {blob_bytes, listeners} + the blob (or none)
//   worker -> broker  ReclaimListeners (after ResumeReply, until the last)
//   broker -> worker  ListenersReclaimed {count, flags, specs} + one fd per spec
//
// A restart (docs/ARCHITECTURE.md "Worker restarts"): sluiced keeps its own
// reference to every listener it issued (the escrow) and the worker's last
// blob. A new worker learns in HelloReply (kBrokerResume) that there is
// something to take over, asks for it with Resume and ReclaimListeners, and
// treats the blob as untrusted input. sluiced starts workers through its
// launcher (broker/worker_launcher.h), on another private channel:
//   sluiced -> launcher LaunchWorker + the policy text to hand to the worker
//   launcher -> sluiced WorkerLaunched {status, pid} + the worker's pidfd and
//                       sluiced's end of its channel (none when status != 0)
// Requests are answered one at a time, in order; the worker pipelines them.
// InitialPorts is a statement, not a request: the broker records it and
// answers nothing, and it is permitted only between Hello and the first
// request, exactly once (see InitialPortsMsg for why).
//
// With a target namespace (sluiced --netns), sluiced also runs a namespace
// helper (broker/namespace_helper.h): a fork of sluiced inside the target
// namespace that opens the SPLICE table's listeners there. Its channel is a
// second SOCK_SEQPACKET socketpair, private to sluiced, with the same structs:
//   helper -> sluiced HelperReady {version, flags, unprivileged_port_start}
//                     (once, first: what the kernel of the target namespace
//                     allows it)
//   sluiced -> helper OpenListeners (the SPLICE entries of one worker request)
//   helper -> sluiced ListenersOpened + one fd per kStatusOk entry
//
// On SIGHUP, with --policy, sluiced re-reads the policy file through its
// policy reader (broker/policy_reader.h), a fork of sluiced with no
// capabilities, on a third private SOCK_SEQPACKET socketpair:
//   sluiced -> reader PolicyRead                       (one at a time)
//   reader -> sluiced PolicyText {status, length, error} + one sealed memfd
//                     of the text, names already resolved to numbers, when
//                     the status is kPolicyTextOk
// and, once sluiced has parsed and put the new policy in force, tells the
// worker, unasked, between any two replies:
//   broker -> worker  PolicyReload {length} + the same sealed memfd
//                     (the worker tells it from a reply by its type)
// or, when the reload failed (the reader's error, or sluiced's own), so that
// the worker records it in the audit log:
//   broker -> worker  PolicyReloadFailed {error}, no fd, unasked as well
// and, with --netns PID, once the process it names has exited (the
// container stopped), so that --stats can say so; again to every worker
// started after it:
//   broker -> worker  TargetExited {}, no fd, unasked as well
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "schema/model.h"

namespace sluice::wire {

/// Protocol version. Bumped on any layout change; Hello refuses a mismatch
/// (both binaries come from one build, so a mismatch is a packaging error).
inline constexpr uint32_t kBrokerWireVersion = 8;
/// "SLCB" in little-endian: catches a peer that speaks something else entirely.
inline constexpr uint32_t kBrokerWireMagic = 0x42434c53;

/// Fixed fd numbers in the worker, set by the broker before exec. Fixed numbers
/// let the worker close_range() everything else without being told what to keep.
inline constexpr int kWorkerFdBroker = 3;   // SOCK_SEQPACKET to the broker
inline constexpr int kWorkerFdControl = 4;  // listening UNIX stream control socket
inline constexpr int kWorkerFdAudit = 5;    // append-only audit sink
/// The administrator's policy file as sluiced read it: a read-only memfd
/// holding its text (empty without --policy), parsed by the worker with
/// policy/policy_file.h after its sandbox is up. The worker enforces the
/// `target` lines and pre-checks the `bind` lines so that denials name their
/// line; the broker enforces `bind` and decides `control` itself.
inline constexpr int kWorkerFdPolicy = 6;
/// The listening UNIX stream socket of --pesto-socket (pesto's protocol v2,
/// schema/pesto_wire.h), or /dev/null when sluiced was not given one.
inline constexpr int kWorkerFdPesto = 7;
/// The --audit-log FILE once more, opened read-only by sluiced (the same
/// file as kWorkerFdAudit: sluiced checks device and inode), or /dev/null
/// when the audit sink is sluiced's stderr. Before its sandbox the worker
/// reads the file's last line from it, then closes it; inside the sandbox it
/// parses that line and links its run's start record to it
/// (worker/audit_tail.h). sluiced never reads the file.
inline constexpr int kWorkerFdAuditTail = 8;
inline constexpr int kWorkerFirstFreeFd = 9;
/// Auto-scan (worker/port_scan.h) reads /proc/net/{tcp,tcp6,udp,udp6} of
/// both sides, in that order, each side on a block of four fixed fds:
///   - kWorkerFdScanFirst (16-19): the target namespace's, which HOST scan
///     rules follow. Not set by sluiced: the worker opens its own (it runs in
///     the target namespace) before its sandbox and moves them there;
///   - kWorkerFdHostScanFirst (20-23): sluiced's side's, which SPLICE scan
///     rules follow. sluiced opens its own /proc/self/net files (in its own
///     network namespace, before it forks the worker, only with --netns) and
///     puts them there; it never reads them. A file that does not exist
///     (tcp6 and udp6 without IPv6) leaves its number closed.
/// The two blocks make one block of eight aligned on eight, 16 to 23, which
/// one masked comparison (fd & ~7 == 16) admits exactly: the worker's filter
/// allows `pread64` there and nowhere else. fds 0 to 8 are sluiced's, and 9
/// to 15 stay free (the first block aligned on eight above 8 starts at 16).
inline constexpr int kWorkerFdScanFirst = 16;
inline constexpr int kWorkerFdHostScanFirst = 20;
inline constexpr int kWorkerFdScanCount = 4;  // files per side
/// The first fd above both blocks.
inline constexpr int kWorkerFdScanEnd = kWorkerFdHostScanFirst + kWorkerFdScanCount;
/// The mask of the one comparison that admits both blocks: fd & mask == kWorkerFdScanFirst.
inline constexpr uint32_t kWorkerFdScanMask = ~static_cast<uint32_t>(2 * kWorkerFdScanCount - 1);
static_assert(kWorkerFdScanFirst >= kWorkerFirstFreeFd && kWorkerFdScanCount == 4 &&
              kWorkerFdScanFirst % (2 * kWorkerFdScanCount) == 0 &&
              kWorkerFdHostScanFirst == kWorkerFdScanFirst + kWorkerFdScanCount);

/// The worker's argv (its rule specs and limits) is declared in
/// schema/worker_args.h.

enum class BrokerMsg : uint32_t {
  kHello = 1,            // worker -> broker, 0 fds
  kHelloReply = 2,       // broker -> worker, 0 fds
  kOpenListeners = 3,    // worker -> broker, 0 fds
  kListenersOpened = 4,  // broker -> worker, one fd per kStatusOk entry
  kPeerQuery = 5,        // worker -> broker, exactly 1 fd
  kPeerReply = 6,        // broker -> worker, 0 fds
  kInitialPorts = 7,     // worker -> broker, 0 fds, no reply
  kOpenSockets = 8,      // worker -> broker, 0 fds
  kSocketsOpened = 9,    // broker -> worker, `count` fds
  kHelperReady = 10,     // namespace helper -> sluiced, 0 fds (never from a worker)
  kWorkerStatus = 11,    // worker -> broker, 0 fds, no reply
  // Worker restarts: 12-19.
  kStoreState = 12,          // worker -> broker, exactly 2 fds, no reply
  kResume = 13,              // worker -> broker, 0 fds
  kResumeReply = 14,         // broker -> worker, 1 fd when blob_bytes != 0, else 0
  kReclaimListeners = 15,    // worker -> broker, 0 fds
  kListenersReclaimed = 16,  // broker -> worker, `count` fds
  kLaunchWorker = 17,        // sluiced -> launcher, exactly 1 fd (never from a worker)
  kWorkerLaunched = 18,      // launcher -> sluiced, 2 fds when status is 0 (never from a worker)
  kPolicyReload = 20,        // broker -> worker, exactly 1 fd, unasked, no reply
  kPolicyRead = 21,          // sluiced -> policy reader, 0 fds (never to or from a worker)
  kPolicyText = 22,          // policy reader -> sluiced, 1 fd when ok (never from a worker)
  kPolicyReloadFailed = 23,  // broker -> worker, 0 fds, unasked, no reply
  kTargetExited = 24,        // broker -> worker, 0 fds, unasked, no reply
};

/// Limit: entries per OpenListeners. The reply carries one fd per entry and
/// the kernel accepts at most 253 fds in one SCM_RIGHTS message (SCM_MAX_FD).
inline constexpr uint32_t kMaxListenersPerMessage = 253;

/// Status of one entry in ListenersOpened: 0 is success, 1..4095 is the errno
/// the kernel returned (the kernel never returns an errno above 4095,
/// MAX_ERRNO), and kStatusPolicyDenied is a refusal by the bind policy, which
/// can therefore never be confused with a kernel errno.
inline constexpr int32_t kStatusOk = 0;
inline constexpr int32_t kStatusMaxErrno = 4095;
inline constexpr int32_t kStatusPolicyDenied = 0x10000;

enum class WireProto : uint8_t { kTcp = 6, kUdp = 17 };      // IPPROTO_* values
enum class WireFamily : uint8_t { kInet = 2, kInet6 = 10 };  // AF_* values

/// Listener flags. Any bit outside kListenerFlagMask is a malformed request.
inline constexpr uint32_t kListenerDualStack = 1u << 0;  // AF_INET6 [::] with V6ONLY=0
/// A listener of the SPLICE table: opened inside the target namespace by
/// sluiced's namespace helper. Permitted only when sluiced has a target
/// namespace, and only on the namespace's loopback: bound to `lo`, or to a
/// loopback address (see kListenerSpliceIfName).
inline constexpr uint32_t kListenerSplice = 1u << 1;
/// A rebind: this listener replaces one sluiced issued on the same port and
/// protocol (and table), which still listens and clashes with it in the
/// kernel (127.0.0.1:80 giving way to 0.0.0.0:80, say). sluiced sets
/// SO_REUSEPORT on its copies of every listener it issued on that port and on
/// the new socket before bind, so that the new one binds while the old one
/// still serves: no moment without a listener, in which another user's
/// process could take the port. The kernel shares a port that way only
/// among sockets of one owner, so no other user's socket can join. The flag
/// is an instruction for that open only: it is not part of the listener's
/// identity (grants, escrow, fd store).
inline constexpr uint32_t kListenerReplaces = 1u << 2;
inline constexpr uint32_t kListenerFlagMask =
    kListenerDualStack | kListenerSplice | kListenerReplaces;
/// The interface a SPLICE listener binds to: the target namespace's loopback,
/// where pasta's -T/-U listen. A listener there hears only the namespace's
/// own processes, never the container's network: an outbound rule must not
/// expose this side's loopback services to whoever reaches the container.
inline constexpr char kListenerSpliceIfName[] = "lo";

/// Limit: interface name length including the NUL, IFNAMSIZ on Linux: the
/// model's kMaxIfNameLen and its NUL.
inline constexpr size_t kIfNameSize = kMaxIfNameLen + 1;

struct WireHeader {
  uint32_t magic;     // kBrokerWireMagic
  uint32_t type;      // a BrokerMsg
  uint64_t sequence;  // echoed in the reply; lets the worker pipeline requests
};
static_assert(sizeof(WireHeader) == 16);

/// Returns the header of a message of `type` with `sequence` (a request's
/// own, or the request's echoed in its reply), with the magic number. Every
/// message either side builds starts with one of these. Cannot fail.
constexpr WireHeader header(BrokerMsg type, uint64_t sequence) noexcept {
  return WireHeader{kBrokerWireMagic, static_cast<uint32_t>(type), sequence};
}

struct HelloMsg {
  WireHeader header;  // type kHello
  uint32_t version;   // kBrokerWireVersion
  uint32_t reserved;  // must be 0
};
static_assert(sizeof(HelloMsg) == 24);

/// Facts the broker tells the worker so that the worker can pre-check the bind
/// policy and report a denial clearly before asking.
inline constexpr uint32_t kBrokerHasBindCap = 1u << 0;  // holds CAP_NET_BIND_SERVICE
/// sluiced has a target namespace and its namespace helper runs: SPLICE
/// listeners (kListenerSplice) and OpenSockets are served.
inline constexpr uint32_t kBrokerSpliceServed = 1u << 1;
/// The namespace helper holds CAP_NET_BIND_SERVICE in the target namespace
/// (always, for a namespace owned by sluiced's user).
inline constexpr uint32_t kBrokerSpliceHasBindCap = 1u << 2;
/// A previous worker died: sluiced holds listeners and/or a blob for this
/// one, which asks for them with Resume right after InitialPorts.
inline constexpr uint32_t kBrokerResume = 1u << 3;
inline constexpr uint32_t kBrokerFlagMask =
    kBrokerHasBindCap | kBrokerSpliceServed | kBrokerSpliceHasBindCap | kBrokerResume;
struct HelloReplyMsg {
  WireHeader header;                        // type kHelloReply
  uint32_t version;                         // kBrokerWireVersion
  uint32_t flags;                           // kBroker*
  uint32_t unprivileged_port_start;         // net.ipv4.ip_unprivileged_port_start here
  uint32_t splice_unprivileged_port_start;  // the same in the target namespace, or 0
};
static_assert(sizeof(HelloReplyMsg) == 32);

/// One listening socket to open. The address is 16 bytes; IPv4 is given
/// v4-mapped (::ffff:a.b.c.d) with family kInet.
struct ListenerSpec {
  uint8_t proto;             // WireProto
  uint8_t family;            // WireFamily
  uint16_t port;             // host byte order, 1..65535
  uint32_t flags;            // kListener*
  uint8_t addr[16];          // network byte order
  char ifname[kIfNameSize];  // NUL-terminated, empty for none
};
static_assert(sizeof(ListenerSpec) == 40);
static_assert(std::is_trivially_copyable_v<ListenerSpec>);

struct OpenListenersMsg {
  WireHeader header;                              // type kOpenListeners
  uint32_t count;                                 // 1..kMaxListenersPerMessage
  uint32_t reserved;                              // 0
  ListenerSpec entries[kMaxListenersPerMessage];  // entries past `count` are all zero
};
static_assert(sizeof(OpenListenersMsg) == 24 + 40 * kMaxListenersPerMessage);

struct ListenersOpenedMsg {
  WireHeader header;                        // type kListenersOpened, sequence of the request
  uint32_t count;                           // equals the request's count
  uint32_t fd_count;                        // number of kStatusOk entries == fds attached
  int32_t status[kMaxListenersPerMessage];  // per entry: kStatusOk, errno, or kStatusPolicyDenied
  uint32_t reserved;                        // 0, keeps the size a multiple of 8
};
static_assert(sizeof(ListenersOpenedMsg) == 24 + 4 * kMaxListenersPerMessage + 4);

/// Who is on the other end of a control connection. The worker lives in its
/// own user namespace, where SO_PEERCRED reads every id it does not map as
/// the overflow id 65534, so it asks the broker, which sees the real ids. The
/// attached fd is the accepted connection; the broker only calls getsockopt
/// (SO_PEERCRED, SO_PEERGROUPS) on it, never reads or writes it, and closes
/// its copy before replying.
struct PeerQueryMsg {
  WireHeader header;     // type kPeerQuery
  uint32_t reserved[2];  // 0
};
static_assert(sizeof(PeerQueryMsg) == 24);

/// PeerReply access values (policy/control_policy.h ControlAccess).
inline constexpr uint32_t kAccessNone = 0;
inline constexpr uint32_t kAccessRead = 1;
inline constexpr uint32_t kAccessCommit = 2;

/// The answer to a PeerQuery. `status` is 0, or the errno of the getsockopt
/// that failed (ENOTSOCK: not a socket; ERANGE: the peer has more than
/// kMaxPeerGroups supplementary groups), and access is then kAccessNone. The
/// ids are the peer's whenever SO_PEERCRED could be read, so that a refusal
/// for its groups still names it; they are 0 only when SO_PEERCRED itself
/// failed. `line` is the policy line that decided, 0 for the default policy,
/// when no line matched, or on a failure.
struct PeerReplyMsg {
  WireHeader header;  // type kPeerReply, sequence of the query
  int32_t status;     // 0 or an errno (1..kStatusMaxErrno)
  int32_t pid;        // in the broker's pid namespace (for logs and audit)
  uint32_t uid;       // in the broker's user namespace
  uint32_t gid;
  uint32_t access;  // kAccessNone, kAccessRead or kAccessCommit
  uint32_t line;    // 0, or the deciding `control` line's number
};
static_assert(sizeof(PeerReplyMsg) == 40);

/// One range of privileged ports that an initial rule listens on: the rule's
/// protocol, address, interface and dual-stack flag as in ListenerSpec, and
/// its ports from `listener.port` to `last_port`, cut at the broker's
/// unprivileged_port_start (every port of a grant lies below it).
struct PortGrant {
  ListenerSpec listener;  // port: the first port of the range
  uint16_t last_port;     // listener.port <= last_port < unprivileged_port_start
  uint16_t reserved16;    // 0
  uint32_t reserved;      // 0
};
static_assert(sizeof(PortGrant) == 48);
static_assert(std::is_trivially_copyable_v<PortGrant>);

/// Limit: grants per InitialPorts message. 200 grants (9,624 bytes) keep the
/// message below OpenListeners, the largest request, so receive buffers stay
/// as they are.
inline constexpr uint32_t kMaxGrantsPerMessage = 200;
/// Limit: grants in all InitialPorts messages together: one per rule of a
/// full table set (a rule is one contiguous range), so every valid set of
/// initial rules fits, and the broker holds at most 384 KiB of them.
inline constexpr uint32_t kMaxInitialGrants = kMaxRulesPerTable * kPifCount;
/// InitialPorts flags. Any bit outside kInitialPortsFlagMask is malformed.
inline constexpr uint32_t kInitialPortsLast = 1u << 0;  // the declaration is complete
inline constexpr uint32_t kInitialPortsFlagMask = kInitialPortsLast;

/// The privileged ports of the initial rules (security review item 6).
/// Without --policy, a sluiced that holds CAP_NET_BIND_SERVICE opens ports
/// below unprivileged_port_start only inside these grants, for its whole
/// life; everything else below it is denied, so a worker compromised later
/// cannot take 22, 53 or 443. The broker never parses rule specs, so the
/// worker computes the grants from the rules on sluiced's command line (the
/// administrator's input) and declares them before it has read anything
/// from a peer: its only inputs so far are its argv and the policy text,
/// both from sluiced. The broker admits InitialPorts only between Hello and
/// the first request, and never again, so nothing a peer sends the worker
/// later can add a grant. Grants past `count` are all zero.
struct InitialPortsMsg {
  WireHeader header;  // type kInitialPorts
  uint32_t count;     // 0..kMaxGrantsPerMessage
  uint32_t flags;     // kInitialPortsLast on the last message
  PortGrant grants[kMaxGrantsPerMessage];
};
static_assert(sizeof(InitialPortsMsg) == 24 + 48 * kMaxGrantsPerMessage);

/// Limit: sockets per OpenSockets. The worker's pool of host-side sockets
/// asks for at most its own size (worker/socket_pool.h, 32) at a time; 64
/// leaves room while keeping one request's work in sluiced short (64
/// socket() calls, well under a millisecond), so that other requests are
/// answered between refills.
inline constexpr uint32_t kMaxSocketsPerMessage = 64;

/// Fresh sockets in sluiced's network namespace, for the connections of
/// SPLICE rules to this side (the worker lives in the target namespace, and a
/// socket keeps the namespace it was made in). Each is made as
/// socket(family, STREAM or DGRAM | NONBLOCK | CLOEXEC, 0) and sent as it is:
/// unbound and unconnected. The worker connects them itself (TCP), or uses
/// them as the connected sockets of UDP flows.
struct OpenSocketsMsg {
  WireHeader header;  // type kOpenSockets
  uint8_t family;     // WireFamily
  uint8_t proto;      // WireProto
  uint16_t reserved;  // 0
  uint32_t count;     // 1..kMaxSocketsPerMessage
};
static_assert(sizeof(OpenSocketsMsg) == 24);

/// The answer to OpenSockets: `count` sockets attached, all of the family
/// and protocol asked for. `count` is below the request's when socket()
/// failed; `status` is then that errno (EMFILE, ENFILE, ENOBUFS), else 0.
struct SocketsOpenedMsg {
  WireHeader header;  // type kSocketsOpened, sequence of the request
  uint32_t count;     // sockets attached, 0..the request's count
  int32_t status;     // 0, or the errno that stopped socket() (1..kStatusMaxErrno)
};
static_assert(sizeof(SocketsOpenedMsg) == 24);

/// The namespace helper's first message to sluiced, once it runs inside the
/// target namespace with its capabilities dropped and its filter loaded: the
/// kernel facts there, for the bind policy of SPLICE listeners.
struct HelperReadyMsg {
  WireHeader header;                 // type kHelperReady, sequence 0
  uint32_t version;                  // kBrokerWireVersion
  uint32_t flags;                    // kBrokerHasBindCap: held in the target namespace
  uint32_t unprivileged_port_start;  // net.ipv4.ip_unprivileged_port_start there
  uint32_t reserved;                 // 0
};
static_assert(sizeof(HelperReadyMsg) == 32);

/// Limit: the worker's heartbeat. It sends a WorkerStatus at least this
/// often once its initial commit is in force, from its event loop's tick, so
/// that the heartbeat stops when the loop is wedged. One second is the
/// resolution systemd's watchdog is configured in, and one 32-byte datagram
/// a second costs nothing.
inline constexpr uint32_t kWorkerStatusIntervalMs = 1000;
/// Limit: how old the worker's last WorkerStatus may be for sluiced to send
/// systemd's WATCHDOG=1. Three heartbeats: one late tick (a long commit
/// slice, a loaded machine) never stops the pings, a stopped or wedged
/// worker stops them within three seconds.
inline constexpr uint32_t kWorkerStatusStaleMs = 3 * kWorkerStatusIntervalMs;

/// What the worker serves: the generation of the tables in force and the
/// number of listening sockets it holds. The broker copies the two numbers
/// into systemd's STATUS= line as decimal numbers and never interprets them
/// otherwise (it never parses peer input: these are fixed-width integers).
/// Permitted only once the broker is ready (after InitialPorts), any number
/// of times; no reply.
struct WorkerStatusMsg {
  WireHeader header;    // type kWorkerStatus
  uint64_t generation;  // the tables' generation (CommitEngine::generation)
  uint32_t listeners;   // listening sockets held, HOST and SPLICE
  uint32_t reserved;    // 0
};
static_assert(sizeof(WorkerStatusMsg) == 32);

/// Limit: bytes of the blob of StoreState. The blob holds what two commit
/// requests hold (the tables in force and, while a commit waits for
/// confirmation, the tables it replaced: four full tables and two
/// generations, under 2 MiB at most, as a schema test checks),
/// so the control protocol's frame limit (schema/frame.h
/// kMaxControlMessageBytes, 4 MiB) bounds it too; sluiced holds one blob.
inline constexpr uint64_t kMaxStateBlobBytes = 4u << 20;
/// Limit: listeners sluiced keeps in escrow. The worker holds at most
/// kMaxListenersPerTable per table; sluiced never keeps more, and the cookie
/// file of StoreState is at most 8 bytes per escrowed listener.
inline constexpr size_t kMaxEscrowListeners = kMaxListenersPerTable * kPifCount;

/// The worker's state after each change of the listeners it holds (a commit,
/// an auto-scan change, before a rebind): two sealed memfds (F_SEAL_WRITE,
/// F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL), checked by sluiced with fstat
/// and F_GET_SEALS only:
///   fd 0: the blob (1..kMaxStateBlobBytes bytes): the tables in force and
///         their generation, and a commit's that waits for confirmation
///         (schema/codec.h StateBlob); sluiced never reads it;
///   fd 1: the SO_COOKIE of every listener the worker holds, as uint64_t in
///         host order, strictly ascending, at most one per escrowed listener.
///         sluiced closes its copy of every listener it issued in reply to a
///         request of sequence <= header.sequence whose cookie is not there.
/// header.sequence: the sequence of the last request the worker had sent.
struct StoreStateMsg {
  WireHeader header;    // type kStoreState
  uint64_t generation;  // for sluiced's log only
  uint32_t listeners;   // cookies in fd 1, for sluiced's log only
  uint32_t reserved;    // 0
};
static_assert(sizeof(StoreStateMsg) == 32);

/// A restarted worker's first request after InitialPorts.
struct ResumeMsg {
  WireHeader header;     // type kResume
  uint32_t reserved[2];  // 0
};
static_assert(sizeof(ResumeMsg) == 24);

/// The answer to Resume: the blob the dead worker stored last (attached when
/// blob_bytes != 0: a sealed memfd, to be mapped, not read: its offset is
/// shared) and how many listeners ReclaimListeners will hand over.
struct ResumeReplyMsg {
  WireHeader header;    // type kResumeReply, sequence of the request
  uint64_t blob_bytes;  // 0: no blob (the dead worker never stored one)
  uint32_t listeners;   // escrowed listeners, 0..kMaxEscrowListeners
  uint32_t reserved;    // 0
};
static_assert(sizeof(ResumeReplyMsg) == 32);

/// Asks for the next batch of escrowed listeners.
struct ReclaimListenersMsg {
  WireHeader header;     // type kReclaimListeners
  uint32_t reserved[2];  // 0
};
static_assert(sizeof(ReclaimListenersMsg) == 24);

/// ListenersReclaimed flags.
inline constexpr uint32_t kReclaimLast = 1u << 0;  // no listener is left to hand over
/// One batch of escrowed listeners: the spec each was opened for (as the
/// worker asked for it) and, attached in order, a copy of each socket.
struct ListenersReclaimedMsg {
  WireHeader header;                            // type kListenersReclaimed, sequence of the request
  uint32_t count;                               // 0..kMaxListenersPerMessage, == fds attached
  uint32_t flags;                               // kReclaimLast on the last batch
  ListenerSpec specs[kMaxListenersPerMessage];  // past `count`: all zero
};
static_assert(sizeof(ListenersReclaimedMsg) == sizeof(OpenListenersMsg));

/// sluiced asks its launcher for a new worker; the attached fd is the policy
/// text to hand it (kWorkerFdPolicy).
struct LaunchWorkerMsg {
  WireHeader header;     // type kLaunchWorker
  uint32_t reserved[2];  // 0
};
static_assert(sizeof(LaunchWorkerMsg) == 24);

/// The launcher's answer: status 0 with the worker's pid, its pidfd and
/// sluiced's end of its channel attached; else the errno of what failed.
struct WorkerLaunchedMsg {
  WireHeader header;  // type kWorkerLaunched, sequence of the request
  int32_t status;     // 0 or an errno
  int32_t pid;        // the worker's pid (a child of sluiced), or 0
};
static_assert(sizeof(WorkerLaunchedMsg) == 24);
/// The policy in force changed (SIGHUP): sent by the broker, unasked and
/// with no reply, with one fd, a sealed read-only memfd of the new policy
/// text (names of `control` lines already numbers) of `length` bytes. The
/// worker tells it from a reply by its header's type (it peeks first),
/// parses the text as at start, puts it in force for the next commit and
/// re-checks the tables in force. Sequence 0.
struct PolicyReloadMsg {
  WireHeader header;  // type kPolicyReload, sequence 0
  uint32_t length;    // bytes of text, at most kMaxPolicyTextBytes
  uint32_t reserved;  // 0
};
static_assert(sizeof(PolicyReloadMsg) == 24);

/// Limit: policy text in a PolicyReload or PolicyText, the policy file's own
/// limit (policy/policy_file.h kMaxPolicyFileBytes): 1 MiB. The reader
/// refuses a file whose names, written as numbers, would make it longer.
inline constexpr uint32_t kMaxPolicyTextBytes = 1u << 20;

/// sluiced asks its policy reader to read the policy file again.
struct PolicyReadMsg {
  WireHeader header;  // type kPolicyRead, the reload's sequence
};
static_assert(sizeof(PolicyReadMsg) == 16);

/// Status of a PolicyText: the file was read, parsed and its names resolved
/// (one fd comes with it), or it was not (no fd; `error` says why, naming
/// the file and the line).
inline constexpr uint32_t kPolicyTextOk = 0;
inline constexpr uint32_t kPolicyTextFailed = 1;
/// Limit: the error of a PolicyText, NUL-terminated: one parse error line
/// (the file, the line number, what is wrong, the line itself sanitised
/// and cut at 64 bytes per field) fits in well under 1 KiB.
inline constexpr size_t kPolicyErrorBytes = 1024;

/// The policy reader's answer to PolicyRead.
struct PolicyTextMsg {
  WireHeader header;              // type kPolicyText, the request's sequence
  uint32_t status;                // kPolicyTextOk or kPolicyTextFailed
  uint32_t length;                // kPolicyTextOk: bytes in the memfd; else 0
  char error[kPolicyErrorBytes];  // kPolicyTextFailed: NUL-terminated; else all 0
};
static_assert(sizeof(PolicyTextMsg) == 24 + kPolicyErrorBytes);

/// A policy reload failed (SIGHUP): sent by the broker, unasked and with no
/// reply, like PolicyReload, so that the worker writes the audit line of the
/// attempt; the policy in force does not change. Sequence 0.
struct PolicyReloadFailedMsg {
  WireHeader header;              // type kPolicyReloadFailed, sequence 0
  char error[kPolicyErrorBytes];  // why, NUL-terminated, printable ASCII; the rest all 0
};
static_assert(sizeof(PolicyReloadFailedMsg) == 16 + kPolicyErrorBytes);

/// The process `--netns PID` named has exited: sent by the broker, unasked
/// and with no reply, once to each worker, after its InitialPorts. The
/// namespace lives on through sluiced; the worker only reports it
/// (control::Stats::target_exited). Sequence 0; the header alone.
struct TargetExitedMsg {
  WireHeader header;  // type kTargetExited, sequence 0
};
static_assert(sizeof(TargetExitedMsg) == 16);

/// Largest message either side sends; receive buffers are this plus one byte so
/// that an oversized datagram shows up as a length mismatch, not a silent cut.
inline constexpr size_t kMaxWireMessage = sizeof(OpenListenersMsg);
static_assert(sizeof(ListenersOpenedMsg) <= kMaxWireMessage);
static_assert(sizeof(InitialPortsMsg) <= kMaxWireMessage);

}  // namespace sluice::wire
