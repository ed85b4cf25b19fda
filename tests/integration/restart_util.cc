#include "tests/integration/restart_util.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

namespace sluice::test {

pid_t wait_for_new_worker(const Daemon& d, pid_t old) {
  for (int i = 0; i < 2000; ++i) {
    pid_t w = d.worker_pid();
    if (w > 0 && w != old) return w;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

pid_t wait_for_serving_worker(const Daemon& d, pid_t old, size_t ready_lines, std::string* why) {
  const pid_t worker = wait_for_new_worker(d, old);
  if (worker <= 0) {
    *why = "no new worker";
    return -1;
  }
  if (!wait_for_log(d, kWorkerReady, ready_lines)) {
    *why = "the new worker does not serve";
    return -1;
  }
  return worker;
}

char process_state(pid_t pid) {
  const std::string state = proc_stat_field(pid, 3);
  return state.empty() ? 0 : state[0];
}

bool wait_for_state(pid_t pid, char state) {
  for (int i = 0; i < 1000; ++i) {
    if (process_state(pid) == state) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

void kill_worker_while_stopped(Daemon& d, pid_t worker, const std::function<void()>& meanwhile) {
  d.signal(SIGSTOP);
  const bool stopped = wait_for_state(d.pid(), 'T');
  // A zombie: dead, its descriptors closed, not yet reaped by the stopped
  // sluiced. Only sluiced's escrow holds the listening sockets now.
  const bool killed = stopped && ::kill(worker, SIGKILL) == 0 && wait_for_state(worker, 'Z');
  if (killed) meanwhile();
  d.signal(SIGCONT);
  ASSERT_TRUE(stopped) << "sluiced did not stop";
  ASSERT_TRUE(killed) << "the worker " << worker << " did not die";
}

namespace {

/// Adds to `out` the inodes of the sockets that the /proc/net table `table`
/// lists as bound to local port `port` with remote port 0. A missing table
/// (tcp6 without IPv6) adds nothing.
void add_listener_inodes(const std::string& table, uint16_t port, std::set<uint64_t>* out) {
  std::ifstream in(table);
  std::string line;
  std::getline(in, line);  // the header
  // Limit: a test's namespace holds a few hundred sockets at most.
  for (int i = 0; i < 100000 && std::getline(in, line); ++i) {
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when
    // retrnsmt uid timeout inode ...", each address as HEX:PORT in hex.
    std::istringstream f(line);
    std::string sl, local, remote, st, queues, timer, retransmits, uid, timeout;
    uint64_t inode = 0;
    if (!(f >> sl >> local >> remote >> st >> queues >> timer >> retransmits >> uid >> timeout >>
          inode)) {
      continue;
    }
    const size_t lcolon = local.rfind(':');
    const size_t rcolon = remote.rfind(':');
    if (lcolon == std::string::npos || rcolon == std::string::npos) continue;
    const unsigned long lport = std::strtoul(local.c_str() + lcolon + 1, nullptr, 16);
    const unsigned long rport = std::strtoul(remote.c_str() + rcolon + 1, nullptr, 16);
    if (lport == port && rport == 0 && inode != 0) out->insert(inode);
  }
}

}  // namespace

std::set<uint64_t> listener_inodes(const std::string& net_dir, const std::string& proto,
                                   uint16_t port) {
  std::set<uint64_t> out;
  add_listener_inodes(net_dir + proto, port, &out);
  add_listener_inodes(net_dir + proto + "6", port, &out);
  return out;
}

}  // namespace sluice::test
