// Who else holds a port: what sluiced checks before a rebind shares one.
//
// A rebind (wire::kListenerReplaces) has sluiced open the new listener with
// SO_REUSEPORT next to its own listeners it replaces (ListenerEscrow::
// share_ports). The kernel then lets the new socket bind beside any socket of
// the same owner that has SO_REUSEPORT, and join its group when the address
// is the same: another program of sluiced's user (HAProxy and Envoy set the
// option by default) would hand part of its connections to sluice. So before
// it shares, sluiced reads the side's socket tables (/proc/net/{tcp,tcp6} or
// {udp,udp6}, the kernel's own list) and shares only when every socket bound
// on that port at an address that clashes with the new listener is one of its
// own (the escrow's copies, by inode). Otherwise the rebind opens without
// SO_REUSEPORT, fails with EADDRINUSE as any program's bind would, and the
// commit rolls back with the old listener serving.
//
// The tables are opened before sluiced's filter, one set per side: sluiced's
// own (/proc/self/net) for HOST listeners, the target namespace's
// (/proc/PID/net of the namespace helper, which lives there) for SPLICE
// listeners; the kernel binds a table to its namespace when it is opened. They
// are re-read with pread from offset 0, as auto-scan re-reads its own.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/proc_net.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "broker/listener_escrow.h"
#include "schema/broker_wire.h"

namespace sluice {

/// One side's socket tables: tcp, tcp6, udp, udp6 in that order.
struct SocketTables {
  static constexpr size_t kFiles = 4;
  /// /dev/null for a table that does not exist (no IPv6) or could not be
  /// opened: one descriptor per fixed number all the same.
  std::array<UniqueFd, kFiles> files;
  /// Whether files[i] is the table (not /dev/null).
  std::array<bool, kFiles> present = {};
  /// What kept a table away, when it exists but could not be opened (or
  /// /dev/null could not be: then files[i] is invalid too); empty when every
  /// table is there or missing only for want of IPv6. A rebind on a side
  /// with an error shares nothing.
  std::string error = "the socket tables were not opened";
};

/// Opens `proc_net` + "/tcp", "/tcp6", "/udp" and "/udp6" read-only
/// (`proc_net`: "/proc/self/net", or "/proc/PID/net" for another process's
/// namespace). A missing IPv6 table (ENOENT) is no error. Needs `openat`.
SocketTables open_socket_tables(const std::string& proc_net);

/// Tables that are not there, for a side that does not exist (no target
/// namespace): /dev/null on every number, and `why` as the error, so that a
/// rebind there shares nothing. Needs `openat`.
SocketTables no_socket_tables(std::string why);

/// Whether `socket`, of a table of `kind`, holds `spec`'s port against it: it
/// counts as bound (proc_net_bound), is on the port at an address that
/// clashes with `spec` (specs_clash; a socket's device and IPV6_V6ONLY do not
/// show in the table, so an IPv6 wildcard is taken for dual-stack, and any
/// device for `spec`'s). Whose socket it is, foreign_holders() has judged
/// by its inode already. Pure.
bool holds_against(const ProcNetSocket& socket, ProcNetKind kind,
                   const wire::ListenerSpec& spec) noexcept;

/// Judges `rebinds` against the sides' tables (`host` for HOST listeners,
/// `target` for SPLICE ones), each table read once, a chunk at a time from
/// offset 0 (a TCP table only up to its last listener, which the kernel
/// lists first), whatever the number of rebinds. For each rebind, in order:
/// the first socket that holds_against() it and is not among `own` (the
/// inodes of sluiced's listeners), as "127.0.0.2:8080" or "[::1]:8080";
/// nothing when there is none; an error, so that it shares nothing, when
/// its side has an error, a read fails, a table is longer than sluiced reads
/// (16 MiB) or holds more than 4096 other sockets on these ports: an unread
/// socket could be the other program's. Lines that are not the kernel's
/// shape are skipped. Needs `pread64` on the tables.
std::vector<Result<std::optional<std::string>>> foreign_holders(
    const SocketTables& host, const SocketTables& target,
    std::span<const wire::ListenerSpec> rebinds, std::span<const uint64_t> own);

/// share_ports()'s check on these sides: foreign_holders() on `host` and
/// `target`. Both must outlive the check.
ForeignHolderCheck check_holders_on(const SocketTables& host, const SocketTables& target);

}  // namespace sluice
