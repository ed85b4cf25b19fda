// A stand-in for a rootless container, for the target namespace tests: the
// sluice_test_container binary (container_main.cc) run as a child, with its
// own user and network namespace and echo servers on its loopback.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace sluice::test {

/// A running sluice_test_container. It ends when the object goes.
class Container {
 public:
  /// Passed as `owner`: the container runs as the test's own user.
  static constexpr uid_t kTestUser = static_cast<uid_t>(-1);

  /// Starts it with `args` ("tcp 8080 udp 5353": TCP and UDP echo servers on
  /// 127.0.0.1 and ::1 inside) and waits (at most 10 s) until it says ready.
  /// With `owner`, it first becomes that uid (and the gid of the same number,
  /// no other groups; needs real root), so that an ordinary user owns its
  /// user namespace, which then maps only that uid, as for a rootless
  /// container. pid() is -1 when it did not start.
  explicit Container(const std::vector<std::string>& args, uid_t owner = kTestUser);
  /// Closes its stdin, so it exits; waits up to 2 s, then kills it.
  ~Container();
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;

  /// The pid of the process inside the namespaces, or -1.
  pid_t pid() const { return pid_; }
  /// Sends one command line ("tcp 8080", "close udp 5353", "ports 40000
  /// 40009"; see container_main.cc) and returns its answer line ("ok", or
  /// "fail: WHY"), or "" when none came within 5 s.
  std::string command(const std::string& line);
  /// Its network namespace file, for sluiced --netns.
  std::string netns() const { return "/proc/" + std::to_string(pid_) + "/ns/net"; }
  /// Its user namespace file, for sluiced --userns.
  std::string userns() const { return "/proc/" + std::to_string(pid_) + "/ns/user"; }

 private:
  /// Reads one line of its stdout within `timeout_ms`, without the newline;
  /// "" on timeout, EOF or a line over 256 bytes.
  std::string read_line(int timeout_ms);

  pid_t pid_ = -1;
  pid_t child_ = -1;
  int stdin_ = -1;
  int stdout_ = -1;  // its answers, read line by line
};

/// Links the test's network namespace to `box`'s with a veth pair, as a
/// container network does: `name`h here with `here` (an address with its
/// prefix, "198.51.100.1/24"), `name`c inside with `there`, both up. Needs
/// /sbin/ip and nsenter. Returns "" or the command that failed and why.
std::string link_to(const Container& box, const std::string& name, const std::string& here,
                    const std::string& there);

}  // namespace sluice::test
