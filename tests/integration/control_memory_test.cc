// What control clients cost the worker in memory, against the real daemon.
// Clients that may only read pipeline many requests for large replies and
// read nothing: before the worker applied back-pressure it answered them
// all at once and queued up to 8 MiB of replies per client (dropping the
// client beyond that), next to up to 4 MiB of input, so 64 such clients
// could make it hold about 768 MiB. Now a client's next request waits until
// its last reply has drained: each holds at most one reply, and every
// request is answered, in order, once the client reads, however deep its
// pipeline.
//
// A client that only promises a large frame costs what it sends. The
// worker's peak resident size (VmHWM in /proc/PID/status) is compared
// before and after; memory, unlike time, does not depend on the machine's
// speed.
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "schema/codec.h"
#include "schema/frame.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"

namespace sluice::test {
namespace {

/// Rules of the daemon: enough that one stats reply is a few hundred KiB.
constexpr int kRules = 2000;
/// Clients: the most one user who may only read can hold.
constexpr int kClients = 8;
/// What the worker used to queue for one client before it dropped it.
constexpr size_t kOldOutputLimit = size_t{8} << 20;
/// Requests of the deep pipeline: their replies add up to more than that.
constexpr int kDeepRequests = 64;

/// The value in KiB of `field` ("VmHWM:") in /proc/`pid`/status, or 0 when
/// unreadable.
long status_kib(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(field.size()));
  }
  return 0;
}

/// The worker's peak resident set in KiB (VmHWM), or 0 when unreadable.
long peak_kib(pid_t pid) {
  return status_kib(pid, "VmHWM:");
}

/// Reads frames from `fd` until `want` have arrived, EOF, or the receive
/// timeout; returns how many were Stats responses with the ids 2, 3, ... in
/// order (counting stops at the first that is not).
int read_stats_replies(int fd, int want) {
  std::vector<uint64_t> words(1 << 16);
  size_t len = 0;
  int good = 0;
  for (int reads = 0; reads < 100000 && good < want; ++reads) {
    auto* data = reinterpret_cast<uint8_t*>(words.data());
    FrameCheck check = check_frame(data, len, kMaxControlMessageBytes);
    if (check.status == FrameStatus::kInvalid) return good;
    if (check.status == FrameStatus::kComplete) {
      auto r = control::decode_response(data, check.frame_bytes);
      if (!r.ok() || !std::holds_alternative<control::Stats>(r->body) ||
          r->id != static_cast<uint64_t>(good + 2)) {
        return good;
      }
      ++good;
      std::memmove(data, data + check.frame_bytes, len - check.frame_bytes);
      len -= check.frame_bytes;
      continue;
    }
    if (check.frame_bytes > words.size() * 8) words.resize(check.frame_bytes / 8 + 1);
    if (len == words.size() * 8) words.resize(words.size() * 2);
    data = reinterpret_cast<uint8_t*>(words.data());
    ssize_t n = recv(fd, data + len, words.size() * 8 - len, 0);
    if (n <= 0) return good;
    len += static_cast<size_t>(n);
  }
  return good;
}

/// Sends `count` stats requests, ids 2 and up, in one write.
void send_stats_requests(int fd, int count) {
  std::string burst;
  for (int i = 0; i < count; ++i) {
    burst += control::encode_request(
        control::Request{static_cast<uint64_t>(i + 2), control::StatsRequest{}});
  }
  ASSERT_EQ(send(fd, burst.data(), burst.size(), MSG_NOSIGNAL), static_cast<ssize_t>(burst.size()));
}

TEST(ControlMemory, ReadersPipeliningLargeRepliesHoldOneReplyEachAndAreAllAnswered) {
  const std::string uid = std::to_string(::getuid());
  PolicyFileFixture policy("control read uid=" + uid + "\n");
  // Single ports to ports 10000 up, 300 to a -t option (a spec is at most
  // 4 KiB).
  std::vector<std::string> args = {"--policy", policy.path()};
  for (int i = 0; i < kRules; ++i) {
    if (i % 300 == 0) args.insert(args.end(), {"-t", "127.0.0.1/"});
    const int port = 20000 + 2 * i;
    args.back() +=
        (i % 300 == 0 ? "" : ",") + std::to_string(port) + ":" + std::to_string(port + 10000);
  }
  Daemon d;
  d.start(args);
  ASSERT_TRUE(d.wait_ready(20000)) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);

  // One stats reply, for its size, and to warm the worker's allocator up.
  size_t reply_bytes = 0;
  {
    UniqueFd c = raw_session(d);
    ASSERT_TRUE(c.valid()) << d.log();
    std::string req = control::encode_request(control::Request{2, control::StatsRequest{}});
    ASSERT_EQ(send(c.get(), req.data(), req.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(req.size()));
    auto r = read_responses(c.get(), 1);
    ASSERT_EQ(r.size(), 1u);
    reply_bytes = control::encode_response(r[0]).size();
  }
  ASSERT_GT(reply_bytes * kDeepRequests, kOldOutputLimit) << "replies too small to show anything";
  ASSERT_LT(reply_bytes * 4, kOldOutputLimit) << "replies too large to show anything";
  const long before = peak_kib(worker);
  ASSERT_GT(before, 0) << "no VmHWM for the worker";

  // Each client pipelines as many requests as the worker used to answer
  // ahead without dropping it (all replies just under 8 MiB), and reads
  // nothing yet.
  const int requests = static_cast<int>((kOldOutputLimit - 1) / reply_bytes);
  std::vector<UniqueFd> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(raw_session(d));
    ASSERT_TRUE(clients.back().valid()) << "client " << c << "\n" << d.log();
    send_stats_requests(clients.back().get(), requests);
  }
  // Give the worker every chance to answer ahead: wait until each client
  // has its first reply waiting (bounded), then read them all at once.
  for (auto& c : clients) {
    char byte;
    EXPECT_EQ(recv(c.get(), &byte, 1, MSG_PEEK), 1) << "dropped before its first reply";
  }
  std::vector<int> answered(kClients, 0);
  std::vector<std::thread> readers;
  for (int c = 0; c < kClients; ++c) {
    readers.emplace_back([&, c] { answered[c] = read_stats_replies(clients[c].get(), requests); });
  }
  for (auto& t : readers) t.join();
  const long after = peak_kib(worker);
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(answered[c], requests) << "client " << c << " was not answered in full\n" << d.log();
  }
  // At most one reply waits per client in the worker (the socket holds a
  // little more): far below the 8 MiB each made it queue before.
  const long grown_kib = after - before;
  std::printf("[ memory   ] %d clients x %d replies of %zu bytes; worker peak grew by %ld KiB\n",
              kClients, requests, reply_bytes, grown_kib);
#ifndef SLUICE_SANITIZE
  EXPECT_LT(grown_kib, static_cast<long>(kClients) * 2 * 1024)
      << "the worker's peak grew by " << grown_kib << " KiB";
#else
  // Under AddressSanitizer the worker's freed memory stays in ASan's
  // quarantine (256 MiB by default), so its peak measures the sanitizer, not
  // the worker; the bound is checked in the normal build, and every reply
  // above and below is still checked here.
#endif

  // A deeper pipeline is not a reason to drop a client any more: the next
  // request simply waits until the client reads.
  send_stats_requests(clients[0].get(), kDeepRequests);
  EXPECT_EQ(read_stats_replies(clients[0].get(), kDeepRequests), kDeepRequests) << d.log();

  // They leave; the next reader is served (bounded: the server frees them
  // in its batch).
  clients.clear();
  bool served = false;
  for (int i = 0; i < 50 && !served; ++i) {
    served = d.ctl().status == 0;
    if (!served) usleep(20000);
  }
  EXPECT_TRUE(served) << d.log();
}

TEST(ControlMemory, AHeaderThatPromisesALargeFrameCostsOnlyWhatArrives) {
  // A client that may commit sends requests of up to 4 MiB. The header
  // alone used to make the worker allocate (and zero) all of it at once, so
  // 40 such clients that sent nothing more held 160 MiB; the buffer now
  // grows with the bytes that come, at most doubling.
  constexpr int kPromisers = 40;
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  const long before = peak_kib(worker);
  ASSERT_GT(before, 0) << "no VmHWM for the worker";
  std::vector<UniqueFd> clients;
  for (int c = 0; c < kPromisers; ++c) {
    clients.push_back(raw_session(d));
    ASSERT_TRUE(clients.back().valid()) << "client " << c << "\n" << d.log();
    // One segment of (4 MiB - 16) bytes, then 4 KiB of it, then silence.
    const uint32_t header[2] = {0, static_cast<uint32_t>((kMaxControlMessageBytes - 16) / 8)};
    std::string bytes(reinterpret_cast<const char*>(header), sizeof(header));
    bytes += std::string(4096, '\0');
    ASSERT_EQ(send(clients.back().get(), bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  // Every client is served: a request round trip on a new session answers
  // only after the worker has read what the others sent.
  EXPECT_EQ(d.ctl().status, 0) << d.log();
  const long grown_kib = peak_kib(worker) - before;
  std::printf("[ memory   ] %d clients each promising a 4 MiB frame; worker peak grew by %ld KiB\n",
              kPromisers, grown_kib);
#ifndef SLUICE_SANITIZE
  EXPECT_LT(grown_kib, 16 * 1024) << "the worker's peak grew by " << grown_kib << " KiB";
#endif
}

TEST(ControlMemory, AnEmptiedLargeTableGivesItsHeapBack) {
  // 8,192 listeners and their routes take about 2 MiB of the worker's heap.
  // Emptied, the table left the worker at that peak: glibc keeps freed
  // blocks below the top of the heap. A commit that closes 1,024 or more
  // returns them at the next tick (malloc_trim).
  Daemon d;
  d.start({"-t", "none"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  const long start = status_kib(worker, "RssAnon:");
  RunResult big = d.ctl({"-t", "127.0.0.1/20000-28191:30000-38191"});
  ASSERT_EQ(big.status, 0) << big.err;
  const long full = status_kib(worker, "RssAnon:");
  ASSERT_EQ(d.ctl({"-t", "none"}).status, 0);
  long emptied = full;
  // Bounded: 50 looks, 100 ms apart (the engine ticks every 250 ms).
  for (int i = 0; i < 50 && emptied > start + (full - start) / 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    emptied = status_kib(worker, "RssAnon:");
  }
  std::printf(
      "[ memory   ] worker RssAnon: %ld KiB idle, %ld KiB with 8,192 listeners, %ld KiB "
      "emptied\n",
      start, full, emptied);
  EXPECT_GT(full - start, 1024) << "8,192 listeners took under 1 MiB: the test proves nothing";
#ifndef SLUICE_SANITIZE
  // The sanitizers' allocator keeps what is freed in quarantine.
  EXPECT_LE(emptied, start + (full - start) / 2) << "the emptied table's heap was kept";
#endif
}

}  // namespace
}  // namespace sluice::test
