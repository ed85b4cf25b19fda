#include "tests/integration/container.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "tests/integration/daemon.h"

namespace sluice::test {

Container::Container(const std::vector<std::string>& args) {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) return;
  std::vector<std::string> argv = {bin("sluice_test_container")};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> c;
  for (std::string& a : argv) c.push_back(a.data());
  c.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    execv(c[0], c.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  stdin_ = in[1];
  struct pollfd ready = {out[0], POLLIN, 0};
  const bool said = poll(&ready, 1, 10000) == 1;  // bounded: 10 s to start
  FILE* f = fdopen(out[0], "r");
  char line[64] = {};
  if (pid > 0 && said && f != nullptr && std::fgets(line, sizeof(line), f) != nullptr &&
      std::sscanf(line, "ready %d", &pid_) == 1) {
    child_ = pid;
  } else {
    pid_ = -1;
    child_ = pid;
  }
  if (f != nullptr) std::fclose(f);
}

Container::~Container() {
  if (stdin_ >= 0) close(stdin_);  // it exits when its stdin closes
  if (child_ > 0) {
    for (int i = 0; i < 100; ++i) {
      if (waitpid(child_, nullptr, WNOHANG) == child_) return;
      usleep(20000);
    }
    kill(child_, SIGKILL);
    waitpid(child_, nullptr, 0);
  }
}

}  // namespace sluice::test
