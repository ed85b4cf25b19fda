// Who may hold a control connection, and how many: the control server's
// limits, and the one decision it takes for every client once sluiced has
// said who the client is (PeerQuery, worker/broker_client.h).
//
// A client is accepted, then identified by sluiced; until then it is not
// served, not read, and does not count as a session (at most
// kPeerQueryWindow clients wait for their answer). Once identified:
//   - a client the control policy gives no access is refused at once with
//     the reason (notPermitted), before a byte of it is read;
//   - a client with read access only is admitted while its uid holds fewer
//     than max_reader_sessions_per_uid sessions and all such clients hold
//     fewer than max_clients - reserved_commit_slots;
//   - a client that may commit is admitted while there are fewer than
//     max_clients sessions.
// Refused clients are told `busy` with the limit they met. So users with no
// access cannot hold a slot at all, and users who may only read cannot keep
// out a user who may commit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "policy/control_policy.h"
#include "schema/frame.h"

namespace sluice {

/// Limits of the control server.
struct ControlLimits {
  /// Limit: control sessions (identified and admitted clients) at once.
  /// Each holds at most one request and one response in memory (see below);
  /// 64 leaves room for many concurrent scripted clients.
  size_t max_clients = 64;
  /// Limit: sessions kept for users who may commit. Users with read access
  /// only share the other max_clients - 16 = 48, so however many read-only
  /// connections are open, an administrator (and up to 15 of their scripts)
  /// can still connect and commit.
  size_t reserved_commit_slots = 16;
  /// Limit: sessions of one uid that may only read. A person or a monitoring
  /// job runs a few sluicectl at once; 8 is plenty, and it takes at least 6
  /// read-only users to fill the 48 shared slots. Users who may commit are
  /// not limited per uid: they can already replace every rule, and their
  /// scripts may run many sluicectl at once.
  size_t max_reader_sessions_per_uid = 8;
  /// Limit: a request must arrive whole within this time once it has begun,
  /// and replies must drain within it: slow-loris clients are cut off.
  uint64_t request_timeout_ns = 5'000'000'000ULL;
  /// Limit: a connected client with nothing in flight is dropped after this.
  uint64_t idle_timeout_ns = 60'000'000'000ULL;
  /// Limit: bytes of one request from a client that may not commit. Its
  /// requests (hello, getState, history, stats) take well under 1 KiB; only
  /// a commit carries tables, up to the frame limit (4 MiB). 64 KiB keeps
  /// the 48 read-only sessions under 3 MiB of input buffers.
  size_t max_reader_request_bytes = 64u << 10;
  /// Limit: reply bytes queued for one client. A client's next request is
  /// not read or answered until its last reply has drained (back-pressure),
  /// so at most one response (at most one frame, 4 MiB) and one error wait
  /// for it; more is a bug, and the client is dropped.
  size_t max_output_bytes = kMaxControlMessageBytes + (64u << 10);
};

/// The sessions open now, as admission counts them for one new client.
struct SessionCounts {
  size_t sessions = 0;        // every admitted client
  size_t readers = 0;         // admitted clients without commit access
  size_t readers_of_uid = 0;  // of them, those of the new client's uid
};

/// What admission decided for one identified client.
enum class Admission {
  kAdmit,        // served: the hello goes out now
  kNoAccess,     // the control policy grants nothing: notPermitted
  kFull,         // max_clients sessions are open: busy
  kReadersFull,  // the slots not reserved for committers are taken: busy
  kUidFull,      // this uid holds max_reader_sessions_per_uid: busy
};

/// Decides whether a client with `access` is admitted next to the sessions
/// `counts` describes, under `limits`. Pure; never fails.
Admission decide_admission(const ControlLimits& limits, ControlAccess access,
                           const SessionCounts& counts) noexcept;

/// Returns the busy message for a refusal `decision` (not kAdmit or
/// kNoAccess, which have none) of uid `uid`: which limit it met, and that it
/// may retry.
std::string busy_message(Admission decision, const ControlLimits& limits,
                         const SessionCounts& counts, uint32_t uid);

}  // namespace sluice
