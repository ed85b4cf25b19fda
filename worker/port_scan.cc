// Auto-scan's view of both sides (see port_scan.h): the parser of
// /proc/net/{tcp,tcp6,udp,udp6}, the ports the scan rules watch, what a
// table's scan rules see once sluice's own listeners are left out, and the
// reader of one side's four files.
#include "worker/port_scan.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "base/log.h"
#include "base/strings.h"
#include "schema/broker_wire.h"

namespace sluice {

PortScanParse parse_proc_net(std::string_view text, ProcNetKind kind, PortSet* out) noexcept {
  PortScanParse result;
  const ProcNetParse parsed = for_each_proc_net_socket(text, [&](const ProcNetSocket& socket) {
    if (socket.port != 0 && proc_net_bound(socket, kind)) {
      out->set(socket.port);
      ++result.bound;
    }
  });
  result.entries = parsed.entries;
  result.malformed = parsed.malformed;
  result.truncated = parsed.truncated;
  return result;
}

PifPorts watched_ports(const TableSet& tables) {
  PifPorts out;
  for (const Table& table : tables.tables) {
    for (const Rule& rule : table.rules) {
      if (!rule.scan || rule.last < rule.first) continue;
      PortSet& set = out.of(table.pif).of(rule.proto);
      for (unsigned port = rule.first; port <= rule.last && port != 0; ++port) {
        set.set(scan_target_port(rule, static_cast<uint16_t>(port)));
      }
    }
  }
  return out;
}

BoundPorts listener_ports(std::span<const ListenerKey> keys, Pif pif) {
  BoundPorts out;
  for (const ListenerKey& k : keys) {
    if (k.pif == pif && k.port != 0) out.of(k.proto).set(k.port);
  }
  return out;
}

BoundPorts scan_view(const BoundPorts& raw, const BoundPorts& own) noexcept {
  BoundPorts out;
  out.tcp = raw.tcp - own.tcp;
  // pasta's rule: a TCP listener's port is watched for UDP too (iperf3 and
  // others set up UDP transfers on the number of their TCP control port);
  // only a TCP port that is not sluice's own, so that a HOST TCP listener
  // never opens a SPLICE UDP port, nor the reverse.
  out.udp = (raw.udp | out.tcp) - own.udp;
  return out;
}

PifPorts restrict_to(const PifPorts& bound, const PifPorts& watched) noexcept {
  PifPorts out;
  for (size_t p = 0; p < kPifCount; ++p) {
    out.pifs[p].tcp = bound.pifs[p].tcp & watched.pifs[p].tcp;
    out.pifs[p].udp = bound.pifs[p].udp & watched.pifs[p].udp;
  }
  return out;
}

PortScanner::PortScanner(std::array<UniqueFd, kFiles> files, std::string side)
    : files_(std::move(files)), side_(std::move(side)), buf_(new char[kMaxProcNetBytes]) {}

Result<PortScanner> PortScanner::open_own(std::string side) {
  std::array<UniqueFd, kFiles> files;
  for (size_t i = 0; i < kFiles; ++i) {
    files[i].reset(::open(kProcNetFiles[i], O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (files[i].valid()) continue;
    const int err = errno;
    // tcp6 and udp6 exist only with IPv6; their sockets cannot exist without.
    if (err == ENOENT && (i == 1 || i == 3)) continue;
    return SysErr(err, std::string("opening ") + kProcNetFiles[i] + " for auto-scan");
  }
  return PortScanner(std::move(files), std::move(side));
}

std::optional<PortScanner> PortScanner::adopt(int first, std::string side) {
  std::array<UniqueFd, kFiles> files;
  for (size_t i = 0; i < kFiles; ++i) {
    const int fd = first + static_cast<int>(i);
    if (::fcntl(fd, F_GETFD) >= 0) files[i].reset(fd);
  }
  // tcp6 and udp6 exist only with IPv6; tcp and udp always do.
  if (!files[0].valid() || !files[2].valid()) {
    LOG_WARN(
        "auto-scan of %s is off (auto on -T/-U is refused): sluiced passed no %s on fd %d; "
        "check that /proc is mounted where sluiced runs",
        side.c_str(), !files[0].valid() ? "/proc/net/tcp" : "/proc/net/udp",
        first + (!files[0].valid() ? 0 : 2));
    return std::nullopt;
  }
  return PortScanner(std::move(files), std::move(side));
}

std::optional<PortScanner> PortScanner::open_pinned(int first) {
  Result<PortScanner> scanner = open_own();
  Result<void> pinned = scanner ? scanner->pin(first) : Result<void>(Err(scanner.error()));
  if (!pinned) {
    LOG_WARN("auto-scan is off (rules with auto are refused): %s", pinned.error().message.c_str());
    return std::nullopt;
  }
  return std::move(*scanner);
}

Result<void> PortScanner::pin(int first) {
  // First out of the way of the target numbers (a file may already sit on
  // one of them), then onto them.
  std::array<UniqueFd, kFiles> moved;
  for (size_t i = 0; i < kFiles; ++i) {
    if (!files_[i].valid()) continue;
    // Above sluiced's block too (20-23), which may have gaps (no IPv6).
    moved[i].reset(::fcntl(files_[i].get(), F_DUPFD_CLOEXEC,
                           std::max(first + static_cast<int>(kFiles), wire::kWorkerFdScanEnd)));
    if (!moved[i].valid()) return SysErr("moving an auto-scan file out of the way (fcntl)");
    files_[i].reset();
  }
  for (size_t i = 0; i < kFiles; ++i) {
    if (!moved[i].valid()) continue;
    const int target = first + static_cast<int>(i);
    if (::dup3(moved[i].get(), target, O_CLOEXEC) != target) {
      return SysErr("placing an auto-scan file on its fixed fd (dup3)");
    }
    files_[i].reset(target);
  }
  return Ok();
}

std::array<int, PortScanner::kFiles> PortScanner::fds() const {
  std::array<int, kFiles> out;
  for (size_t i = 0; i < kFiles; ++i) out[i] = files_[i].get();
  return out;
}

Result<size_t> PortScanner::read_file(size_t i, bool* full) {
  size_t have = 0;
  *full = false;
  // Offset 0 first: a seq_file starts over from the first socket. Each later
  // read continues where the last one ended, which the kernel serves without
  // walking the table again.
  while (have < kMaxProcNetBytes) {
    ssize_t n = ::pread(files_[i].get(), buf_.get() + have, kMaxProcNetBytes - have,
                        static_cast<off_t>(have));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      return SysErr(err, std::string("reading ") + kProcNetFiles[i]);
    }
    if (n == 0) return have;
    have += static_cast<size_t>(n);
  }
  *full = true;
  return have;
}

bool PortScanner::may_warn() noexcept {
  const uint64_t now = monotonic_ns();
  if (now < next_warn_ns_) return false;
  next_warn_ns_ = now + kScanWarnIntervalNs;
  return true;
}

Result<BoundPorts> PortScanner::scan() {
  BoundPorts out;
  for (size_t i = 0; i < kFiles; ++i) {
    if (!files_[i].valid()) continue;
    bool full = false;
    Result<size_t> got = read_file(i, &full);
    if (!got) {
      if (may_warn()) {
        LOG_WARN("auto-scan of %s: %s; the listeners stay as they are until a read succeeds",
                 side_.c_str(), got.error().message.c_str());
      }
      return Err(got.error());
    }
    const ProcNetKind kind = i < 2 ? ProcNetKind::kTcp : ProcNetKind::kUdp;
    PortScanParse parsed =
        parse_proc_net(std::string_view(buf_.get(), *got), kind, i < 2 ? &out.tcp : &out.udp);
    if ((full || parsed.truncated || parsed.malformed != 0) && may_warn()) {
      LOG_WARN(
          "auto-scan of %s: %s: read %zu entries%s%s; ports of sockets beyond them are not "
          "seen (at most %zu bytes and %zu lines are read each second)",
          side_.c_str(), kProcNetFiles[i], parsed.entries,
          full || parsed.truncated ? ", and the table goes on" : "",
          parsed.malformed != 0
              ? (", skipped " + std::to_string(parsed.malformed) + " malformed lines").c_str()
              : "",
          kMaxProcNetBytes, kMaxProcNetLines);
    }
  }
  return out;
}

}  // namespace sluice
