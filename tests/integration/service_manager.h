// systemd's side of sluiced's service protocols, emulated exactly for the
// tests (there is no systemd as PID 1 on the test machines):
// - the notify socket (sd_notify(3)): a SOCK_DGRAM socket named by
//   NOTIFY_SOCKET; every datagram is kept, in order;
// - the file-descriptor store (sd_pid_notify_with_fds(3)): a datagram with
//   FDSTORE=1 stores the descriptors that come with it under its FDNAME=
//   ("stored" without one); FDSTOREREMOVE=1 drops every descriptor of its
//   FDNAME=; a descriptor of an open file already stored is stored once;
// - the next start (sd_listen_fds_with_names(3)): the socket unit's
//   descriptors first, then the store's, from fd 3 on, with LISTEN_FDS,
//   LISTEN_FDNAMES and LISTEN_PID set in the child after fork.
// Everything is bounded: receiving waits at most the time it is given.
#pragma once

#include <sys/socket.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "tests/integration/daemon.h"

namespace sluice::test {

/// A UNIX socket bound at `path` (an old file there is removed), as a
/// .socket unit makes it: of `type`, listening when `listen_too`.
UniqueFd unit_socket(const std::string& path, int type = SOCK_STREAM, bool listen_too = true);

class ServiceManager {
 public:
  /// Binds the notify socket in a temporary directory of its own.
  ServiceManager();
  ~ServiceManager();
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;

  /// The NOTIFY_SOCKET value.
  const std::string& notify_path() const { return path_; }

  /// Receives and handles datagrams for at most `timeout_ms`, until one
  /// contains `needle` (returned), or "" when none did in time.
  std::string wait_for(const std::string& needle, int timeout_ms = 10000);
  /// Handles whatever datagrams are queued now, without waiting.
  void drain();
  /// Every datagram received so far, in order.
  const std::vector<std::string>& messages() const { return messages_; }

  /// The names in the store, one per stored descriptor, in store order.
  std::vector<std::string> stored_names() const;
  /// How many descriptors are stored.
  size_t stored_count() const { return store_.size(); }
  /// Stores `fd` under `name` as a FDSTORE=1 datagram would (once per open
  /// file): what an earlier run of the service left in the store.
  void store(const std::string& name, UniqueFd fd);

  /// Makes `d`'s next start() get what systemd gives a service: NOTIFY_SOCKET,
  /// and from fd 3 on the socket unit's descriptors `unit_fds` (name, fd; not
  /// owned) and then the store's, named in LISTEN_FDNAMES, with LISTEN_FDS and
  /// LISTEN_PID (the child's own pid).
  void prepare(Daemon& d, const std::vector<std::pair<std::string, int>>& unit_fds) const;

 private:
  /// Receives one datagram within `timeout_ms` and handles it; returns its
  /// text, or "" when none came.
  std::string receive(int timeout_ms);
  /// Applies the store commands of `msg` with its descriptors `fds`.
  void apply(const std::string& msg, std::vector<UniqueFd> fds);

  UniqueFd fd_;
  std::string dir_, path_;
  std::vector<std::string> messages_;
  std::vector<std::pair<std::string, UniqueFd>> store_;
};

}  // namespace sluice::test
