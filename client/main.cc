// sluicectl: the unprivileged client of sluice. It connects to the control
// socket, sandboxes itself (NO_NEW_PRIVS and a seccomp allowlist), and shows
// the tables in pesto's listing format.
#include <getopt.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "base/log.h"
#include "base/paths.h"
#include "base/strings.h"
#include "client/control_client.h"
#include "client/render.h"
#include "policy/seccomp.h"

namespace sluice {
namespace {

/// Exit codes, documented in sluicectl(1).
constexpr int kExitOk = 0;
constexpr int kExitUsage = 2;
constexpr int kExitConnection = 3;

/// Prints the usage text to `out`.
void usage(FILE* out) {
  std::fputs(
      "Usage: sluicectl [OPTION]... [PATH]\n"
      "Show the forwarding tables of a running sluiced.\n"
      "\n"
      "  PATH               control socket (default: /run/sluice/control.sock as root,\n"
      "                     else $XDG_RUNTIME_DIR/sluice/control.sock)\n"
      "  --timeout SECONDS  give up on an unresponsive server after this (default 10)\n"
      "  -d, --debug        print debugging messages\n"
      "  -h, --help         show this help and exit\n"
      "      --version      show the version and exit\n"
      "\n"
      "Exit status: 0 shown, 2 usage error, 3 connection or protocol error.\n",
      out);
}

/// Confines the client once its only socket is connected: no new privileges
/// and a seccomp allowlist of what printing the result needs.
Result<void> sandbox_client() {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Err(errno, "prctl(PR_SET_NO_NEW_PRIVS): " + errno_text(errno));
  }
#ifdef SLUICE_SANITIZE
  // The sanitizer runtime makes syscalls outside the client's allowlist.
  return Ok();
#else
  return install_seccomp(client_seccomp_rules(getpid()));
#endif
}

/// Runs sluicectl; returns the exit status.
int run(int argc, char** argv) {
  enum { kOptVersion = 256, kOptTimeout };
  static const struct option kOptions[] = {
      {"debug", no_argument, nullptr, 'd'},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, kOptVersion},
      {"timeout", required_argument, nullptr, kOptTimeout},
      {nullptr, 0, nullptr, 0},
  };
  int timeout_ms = 10000;
  for (;;) {
    int c = getopt_long(argc, argv, "dh", kOptions, nullptr);
    if (c == -1) break;
    switch (c) {
      case 'd':
        log_set_level(LogLevel::kDebug);
        break;
      case 'h':
        usage(stdout);
        return kExitOk;
      case kOptVersion:
        std::printf("sluicectl %s\n", SLUICE_VERSION);
        return kExitOk;
      case kOptTimeout: {
        unsigned long seconds;
        // Limit: one hour; a longer wait is a mistake, not a slow server.
        if (!parse_uint(optarg, 3600, &seconds) || seconds == 0) {
          std::fprintf(stderr,
                       "sluicectl: --timeout takes whole seconds from 1 to 3600, not '%s'\n",
                       optarg);
          return kExitUsage;
        }
        timeout_ms = static_cast<int>(seconds * 1000);
        break;
      }
      default:
        usage(stderr);
        return kExitUsage;
    }
  }
  if (argc - optind > 1) {
    std::fprintf(stderr, "sluicectl: one control socket path at most; got '%s' and '%s'\n",
                 argv[optind], argv[optind + 1]);
    return kExitUsage;
  }
  std::string path;
  if (optind < argc) {
    path = argv[optind];
  } else {
    auto def = default_control_path();
    if (!def) {
      std::fprintf(stderr, "sluicectl: %s\n", def.error().message.c_str());
      return kExitUsage;
    }
    path = *def;
  }

  auto conn = ControlConnection::connect(path, timeout_ms);
  if (!conn) {
    std::fprintf(stderr, "sluicectl: %s\n", conn.error().message.c_str());
    return kExitConnection;
  }
  auto sandboxed = sandbox_client();
  if (!sandboxed) {
    std::fprintf(stderr, "sluicectl: cannot sandbox itself: %s\n",
                 sandboxed.error().message.c_str());
    return kExitConnection;
  }
  auto hello = conn->handshake();
  if (!hello) {
    std::fprintf(stderr, "sluicectl: %s: %s\n", path.c_str(), hello.error().message.c_str());
    return kExitConnection;
  }
  LOG_DEBUG("server %s", sanitize(hello->server_version, 64).c_str());
  control::Request request;
  request.body = control::GetState{};
  auto response = conn->call(request);
  if (!response) {
    std::fprintf(stderr, "sluicectl: %s: %s\n", path.c_str(), response.error().message.c_str());
    return kExitConnection;
  }
  const auto* state = std::get_if<control::State>(&response->body);
  if (state == nullptr) {
    std::fprintf(stderr, "sluicectl: %s: the server answered getState with something else\n",
                 path.c_str());
    return kExitConnection;
  }
  std::string text = render_state(*state, *hello);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return std::fflush(stdout) == 0 ? kExitOk : kExitConnection;
}

}  // namespace
}  // namespace sluice

/// Entry point: logs as "sluicectl" to stderr.
int main(int argc, char** argv) {
  sluice::log_init("sluicectl", 2, sluice::LogLevel::kWarn);
  return sluice::run(argc, argv);
}
