// Driving sluiced's pesto endpoint (--pesto-socket) in tests: the real pesto
// binary, built from upstream passt's archive (tests/integration/
// CMakeLists.txt), run exactly as Podman and rootlesskit run it; and a raw
// client that speaks protocol v2 byte by byte (schema/pesto_wire.h), for what
// pesto itself never sends.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "schema/pesto_wire.h"
#include "tests/integration/daemon.h"

namespace sluice::test {

/// The path of the real pesto, or "" when the archive was missing at build time.
std::string real_pesto();

/// Skips the current test, saying why, when the real pesto was not built.
#define SKIP_WITHOUT_REAL_PESTO()                                                      \
  do {                                                                                 \
    if (::sluice::test::real_pesto().empty()) {                                        \
      GTEST_SKIP() << "the real pesto was not built (passt's archive is missing from " \
                      "../shared/third_party/): the pesto interop tests did not run";  \
    }                                                                                  \
  } while (0)

/// Runs the real pesto with `args` and `sock` as its last argument, as Podman
/// and rootlesskit do; at most 20 s.
RunResult run_pesto(const std::vector<std::string>& args, const std::string& sock);

/// The path of a policy file for a container host that publishes the
/// privileged ports of Podman's command lines at run time (53, 80 and 443,
/// tests/interop_lines.h) and every unprivileged port: without `bind` lines,
/// a sluiced that holds CAP_NET_BIND_SERVICE, as in both namespace runs,
/// opens only the initial rules' privileged ports (docs/POLICY.md).
const std::string& container_host_policy();

/// Starts `d` with the pesto endpoint on d.pesto_path() and `args`; fails the
/// test when it does not come up.
void start_with_pesto(Daemon& d, const std::vector<std::string>& args);

/// The rule lines of the HOST table in sluicectl's listing of `d` (without
/// "(no rules)").
std::vector<std::string> host_rules(Daemon& d);

/// A raw protocol v2 client.
class RawPesto {
 public:
  /// Connects to `path`; valid() is false when it cannot.
  explicit RawPesto(const std::string& path);
  /// True when connected.
  bool valid() const { return fd_.valid(); }
  /// Reads the server's hello (at most `timeout_ms`) and decodes it; false
  /// when it did not come whole in time or did not decode (failure() says).
  bool read_hello(int timeout_ms = 10000);
  /// The tables of the hello, once read.
  const std::vector<pesto::WireTable>& tables() const { return tables_; }
  /// The hello's raw bytes, once read.
  const std::string& hello_bytes() const { return hello_; }
  /// Why read_hello() failed.
  const std::string& failure() const { return failure_; }
  /// Sends `bytes` whole; false on error.
  bool send(const std::string& bytes);
  /// Closes the connection (the update ends here).
  void close() { fd_.reset(); }
  /// True when the server closed the connection within `timeout_ms` (EOF or
  /// a reset); false when it is still open then.
  bool closed_by_server(int timeout_ms);

 private:
  UniqueFd fd_;
  std::string hello_;
  std::vector<pesto::WireTable> tables_;
  std::string failure_;
};

/// Reads the hello through a new raw client; fails the test when it cannot.
std::vector<pesto::WireTable> pesto_tables(const std::string& path);

/// A rule record for a test update: TCP or UDP, listen address, ports, target.
pesto::RuleRecord make_record(bool tcp, const std::string& listen, uint16_t first, uint16_t last,
                              uint16_t to, const std::string& target = "", uint8_t flags = 0);

}  // namespace sluice::test
