// The fixture of the commit engine tests: the real CommitEngine, BrokerClient,
// EventLoop, Forwarder, UdpForwarder and AuditLog of a worker, with the fake
// broker (fake_broker.h) on the other end of a real broker channel, all in the
// test's thread. The test binary runs in a user and network namespace of its
// own (tests/integration/namespace_main.cc), so the fixed ports used here are
// free and only loopback exists.
//
// Every wait is bounded: run_until() turns the loop (and the fake broker) a
// bounded number of times, each waiting at most 10 ms, and reports whether
// the condition came true. No sleep decides a result.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <dirent.h>
#include <cerrno>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "tests/worker/fake_broker.h"
#include "worker/audit.h"
#include "worker/broker_client.h"
#include "worker/commit_engine.h"
#include "worker/event_loop.h"
#include "worker/forwarder.h"
#include "worker/udp_forwarder.h"

namespace sluice::testing {

/// Returns a rule `proto` on `listen`:first-last going to the default target
/// (loopback) port `to` onwards.
inline Rule make_rule(Proto proto, Addr listen, uint16_t first, uint16_t last, uint16_t to) {
  Rule r;
  r.proto = proto;
  r.listen = listen;
  r.first = first;
  r.last = last;
  r.to = to;
  return r;
}

/// Returns a TCP rule 127.0.0.1:port -> loopback:to.
inline Rule tcp_rule(uint16_t port, uint16_t to) {
  return make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), port, port, to);
}

/// Returns a rule of `count` TCP ports on 127.0.0.1 from `first`, going to
/// loopback ports from 40000: enough listeners to fill several batches.
inline Rule wide_rule(uint16_t first, uint16_t count) {
  return make_rule(Proto::kTcp, addr_v4(127, 0, 0, 1), first,
                   static_cast<uint16_t>(first + count - 1), 40000);
}

/// Returns tables whose HOST table holds `rules`.
inline TableSet host_tables(std::vector<Rule> rules) {
  TableSet t;
  t.of(Pif::kHost).rules = std::move(rules);
  return t;
}

/// Returns a non-blocking listening TCP socket on 127.0.0.1:port: the target
/// of a rule.
inline UniqueFd tcp_target(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(bind(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)), 0) << port;
  EXPECT_EQ(listen(fd.get(), 16), 0);
  return fd;
}

/// Starts a non-blocking connect to 127.0.0.1:port. Returns the socket, or
/// an invalid fd when the connection was refused at once.
inline UniqueFd connect_to(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin));
  if (rc != 0 && errno != EINPROGRESS) return UniqueFd();
  return fd;
}

/// True when a connection to 127.0.0.1:port is refused now (nothing listens).
/// A connect on loopback is answered by the kernel at once, so the blocking
/// call never waits for the worker.
inline bool refused(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in sin = {};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return connect(fd.get(), reinterpret_cast<struct sockaddr*>(&sin), sizeof(sin)) != 0 &&
         errno == ECONNREFUSED;
}

/// Returns the numbers of the fds open in this process now.
inline std::set<int> open_fds() {
  std::set<int> out;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return out;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') out.insert(std::atoi(e->d_name));
  }
  int own = dirfd(dir);
  closedir(dir);
  out.erase(own);
  return out;
}

/// The result of one submitted commit, filled in when `done` is called.
struct Submitted {
  bool done = false;
  control::CommitResult result;
};

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The pipelining tests hold over a thousand listeners.
    struct rlimit nofile;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
      nofile.rlim_cur = nofile.rlim_max;
      setrlimit(RLIMIT_NOFILE, &nofile);
    }
    auto created = EventLoop::create();
    ASSERT_TRUE(created.ok());
    loop = std::move(*created);
    forwarder = std::make_unique<Forwarder>(*loop, ForwarderLimits{});
    loop->add_ticker(forwarder.get());
    udp = std::make_unique<UdpForwarder>(*loop, UdpLimits{});
    loop->add_ticker(udp.get());
    audit_fd.reset(memfd_create("audit", MFD_CLOEXEC));
    ASSERT_TRUE(audit_fd.valid());
    audit = std::make_unique<AuditLog>(audit_fd.get());
    AuditRunStart run;  // a stderr-like sink: nothing to link to
    audit->start(run);
    broker = std::make_unique<BrokerClient>(*loop, fake.take_worker_end());
    // Hello blocks on both sides: the fake answers it from a helper thread.
    bool hello_served = false;
    std::thread helper([&] { hello_served = fake.serve_hello(5000); });
    auto info = broker->hello(TableSet{});  // no initial rules: no privileged port granted
    helper.join();
    ASSERT_TRUE(hello_served) << fake.error();
    ASSERT_TRUE(info.ok()) << info.error().message;
    engine = std::make_unique<CommitEngine>(*loop, *forwarder, *udp, *broker, *info, ServerCaps{},
                                            *audit);
    engine->start();
    ASSERT_TRUE(broker
                    ->start([this](const BrokerLoss& loss) {
                      lost = loss;
                      engine->on_broker_lost(loss);
                    })
                    .ok());
  }

  /// Turns the fake broker and the loop until `done` holds, at most
  /// `max_iterations` times (each loop wait is at most 10 ms). Returns
  /// whether `done` holds. Stops early once the loop was stopped.
  bool run_until(const std::function<bool()>& done, int max_iterations = 2000) {
    for (int i = 0; i < max_iterations; ++i) {
      if (done()) return true;
      fake.serve();
      if (!loop->run_once(10)) break;
    }
    return done();
  }

  /// Submits a commit of `tables` (at the current generation unless
  /// `expected` says otherwise) and returns its result holder.
  std::shared_ptr<Submitted> submit(const TableSet& tables, bool dry_run = false,
                                    std::optional<uint64_t> expected = std::nullopt) {
    control::CommitRequest req;
    req.tables = tables;
    req.expected_generation = expected ? *expected : engine->generation();
    req.dry_run = dry_run;
    req.comment = "engine test";
    auto out = std::make_shared<Submitted>();
    struct ucred peer = {getpid(), getuid(), getgid()};
    engine->submit(std::move(req), peer, [out](const control::CommitResult& result) {
      out->done = true;
      out->result = result;
    });
    return out;
  }

  /// Submits a commit and runs until it is answered; fails the test when it
  /// is not answered in time.
  control::CommitResult commit(const TableSet& tables, bool dry_run = false) {
    auto s = submit(tables, dry_run);
    EXPECT_TRUE(run_until([&] { return s->done; })) << "the commit was not answered";
    return s->result;
  }

  /// True when a connection to 127.0.0.1:port reaches the listening socket
  /// `target` through the worker (accepted there within the bound).
  bool forwards(uint16_t port, int target) {
    UniqueFd client = connect_to(port);
    if (!client.valid()) return false;
    return run_until([&] {
      int fd = accept4(target, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return false;
      close(fd);
      return true;
    });
  }

  /// The audit lines written so far after the run's start record: one per
  /// commit attempt.
  std::vector<std::string> audit_lines() {
    std::vector<std::string> out;
    std::string text;
    char buf[4096];
    for (off_t off = 0;;) {
      ssize_t n = pread(audit_fd.get(), buf, sizeof(buf), off);
      if (n <= 0) break;
      text.append(buf, static_cast<size_t>(n));
      off += n;
    }
    for (size_t at = 0; at < text.size();) {
      size_t nl = text.find('\n', at);
      if (nl == std::string::npos) break;
      out.push_back(text.substr(at, nl - at));
      at = nl + 1;
    }
    if (!out.empty() && out.front().find("\"record\":\"start\"") != std::string::npos) {
      out.erase(out.begin());
    }
    return out;
  }

  // Declared in the order they are built; destroyed in reverse.
  FakeBroker fake;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<Forwarder> forwarder;
  std::unique_ptr<UdpForwarder> udp;
  UniqueFd audit_fd;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<BrokerClient> broker;
  std::unique_ptr<CommitEngine> engine;
  std::optional<BrokerLoss> lost;  // what on_broker_lost was told
};

}  // namespace sluice::testing
