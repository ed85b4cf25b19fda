// Podman's and rootlesskit's exact pesto command lines (../shared/INTEROP.md),
// once for every test that runs them: sluicectl's unit tests (parsed and
// applied without a server) and the integration tests (against a real
// sluiced, with and without a target namespace).
#pragma once

#include <string>
#include <vector>

namespace sluice::test {

/// One client command line: the add, the delete that undoes it, and the HOST
/// rules the add makes, in sluicectl's listing format.
struct InteropLine {
  std::vector<std::string> add;
  std::vector<std::string> del;
  std::vector<std::string> rules;
};

/// Another container's rule, there from the start of the tests that run these
/// lines: no add or delete of the clients may touch it.
inline constexpr const char* kOther = "0.0.0.0/19090:10.88.0.9/90";
/// kOther in sluicectl's listing format.
inline constexpr const char* kOtherText = "TCP [0.0.0.0]:19090 => 10.88.0.9:90";

// clang-format off
/// Podman's first generation: no target, the same port in the namespace.
inline const std::vector<InteropLine> kPodmanWithoutTarget = {
    {{"--add", "-t", "0.0.0.0/8080", "-t", "[::]/8080"},
     {"--delete", "-t", "0.0.0.0/8080", "-t", "[::]/8080"},
     {"TCP [0.0.0.0]:8080 => 8080", "TCP [::]:8080 => 8080"}},
    {{"--add", "-u", "0.0.0.0/53", "-u", "[::]/53"},
     {"--delete", "-u", "0.0.0.0/53", "-u", "[::]/53"},
     {"UDP [0.0.0.0]:53 => 53", "UDP [::]:53 => 53"}},
    {{"--add", "-t", "0.0.0.0/8000-8004", "-t", "[::]/8000-8004"},
     {"--delete", "-t", "0.0.0.0/8000-8004", "-t", "[::]/8000-8004"},
     {"TCP [0.0.0.0]:8000-8004 => 8000-8004", "TCP [::]:8000-8004 => 8000-8004"}},
    {{"--add", "-t", "127.0.0.1/443"}, {"--delete", "-t", "127.0.0.1/443"},
     {"TCP [127.0.0.1]:443 => 443"}},
    {{"--add", "-t", "[::1]/8080"}, {"--delete", "-t", "[::1]/8080"}, {"TCP [::1]:8080 => 8080"}},
};

/// Podman's first generation with a listen address of the container network
/// (the address must exist to be bound).
inline const InteropLine kPodmanListenAddress = {
    {"--add", "-u", "[fd00::1]/80"}, {"--delete", "-u", "[fd00::1]/80"},
    {"UDP [fd00::1]:80 => 80"}};

/// Podman's later generations: the container's address, IPv6 never bracketed.
inline const std::vector<InteropLine> kPodmanWithTarget = {
    {{"--add", "-t", "0.0.0.0/8080:10.88.0.5/80", "-t", "[::]/8080:fd00::5/80"},
     {"--delete", "-t", "0.0.0.0/8080:10.88.0.5/80", "-t", "[::]/8080:fd00::5/80"},
     {"TCP [0.0.0.0]:8080 => 10.88.0.5:80", "TCP [::]:8080 => fd00::5:80"}},
    {{"--add", "-t", "0.0.0.0/8000-8004:10.88.0.5/80-84"},
     {"--delete", "-t", "0.0.0.0/8000-8004:10.88.0.5/80-84"},
     {"TCP [0.0.0.0]:8000-8004 => 10.88.0.5:80-84"}},
    // -p 80/tcp,udp: -t A -t B -u A -u B in one call.
    {{"--add", "-t", "0.0.0.0/80:10.88.0.5/80", "-t", "[::]/80:fd00::5/80",
      "-u", "0.0.0.0/80:10.88.0.5/80", "-u", "[::]/80:fd00::5/80"},
     {"--delete", "-t", "0.0.0.0/80:10.88.0.5/80", "-t", "[::]/80:fd00::5/80",
      "-u", "0.0.0.0/80:10.88.0.5/80", "-u", "[::]/80:fd00::5/80"},
     {"TCP [0.0.0.0]:80 => 10.88.0.5:80", "TCP [::]:80 => fd00::5:80",
      "UDP [0.0.0.0]:80 => 10.88.0.5:80", "UDP [::]:80 => fd00::5:80"}},
};

/// rootlesskit's port driver: no target ever, IPv6 unbracketed.
inline const std::vector<InteropLine> kRootlesskit = {
    {{"-A", "--tcp-ports=0.0.0.0/8080:80"}, {"-D", "--tcp-ports=0.0.0.0/8080:80"},
     {"TCP [0.0.0.0]:8080 => 80"}},
    {{"-A", "--udp-ports=0.0.0.0/8080:80"}, {"-D", "--udp-ports=0.0.0.0/8080:80"},
     {"UDP [0.0.0.0]:8080 => 80"}},
    {{"-A", "--tcp-ports=::/8080:80"}, {"-D", "--tcp-ports=::/8080:80"}, {"TCP [::]:8080 => 80"}},
    {{"-A", "--tcp-ports=::1/8080:80"}, {"-D", "--tcp-ports=::1/8080:80"},
     {"TCP [::1]:8080 => 80"}},
    {{"-A", "--udp-ports=::/8080:80"}, {"-D", "--udp-ports=::/8080:80"}, {"UDP [::]:8080 => 80"}},
};
// clang-format on

}  // namespace sluice::test
