// Who else holds a port (see port_holders.h): the side's socket tables,
// opened before the filter, and the check a rebind passes before it shares.
#include "broker/port_holders.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "base/strings.h"

namespace sluice {
namespace {

constexpr const char* kTableNames[SocketTables::kFiles] = {"tcp", "tcp6", "udp", "udp6"};

/// `socket` as a listener spec of `spec`'s table, protocol and port, for
/// specs_clash(): IPv4 (and an IPv4-mapped IPv6 address) in the last 4
/// bytes, an IPv6 wildcard dual-stack, and no device.
wire::ListenerSpec as_spec(const ProcNetSocket& socket, const wire::ListenerSpec& spec) {
  wire::ListenerSpec out{};
  out.proto = spec.proto;
  out.port = socket.port;
  out.flags = spec.flags & wire::kListenerSplice;
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kAny[16] = {};
  if (!socket.v6) {
    out.family = static_cast<uint8_t>(wire::WireFamily::kInet);
    std::memcpy(out.addr + 12, socket.addr, 4);
  } else if (std::memcmp(socket.addr, kMapped, sizeof(kMapped)) == 0) {
    out.family = static_cast<uint8_t>(wire::WireFamily::kInet);
    std::memcpy(out.addr + 12, socket.addr + 12, 4);
  } else {
    out.family = static_cast<uint8_t>(wire::WireFamily::kInet6);
    std::memcpy(out.addr, socket.addr, sizeof(out.addr));
    // Whether it has IPV6_V6ONLY does not show: taken as covering IPv4 too.
    if (std::memcmp(socket.addr, kAny, sizeof(kAny)) == 0) out.flags |= wire::kListenerDualStack;
  }
  return out;
}

/// "127.0.0.2:8080" or "[::1]:8080" for `socket`.
std::string describe(const ProcNetSocket& socket) {
  char buf[INET6_ADDRSTRLEN] = "?";
  ::inet_ntop(socket.v6 ? AF_INET6 : AF_INET, socket.addr, buf, sizeof(buf));
  const std::string port = std::to_string(socket.port);
  return socket.v6 ? "[" + std::string(buf) + "]:" + port : std::string(buf) + ":" + port;
}

}  // namespace

SocketTables open_socket_tables(const std::string& proc_net) {
  SocketTables out;
  out.error.clear();
  for (size_t i = 0; i < SocketTables::kFiles; ++i) {
    const std::string path = proc_net + "/" + kTableNames[i];
    out.files[i].reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (out.files[i].valid()) {
      out.present[i] = true;
      continue;
    }
    const int err = errno;
    // Without IPv6 there are no tcp6 and udp6, and no socket to find there.
    if (!(err == ENOENT && (i % 2) == 1) && out.error.empty()) {
      out.error = "cannot open " + path + ": " + errno_text(err);
    }
    out.files[i].reset(::open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!out.files[i].valid() && out.error.empty()) {
      out.error = "cannot open /dev/null: " + errno_text(errno);
    }
  }
  return out;
}

SocketTables no_socket_tables(std::string why) {
  SocketTables out;
  out.error = std::move(why);
  for (UniqueFd& file : out.files) {
    file.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY));
  }
  return out;
}

bool holds_against(const ProcNetSocket& socket, ProcNetKind kind,
                   const wire::ListenerSpec& spec) noexcept {
  if (socket.port != spec.port || !proc_net_bound(socket, kind)) return false;
  return specs_clash(spec, as_spec(socket, spec));
}

namespace {

/// Limit: bytes read of one table per check: 16 MiB, about 100,000 sockets,
/// in chunks of kHolderChunkBytes, so that memory stays small however long
/// the table is. A TCP table is read only up to its first socket that does
/// not listen (the kernel lists every listener first, net/ipv4/tcp_ipv4.c:
/// the listening hash, then the established one with TIME_WAIT), so its
/// connections, however many, are never read; a UDP table lists bound
/// sockets only (servers and the worker's flows). A side with more is far
/// beyond what sluiced serves, and its rebinds share nothing.
constexpr uint64_t kMaxHolderTableBytes = 16u << 20;
/// Limit: one read of a table: 64 KiB, hundreds of lines (256 bytes at most
/// each, kMaxProcNetLineBytes), allocated for the check and freed after it.
constexpr size_t kHolderChunkBytes = 64u << 10;
/// Limit: other programs' sockets kept from one table on the rebinds' ports
/// (about 40 bytes each). Another program rarely holds even one; more than
/// this many is a host where sluiced will not tell them apart, and its
/// rebinds share nothing.
constexpr size_t kMaxForeignSockets = 4096;

/// Reads table `i` of `tables` from offset 0, line by line, and appends to
/// `*out` every socket that counts as bound for `kind` (proc_net_bound), is
/// on one of `ports` and is not among `own` (both sorted). Fails on a read
/// error, when the table goes on past kMaxHolderTableBytes, and past
/// kMaxForeignSockets. Lines that are not the kernel's shape are skipped; so
/// is a last line cut short.
Result<void> collect_table(const SocketTables& tables, size_t i, ProcNetKind kind,
                           const std::vector<uint16_t>& ports, const std::vector<uint64_t>& own,
                           std::vector<ProcNetSocket>* out) {
  std::vector<char> buf(kHolderChunkBytes);
  size_t kept = 0;  // the start of a line not read whole yet, at buf's start
  uint64_t offset = 0;
  bool header = true;
  for (;;) {
    // A seq_file starts over at offset 0; each later read continues from
    // where the last one ended.
    const ssize_t n = ::pread(tables.files[i].get(), buf.data() + kept, buf.size() - kept,
                              static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      return SysErr(err, std::string("reading the ") + kTableNames[i] + " table");
    }
    offset += static_cast<uint64_t>(n);
    const size_t end = kept + static_cast<size_t>(n);
    bool full = false;  // past kMaxForeignSockets
    const ProcNetParse parsed = for_each_proc_net_socket(
        std::string_view(buf.data(), end),
        [&](const ProcNetSocket& socket) {
          const bool bound = proc_net_bound(socket, kind);
          if (kind == ProcNetKind::kTcp && !bound) return false;  // the listeners are behind
          if (!bound || !std::binary_search(ports.begin(), ports.end(), socket.port) ||
              std::binary_search(own.begin(), own.end(), socket.inode)) {
            return true;
          }
          full = out->size() == kMaxForeignSockets;
          if (!full) out->push_back(socket);
          return !full;
        },
        header);
    if (full) {
      return Err(E2BIG, std::string("the ") + kTableNames[i] + " table has more than " +
                            std::to_string(kMaxForeignSockets) +
                            " other programs' sockets on these ports");
    }
    if (parsed.stopped || n == 0) return Ok();
    if (parsed.consumed > 0) header = false;
    kept = end - parsed.consumed;
    std::memmove(buf.data(), buf.data() + parsed.consumed, kept);
    if (kept == buf.size()) {
      return Err(EPROTO, std::string("the ") + kTableNames[i] + " table has a line of over " +
                             std::to_string(kHolderChunkBytes) + " bytes");
    }
    if (offset >= kMaxHolderTableBytes) {
      return Err(EFBIG, std::string("the ") + kTableNames[i] + " table is longer than " +
                            std::to_string(kMaxHolderTableBytes) + " bytes");
    }
  }
}

}  // namespace

std::vector<Result<std::optional<std::string>>> foreign_holders(
    const SocketTables& host, const SocketTables& target,
    std::span<const wire::ListenerSpec> rebinds, std::span<const uint64_t> own_inodes) {
  std::vector<Result<std::optional<std::string>>> out;
  out.reserve(rebinds.size());
  for (size_t r = 0; r < rebinds.size(); ++r) out.emplace_back(std::optional<std::string>());
  std::vector<uint64_t> own(own_inodes.begin(), own_inodes.end());
  std::sort(own.begin(), own.end());
  // One pass over each side's two tables of each protocol the rebinds use.
  for (const bool splice : {false, true}) {
    const SocketTables& tables = splice ? target : host;
    for (const bool tcp : {true, false}) {
      std::vector<size_t> which;
      std::vector<uint16_t> ports;
      for (size_t r = 0; r < rebinds.size(); ++r) {
        const wire::ListenerSpec& spec = rebinds[r];
        if (((spec.flags & wire::kListenerSplice) != 0) != splice ||
            (spec.proto == static_cast<uint8_t>(wire::WireProto::kTcp)) != tcp) {
          continue;
        }
        which.push_back(r);
        ports.push_back(spec.port);
      }
      if (which.empty()) continue;
      std::sort(ports.begin(), ports.end());
      ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
      const ProcNetKind kind = tcp ? ProcNetKind::kTcp : ProcNetKind::kUdp;
      std::vector<ProcNetSocket> held;
      Result<void> read = tables.error.empty() ? Ok() : Result<void>(Err(EIO, tables.error));
      for (size_t i = tcp ? 0 : 2; read && i < (tcp ? 2u : 4u); ++i) {
        if (tables.present[i]) read = collect_table(tables, i, kind, ports, own, &held);
      }
      if (!read) {
        for (size_t r : which) out[r] = Err(read.error());
        continue;
      }
      std::sort(held.begin(), held.end(),
                [](const ProcNetSocket& a, const ProcNetSocket& b) { return a.port < b.port; });
      for (size_t r : which) {
        const wire::ListenerSpec& spec = rebinds[r];
        auto first =
            std::lower_bound(held.begin(), held.end(), spec.port,
                             [](const ProcNetSocket& s, uint16_t port) { return s.port < port; });
        for (auto it = first; it != held.end() && it->port == spec.port; ++it) {
          if (holds_against(*it, kind, spec)) {
            out[r] = std::optional(describe(*it));
            break;
          }
        }
      }
    }
  }
  return out;
}

ForeignHolderCheck check_holders_on(const SocketTables& host, const SocketTables& target) {
  return
      [&host, &target](std::span<const wire::ListenerSpec> rebinds, std::span<const uint64_t> own) {
        return foreign_holders(host, target, rebinds, own);
      };
}

}  // namespace sluice
