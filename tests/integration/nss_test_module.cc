// libnss_sluicetest.so.2: a user database module for the policy reader's
// filter tests (policy_reader_filter_test.cc). glibc loads it by name when
// nsswitch.conf lists `sluicetest` (the tests bind a file listing it over
// /etc/nsswitch.conf in a mount namespace of their own and put this
// library's directory on LD_LIBRARY_PATH). It resolves two users and two
// groups, the way real modules do:
//  - "sluice-nss-unix" asks a daemon over an AF_UNIX stream socket (the
//    path in $SLUICE_TEST_NSS_SOCKET), as sss, nslcd and nscd clients do:
//    it sends the name and reads the id back as decimal text;
//  - "sluice-nss-inet" opens an AF_INET socket first, as nss_ldap without
//    nslcd or nss_nis do: the reader's filter must stop it.
// Every other name is not found. Only the entry points glibc needs for
// getpwnam_r and getgrnam_r are here.
#include <grp.h>
#include <nss.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace {

/// Asks the daemon at $SLUICE_TEST_NSS_SOCKET for `name`'s id. Returns the
/// id, or -1 when the daemon cannot be reached or answers nonsense.
long ask_daemon(const char* name) {
  const char* path = std::getenv("SLUICE_TEST_NSS_SOCKET");
  if (path == nullptr || std::strlen(path) >= sizeof(sockaddr_un::sun_path)) return -1;
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path);
  long id = -1;
  char answer[32] = {};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::send(fd, name, std::strlen(name), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(std::strlen(name)) &&
      ::shutdown(fd, SHUT_WR) == 0) {
    size_t got = 0;
    for (ssize_t n = 1; n > 0 && got < sizeof(answer) - 1; got += static_cast<size_t>(n)) {
      n = ::recv(fd, answer + got, sizeof(answer) - 1 - got, 0);
      if (n <= 0) break;
    }
    char* end = nullptr;
    id = std::strtol(answer, &end, 10);
    if (end == answer || id < 0) id = -1;
  }
  ::close(fd);
  return id;
}

/// Resolves `name` to an id as described at the top, or returns -1.
long resolve(const char* name) {
  if (std::strcmp(name, "sluice-nss-unix") == 0) return ask_daemon(name);
  if (std::strcmp(name, "sluice-nss-inet") == 0) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);  // the reader's filter kills here
    if (fd >= 0) ::close(fd);
    return 4243;
  }
  return -1;
}

/// Copies `text` into the caller's buffer at `*at`, advancing it. Returns
/// the copy, or nullptr when `*left` is too small.
char* place(const char* text, char** at, size_t* left) {
  const size_t n = std::strlen(text) + 1;
  if (n > *left) return nullptr;
  char* out = *at;
  std::memcpy(out, text, n);
  *at += n;
  *left -= n;
  return out;
}

}  // namespace

extern "C" {

/// getpwnam_r's entry point for `passwd: ... sluicetest`.
enum nss_status _nss_sluicetest_getpwnam_r(const char* name, struct passwd* pw, char* buf,
                                           size_t len, int* errnop) {
  const long id = resolve(name);
  if (id < 0) return NSS_STATUS_NOTFOUND;
  char* at = buf;
  pw->pw_name = place(name, &at, &len);
  pw->pw_passwd = place("x", &at, &len);
  pw->pw_gecos = place("", &at, &len);
  pw->pw_dir = place("/", &at, &len);
  pw->pw_shell = place("/usr/sbin/nologin", &at, &len);
  if (pw->pw_name == nullptr || pw->pw_passwd == nullptr || pw->pw_gecos == nullptr ||
      pw->pw_dir == nullptr || pw->pw_shell == nullptr) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  pw->pw_uid = static_cast<uid_t>(id);
  pw->pw_gid = static_cast<gid_t>(id);
  return NSS_STATUS_SUCCESS;
}

/// getgrnam_r's entry point for `group: ... sluicetest`.
enum nss_status _nss_sluicetest_getgrnam_r(const char* name, struct group* gr, char* buf,
                                           size_t len, int* errnop) {
  const long id = resolve(name);
  if (id < 0) return NSS_STATUS_NOTFOUND;
  char* at = buf;
  gr->gr_name = place(name, &at, &len);
  gr->gr_passwd = place("x", &at, &len);
  // An empty member list: one null pointer, aligned, after the strings.
  const size_t pad =
      (alignof(char*) - reinterpret_cast<uintptr_t>(at) % alignof(char*)) % alignof(char*);
  if (gr->gr_name == nullptr || gr->gr_passwd == nullptr || len < pad + sizeof(char*)) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
  }
  gr->gr_mem = reinterpret_cast<char**>(at + pad);
  gr->gr_mem[0] = nullptr;
  gr->gr_gid = static_cast<gid_t>(id);
  return NSS_STATUS_SUCCESS;
}

}  // extern "C"
