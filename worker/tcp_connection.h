// One forwarded TCP connection: client <-> target, each direction copied
// through a small buffer for its first bytes, then spliced through a pipe
// (worker/transfer_mode.h).
#pragma once

#include <cstdint>
#include <memory>

#include "base/unique_fd.h"
#include "worker/conn_log.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"

namespace sluice {

class TcpConnection final : public EventHandler {
 public:
  /// Takes the accepted client and the target socket whose connect() is in
  /// progress (or done). Registers nothing; call start().
  /// `target_port` is the port it connects to (for messages);
  /// `connect_deadline_ns` is when a connect still in progress is given up
  /// (monotonic_ns), 0 when already connected.
  TcpConnection(Forwarder& owner, UniqueFd client, UniqueFd target, bool connected,
                std::shared_ptr<const Route> route, uint16_t target_port,
                uint64_t connect_deadline_ns);
  /// Registers both sockets with the loop (edge-triggered, in and out): the
  /// client socket with this object, the target socket with target_side_,
  /// so that each event says which socket it is for.
  Result<void> start() noexcept;
  /// Handles readiness of the client socket: readable moves the client's
  /// bytes to the target, writable lets the target's bytes through. Before
  /// the target has answered, client events wait (its bytes stay queued).
  void on_event(uint32_t events) noexcept override;
  /// Handles readiness of the target socket: the first one completes the
  /// connect (then both directions are pumped once); afterwards readable
  /// moves the target's bytes to the client, writable the client's bytes on.
  void on_target_event(uint32_t events) noexcept;

  /// Ends the connection with a reset to both peers (a removed rule's flow).
  void reset() noexcept { close_all(true, ConnEnd::kEnded); }
  /// Ends a connection whose start() failed: a reset to both peers, and its
  /// line in the connection log.
  void abort_start() noexcept { close_all(true, ConnEnd::kReset); }
  /// With the connection log on, logs the line of a connection still open
  /// when the worker stops (the forwarder then closes it).
  void log_stopped() noexcept {
    if (record_ && !closed_) log_line(ConnEnd::kStopped, 0);
  }
  /// Keeps what the connection log (--log-connections) says of it when it
  /// ends: the client `client`, accepted at `now_ns`. Only while the log is
  /// on; without it, nothing is kept.
  void keep_record(const Endpoint& client, uint64_t now_ns) {
    record_ = std::make_unique<ConnRecord>();
    record_->client = client;
    record_->start_ns = now_ns;
  }
  /// True when the connect to the target is still in progress at `now_ns`
  /// and past its deadline.
  bool connect_overdue(uint64_t now_ns) const noexcept {
    return !connected_ && !closed_ && now_ns >= connect_deadline_ns_;
  }
  /// Gives up on the target: counts the failure, logs it (rate-limited) and
  /// resets the client, which sees a refusal rather than a hang.
  void connect_timed_out() noexcept;
  /// True when the connection is established and no byte has moved either
  /// way for `idle_ns` at `now_ns`. Called by the forwarder's periodic scan:
  /// a connection that moved bytes since the previous call is marked active
  /// at `now_ns` (so the data path itself never reads the clock), which makes
  /// the timeout fire up to one scan interval late, never early.
  bool idle_for(uint64_t now_ns, uint64_t idle_ns) noexcept {
    if (!connected_ || closed_) return false;
    if (moved_) {
      moved_ = false;
      last_active_ns_ = now_ns;
      return false;
    }
    return now_ns - last_active_ns_ >= idle_ns;
  }
  /// Ends an idle connection (--idle-timeout): counts it, logs it
  /// (rate-limited, debug) and resets both peers. A reset rather than a FIN:
  /// a FIN would tell each peer that the other finished its stream, which
  /// can pass a cut-off transfer as complete; a reset says it was aborted.
  void idle_timed_out() noexcept;
  /// The rule the connection was accepted under.
  const Route& route() const { return *route_; }

  size_t slot = 0;  // index in the forwarder's connection table
  /// The local endpoint of the target socket, recorded for the loop guard
  /// (valid when `guarded`).
  Endpoint own_endpoint;
  bool guarded = false;
  /// Its slot under the connection limits; the forwarder gives it back
  /// when the connection ends.
  ConnSlot conn_slot;
  /// Its place under --max-connections-per-source (empty when off); the
  /// forwarder gives it back when the connection ends.
  SourceSlot source;

 private:
  /// One direction of the connection.
  struct Direction {
    Pipe pipe;                     // once splicing; taken from the pool, given back when empty
    uint64_t delivered = 0;        // bytes delivered: decides the switch to splice
    std::unique_ptr<char[]> held;  // copy path: bytes a short send() left behind
    size_t held_off = 0, held_len = 0;
    bool splicing = false;    // switched to splice() (should_splice)
    bool read_full = false;   // a recv() filled the whole copy buffer (should_splice)
    bool eof_seen = false;    // an event of the source reported FIN, hang-up or error
    bool fin_seen = false;    // one reported FIN alone (read_reached_fin)
    bool read_eof = false;    // the source sent FIN
    bool write_shut = false;  // FIN forwarded to the destination
    // The source sent urgent data (MSG_OOB; telnet's interrupt, FTP's ABOR):
    // a short recv() no longer means drained or at the FIN (it stops at the
    // mark), and the direction copies for good (splice() cannot pass it).
    bool urgent = false;
    // No pipe could be had (the worker is out of descriptors): copies for good.
    bool copy_only = false;
    /// Bytes read from the source and not yet delivered: the destination
    /// was full, so its writable event must resume the direction.
    bool pending() const noexcept { return pipe.bytes > 0 || held_len > 0; }
  };
  enum class Pump { kIdle, kFinished, kError };

  /// The epoll cookie of the target socket: forwards to on_target_event().
  struct TargetSide final : public EventHandler {
    explicit TargetSide(TcpConnection* owner) : conn(owner) {}
    /// Forwards the target socket's events to the connection.
    void on_event(uint32_t events) noexcept override { conn->on_target_event(events); }
    TcpConnection* conn;
  };

  /// Pumps the client -> target direction; false when the connection ended.
  bool pump_up() noexcept;
  /// Pumps the target -> client direction; false when the connection ended.
  bool pump_down() noexcept;
  /// Ends the connection after a pump when it failed (reset) or when both
  /// directions are shut (orderly close); false when it ended.
  bool settle(Pump r) noexcept;

  /// The source `from` of `dir` reported urgent data (EPOLLPRI): from now on
  /// the direction reads it inline (SO_OOBINLINE) and copies. Once per
  /// direction. Needs `setsockopt(SO_OOBINLINE)`.
  void note_urgent(int from, Direction& dir) noexcept;
  /// After an event with EPOLLERR on `fd` that no pump acted on: resets the
  /// connection when the socket holds an error (a peer's reset after its own
  /// FIN). Needs `getsockopt(SO_ERROR)`.
  void reset_on_error(int fd) noexcept;
  /// Checks the result of the non-blocking connect (SO_ERROR) when the
  /// target socket reported `events`: EPOLLOUT with no error means connected.
  void finish_connect(uint32_t events) noexcept;
  /// Moves bytes `from` -> `to`, adding what was delivered to
  /// `byte_counter` (the total) and `rule_counter` (the rule's): by copy
  /// while the direction is short, then by splice (transfer_mode.h).
  Pump pump(int from, int to, Direction& dir, Counter* byte_counter,
            Counter* rule_counter) noexcept;
  /// The copy path: flushes held bytes, then recv() into the forwarder's
  /// scratch buffer and send() on, until the source is drained, the
  /// destination full, or the direction proves long enough to splice.
  /// Needs `recvfrom`, `sendto`.
  Pump pump_copy(int from, int to, Direction& dir, Counter* byte_counter,
                 Counter* rule_counter) noexcept;
  /// The splice path: moves bytes `from` -> pipe -> `to` until both would
  /// block. Needs `splice`.
  Pump pump_splice(int from, int to, Direction& dir, Counter* byte_counter,
                   Counter* rule_counter) noexcept;
  /// Forwards the source's FIN once everything it sent was delivered: by
  /// shutdown(SHUT_WR), or by the close that follows when the other
  /// direction is finished already.
  Pump finish(int to, Direction& dir) noexcept;
  /// Closes both sockets. With `reset`, the surviving peer gets an RST
  /// (SO_LINGER 0) instead of a FIN, so a reset or refusal is propagated.
  /// With the connection log on, logs the connection's line: it ended
  /// `how` (with `err`, the errno of a failed connect).
  void close_all(bool reset, ConnEnd how, int err = 0) noexcept;
  /// Logs the connection log's line: it ended `how` (with `err`).
  void log_line(ConnEnd how, int err) noexcept;
  /// Counts `n` bytes of `dir` delivered to its destination: the direction's
  /// total, the forwarder's (`byte_counter`) and the rule's (`rule_counter`),
  /// and the activity the idle scan looks for.
  void count_delivered(Direction& dir, size_t n, Counter* byte_counter,
                       Counter* rule_counter) noexcept {
    dir.delivered += n;
    *byte_counter += n;
    *rule_counter += n;
    moved_ = true;
  }
  /// A read of `dir`'s source found its end: nothing more comes from it.
  void reached_eof(Direction& dir) noexcept {
    dir.read_eof = true;
    note_fin(dir);
  }
  /// Notes in the connection log's record that `dir`'s source finished
  /// first, unless the other did: at its first event that reports the FIN
  /// (the kernel has it, perhaps behind bytes not delivered yet), or when a
  /// read finds it.
  void note_fin(const Direction& dir) noexcept {
    if (record_ && record_->first_fin == 0) record_->first_fin = &dir == &up_ ? 'c' : 't';
  }

  Forwarder& owner_;
  UniqueFd client_, target_;
  std::shared_ptr<const Route> route_;
  Direction up_;    // client -> target
  Direction down_;  // target -> client
  TargetSide target_side_{this};
  bool connected_;
  bool closed_ = false;
  bool moved_ = false;    // bytes moved since the idle scan last looked (idle_for)
  uint16_t target_port_;  // the port it connects to, for messages (in the padding)
  uint64_t connect_deadline_ns_;
  uint64_t last_active_ns_;             // when the idle scan last saw bytes move (or the start)
  std::unique_ptr<ConnRecord> record_;  // keep_record(): only with --log-connections
};

}  // namespace sluice
