// The kernel's socket tables as text: /proc/net/{tcp,tcp6,udp,udp6}. Two
// readers share this parser:
//   - auto-scan in the worker (worker/port_scan.h), which asks which ports
//     are bound on a side;
//   - sluiced before a rebind shares a port (broker/port_holders.h), which
//     asks which sockets hold one port, at which address, and whether each
//     is one of its own (by inode).
//
// The text comes from the kernel, but it is parsed all the same: every line
// is bounded (kMaxProcNetLineBytes), and so is the number of lines
// (kMaxProcNetLines); each reader bounds its reads; a line that does not have
// the kernel's exact shape is skipped and counted.
//
// A line, as the kernel prints it (net/ipv4/tcp_ipv4.c, udp.c; the IPv6
// files have 32 address digits):
//   "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000
//    00000000  1000        0 12345 1 ..."
// slot, local address:port, remote address:port, state, tx:rx queue,
// timer:when, retransmits, uid, timeout, inode, and more fields that are not
// read. An address is printed as the 32-bit words of its memory, each in the
// host's byte order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>

namespace sluice {

/// Limit: lines parsed of one file, whatever text the parser is given
/// (auto-scan's read of 1 MiB holds fewer kernel lines than this).
inline constexpr size_t kMaxProcNetLines = 16384;
/// Limit: bytes of one line. The kernel's lines have fixed widths: 150 bytes
/// for tcp, 178 for tcp6, at most about 170 for udp6 (its drop counter
/// widens it). A longer line is not the kernel's format, and is skipped.
inline constexpr size_t kMaxProcNetLineBytes = 256;

/// Which table a text comes from: tcp/tcp6 or udp/udp6 (the two families have
/// the same layout, with 8 or 32 hex digits of address).
enum class ProcNetKind : uint8_t { kTcp, kUdp };

/// One socket of a table.
struct ProcNetSocket {
  bool v6 = false;           // 32 address digits: tcp6 or udp6
  uint8_t addr[16] = {};     // the local address in network byte order; IPv4 in addr[0..3]
  uint16_t port = 0;         // the local port
  bool remote_zero = false;  // no peer: remote address and port all zero
  uint8_t state = 0;         // the kernel's TCP state (UDP uses TCP_CLOSE and TCP_ESTABLISHED)
  uint64_t inode = 0;        // the socket's inode (fstat's st_ino of a descriptor for it); 0 for
                             // a TCP socket in TIME_WAIT, which has none
};

/// Parses one socket line (not the header). Returns nothing when the line is
/// longer than kMaxProcNetLineBytes or is not the kernel's shape: a slot "N:",
/// two "HEX:PORT" fields with 8 or 32 address digits (both of one length) and
/// 4 port digits, a two-digit state, four fields, a decimal uid, a field and
/// a decimal inode. Pure.
std::optional<ProcNetSocket> parse_proc_net_line(std::string_view line) noexcept;

/// Whether `socket` counts as bound for a server, as pasta counts it: TCP in
/// LISTEN state; UDP bound and not connected (TCP_CLOSE with no peer; a
/// connected socket is somebody's client). Pure.
bool proc_net_bound(const ProcNetSocket& socket, ProcNetKind kind) noexcept;

/// What for_each_proc_net_socket() saw.
struct ProcNetParse {
  size_t entries = 0;      // well-formed socket lines
  size_t malformed = 0;    // lines skipped: too long, or not the kernel's shape
  bool truncated = false;  // stopped at kMaxProcNetLines, or the text ends mid-line
  bool stopped = false;    // `each` asked to stop
  size_t consumed = 0;     // bytes of the whole lines read (up to a newline)
};

/// Calls `each(const ProcNetSocket&)` for every well-formed socket line of
/// `text`, the text of one file: its first line is the header and is
/// skipped (unless `header` is false: `text` goes on from an earlier part
/// of the file); parsing stops after kMaxProcNetLines lines, and after a
/// call of `each` that returns false (`each` may return void); a last line
/// without its newline is not parsed (the read that made the text was cut,
/// or a reader by parts has the rest still to read).
template <typename Each>
ProcNetParse for_each_proc_net_socket(std::string_view text, Each&& each, bool header = true) {
  ProcNetParse result;
  size_t lines = 0;
  while (result.consumed < text.size()) {
    const size_t nl = text.find('\n', result.consumed);
    if (nl == std::string_view::npos || lines == kMaxProcNetLines) {
      result.truncated = true;
      break;
    }
    const std::string_view line = text.substr(result.consumed, nl - result.consumed);
    result.consumed = nl + 1;
    if (lines++ == 0 && header) continue;
    std::optional<ProcNetSocket> socket = parse_proc_net_line(line);
    if (!socket) {
      ++result.malformed;
      continue;
    }
    ++result.entries;
    if constexpr (std::is_same_v<decltype(each(*socket)), bool>) {
      if (!each(*socket)) {
        result.stopped = true;
        break;
      }
    } else {
      each(*socket);
    }
  }
  return result;
}

}  // namespace sluice
