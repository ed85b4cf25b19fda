// A stand-in for sluicectl's output phase: loads the client allowlist before
// stdout or stderr was ever used, then prints the way the client does
// (printf, std::cout, std::cerr, a large block), and returns from main so
// that exit() flushes stdio and runs static destructors, all under the
// filter. Run by client_stdio_test.cc with stdout on a pipe, a file,
// /dev/null and a pty. Exit codes: 0 success, 97 the filter failed to load;
// a policy gap shows up as death by SIGSYS.
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "policy/seccomp.h"

/// Loads the filter, prints, returns 0.
int main() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 97;
  sluice::Result<void> installed =
      sluice::install_seccomp(sluice::client_seccomp_rules(static_cast<int>(getpid())));
  if (!installed) {
    // stderr is unbuffered and has not been used: write() only.
    std::string msg = installed.error().message + "\n";
    (void)!write(2, msg.data(), msg.size());
    return 97;
  }
  std::printf("printf %d\n", 42);
  std::cout << "cout line" << std::endl;
  std::fprintf(stderr, "stderr line\n");
  std::cerr << "cerr line\n";
  std::string big(256 * 1024, 'x');  // larger than any stdio buffer; malloc'd with mmap
  std::cout << big.size() << "\n";
  std::fwrite(big.data(), 1, 100, stdout);
  std::printf("\nend\n");
  return 0;
}
