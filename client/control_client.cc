#include "client/control_client.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "base/strings.h"
#include "schema/frame.h"
#include "schema/pesto_wire.h"

namespace sluice {
namespace {

/// Returns the error for a connection the server refused before any request
/// (with the ProtocolError `error` it sent first or in answer to the hello):
/// what happened and what to do, with the server's own text sanitised.
/// `refused` says which step was refused. A busy server is worth another try
/// (err EBUSY); every other refusal is a protocol error (EPROTO).
Error refusal(const control::ProtocolError& error, const char* refused) {
  std::string said = sanitize(error.message, control::kMaxTextBytes);
  if (error.code == control::ErrorCode::kBusy) {
    return Error{EBUSY,
                 "the server has too many control clients now; try again in a moment (the "
                 "server said: " +
                     said + ")"};
  }
  return Error{EPROTO, std::string(refused) + ": " + said};
}

/// True when the `len` bytes at `data` start with the hello magic of pesto's
/// protocol (pesto::kMagic, "basil:s\0"): the peer is sluiced's pesto socket
/// (or pasta's), not a control socket.
bool starts_with_pesto_magic(const uint8_t* data, size_t len) {
  return len >= pesto::kMagic.size() &&
         std::memcmp(data, pesto::kMagic.data(), pesto::kMagic.size()) == 0;
}

/// Returns CLOCK_MONOTONIC_COARSE in nanoseconds: the clock of request
/// deadlines. The coarse clocks are read from the vDSO's data page without
/// touching the clock hardware, so, unlike CLOCK_MONOTONIC on a clocksource
/// the vDSO cannot read, they never fall back to the clock_gettime syscall,
/// which sluicectl's seccomp filter does not allow. Their resolution (a
/// jiffy, a few ms) is ample for a deadline in seconds. Never fails.
uint64_t coarse_now_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

Result<ControlConnection> ControlConnection::connect(const std::string& path, int timeout_ms) {
  struct sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Err(ENAMETOOLONG, "control socket path '" + path + "' is longer than " +
                                 std::to_string(sizeof(addr.sun_path) - 1) +
                                 " bytes; use a shorter path");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return SysErr("socket");
  // connect() waits (for room in a full backlog) up to the whole timeout;
  // every later wait is a slice, between which the request's deadline is
  // checked (no poll, and no per-read timeout that a trickling server could
  // renew).
  const int slice_ms = timeout_ms < kWaitSliceMs ? timeout_ms : kWaitSliceMs;
  const struct timeval whole = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  const struct timeval slice = {slice_ms / 1000, (slice_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &slice, sizeof(slice));
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &whole, sizeof(whole));
  if (::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    std::string advice;
    struct stat st;
    if (err == ECONNREFUSED && stat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
      // connect() says "refused" for a file or a directory too.
      return Err(ENOTSOCK, "cannot connect to " + path + ": it is " +
                               (S_ISDIR(st.st_mode) ? "a directory" : "not a socket") +
                               ", not sluiced's control socket; pass the socket's path (sluiced "
                               "logs it at start: \"control socket PATH\"), or none for the "
                               "default");
    }
    if (err == ENOENT || err == ECONNREFUSED) {
      advice =
          "; is sluiced running with this control socket? Start it (./scripts/run, or "
          "sluiced -c " +
          path + ") or pass the right path";
    } else if (err == EACCES || err == EPERM) {
      advice =
          "; the socket is mode 0660: run sluicectl as the user sluiced runs as, or as a "
          "member of its group";
    } else if (err == ENOTDIR) {
      advice =
          "; a part of the path is a file, not a directory, so no sluiced made its socket "
          "there: pass the socket's path (sluiced logs it at start: \"control socket PATH\")";
    }
    return Err(err, "cannot connect to " + path + ": " + errno_text(err) + advice);
  }
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof(slice));
  return ControlConnection(std::move(fd), timeout_ms);
}

uint64_t ControlConnection::deadline_from_now() const {
  return coarse_now_ns() + static_cast<uint64_t>(timeout_ms_) * 1000000ULL;
}

Error ControlConnection::timed_out(const char* what) const {
  std::string limit = timeout_ms_ % 1000 == 0 ? std::to_string(timeout_ms_ / 1000) + " s"
                                              : std::to_string(timeout_ms_) + " ms";
  return Error{ETIMEDOUT, std::string(what) + " (the request took longer than --timeout, " + limit +
                              "; the server is stuck or overloaded)"};
}

Result<void> ControlConnection::write_all(const std::string& bytes, uint64_t deadline_ns) {
  size_t off = 0;
  while (off < bytes.size()) {
    if (coarse_now_ns() >= deadline_ns) {
      return Err(timed_out("the server did not accept the request in time"));
    }
    ssize_t n = ::send(fd_.get(), bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;  // the deadline decides
    if (n < 0) return SysErr("sending to the server");
    off += static_cast<size_t>(n);
  }
  return Ok();
}

Result<control::Response> ControlConnection::read_response(uint64_t deadline_ns) {
  if (buf_.empty()) buf_.resize(512);
  for (;;) {
    auto* data = reinterpret_cast<uint8_t*>(buf_.data());
    FrameCheck check = check_frame(data, len_, kMaxControlMessageBytes);
    if (check.status == FrameStatus::kInvalid) {
      // A frame is judged invalid only once its first 8 bytes are here
      // (check_frame), so the whole magic is there to compare.
      if (starts_with_pesto_magic(data, len_)) {
        return Err(EPROTO,
                   "this is sluiced's pesto socket (sluiced --pesto-socket), which speaks "
                   "pesto's protocol (pesto and Podman use it); sluicectl talks to sluiced's "
                   "control socket: pass the PATH sluiced was given with -c (default: "
                   "/run/sluice/control.sock as root, else "
                   "$XDG_RUNTIME_DIR/sluice/control.sock)");
      }
      return Err(EPROTO, "the server sent an invalid frame: " + check.message);
    }
    if (check.status == FrameStatus::kComplete) {
      auto response = control::decode_response(data, check.frame_bytes);
      std::memmove(data, data + check.frame_bytes, len_ - check.frame_bytes);
      len_ -= check.frame_bytes;
      if (!response)
        return Err(EPROTO, "the server sent a malformed response: " + response.error().message);
      return response;
    }
    size_t need = check.frame_bytes > len_ ? check.frame_bytes : len_ + 4096;
    if (need > buf_.size() * 8) buf_.resize((need + 7) / 8);
    // Checked before every wait, so bytes arriving just often enough to
    // renew a per-read timeout cannot keep the client here.
    if (coarse_now_ns() >= deadline_ns) return Err(timed_out("the server did not answer in time"));
    // Re-read the address: the resize may have moved the buffer.
    data = reinterpret_cast<uint8_t*>(buf_.data());
    ssize_t n = ::recv(fd_.get(), data + len_, buf_.size() * 8 - len_, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;  // the deadline decides
    if (n < 0) return SysErr("reading from the server");
    if (n == 0) return Err(ECONNRESET, "the server closed the connection");
    len_ += static_cast<size_t>(n);
  }
}

Result<control::ServerHello> ControlConnection::handshake() {
  const uint64_t deadline = deadline_from_now();  // one for the whole handshake
  auto first = read_response(deadline);
  if (!first) return Err(first.error());
  if (auto* error = std::get_if<control::ProtocolError>(&first->body)) {
    return Err(refusal(*error, "the server refused the connection"));
  }
  auto* hello = std::get_if<control::ServerHello>(&first->body);
  if (hello == nullptr) return Err(EPROTO, "the server did not start with a hello");
  if (hello->protocol_version != control::kProtocolVersion) {
    return Err(EPROTO, "the server speaks control protocol version " +
                           std::to_string(hello->protocol_version) + " and this sluicectl speaks " +
                           std::to_string(control::kProtocolVersion) +
                           "; use a sluicectl from the same release as sluiced");
  }
  control::Request reply;
  reply.id = next_id_++;
  reply.body =
      control::ClientHello{control::kProtocolVersion, std::string("sluicectl ") + SLUICE_VERSION};
  auto sent = write_all(control::encode_request(reply), deadline);
  if (!sent) return Err(sent.error());
  // The server accepts the hello (welcome) or says why not (error).
  auto answer = read_response(deadline);
  if (!answer) return Err(answer.error());
  if (auto* error = std::get_if<control::ProtocolError>(&answer->body)) {
    return Err(refusal(*error, "the server refused this client's hello"));
  }
  if (!std::holds_alternative<control::Welcome>(answer->body) || answer->id != reply.id) {
    return Err(EPROTO, "the server did not answer the hello with a welcome");
  }
  return *hello;
}

Result<control::Response> ControlConnection::call(control::Request request) {
  request.id = next_id_++;
  const uint64_t deadline = deadline_from_now();  // one for the request and its response
  auto sent = write_all(control::encode_request(request), deadline);
  if (!sent) return Err(sent.error());
  auto response = read_response(deadline);
  if (!response) return response;
  if (auto* error = std::get_if<control::ProtocolError>(&response->body)) {
    return Err(kServerRefused, std::string("the server refused the request (") +
                                   control::error_code_name(error->code) +
                                   "): " + sanitize(error->message, control::kMaxTextBytes));
  }
  if (response->id != request.id) {
    return Err(EPROTO, "the server answered request " + std::to_string(response->id) +
                           " instead of " + std::to_string(request.id));
  }
  return response;
}

}  // namespace sluice
