// How one direction of a TCP connection moves its bytes: the decisions of the
// small-transfer path, kept pure so they are tested on their own.
//
// A direction starts by copying: recv() into the forwarder's scratch buffer,
// send() on at once. For the short exchanges that make up most connections
// this is two syscalls per burst and no pipe at all, where splice() needs a
// pipe and two splices plus one that finds the source empty. Once the
// direction has delivered kSpliceAfterBytes and one recv() has filled the
// whole buffer (the source had a backlog: bulk, not a reply), it has proved
// a stream, and it switches to splice() through a pooled pipe, which moves
// the bulk without copying it through user space (HAProxy's splice-auto
// makes the same bet on a full buffer). A long-lived request/response
// connection of small messages never fills the buffer, so it keeps the
// copy path and its lower latency however many bytes it has carried.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sluice {

/// Limit: bytes a direction delivers by recv()/send() before it switches to
/// splice(). 64 KiB is one default pipe's worth: below it, a copy costs less
/// than taking a pipe and splicing in and out; above it, copying every byte
/// through user space costs more CPU per byte than the splices do.
inline constexpr uint64_t kSpliceAfterBytes = 64 * 1024;

/// Limit: bytes asked of one recv() on the copy path, the size of the
/// forwarder's one shared scratch buffer, and so the most a direction holds
/// in the worker's memory when a send() comes back short: 16 KiB, so that
/// every connection of --max-connections (4096) blocked both ways holds at
/// most 128 MiB, a quarter of what their default-sized pipes would. One
/// call still takes a whole request or reply of the short exchanges that
/// the copy path is for; a stream splices after four.
inline constexpr size_t kCopyChunk = 16 * 1024;

/// Whether a direction that has delivered `delivered` bytes should splice
/// from now on: once it has delivered `after` bytes (kSpliceAfterBytes
/// unless a test asks otherwise) and a recv() has filled the whole buffer
/// (`read_was_full`). Only with nothing held back from an earlier short
/// send: the held bytes must reach the destination before any spliced byte.
constexpr bool should_splice(uint64_t delivered, size_t held, bool read_was_full,
                             uint64_t after = kSpliceAfterBytes) noexcept {
  return read_was_full && delivered >= after && held == 0;
}

/// Whether a recv() that returned `got` of `asked` bytes left the socket's
/// receive queue empty, so that asking again would only return EAGAIN.
/// TCP's recv returns less than asked only when the queue ran dry; new bytes
/// after that raise a new edge-triggered event. Not when the source has
/// reported a FIN, hang-up or error (`eof_seen`): its event may already have
/// been consumed, and the next recv() must see the 0 or the error.
constexpr bool read_drained(size_t got, size_t asked, bool eof_seen) noexcept {
  return got < asked && !eof_seen;
}

/// Whether a recv() that returned `got` of `asked` bytes read everything up
/// to the source's FIN, so that the next recv() could only return 0. True
/// when an event before the recv() reported the FIN alone (`fin_seen`:
/// EPOLLRDHUP, with neither EPOLLERR nor EPOLLHUP): the kernel takes a FIN
/// only in order, after every byte before it, so a short read ran into it.
/// Saves the recv() that returns 0 for a reply that comes with its close.
constexpr bool read_reached_fin(size_t got, size_t asked, bool fin_seen) noexcept {
  return got < asked && fin_seen;
}

}  // namespace sluice
