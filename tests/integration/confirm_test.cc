// Confirmed commits end to end, with the real sluiced, worker and sluicectl:
// a commit with --confirm-within 1 that nobody confirms is rolled back (a new
// generation, hitless for a kept port, audited, in --history), the pending
// confirmation shows in the listing, --json, --stats and the Prometheus
// output, a confirmed one stays, and another commit is refused while one
// waits. A worker that dies while a commit waits takes the commit with it:
// the new worker rolls it back; a confirmed one stays.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>

#include <atomic>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tests/integration/daemon.h"
#include "tests/integration/kept_port.h"
#include "tests/integration/restart_util.h"
#include "tests/integration/tcp_util.h"
#include "tests/json_check.h"
#include "tests/prometheus_check.h"

namespace sluice::test {
namespace {

/// Runs sluicectl --json and parses the listing.
std::optional<JsonValue> state_json(Daemon& d) {
  RunResult r = d.ctl({"--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  return parse_json(r.out);
}

/// Runs sluicectl --stats --prometheus and parses it strictly.
std::optional<PromText> prometheus(Daemon& d) {
  RunResult r = d.ctl({"--stats", "--prometheus"});
  EXPECT_EQ(r.status, 0) << r.err;
  std::string error;
  auto parsed = parse_prometheus(r.out, &error);
  EXPECT_TRUE(parsed.has_value()) << error;
  return parsed;
}

TEST(Confirm, UnconfirmedCommitRollsBackHitlessly) {
  UniqueFd target = listen_tcp("127.0.0.1", 18000);
  std::atomic<bool> stop{false};
  std::thread acceptor([&] {
    while (!stop) UniqueFd c = accept_one(target.get(), 100);
  });
  char tmpl[] = "/tmp/sluice-confirm-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  std::string audit = dir + "/audit.log";
  Daemon d;
  d.start({"--audit-log", audit, "-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  KeptPortProber prober(18080, KeptPortProber::Target::kClose);
  prober.await_probe();

  RunResult push = d.ctl({"--confirm-within", "1", "-A", "-t", "127.0.0.1/18081:18000"});
  ASSERT_EQ(push.status, 0) << push.err;
  EXPECT_NE(push.out.find("waits for confirmation: run sluicectl --confirm within 1 s, or the "
                          "tables of generation 1 come back automatically"),
            std::string::npos)
      << push.out;

  // Bounded, generous: the rollback is due after 1 s and runs at the next
  // tick (250 ms); a busy machine gets 30 s.
  std::optional<JsonValue> doc;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int i = 0; i < 300 && std::chrono::steady_clock::now() < deadline; ++i) {
    doc = state_json(d);
    if (doc && doc->get("generation")->integer() == 3) break;
    prober.await_probe();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(doc.has_value());
  ASSERT_EQ(doc->get("generation")->integer(), 3) << d.log();
  EXPECT_EQ(doc->get("pendingConfirm")->type, JsonValue::Type::kNull);
  // The tables are back: 18080 only, and 18081 no longer listens.
  RunResult listing = d.ctl({});
  EXPECT_NE(listing.out.find("TCP [127.0.0.1]:18080 => 18000"), std::string::npos) << listing.out;
  EXPECT_EQ(listing.out.find(":18081"), std::string::npos) << listing.out;
  EXPECT_EQ(listing.out.find("pending confirmation"), std::string::npos) << listing.out;
  bool closed = false;
  for (int i = 0; i < 50 && !closed; ++i) {
    closed = !listening(18081);
    if (!closed) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(closed) << "18081 still accepts after the rollback";
  prober.await_probe();
  prober.stop();
  stop = true;
  acceptor.join();
  EXPECT_GE(prober.ok(), 2);
  EXPECT_EQ(prober.refused(), 0);
  EXPECT_EQ(prober.reset(), 0);

  // History and audit carry the rollback as a commit of its own.
  const std::string comment =
      "automatic rollback of generation 2: not confirmed within 1 s; back to the tables of "
      "generation 1";
  RunResult history = d.ctl({"--history", "--json"});
  ASSERT_EQ(history.status, 0) << history.err;
  auto entries = parse_json(history.out);
  ASSERT_TRUE(entries.has_value());
  const JsonValue& last = entries->array.back();
  EXPECT_EQ(last.get("comment")->string, comment);
  EXPECT_EQ(last.get("outcome")->string, "applied");
  EXPECT_EQ(last.get("generationBefore")->integer(), 2);
  EXPECT_EQ(last.get("generationAfter")->integer(), 3);
  ASSERT_EQ(last.get("removed")->array.size(), 1u);
  EXPECT_NE(last.get("removed")->array[0].string.find(":18081"), std::string::npos);
  EXPECT_NE(slurp(audit).find("\"comment\":\"" + comment + "\""), std::string::npos)
      << slurp(audit);
  RunResult verify = run_command({bin("sluicectl"), "--verify-audit", audit});
  EXPECT_EQ(verify.status, 0) << verify.out << verify.err;

  // A late confirm is told what happened.
  RunResult late = d.ctl({"--confirm"});
  EXPECT_EQ(late.status, 1);
  EXPECT_NE(late.err.find("nothing to confirm: generation 2 was not confirmed in time and was "
                          "rolled back at "),
            std::string::npos)
      << late.err;
  auto prom = prometheus(d);
  ASSERT_TRUE(prom.has_value());
  EXPECT_EQ(prom->value("sluice_confirm_rollbacks_total"), 1);
  EXPECT_EQ(prom->value("sluice_confirm_pending"), 0);
  unlink(audit.c_str());
  rmdir(dir.c_str());
}

TEST(Confirm, ConfirmedCommitStaysAndOtherCommitsWaitForIt) {
  Daemon d;
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult push = d.ctl({"--confirm-within", "600", "-A", "-t", "127.0.0.1/18081:18000"});
  ASSERT_EQ(push.status, 0) << push.err;

  // The state shows it, everywhere.
  RunResult listing = d.ctl({});
  EXPECT_NE(listing.out.find("pending confirmation: generation 2 rolls back to the tables of "
                             "generation 1 at "),
            std::string::npos)
      << listing.out;
  auto doc = state_json(d);
  ASSERT_TRUE(doc.has_value());
  const JsonValue* pending = doc->get("pendingConfirm");
  ASSERT_NE(pending, nullptr);
  ASSERT_EQ(pending->type, JsonValue::Type::kObject);
  EXPECT_EQ(pending->get("generation")->integer(), 2);
  EXPECT_EQ(pending->get("rollbackGeneration")->integer(), 1);
  EXPECT_GT(pending->get("remainingMillis")->integer(), 500'000);
  EXPECT_EQ(pending->get("uid")->integer(), static_cast<int64_t>(getuid()));
  RunResult stats = d.ctl({"--stats"});
  EXPECT_NE(stats.out.find("pending confirmation: generation 2"), std::string::npos) << stats.out;
  auto prom = prometheus(d);
  ASSERT_TRUE(prom.has_value());
  EXPECT_EQ(prom->value("sluice_confirm_pending"), 1);
  EXPECT_EQ(prom->value("sluice_confirm_pending_generation"), 2);
  EXPECT_GT(prom->value("sluice_confirm_deadline_timestamp_seconds").value_or(0), 1.7e9);

  // Another commit is refused, naming the generation that waits and its deadline.
  RunResult other = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("sluicectl: confirm-pending: generation 2 (committed by uid "),
            std::string::npos)
      << other.err;
  EXPECT_NE(other.err.find(") waits for confirmation until 20"), std::string::npos) << other.err;
  EXPECT_NE(other.err.find("confirm it with sluicectl --confirm"), std::string::npos) << other.err;
  // A dry run changes nothing, and passes.
  RunResult dry = d.ctl({"--dry-run", "-A", "-t", "127.0.0.1/18082:18000"});
  EXPECT_EQ(dry.status, 0) << dry.err;

  RunResult confirm = d.ctl({"--confirm"});
  EXPECT_EQ(confirm.status, 0) << confirm.err;
  EXPECT_EQ(confirm.out,
            "confirmed generation 2: it stays in force, and the rollback to the tables of "
            "generation 1 is cancelled\n");
  doc = state_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("generation")->integer(), 2);
  EXPECT_EQ(doc->get("pendingConfirm")->type, JsonValue::Type::kNull);
  // Nothing listens on 18000: the worker resets the connection, after the
  // handshake that shows 18081 listens.
  EXPECT_TRUE(listening(18081)) << d.log();

  // Commits go through again, and nothing is left to confirm.
  RunResult next = d.ctl({"-A", "-t", "127.0.0.1/18082:18000"});
  EXPECT_EQ(next.status, 0) << next.err;
  RunResult again = d.ctl({"--confirm", "--json"});
  EXPECT_EQ(again.status, 1);
  auto answer = parse_json(again.out);
  ASSERT_TRUE(answer.has_value()) << again.out;
  EXPECT_FALSE(answer->get("confirmed")->boolean);
  EXPECT_EQ(answer->get("message")->string,
            "nothing to confirm: no commit waits for confirmation (generation 3 is in force)");
}

/// Starts `d` forwarding 18080, pushes -A 18081 to be confirmed within
/// 600 s (confirmed at once with `confirm`), kills the worker and waits for
/// its replacement to serve; fails the test when any step does not happen.
void push_then_kill_the_worker(Daemon& d, bool confirm) {
  d.start({"-t", "127.0.0.1/18080:18000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  RunResult push = d.ctl({"--confirm-within", "600", "-A", "-t", "127.0.0.1/18081:18000"});
  ASSERT_EQ(push.status, 0) << push.err;
  if (confirm) {
    ASSERT_EQ(d.ctl({"--confirm"}).status, 0) << d.log();
  }
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  std::string why;
  ASSERT_GT(wait_for_serving_worker(d, worker, 2, &why), 0) << why << "\n" << d.log();
}

// A regression test: a commit that waited for confirmation became
// permanent when its worker died (the new worker resumed it with nothing
// pending). The new worker rolls it back at once, as a new generation, and
// a late --confirm says what happened.
TEST(Confirm, AnUnconfirmedCommitDoesNotOutliveItsWorker) {
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(push_then_kill_the_worker(d, false));

  auto doc = state_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("generation")->integer(), 3) << d.log();
  EXPECT_EQ(doc->get("pendingConfirm")->type, JsonValue::Type::kNull);
  RunResult listing = d.ctl({});
  EXPECT_NE(listing.out.find("TCP [127.0.0.1]:18080 => 18000"), std::string::npos) << listing.out;
  EXPECT_EQ(listing.out.find(":18081"), std::string::npos) << listing.out;
  EXPECT_NE(d.log().find("tables of generation 2, which still waited for confirmation: its "
                         "pending confirmation ends with the worker that died, and the tables of "
                         "generation 1 come back at once"),
            std::string::npos)
      << d.log();
  RunResult history = d.ctl({"--history", "--json"});
  ASSERT_EQ(history.status, 0) << history.err;
  auto entries = parse_json(history.out);
  ASSERT_TRUE(entries.has_value());
  EXPECT_EQ(entries->array.back().get("comment")->string,
            "automatic rollback of generation 2: its worker died while it waited for "
            "confirmation (within 600 s); back to the tables of generation 1 (from sluiced's "
            "state blob)");
  RunResult late = d.ctl({"--confirm"});
  EXPECT_EQ(late.status, 1);
  EXPECT_NE(late.err.find("nothing to confirm: generation 2 still waited for confirmation when "
                          "its worker died, and was rolled back at "),
            std::string::npos)
      << late.err;
  // Commits are taken again.
  EXPECT_EQ(d.ctl({"-A", "-t", "127.0.0.1/18082:18000"}).status, 0) << d.log();
}

TEST(Confirm, AConfirmedCommitOutlivesItsWorker) {
  Daemon d;
  ASSERT_NO_FATAL_FAILURE(push_then_kill_the_worker(d, true));
  auto doc = state_json(d);
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->get("generation")->integer(), 2) << d.log();
  RunResult listing = d.ctl({});
  EXPECT_NE(listing.out.find("TCP [127.0.0.1]:18081 => 18000"), std::string::npos) << listing.out;
}

}  // namespace
}  // namespace sluice::test
