// The worker's user (broker/worker_user.h): --worker-user by name and by
// number, the dedicated user "sluice" by default, the shared fallback with
// its hint, and the refusals (root, unknown names, malformed numbers); and
// the ids reaching the worker's argv.
#include "broker/worker_user.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "broker/options.h"
#include "schema/worker_args.h"

namespace sluice {
namespace {

/// A user database of `users`, for resolve_worker_user().
UserLookup database(std::map<std::string, UserEntry> users) {
  return [users = std::move(users)](const std::string& name) -> std::optional<UserEntry> {
    auto it = users.find(name);
    if (it == users.end()) return std::nullopt;
    return it->second;
  };
}

/// The message of a refused `spec`, or "" when it was accepted.
std::string refusal(const std::string& spec, const UserLookup& lookup = database({})) {
  auto r = resolve_worker_user(spec, lookup);
  return r.ok() ? "" : r.error().message;
}

TEST(WorkerUser, DefaultIsTheDedicatedUserWhenItExists) {
  auto r = resolve_worker_user("", database({{"sluice", {998, 997}}, {"nobody", {65534, 65534}}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 998u);
  EXPECT_EQ(r->gid, 997u);
  EXPECT_FALSE(r->shared_fallback);
  EXPECT_EQ(r->description, "user sluice (uid 998, gid 997)");
}

TEST(WorkerUser, WithoutADedicatedUserTheSharedNobodyIsUsedAndSaysHowToCreateOne) {
  auto r = resolve_worker_user("", database({{"nobody", {65534, 65534}}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 65534u);
  EXPECT_EQ(r->gid, 65534u);
  EXPECT_TRUE(r->shared_fallback);
  EXPECT_NE(r->description.find("shared with other processes"), std::string::npos);
  EXPECT_NE(r->description.find("useradd --system"), std::string::npos);
  EXPECT_NE(r->description.find("--worker-user"), std::string::npos);
}

TEST(WorkerUser, ANameGivesItsUidAndPrimaryGroup) {
  auto r = resolve_worker_user("proxy", database({{"proxy", {13, 13}}, {"sluice", {998, 998}}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 13u);
  EXPECT_EQ(r->gid, 13u);
  EXPECT_FALSE(r->shared_fallback);
  EXPECT_EQ(r->description, "user proxy (uid 13, gid 13)");
}

TEST(WorkerUser, NumbersNeedNoDatabaseEntry) {
  auto r = resolve_worker_user("64123:64124", database({}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 64123u);
  EXPECT_EQ(r->gid, 64124u);
  EXPECT_EQ(r->description, "uid 64123, gid 64124");
  auto same = resolve_worker_user("4242", database({}));
  ASSERT_TRUE(same.ok()) << same.error().message;
  EXPECT_EQ(same->uid, 4242u);
  EXPECT_EQ(same->gid, 4242u);
  auto top = resolve_worker_user("4294967294:4294967294", database({}));
  ASSERT_TRUE(top.ok()) << top.error().message;
  EXPECT_EQ(top->uid, 4294967294u);
}

TEST(WorkerUser, RootIsNeverTheWorkersUser) {
  EXPECT_NE(refusal("0").find("never runs as root"), std::string::npos) << refusal("0");
  EXPECT_NE(refusal("1000:0").find("never runs as root"), std::string::npos);
  EXPECT_NE(refusal("root", database({{"root", {0, 0}}})).find("never runs as root"),
            std::string::npos);
  EXPECT_NE(refusal("daemon0", database({{"daemon0", {5, 0}}})).find("never runs as root"),
            std::string::npos);
  // A dedicated user that is root in disguise is refused too, not skipped.
  EXPECT_NE(refusal("", database({{"sluice", {0, 0}}})).find("never runs as root"),
            std::string::npos);
}

TEST(WorkerUser, UnknownNamesAndBadNumbersSayWhatToDo) {
  std::string unknown = refusal("no-such-user");
  EXPECT_NE(unknown.find("no-such-user: no such user"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("useradd --system"), std::string::npos) << unknown;
  for (const char* bad :
       {"12x", "12:", "12:x", "4294967295", "99999999999", "1:4294967295", "1:2:3", "1 "}) {
    std::string message = refusal(bad);
    EXPECT_NE(message.find("must be a number from 1 to 4294967294"), std::string::npos)
        << bad << ": " << message;
  }
}

TEST(WorkerUser, ANameThatBeginsWithADigitIsLookedUp) {
  auto r = resolve_worker_user("1proxy", database({{"1proxy", {14, 15}}}));
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->uid, 14u);
  EXPECT_EQ(r->gid, 15u);
  // Numbers stay numbers, even when a user of that name exists.
  auto n = resolve_worker_user("4242", database({{"4242", {14, 15}}}));
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(n->uid, 4242u);
}

TEST(WorkerUser, TheIdsReachTheWorkersArgvAndBack) {
  BrokerOptions options;
  bool used_default = false;
  WorkerArgs args = worker_args(options, &used_default);
  // Left at the fallback, the ids are not written (the worker's default).
  std::vector<std::string> argv = to_argv(args);
  EXPECT_EQ(std::find(argv.begin(), argv.end(), kWorkerOptUid), argv.end());
  args.worker_uid = 64123;
  args.worker_gid = 64124;
  argv = to_argv(args);
  auto back = parse_worker_args(argv);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->worker_uid, 64123u);
  EXPECT_EQ(back->worker_gid, 64124u);
  // The worker refuses id 0 in its argv: nothing but sluiced's check stands
  // between a bad argv and a root worker otherwise.
  auto zero = parse_worker_args(std::vector<std::string>{kWorkerProgram, kWorkerOptUid, "0"});
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.error().message.find("--worker-uid needs a number from 1 to 4294967294"),
            std::string::npos)
      << zero.error().message;
}

/// True when this process maps an NSS module (libnss_*.so).
bool maps_an_nss_module() {
  FILE* f = fopen("/proc/self/maps", "r");
  if (f == nullptr) return false;
  char line[4096];
  bool found = false;
  // Limit: the lines of this process's maps.
  while (!found && fgets(line, sizeof(line), f) != nullptr)
    found = strstr(line, "/libnss_") != nullptr;
  fclose(f);
  return found;
}

// sluiced asks through a child so that the modules NSS loads (libnss_systemd
// on Debian) never stay in its address space. A child of the test first
// finds out whether an unknown name loads one at all on this host. Before
// the next test, which loads them into this process.
TEST(SystemUser, TheLookupLoadsNoNssModuleIntoTheAskingProcess) {
  if (maps_an_nss_module()) GTEST_SKIP() << "an earlier test of this process loaded one";
  const pid_t probe = fork();
  ASSERT_GE(probe, 0);
  if (probe == 0) {
    lookup_system_user_here("sluice-no-such-user-7f3a");
    _exit(maps_an_nss_module() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(probe, &status, 0), probe);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) != 0) {
    GTEST_SKIP() << "/etc/nsswitch.conf names no module for passwd beyond libc's own";
  }
  EXPECT_FALSE(lookup_system_user("sluice-no-such-user-7f3a").has_value());
  EXPECT_FALSE(maps_an_nss_module());
}

// The lookup through a child answers what the lookup in this process answers:
// a user that exists, with its ids, and one that does not.
TEST(SystemUser, TheChildAnswersAsThisProcessWould) {
  for (const char* name : {"root", "nobody", "sluice-no-such-user-7f3a"}) {
    const std::optional<UserEntry> here = lookup_system_user_here(name);
    const std::optional<UserEntry> child = lookup_system_user(name);
    ASSERT_EQ(here.has_value(), child.has_value()) << name;
    if (!here) continue;
    EXPECT_EQ(here->uid, child->uid) << name;
    EXPECT_EQ(here->gid, child->gid) << name;
  }
  EXPECT_FALSE(lookup_system_user("sluice-no-such-user-7f3a").has_value());
  ASSERT_TRUE(lookup_system_user("root").has_value());
  EXPECT_EQ(lookup_system_user("root")->uid, 0u);
}

}  // namespace
}  // namespace sluice
