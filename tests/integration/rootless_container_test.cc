// Real root publishing a rootless container: sluiced runs as root of the
// initial user namespace, and the container's user and network namespaces
// belong to an ordinary uid, whose user namespace maps that uid only (host
// root is not mapped in it). sluiced then joins the network namespace alone
// (root holds CAP_SYS_ADMIN over every user namespace), and the worker and the
// namespace helper stay in sluiced's user namespace: the worker switches to
// its user (--worker-user) and sandboxes itself as without --netns. Joining the container's user
// namespace instead left the worker unable to create its own user namespace
// (EPERM: its uid is unmapped there). Only in the rootns run (real root).
#include <grp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

#include "tests/integration/container.h"
#include "tests/integration/daemon.h"
#include "tests/integration/ns_client.h"
#include "tests/integration/tcp_util.h"
#include "tests/integration/udp_util.h"

namespace sluice::test {
namespace {

/// The ordinary uid that owns the container (no passwd entry is needed).
constexpr uid_t kContainerOwner = 4242;
/// The worker's own uid and gid (sluiced --worker-user), neither root nor the
/// container's owner.
constexpr uid_t kWorkerUser = 4343;

/// The inode of /proc/PID/ns/KIND ("user"), or 0 when it cannot be read.
ino_t namespace_inode(pid_t pid, const char* kind) {
  struct stat st;
  const std::string path = "/proc/" + std::to_string(pid) + "/ns/" + kind;
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

TEST(RootlessContainer, RootSluicedForwardsIntoAContainerOfAnOrdinaryUser) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: the container's owner is another uid";
  Container box({"tcp", "8080", "udp", "5353"}, kContainerOwner);
  ASSERT_GT(box.pid(), 0) << "the container did not start as uid " << kContainerOwner;
  ASSERT_EQ(proc_status_field(box.pid(), "Uid"), "4242\t4242\t4242\t4242");
  Daemon d;
  // pasta's form: the trailing PID, whose user namespace is not sluiced's.
  const std::string worker_id = std::to_string(kWorkerUser);
  d.start({"--worker-user", worker_id + ":" + worker_id, "-t", "18080:8080", "-u", "18053:5353",
           std::to_string(box.pid())});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_NE(d.log().find("joining its network namespace only"), std::string::npos) << d.log();
  EXPECT_EQ(tcp_echo(18080, "into a rootless container"), "into a rootless container") << d.log();
  EXPECT_EQ(tcp_echo(18080, "over IPv6", true), "over IPv6") << d.log();
  UniqueFd u = bind_udp("127.0.0.1");
  Datagram reply = request(u.get(), "127.0.0.1", 18053, "ping");
  ASSERT_TRUE(reply.ok) << d.log();
  EXPECT_EQ(reply.payload, "5353|ping");
  // The worker runs as its user, in the container's network namespace; the
  // helper stays in sluiced's user namespace (the test's), not the owner's.
  const pid_t worker = d.worker_pid();
  ASSERT_GT(worker, 0);
  const std::string ids = worker_id + "\t" + worker_id + "\t" + worker_id + "\t" + worker_id;
  EXPECT_EQ(proc_status_field(worker, "Uid"), ids);
  EXPECT_EQ(proc_status_field(worker, "Gid"), ids);
  EXPECT_EQ(namespace_inode(worker, "net"), namespace_inode(box.pid(), "net"));
  EXPECT_NE(namespace_inode(worker, "user"), namespace_inode(box.pid(), "user"));
  const pid_t helper = d.helper_pid();
  ASSERT_GT(helper, 0);
  EXPECT_EQ(namespace_inode(helper, "user"), namespace_inode(getpid(), "user"));
  EXPECT_EQ(namespace_inode(helper, "net"), namespace_inode(box.pid(), "net"));
  // A port added at run time reaches the container too.
  box.command("tcp 9090");
  RunResult add = d.ctl({"-A", "-t", "127.0.0.1/18090:9090"});
  ASSERT_EQ(add.status, 0) << add.out << add.err;
  EXPECT_EQ(tcp_echo(18090, "added"), "added") << d.log();
}

TEST(RootlessContainer, ExplicitUserNamespaceAndALowSplicePortInsideWork) {
  if (!real_root_run()) GTEST_SKIP() << "needs real root: the container's owner is another uid";
  Container box({"tcp", "8080"}, kContainerOwner);
  ASSERT_GT(box.pid(), 0);
  NsClient inside(box.pid());
  ASSERT_TRUE(inside.ok());
  Daemon d;
  // --userns given: root still joins the network namespace alone. The
  // helper, root with CAP_NET_BIND_SERVICE over the container's namespaces,
  // binds port 80 inside.
  d.start({"--netns", box.netns(), "--userns", box.userns(), "-t", "127.0.0.1/18080:8080", "-T",
           "80:19000"});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(18080, "explicit userns"), "explicit userns") << d.log();
  EXPECT_TRUE(inside.listening(80)) << d.log();
  // The default worker user ("sluice", or 65534): never root, never the owner.
  const std::string uid = proc_status_field(d.worker_pid(), "Uid");
  EXPECT_NE(uid.rfind("0\t", 0), 0u) << uid;
  EXPECT_EQ(uid.find(std::to_string(kContainerOwner)), std::string::npos) << uid;
}

TEST(RootlessContainer, TheContainersOwnerRunningSluicedIsAuditedAsItself) {
  // The owner of a rootless container runs sluiced: the worker joins the
  // container's user namespace, where the owner's uid shows as 0. The audit
  // log, the history and the control policy must name the owner's real ids.
  if (!real_root_run()) GTEST_SKIP() << "needs real root: sluiced runs as another uid";
  Container box({"tcp", "8080"}, kContainerOwner);
  ASSERT_GT(box.pid(), 0);
  Daemon d;
  const std::string dir = d.socket_path().substr(0, d.socket_path().rfind('/'));
  ASSERT_EQ(chown(dir.c_str(), kContainerOwner, kContainerOwner), 0);
  d.set_child_setup([] {
    if (setgroups(0, nullptr) != 0 ||
        setresgid(kContainerOwner, kContainerOwner, kContainerOwner) != 0 ||
        setresuid(kContainerOwner, kContainerOwner, kContainerOwner) != 0) {
      _exit(126);
    }
  });
  d.start({"-t", "18080:8080", std::to_string(box.pid())});
  ASSERT_TRUE(d.wait_ready()) << d.log();
  EXPECT_EQ(tcp_echo(18080, "as the owner"), "as the owner") << d.log();
  const std::string owner = std::to_string(kContainerOwner);
  // The run's start record (the audit sink is sluiced's stderr here).
  const std::string log = d.log();
  const size_t start = log.find("\"record\":\"start\"");
  ASSERT_NE(start, std::string::npos) << log;
  const std::string record = log.substr(start, log.find('\n', start) - start);
  EXPECT_NE(record.find("\"uid\":" + owner + ",\"gid\":" + owner), std::string::npos) << record;
  // The initial rules' commit, in the history.
  RunResult history = d.ctl({"--history"});
  ASSERT_EQ(history.status, 0) << history.err;
  EXPECT_NE(history.out.find("uid " + owner + " gid " + owner), std::string::npos) << history.out;
  EXPECT_EQ(history.out.find("uid 0 gid 0"), std::string::npos) << history.out;
}

}  // namespace
}  // namespace sluice::test
