// A stand-in for sluicectl's output phase: prepares itself as sluicectl does
// (prepare_client_for_seccomp), loads the client allowlist before stdout or
// stderr was ever used, then prints the way the client does (printf,
// std::cout, std::cerr, a large block), and returns from main so that exit()
// flushes stdio and runs static destructors, all under the filter. Run by
// client_stdio_test.cc with stdout on a pipe, a file, /dev/null and a pty.
// With the argument "--unprepared" it skips the preparation, to show that
// stdio then needs syscalls the allowlist does not grant.
// Exit codes: 0 success, 97 the filter failed to load; a policy gap shows up
// as death by SIGSYS.
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "policy/seccomp.h"

/// Prepares (unless told not to), loads the filter, prints, returns 0.
int main(int argc, char** argv) {
  bool prepare = !(argc > 1 && std::strcmp(argv[1], "--unprepared") == 0);
  if (prepare) {
    sluice::Result<void> prepared = sluice::prepare_client_for_seccomp();
    if (!prepared) return 97;
  }
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
  std::string big(256 * 1024, 'x');  // larger than any stdio buffer and the mmap threshold
  std::cout << big.size() << "\n";
  std::fwrite(big.data(), 1, 100, stdout);
  big.append(big);  // grows past the old block: with M_MMAP_MAX 0, never mremap
  std::printf("\n%zu\nend\n", big.size());
  return 0;
}
