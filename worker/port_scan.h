// Auto-scan's view of both sides: which TCP and UDP ports are bound there
// now. HOST scan rules (-t/-u auto) follow the target namespace: the worker
// runs inside it (sluiced --netns), so its own /proc/self/net/{tcp,tcp6,udp,
// udp6} list the container's sockets; it opens them before its sandbox (the
// sandbox has no open and no /proc). SPLICE scan rules (-T/-U auto) follow
// sluiced's side (the host side): sluiced opens its own four files before it
// forks the worker and hands them over on fixed fds (schema/broker_wire.h);
// the worker adopts them. Both are re-read with pread from offset 0 about
// once a second.
//
// What counts as bound, as in pasta:
//   - TCP: a socket in LISTEN state (st 0A), IPv4 or IPv6;
//   - UDP: a socket that is bound and not connected: st 07 (TCP_CLOSE, which
//     UDP uses for "not connected") with no remote address and port. A
//     connected UDP socket (st 01, a remote set) is somebody's client, not a
//     server;
//   - UDP also counts every port a TCP socket listens on, as pasta does for
//     protocols such as iperf3, whose TCP control port sets up transfers on
//     the UDP port of the same number.
// sluice's own sockets never count (scan_view), so that a port never flaps
// and the two tables never feed each other (ping-pong): on each side, the
// ports of the other table's listeners there are left out (HOST listeners
// are on the host side, SPLICE listeners inside the target namespace), as
// pasta leaves out its own bound ports. The worker's outgoing TCP
// connections (into the namespace for HOST rules, from sluiced's pool on the
// host side for SPLICE rules) are never in LISTEN state, and its UDP flow
// sockets are connected to their target (st 01, a remote set); the pool's
// unused sockets are unbound, so they are in no table at all.
//
// The text comes from the kernel, but it is parsed all the same, by
// base/proc_net.h's bounded parser (which sluiced uses too, before a rebind
// shares a port).
#pragma once

#include <array>
#include <bitset>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/proc_net.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "schema/model.h"

namespace sluice {

/// Limit: how often the target namespace's tables are read: once a second,
/// as pasta does (FWD_PORT_SCAN_INTERVAL). A server that starts inside is
/// published about a second later, and one that stops is let go as soon.
/// Reading the four files costs well under a millisecond for a container's
/// usual hundreds of sockets, so a shorter interval would buy little and
/// cost CPU on hosts with many workers.
inline constexpr uint64_t kScanIntervalNs = 1000000000ULL;

/// Limit: bytes read of each file per scan (1 MiB, about 6,000 entries of
/// 150 to 180 bytes). The kernel lists TCP listeners before established
/// connections, so a cut drops connections first, which never count; a
/// container with more listening or bound sockets than that (in one file)
/// is far outside what auto-scan is for, and the ports past the cut are not
/// seen: the warning of a cut table (once a minute) says so. The buffer is
/// allocated once and reused.
inline constexpr size_t kMaxProcNetBytes = 1 << 20;
/// Limit: at most one warning about unreadable, cut or malformed tables per
/// minute: the condition would otherwise repeat at every scan.
inline constexpr uint64_t kScanWarnIntervalNs = 60 * 1000000000ULL;

/// A set of port numbers: one bit per port (bit 0 unused), in 8 KiB that
/// are allocated when the first port is added. Most sets stay empty (every
/// one of a worker without auto-scan, and the other protocol's and table's
/// of one with it); as plain bitsets, the engine's scan state and a commit's
/// temporaries took about 200 KiB of memory in every worker, whatever its
/// tables held.
class PortSet {
 public:
  using Bits = std::bitset<kMaxPort + 1>;

  PortSet() = default;
  /// A copy of `other` (allocated only when `other` is).
  PortSet(const PortSet& other)
      : bits_(other.bits_ ? std::make_unique<Bits>(*other.bits_) : nullptr) {}
  /// Becomes a copy of `other` (in the bits it holds already, when it has some).
  PortSet& operator=(const PortSet& other) {
    if (this == &other) return *this;
    if (other.bits_ == nullptr) {
      bits_.reset();
    } else if (bits_ != nullptr) {
      *bits_ = *other.bits_;
    } else {
      bits_ = std::make_unique<Bits>(*other.bits_);
    }
    return *this;
  }
  PortSet(PortSet&&) noexcept = default;
  PortSet& operator=(PortSet&&) noexcept = default;

  /// True when `port` (at most kMaxPort) is in the set.
  bool test(size_t port) const {
    assert(port <= kMaxPort);
    return bits_ != nullptr && bits_->test(port);
  }
  /// Adds `port` (at most kMaxPort).
  void set(size_t port) {
    assert(port <= kMaxPort);
    if (bits_ == nullptr) bits_ = std::make_unique<Bits>();
    bits_->set(port);
  }
  /// Removes `port` (at most kMaxPort).
  void reset(size_t port) {
    assert(port <= kMaxPort);
    if (bits_ != nullptr) bits_->reset(port);
  }
  /// True when the set holds a port.
  bool any() const { return bits_ != nullptr && bits_->any(); }
  /// True when the set holds no port.
  bool none() const { return !any(); }
  /// How many ports the set holds.
  size_t count() const { return bits_ != nullptr ? bits_->count() : 0; }
  /// True when both hold the same ports (an unallocated set equals an empty one).
  bool operator==(const PortSet& other) const {
    if (bits_ == nullptr || other.bits_ == nullptr) return none() && other.none();
    return *bits_ == *other.bits_;
  }

  /// The ports in both `a` and `b`.
  friend PortSet operator&(const PortSet& a, const PortSet& b) {
    if (a.none() || b.none()) return PortSet();
    return PortSet(*a.bits_ & *b.bits_);
  }
  /// The ports in `a` or `b`.
  friend PortSet operator|(const PortSet& a, const PortSet& b) {
    if (b.none()) return a;
    if (a.none()) return b;
    return PortSet(*a.bits_ | *b.bits_);
  }
  /// The ports in `a` and not in `b`.
  friend PortSet operator-(const PortSet& a, const PortSet& b) {
    if (a.none() || b.none()) return a;
    return PortSet(*a.bits_ & ~*b.bits_);
  }

 private:
  /// A set of exactly `bits` (allocated).
  explicit PortSet(const Bits& bits) : bits_(std::make_unique<Bits>(bits)) {}

  std::unique_ptr<Bits> bits_;  // null: no port yet
};

/// The ports bound in the target namespace, per protocol.
struct BoundPorts {
  PortSet tcp;
  PortSet udp;

  /// The set of `proto`.
  PortSet& of(Proto proto) { return proto == Proto::kTcp ? tcp : udp; }
  const PortSet& of(Proto proto) const { return proto == Proto::kTcp ? tcp : udp; }
  bool operator==(const BoundPorts&) const = default;
};

/// Ports per table: what each table's scan rules follow, [pif]. HOST rules
/// follow the target namespace, SPLICE rules sluiced's side.
struct PifPorts {
  std::array<BoundPorts, kPifCount> pifs;

  /// The ports of `pif`.
  BoundPorts& of(Pif pif) { return pifs[static_cast<size_t>(pif)]; }
  const BoundPorts& of(Pif pif) const { return pifs[static_cast<size_t>(pif)]; }
  /// True when any table has any port.
  bool any() const {
    for (const BoundPorts& b : pifs) {
      if (b.tcp.any() || b.udp.any()) return true;
    }
    return false;
  }
  bool operator==(const PifPorts&) const = default;
};

/// What parse_proc_net() saw: for_each_proc_net_socket()'s counts, and how
/// many sockets counted as bound.
struct PortScanParse {
  size_t entries = 0;      // well-formed socket lines
  size_t bound = 0;        // of them, the ones that count as bound (proc_net_bound)
  size_t malformed = 0;    // lines skipped: too long, or not the kernel's shape
  bool truncated = false;  // stopped at kMaxProcNetLines, or the text ends mid-line
};

/// Parses the text of one /proc/net/{tcp,tcp6,udp,udp6} file with
/// for_each_proc_net_socket() (base/proc_net.h says which lines are skipped
/// and where parsing stops) and sets in `out` the local port of every socket
/// that counts as bound (see the top of this file). Pure; fails only to
/// allocate `out`'s bits (8 KiB), which ends the worker like any allocation
/// failure.
PortScanParse parse_proc_net(std::string_view text, ProcNetKind kind, PortSet* out) noexcept;

/// Returns the target port of `port` of `rule`: to + port - first. Auto-scan
/// watches this port in the target namespace (for a rule without a mapping,
/// the port itself). The validator guarantees that it fits.
inline uint16_t scan_target_port(const Rule& rule, uint16_t port) noexcept {
  return static_cast<uint16_t>(rule.to + (port - rule.first));
}

/// Returns the target ports the auto-scan rules of `tables` watch, per
/// table and protocol. O(listeners of the scan rules).
PifPorts watched_ports(const TableSet& tables);

/// Returns the ports of the listeners among `keys` that belong to `pif`, per
/// protocol: the ports sluice itself holds on the side where `pif` listens.
BoundPorts listener_ports(std::span<const ListenerKey> keys, Pif pif);

/// Returns what a table's scan rules see of one side: `raw` (that side's
/// bound ports as scan() read them, TCP and UDP apart) without `own` (the
/// ports sluice's own listeners hold on that side: the other table's), so
/// that sluice never follows itself. Then, as in pasta, UDP also counts each
/// TCP port that is left, unless sluice holds that UDP port itself. Pure.
BoundPorts scan_view(const BoundPorts& raw, const BoundPorts& own) noexcept;

/// Returns the other table: the one whose listeners are on the side that the
/// scan rules of `pif` follow. SPLICE listeners are in the target namespace,
/// which HOST rules follow; HOST listeners are on sluiced's side, which
/// SPLICE rules follow. So the scan rules of `pif` leave out
/// listener_ports(keys, other_table(pif)).
inline Pif other_table(Pif pif) noexcept {
  return pif == Pif::kHost ? Pif::kSplice : Pif::kHost;
}

/// Returns `bound` restricted to `watched`, table by table. Pure.
PifPorts restrict_to(const PifPorts& bound, const PifPorts& watched) noexcept;

/// The four files of one side's network namespace, and the buffer they are
/// read into.
class PortScanner {
 public:
  /// The files, in the order of kProcNetFiles.
  static constexpr size_t kFiles = 4;
  /// Paths, in the order of the fixed fds (wire::kWorkerFdScanFirst + i, and
  /// wire::kWorkerFdHostScanFirst + i).
  static constexpr const char* kProcNetFiles[kFiles] = {
      "/proc/self/net/tcp", "/proc/self/net/tcp6", "/proc/self/net/udp", "/proc/self/net/udp6"};

  /// Opens the four files of the caller's network namespace (read-only,
  /// close-on-exec). tcp6 and udp6 may be missing (IPv6 disabled) and are then
  /// skipped; tcp or udp missing is an error. `side` names the side in log
  /// lines ("the target namespace"). Must run before the sandbox. Needs
  /// `openat`.
  static Result<PortScanner> open_own(std::string side = "the target namespace");

  /// The worker's start-up: open_own(), then pin(`first`). Returns nothing,
  /// with a warning that auto-scan is off, when either fails. Must run
  /// before the sandbox, and before anything else the worker keeps open
  /// (except what sits on fixed fds already).
  static std::optional<PortScanner> open_pinned(int first);

  /// The worker's start-up for sluiced's side: takes over the files sluiced
  /// left on fds `first` .. `first` + 3 (in the order of kProcNetFiles; a
  /// closed number is a file that does not exist there). Returns nothing,
  /// with a warning that auto-scan of -T/-U is off, when tcp or udp is
  /// missing. Must run before the sandbox and before the worker opens
  /// anything (a file it opened could otherwise sit on one of those
  /// numbers). Needs `fcntl` (F_GETFD).
  static std::optional<PortScanner> adopt(int first, std::string side);

  PortScanner(PortScanner&&) noexcept = default;
  PortScanner& operator=(PortScanner&&) noexcept = default;

  /// Moves the open files to fds `first` .. `first` + 3, in the order of
  /// kProcNetFiles (the worker uses wire::kWorkerFdScanFirst, which its
  /// seccomp filter names), passing through numbers at or above
  /// wire::kWorkerFdScanEnd on the way (never over sluiced's block).
  /// Whatever was open on those numbers is closed.
  /// Fails with the errno of fcntl or dup3. Must run before the sandbox
  /// (its filter has no dup3), and before anything else the worker keeps
  /// open is made (it could sit on one of those numbers).
  Result<void> pin(int first);

  /// The fd of each file (-1 for one that is missing), to keep open across
  /// the sandbox's first stage.
  std::array<int, kFiles> fds() const;

  /// Reads the four files and returns the ports bound now, TCP and UDP apart
  /// (scan_view() adds TCP ports to UDP, once sluice's own are out). A file is read
  /// with pread from offset 0 onward into the buffer, at most
  /// kMaxProcNetBytes. Cut, unreadable or malformed tables are warned about
  /// at most once per kScanWarnIntervalNs, with what was lost. Fails with
  /// the errno when a file cannot be read at all; the caller then keeps its
  /// last result. Needs `pread64`.
  Result<BoundPorts> scan();

 private:
  PortScanner(std::array<UniqueFd, kFiles> files, std::string side);

  /// Reads file `i` from offset 0 into buf_; returns the bytes read and sets
  /// `*full` when the buffer filled up before the end. Needs `pread64`.
  Result<size_t> read_file(size_t i, bool* full);
  /// True when a warning may be written now (kScanWarnIntervalNs).
  bool may_warn() noexcept;

  std::array<UniqueFd, kFiles> files_;
  std::string side_;  // names the side in log lines
  /// kMaxProcNetBytes, not zeroed: its pages are taken only as far as the
  /// files' text fills them (a few KiB for a usual container), not 1 MiB
  /// per scanner at start.
  std::unique_ptr<char[]> buf_;
  uint64_t next_warn_ns_ = 0;
};

}  // namespace sluice
