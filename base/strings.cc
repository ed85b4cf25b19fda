#include "base/strings.h"

#include <sys/stat.h>

#include "base/result.h"

#include <cerrno>
#include <cstring>

namespace sluice {

namespace {

struct ErrnoName {
  int err;
  const char* name;
};

// clang-format off
#define E(x) ErrnoName{x, #x}
constexpr ErrnoName kErrnoNames[] = {
    E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(ENOEXEC), E(EBADF),
    E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(EBUSY), E(EEXIST), E(EXDEV),
    E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY), E(EFBIG),
    E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE), E(EDOM), E(ERANGE), E(EDEADLK),
    E(ENAMETOOLONG), E(ENOLCK), E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(ENOMSG), E(EIDRM),
    E(ENOSTR), E(ENODATA), E(ETIME), E(ENOSR), E(EPROTO), E(EBADMSG), E(EOVERFLOW), E(EILSEQ),
    E(EUSERS), E(ENOTSOCK), E(EDESTADDRREQ), E(EMSGSIZE), E(EPROTOTYPE), E(ENOPROTOOPT),
    E(EPROTONOSUPPORT), E(ESOCKTNOSUPPORT), E(EOPNOTSUPP), E(EPFNOSUPPORT), E(EAFNOSUPPORT),
    E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETDOWN), E(ENETUNREACH), E(ENETRESET), E(ECONNABORTED),
    E(ECONNRESET), E(ENOBUFS), E(EISCONN), E(ENOTCONN), E(ESHUTDOWN), E(ETOOMANYREFS),
    E(ETIMEDOUT), E(ECONNREFUSED), E(EHOSTDOWN), E(EHOSTUNREACH), E(EALREADY), E(EINPROGRESS),
    E(ESTALE), E(EDQUOT), E(ECANCELED), E(EOWNERDEAD), E(ENOTRECOVERABLE),
};
#undef E
// clang-format on

}  // namespace

const char* errno_name(int err) noexcept {
  for (const ErrnoName& e : kErrnoNames) {
    if (e.err == err) return e.name;
  }
  return "E?";
}

std::string errno_text(int err) {
  std::string out = errno_name(err);
  out += " (";
  out += std::strerror(err);
  out += ")";
  return out;
}

std::string sanitize(std::string_view bytes, size_t max_len) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  size_t n = bytes.size() < max_len ? bytes.size() : max_len;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    unsigned char c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (bytes.size() > max_len) out += "...";
  return out;
}

const char* file_kind(mode_t mode) noexcept {
  if (S_ISREG(mode)) return "a regular file";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "a file of unknown type";
}

std::string shell_word(std::string_view text) {
  bool plain = !text.empty();
  for (char c : text) {
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    // c != '\0': strchr finds the terminator.
    if (!(letter || (c >= '0' && c <= '9') ||
          (c != '\0' && std::strchr("./:,~%_-+@=", c) != nullptr))) {
      plain = false;
    }
  }
  if (plain) return std::string(text);
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

bool parse_uint(std::string_view text, unsigned long max, unsigned long* out) noexcept {
  if (text.empty() || text.size() > 20) return false;
  unsigned long v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    unsigned long d = static_cast<unsigned long>(c - '0');
    if (d > max || v > (max - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

Unexpected SysErr(int err, const std::string& what) {
  return Err(err, what + ": " + errno_text(err));
}

Unexpected SysErr(const char* what) {
  const int err = errno;
  return SysErr(err, std::string(what));
}

}  // namespace sluice
