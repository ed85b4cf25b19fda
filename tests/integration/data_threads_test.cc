// The data path's second thread (sluiced --data-threads 2) against the real
// daemon: both threads serve connections and every one is forwarded; the
// connection limit holds exactly across them; commits that keep a port and
// close others refuse and reset nothing while clients load both threads;
// a removed rule's connections end on every thread; clients queued at the
// limit wake no thread in a loop.
// Every wait and loop is bounded in count and time; which thread the kernel
// wakes is up to it, so the tests load the port until the second thread has
// served, with a deadline, and never depend on how fast the machine is.
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "schema/model.h"
#include "tests/integration/control_util.h"
#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/stats_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/json_check.h"
#include "tests/rule_util.h"

namespace sluice::test {
namespace {

using Clock = std::chrono::steady_clock;

/// Starts `d` with `args` and waits until it serves; a fatal failure, with
/// its log, when it does not.
void start_ready(Daemon& d, const std::vector<std::string>& args) {
  d.start(args);
  ASSERT_TRUE(d.wait_ready()) << d.log();
}

/// Listens on 127.0.0.1:18000 (into `target`), then starts `d` with two
/// threads, --max-connections `max` and one rule from 18080 to it.
void start_with_limit(Daemon& d, const char* max, UniqueFd* target) {
  *target = listen_tcp("127.0.0.1", 18000, 128);
  ASSERT_TRUE(target->valid());
  ASSERT_NO_FATAL_FAILURE(start_ready(
      d, {"--data-threads", "2", "--max-connections", max, "-t", "127.0.0.1/18080:18000"}));
}

/// The connections each data-path thread served (--stats JSON), or empty.
std::vector<int64_t> threads_accepted(Daemon& d) {
  std::vector<int64_t> out;
  auto doc = stats_json(d);
  if (!doc) return out;
  const JsonValue* list = doc->get("threadsAccepted");
  if (list == nullptr) return out;
  for (const JsonValue& v : list->array) out.push_back(v.integer());
  return out;
}

/// Waits (at most 10 s, polling --stats) until `d` holds no connection;
/// returns the last count, or -1 when --stats did not answer.
int64_t wait_until_none_active(Daemon& d) {
  int64_t active = -1;
  for (int i = 0; i < 100; ++i) {
    auto doc = stats_json(d);
    if (!doc) return -1;
    active = doc->get("connectionsActive")->integer();
    if (active == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return active;
}

/// The number of threads of process `pid` (its /proc/PID/task entries).
int thread_count(pid_t pid) {
  int n = 0;
  DIR* dir = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
  if (dir == nullptr) return -1;
  while (struct dirent* e = readdir(dir)) n += e->d_name[0] != '.' ? 1 : 0;
  closedir(dir);
  return n;
}

/// A target that accepts every connection on `fd` and closes it at once,
/// until stopped: a client through sluice must then see EOF, not a reset.
class ClosingTarget {
 public:
  explicit ClosingTarget(uint16_t port) : fd_(listen_tcp("127.0.0.1", port, 1024)) {
    thread_ = std::thread([this] {
      while (!stop_) UniqueFd c = accept_one(fd_.get(), 100);
    });
  }
  ~ClosingTarget() {
    stop_ = true;
    thread_.join();
  }
  bool valid() const { return fd_.valid(); }

 private:
  UniqueFd fd_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// Clients that connect to 127.0.0.1:`port` over and over from `n` threads,
/// each reading to EOF, until stopped (at most `seconds`): each counts a
/// connection that ended with EOF as ok, anything else as bad.
class Load {
 public:
  Load(uint16_t port, int n, int seconds = 60) {
    const auto end = Clock::now() + std::chrono::seconds(seconds);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, port, end] {
        for (int k = 0; k < 100000 && !stop_ && Clock::now() < end; ++k) {
          UniqueFd c = connect_tcp("127.0.0.1", port, 10000);
          if (!c.valid()) {
            ++refused_;
            continue;
          }
          char b;
          ssize_t got = recv(c.get(), &b, 1, 0);  // 10 s receive timeout (connect_tcp)
          (got == 0 ? ok_ : bad_)++;
        }
      });
    }
  }
  ~Load() { stop(); }
  /// Stops and joins the clients.
  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  int ok() const { return ok_.load(); }
  int bad() const { return bad_.load(); }
  int refused() const { return refused_.load(); }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0}, bad_{0}, refused_{0};
  std::vector<std::thread> threads_;
};

/// Waits (at most 60 s, polling --stats) until every data-path thread of
/// `d` accepted at least one connection; returns the last counts.
std::vector<int64_t> wait_all_threads_served(Daemon& d) {
  std::vector<int64_t> counts;
  const auto end = Clock::now() + std::chrono::seconds(60);
  for (int i = 0; i < 600 && Clock::now() < end; ++i) {
    counts = threads_accepted(d);
    bool all = !counts.empty();
    for (int64_t n : counts) all = all && n > 0;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return counts;
}

TEST(DataThreads, EveryThreadServesAndEveryConnectionIsForwarded) {
  ClosingTarget target(18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(d, {"--data-threads", "2", "-t", "127.0.0.1/18080:18000"}));
  EXPECT_EQ(thread_count(d.worker_pid()), 2);
  Load load(18080, 6);
  std::vector<int64_t> counts = wait_all_threads_served(d);
  load.stop();
  ASSERT_EQ(counts.size(), 2u) << d.log();
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0) << "the second thread never accepted a connection";
  EXPECT_GT(load.ok(), 0);
  EXPECT_EQ(load.bad(), 0) << "connections reset or cut short";
  EXPECT_EQ(load.refused(), 0);
  // Every connection was counted once, by the thread that accepted it.
  counts = threads_accepted(d);
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_EQ(counts[0] + counts[1], load.ok() + load.bad());
  RunResult text = d.ctl({"--stats"});
  EXPECT_NE(text.out.find("data-path threads: 2; TCP connections each served: "), std::string::npos)
      << text.out;
}

/// Opens `n` connections to 127.0.0.1:18080 one after another, each one
/// only once the previous reached `target` and carried a byte: a fatal
/// failure, with the log of `d`, when one does not.
void open_one_by_one(Daemon& d, int target, int n, std::vector<UniqueFd>* clients,
                     std::vector<UniqueFd>* served) {
  for (int i = 0; i < n; ++i) {
    clients->push_back(connect_tcp("127.0.0.1", 18080));
    ASSERT_TRUE(clients->back().valid()) << "connection " << i;
    served->push_back(accept_one(target, 10000));
    ASSERT_TRUE(served->back().valid()) << "connection " << i << " did not arrive\n" << d.log();
    char b = 'x';
    ASSERT_EQ(send(clients->back().get(), &b, 1, MSG_NOSIGNAL), 1);
    ASSERT_EQ(recv(served->back().get(), &b, 1, 0), 1) << "connection " << i;
  }
}

TEST(DataThreads, LongConnectionsOpenedOneAfterAnotherSpreadEvenlyOverTheThreads) {
  // The kernel wakes the first thread that sleeps in the listener's wait
  // queue, so clients that arrive one at a time (iperf3 -P 4's streams)
  // would all land on one thread while the other idles. A thread that
  // holds more connections than another moves to the back of the queue:
  // each thread holds about half.
  UniqueFd target = listen_tcp("127.0.0.1", 18000, 128);
  ASSERT_TRUE(target.valid());
  for (const char* threads : {"2", "4"}) {
    SCOPED_TRACE(std::string("--data-threads ") + threads);
    const int n = std::stoi(threads);
    Daemon d;
    ASSERT_NO_FATAL_FAILURE(
        start_ready(d, {"--data-threads", threads, "-t", "127.0.0.1/18080:18000"}));
    std::vector<UniqueFd> clients;
    std::vector<UniqueFd> served;
    ASSERT_NO_FATAL_FAILURE(open_one_by_one(d, target.get(), 4 * n, &clients, &served));
    std::vector<int64_t> counts = threads_accepted(d);
    ASSERT_EQ(counts.size(), static_cast<size_t>(n)) << d.log();
    for (int t = 0; t < n; ++t) {
      EXPECT_GE(counts[t], 3) << "thread " << t;
      EXPECT_LE(counts[t], 5) << "thread " << t;
    }
  }
}

TEST(DataThreads, ClientsThatArriveTogetherAreSplitOverTheThreads) {
  // Bursts of 2, 4 and 16 clients queued at once: the first thread back
  // from its wait would take them all (the others are still waking up). A
  // thread that holds more than another hands the client it accepted over:
  // a burst of 2 or 4 splits evenly, one of 16 about evenly.
  UniqueFd target = listen_tcp("127.0.0.1", 18000, 128);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(d, {"--data-threads", "2", "-t", "127.0.0.1/18080:18000"}));
  for (int burst : {2, 4, 16, 2, 4, 16}) {
    SCOPED_TRACE("a burst of " + std::to_string(burst));
    const std::vector<int64_t> before = threads_accepted(d);
    ASSERT_EQ(before.size(), 2u) << d.log();
    std::vector<UniqueFd> clients;
    for (int i = 0; i < burst; ++i) {
      clients.push_back(connect_tcp("127.0.0.1", 18080));  // completed by the kernel
      ASSERT_TRUE(clients.back().valid());
    }
    std::vector<UniqueFd> served;
    for (int i = 0; i < burst; ++i) {
      served.push_back(accept_one(target.get(), 10000));
      ASSERT_TRUE(served.back().valid()) << "only " << i << " arrived\n" << d.log();
    }
    const std::vector<int64_t> after = threads_accepted(d);
    ASSERT_EQ(after.size(), 2u);
    // Each decision sees both counts, so at most the eighth apart (9:7).
    const int64_t least = burst <= 4 ? burst / 2 : burst / 2 - 2;
    EXPECT_GE(after[0] - before[0], least) << "the main thread took " << after[0] - before[0];
    EXPECT_GE(after[1] - before[1], least) << "the second thread took " << after[1] - before[1];
    clients.clear();
    served.clear();
    // Every connection ends before the next burst.
    ASSERT_EQ(wait_until_none_active(d), 0) << d.log();
  }
}

TEST(DataThreads, TheConnectionLimitHoldsExactlyAcrossThreads) {
  // --max-connections 8 and 32 clients connecting at once from 8 threads:
  // both data-path threads accept, and exactly 8 reach the target until
  // one ends.
  Daemon d;
  UniqueFd target;
  ASSERT_NO_FATAL_FAILURE(start_with_limit(d, "8", &target));
  std::vector<UniqueFd> clients(32);
  std::vector<std::thread> connectors;
  for (int t = 0; t < 8; ++t) {
    connectors.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) clients[t * 4 + i] = connect_tcp("127.0.0.1", 18080);
    });
  }
  for (auto& t : connectors) t.join();
  for (const UniqueFd& c : clients) ASSERT_TRUE(c.valid());
  std::vector<UniqueFd> served;
  for (int i = 0; i < 8; ++i) {
    served.push_back(accept_one(target.get(), 10000));
    ASSERT_TRUE(served.back().valid()) << "only " << i << " of 8 arrived\n" << d.log();
  }
  EXPECT_FALSE(accept_one(target.get(), 1000).valid()) << "a 9th connection passed the limit";
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("connectionsActive")->integer(), 8);
  // One ends (reset: both sides at once): one more is let through, no more.
  struct linger lg = {1, 0};
  setsockopt(served[0].get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  served[0].reset();
  UniqueFd next = accept_one(target.get(), 10000);
  EXPECT_TRUE(next.valid()) << "the paused listener did not resume\n" << d.log();
  EXPECT_FALSE(accept_one(target.get(), 1000).valid()) << "two came in for one slot";
}

/// CPU time process `pid` used so far, all its threads, in clock ticks
/// (/proc/PID/stat: utime + stime), or -1.
long cpu_ticks(pid_t pid) {
  const std::string utime = proc_stat_field(pid, 14);
  const std::string stime = proc_stat_field(pid, 15);
  if (utime.empty() || stime.empty()) return -1;
  return std::stol(utime) + std::stol(stime);
}

TEST(DataThreads, ClientsQueuedAtTheLimitSpinNoThreadAndEachFreedSlotLetsOneIn) {
  // The threads wait on a shared listener level-triggered: at
  // --max-connections every thread must leave the socket (the main one
  // parks it, the others hand it over and stay off), or the queued clients
  // would wake them at every wait. The worker then uses next to no CPU
  // while 12 clients wait; each slot freed lets exactly one in; and the
  // second thread, back on the socket, serves again once the limit is gone.
  Daemon d;
  UniqueFd target;
  ASSERT_NO_FATAL_FAILURE(start_with_limit(d, "4", &target));
  std::vector<UniqueFd> clients;
  std::vector<UniqueFd> served;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(connect_tcp("127.0.0.1", 18080));
    served.push_back(accept_one(target.get(), 10000));
    ASSERT_TRUE(served.back().valid()) << "connection " << i << " did not arrive\n" << d.log();
  }
  for (int i = 0; i < 12; ++i) {
    clients.push_back(connect_tcp("127.0.0.1", 18080));  // completed by the kernel, queued
    ASSERT_TRUE(clients.back().valid());
  }
  EXPECT_FALSE(accept_one(target.get(), 500).valid()) << "a 5th connection passed the limit";
  // 2 s of 12 queued clients. A thread woken at every wait would spend most
  // of a core on it even on a busy machine; parked, the worker spends a few
  // ticks (a muted thread looks at the counters every 250 ms).
  const long hz = sysconf(_SC_CLK_TCK);
  const long before = cpu_ticks(d.worker_pid());
  ASSERT_GE(before, 0);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  const long spent = cpu_ticks(d.worker_pid()) - before;
  EXPECT_LE(spent, hz * 2 / 5) << "the worker spent " << spent << " of " << hz * 2
                               << " ticks with clients queued at the limit: it spins";
  // One slot freed at a time, 8 times, with clients still queued after the
  // last: each lets exactly one client through.
  for (int round = 0; round < 8; ++round) {
    struct linger lg = {1, 0};
    setsockopt(served.front().get(), SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    served.erase(served.begin());  // reset: the connection ends at once
    served.push_back(accept_one(target.get(), 10000));
    ASSERT_TRUE(served.back().valid())
        << "round " << round << ": a freed slot let no queued client in\n"
        << d.log();
    EXPECT_FALSE(accept_one(target.get(), 300).valid())
        << "round " << round << ": two came in for one slot";
  }
  served.clear();
  clients.clear();
  target.reset();
  // No limit in reach now: both threads serve again.
  ClosingTarget closing(18000);
  ASSERT_TRUE(closing.valid());
  const std::vector<int64_t> at_limit = threads_accepted(d);
  ASSERT_EQ(at_limit.size(), 2u);
  std::vector<int64_t> counts;
  {
    Load load(18080, 3);
    const auto end = Clock::now() + std::chrono::seconds(60);
    for (int i = 0; i < 600 && Clock::now() < end; ++i) {
      counts = threads_accepted(d);
      if (counts.size() == 2 && counts[0] > at_limit[0] && counts[1] > at_limit[1]) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    load.stop();
    EXPECT_EQ(load.bad(), 0);
  }
  ASSERT_EQ(counts.size(), 2u);
  EXPECT_GT(counts[1], at_limit[1]) << "the second thread never came back to the socket\n"
                                    << d.log();
  EXPECT_GT(counts[0], at_limit[0]);
}

TEST(DataThreads, CommitsThatKeepAPortRefuseAndResetNothingWhileBothThreadsServe) {
  // 200 commits keep 18080 and move a second rule between 18090 and 18091,
  // closing a listener both threads wait on each time, while clients load
  // both ports: the kept port refuses and resets nothing, and the worker
  // lives on.
  ClosingTarget target(18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(d, {"--data-threads", "2", "-t", "127.0.0.1/18080:18000"}));
  Load kept_load(18080, 3);
  Load moving_load(18090, 2);  // refused while 18090 is closed: only counted
  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  uint64_t gen = get_state(*control).generation;
  for (int i = 0; i < 200; ++i) {
    control::CommitRequest req;
    req.tables.of(Pif::kHost).rules = {make_rule("127.0.0.1", 18080, 18080, 18000),
                                       make_rule("127.0.0.1", static_cast<uint16_t>(18090 + i % 2),
                                                 static_cast<uint16_t>(18090 + i % 2), 18000)};
    req.expected_generation = gen;
    control::CommitResult r = commit_request(*control, req);
    ASSERT_TRUE(r.applied) << (r.failures.empty() ? "" : r.failures[0].message) << d.log();
    gen = r.generation;
    prober.await_probe();
  }
  prober.stop();
  kept_load.stop();
  moving_load.stop();
  std::vector<int64_t> counts = threads_accepted(d);
  ASSERT_EQ(counts.size(), 2u) << d.log();
  EXPECT_GT(counts[1], 0) << "the second thread served nothing: the test proves little";
  EXPECT_GE(prober.ok(), 200);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);
  EXPECT_EQ(kept_load.bad(), 0);
  EXPECT_EQ(kept_load.refused(), 0);
  // The moving port's clients are only load: a client whose handshake the
  // kernel completes between a closing listener's drain and its close is
  // reset by design (TcpListener::stop_new_connections).
  EXPECT_GT(moving_load.ok(), 0);
  EXPECT_TRUE(listening(18080));
  EXPECT_EQ(d.ctl({"--stats"}).status, 0) << d.log();
}

TEST(DataThreads, ARemovedRulesConnectionsEndOnEveryThread) {
  // Connections held open through 18081 on both threads; a commit that
  // removes the rule with endRemovedFlows resets every one of them.
  UniqueFd target = listen_tcp("127.0.0.1", 18001, 1024);
  ClosingTarget loader_target(18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(
      d, {"--data-threads", "2", "-t", "127.0.0.1/18080:18000", "-t", "127.0.0.1/18081:18001"}));
  // Hold connections, 8 at a time from 8 threads, until both threads hold
  // some (at most 64 rounds).
  std::vector<UniqueFd> clients, servers;
  std::vector<int64_t> before = threads_accepted(d);
  ASSERT_EQ(before.size(), 2u);
  for (int round = 0; round < 64; ++round) {
    std::vector<UniqueFd> batch(8);
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&, t] { batch[t] = connect_tcp("127.0.0.1", 18081); });
    }
    for (auto& t : ts) t.join();
    for (UniqueFd& c : batch) {
      ASSERT_TRUE(c.valid());
      clients.push_back(std::move(c));
      servers.push_back(accept_one(target.get(), 10000));
      ASSERT_TRUE(servers.back().valid()) << d.log();
    }
    std::vector<int64_t> now = threads_accepted(d);
    if (now.size() == 2 && now[0] > before[0] && now[1] > before[1]) break;
  }
  std::vector<int64_t> now = threads_accepted(d);
  ASSERT_EQ(now.size(), 2u);
  EXPECT_GT(now[1], before[1]) << "no held connection on the second thread: the test proves little";
  auto control = connect_control(d);
  ASSERT_TRUE(control.has_value());
  control::CommitRequest req;
  req.tables.of(Pif::kHost).rules = {make_rule("127.0.0.1", 18080, 18080, 18000)};
  req.expected_generation = get_state(*control).generation;
  req.end_removed_flows = true;
  control::CommitResult r = commit_request(*control, req);
  ASSERT_TRUE(r.applied) << d.log();
  // Every held connection is reset, on whichever thread held it.
  for (size_t i = 0; i < clients.size(); ++i) {
    char b;
    ssize_t got = recv(clients[i].get(), &b, 1, 0);  // 10 s receive timeout
    EXPECT_TRUE(got < 0 && errno == ECONNRESET) << "client " << i << " got " << got;
  }
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("connectionsActive")->integer(), 0);
  EXPECT_TRUE(wait_for_log(d, "ended " + std::to_string(clients.size()) + " connections"))
      << d.log();
}

TEST(DataThreads, AChainThroughASharedListenerIsRecognisedEveryTime) {
  // 192.0.2.1 is one of this namespace's own addresses. The first rule is
  // guarded (its target is served by the wildcard listener of the second),
  // so it stays on the main thread; the second is shared with the other
  // thread. Each connection the first makes arrives on the second's
  // listener, on either thread, and must be recognised as sluice's own
  // every time, as with one thread: on loopback it may be queued before
  // connect() returns, and the other thread then waits for its record.
  RunResult ip = run_command({"/sbin/ip", "addr", "replace", "192.0.2.1/32", "dev", "lo"});
  ASSERT_EQ(ip.status, 0) << ip.err;
  UniqueFd server = listen_tcp("127.0.0.1", 18000, 128);
  ASSERT_TRUE(server.valid());
  std::atomic<bool> stop{false};
  std::thread answering([&] {
    while (!stop) {
      UniqueFd c = accept_one(server.get(), 100);
      if (c.valid()) (void)!send(c.get(), "x", 1, MSG_NOSIGNAL);
    }
  });
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(
      start_ready(d, {"--data-threads", "2", "-t", "0.0.0.0/18080:192.0.2.1/18081", "-t",
                      "0.0.0.0/18081:127.0.0.1/18000"}));
  constexpr int kRounds = 60;
  int delivered = 0;
  for (int i = 0; i < kRounds; ++i) {
    const ConnectionEnd end = connect_then_end("127.0.0.1", "127.0.0.1", 18080);
    ASSERT_TRUE(end.connected) << std::strerror(end.err) << "\n" << d.log();
    delivered += end.bytes > 0 ? 1 : 0;
  }
  stop = true;
  answering.join();
  EXPECT_EQ(delivered, 0) << "connections of the guarded rule passed the shared listener";
  auto doc = stats_json(d);
  ASSERT_TRUE(doc.has_value());
  const JsonValue* shared = rule_with(*doc, "[0.0.0.0]:18081");
  ASSERT_NE(shared, nullptr);
  EXPECT_EQ(shared->get("loops")->integer(), kRounds);
}

TEST(DataThreads, SixteenThreadsStartAndServe) {
  // The most --data-threads accepts: every thread starts under the filter
  // (one malloc arena for all: a ninth arena would ask sched_getaffinity).
  ClosingTarget target(18000);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(d, {"--data-threads", "16", "-t", "127.0.0.1/18080:18000"}));
  EXPECT_EQ(thread_count(d.worker_pid()), 16);
  Load load(18080, 8);
  const auto end = Clock::now() + std::chrono::seconds(30);
  while (load.ok() < 2000 && Clock::now() < end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  load.stop();
  EXPECT_GT(load.ok(), 0);
  EXPECT_EQ(load.bad(), 0);
  std::vector<int64_t> counts = threads_accepted(d);
  EXPECT_EQ(counts.size(), 16u) << d.log();
  EXPECT_EQ(thread_count(d.worker_pid()), 16) << d.log();
}

TEST(DataThreads, AutoStartsOneThreadPerCpuSluicedMayRunOn) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof(set), &set), 0);
  const int want = std::min(CPU_COUNT(&set), 16);
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(
      start_ready(d, {"--data-threads", "auto", "-t", "127.0.0.1/18080:18000"}));
  EXPECT_EQ(thread_count(d.worker_pid()), want) << d.log();
  EXPECT_EQ(threads_accepted(d).size(), static_cast<size_t>(want));
}

TEST(DataThreads, ThousandsOfConnectionsComeAndGoOnEveryThread) {
  // 1,600 connections held at once, spread over both threads, then all
  // closed, three times: the threads' allocations grow and shrink (glibc
  // trims a heap it shrinks), and the worker serves on, with every slot
  // given back.
  UniqueFd target = listen_tcp("127.0.0.1", 18000, 4096);
  ASSERT_TRUE(target.valid());
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(start_ready(d, {"--data-threads", "2", "--max-connections-per-source",
                                          "0", "-t", "127.0.0.1/18080:18000"}));
  constexpr int kHeld = 1600;
  for (int round = 0; round < 3; ++round) {
    std::vector<UniqueFd> clients(kHeld);
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
      ts.emplace_back([&, t] {
        for (int i = t; i < kHeld; i += 8) clients[i] = connect_tcp("127.0.0.1", 18080);
      });
    }
    for (auto& t : ts) t.join();
    std::vector<UniqueFd> servers;
    for (int i = 0; i < kHeld; ++i) {
      ASSERT_TRUE(clients[i].valid()) << "round " << round << " client " << i;
      servers.push_back(accept_one(target.get(), 10000));
      ASSERT_TRUE(servers.back().valid()) << "round " << round << ": " << i << " arrived\n"
                                          << d.log();
    }
    clients.clear();
    servers.clear();
    // Every slot comes back.
    EXPECT_EQ(wait_until_none_active(d), 0) << "round " << round;
  }
  std::vector<int64_t> counts = threads_accepted(d);
  ASSERT_EQ(counts.size(), 2u) << d.log();
  EXPECT_GT(counts[1], 0) << "the second thread held none";
  EXPECT_EQ(counts[0] + counts[1], 3 * kHeld);
}

}  // namespace
}  // namespace sluice::test
