#!/usr/bin/env bash
# The install step for real: builds the .deb with cpack from BUILD_DIR,
# checks its contents and control fields, then installs it with dpkg -i in a
# throwaway root (an overlay of /, pivoted to in a private mount and network
# namespace, so the host's files, users and ports are never touched), and
# there:
#   - the maintainer script created the worker's user "sluice";
#   - systemd-analyze verify accepts the installed units (system service,
#     its control socket unit, and the user service);
#   - the installed sluiced finds its worker under libexec, forwards a TCP
#     connection, and its worker runs as "sluice";
#   - dpkg -r removes the binaries.
# Every wait is bounded in count and time. Needs root (overlayfs, dpkg);
# exits 77 (skipped) otherwise.
#
#   install_test.sh BUILD_DIR
set -euo pipefail

self="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"

# Fails the test with a message.
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Waits (at most 10 s) until "$@" succeeds.
wait_for() {
  local i
  for ((i = 0; i < 100; i++)); do
    "$@" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Inside the throwaway root: the installed package at work.
in_root() {
  local deb=$1 uid pid worker i
  # Whatever this started goes with it, also when a check fails.
  trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
  ip link set lo up
  dpkg -i "$deb" || fail "dpkg -i $deb"
  uid=$(getent passwd sluice | cut -d: -f3) || fail "postinst did not create the user sluice"
  if [ -z "$uid" ] || [ "$uid" = 0 ]; then fail "the user sluice has uid '$uid'"; fi
  echo "user sluice: uid $uid"
  [ -x /usr/libexec/sluice/sluice-worker ] || fail "no /usr/libexec/sluice/sluice-worker"
  [ -d /run/sluice ] || fail "postinst did not create /run/sluice (tmpfiles.d)"
  if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify /usr/lib/systemd/system/sluiced.service ||
      fail "systemd-analyze verify refuses the system unit"
    systemd-analyze verify /usr/lib/systemd/system/sluiced.socket ||
      fail "systemd-analyze verify refuses the socket unit"
    mkdir -m 0700 /tmp/xdg-runtime
    XDG_RUNTIME_DIR=/tmp/xdg-runtime systemd-analyze --user verify \
      /usr/lib/systemd/user/sluiced.service || fail "systemd-analyze verify refuses the user unit"
    echo "systemd-analyze verify: the system service, its socket and the user unit pass"
  else
    fail "systemd-analyze is missing (scripts/deps installs systemd)"
  fi
  man -w sluice-policy >/dev/null 2>&1 || [ -f /usr/share/man/man5/sluice-policy.5 ] ||
    fail "no sluice-policy(5)"

  # A target, then sluiced from its installed path.
  python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18000)); s.listen(4)
for _ in range(2):
    c, _ = s.accept(); c.sendall(b"installed\n"); c.close()
' &
  local target=$!
  /usr/sbin/sluiced -c /run/sluice/control.sock -t 127.0.0.1/18080:18000 2>/tmp/sluiced.log &
  pid=$!
  wait_for test -S /run/sluice/control.sock || { cat /tmp/sluiced.log; fail "no control socket"; }
  /usr/bin/sluicectl /run/sluice/control.sock | grep -q "18080" ||
    { cat /tmp/sluiced.log; fail "sluicectl does not list the rule"; }
  local got=""
  for ((i = 0; i < 50; i++)); do
    got=$(timeout 5 python3 -c '
import socket
c = socket.create_connection(("127.0.0.1", 18080), timeout=3)
print(c.recv(64).decode().strip())' 2>/dev/null) && break
    sleep 0.1
  done
  [ "$got" = installed ] || { cat /tmp/sluiced.log; fail "no answer through port 18080: '$got'"; }
  echo "forwarded: $got"
  worker=""
  for ((i = 0; i < 50; i++)); do
    for st in /proc/[0-9]*/status; do
      if grep -q "^PPid:[[:space:]]*$pid$" "$st" 2>/dev/null &&
        grep -q "^Name:[[:space:]]*sluice-worker" "$st" 2>/dev/null; then
        worker=$st
      fi
    done
    [ -z "$worker" ] || break
    sleep 0.1
  done
  [ -n "$worker" ] || fail "no sluice-worker under sluiced $pid"
  grep -q "^Uid:[[:space:]]*${uid}[[:space:]]${uid}[[:space:]]${uid}[[:space:]]${uid}$" "$worker" ||
    fail "the worker does not run as sluice: $(grep ^Uid: "$worker")"
  echo "the worker runs as sluice"
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  ! kill -0 "$pid" 2>/dev/null || fail "sluiced did not stop on SIGTERM"
  kill "$target" 2>/dev/null || true

  dpkg -r sluice || fail "dpkg -r sluice"
  if [ -e /usr/sbin/sluiced ] || [ -e /usr/libexec/sluice/sluice-worker ]; then
    fail "dpkg -r left the binaries"
  fi
  echo "removed"
}

# In a private mount and network namespace: an overlay of / as the root.
in_namespace() {
  local deb=$1 dir=$2 m
  m="$dir/root"
  mkdir -p "$dir/upper" "$dir/work" "$m"
  mount --make-rprivate /
  mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$m"
  mount --rbind /proc "$m/proc"
  mount --rbind /dev "$m/dev"
  mount --rbind /sys "$m/sys"
  mount -t tmpfs tmpfs "$m/run"
  mount -t tmpfs tmpfs "$m/tmp"
  cp "$deb" "$m/tmp/"
  cp "$self" "$m/tmp/install_test.sh"
  # pivot_root, not chroot: a chrooted process may not create a user
  # namespace, which the worker's sandbox does.
  mkdir -p "$m/.oldroot"
  cd "$m"
  pivot_root . .oldroot
  cd /
  umount -l /.oldroot
  /bin/bash /tmp/install_test.sh --in-root "/tmp/$(basename "$deb")"
}

case "${1:-}" in
  --in-root) in_root "$2"; exit 0 ;;
  --in-namespace) in_namespace "$2" "$3"; exit 0 ;;
esac

build=$(cd "${1:?usage: install_test.sh BUILD_DIR}" && pwd)
if [ "$(id -u)" -ne 0 ]; then
  echo "SKIP: installing the package needs root (overlayfs, dpkg)"
  exit 77
fi
for tool in cpack dpkg-deb unshare pivot_root python3; do
  command -v "$tool" >/dev/null || fail "$tool is missing"
done
tmp=$(mktemp -d /tmp/sluice-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT

(cd "$tmp" && timeout 600 cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/pkg") \
  >"$tmp/cpack.log" 2>&1 || { cat "$tmp/cpack.log"; fail "cpack"; }
deb=$(ls "$tmp"/pkg/sluice_*.deb)
echo "package: $(basename "$deb")"
[ "$(dpkg-deb -f "$deb" Package)" = sluice ] || fail "Package is not sluice"
dpkg-deb -f "$deb" Depends | grep -q "libc6" || fail "Depends lacks libc6"
contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }')
for f in ./usr/sbin/sluiced ./usr/bin/sluicectl ./usr/libexec/sluice/sluice-worker \
  ./usr/share/man/man1/sluicectl.1 ./usr/share/man/man5/sluice-policy.5 \
  ./usr/share/man/man8/sluiced.8 ./usr/lib/systemd/system/sluiced.service \
  ./usr/lib/systemd/system/sluiced.socket \
  ./usr/lib/systemd/user/sluiced.service ./usr/lib/sysusers.d/sluice.conf \
  ./usr/lib/tmpfiles.d/sluice.conf \
  ./usr/share/doc/sluice/examples/host-services.policy; do
  grep -qxF "$f" <<<"$contents" || fail "the package lacks $f"
done
dpkg-deb -x "$deb" "$tmp/x"
grep -q "^ExecStart=/usr/sbin/sluiced " "$tmp/x/usr/lib/systemd/system/sluiced.service" ||
  fail "the unit does not start /usr/sbin/sluiced"
grep -q "^Type=notify$" "$tmp/x/usr/lib/systemd/system/sluiced.service" ||
  fail "the unit is not Type=notify"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$tmp/x/usr/lib/systemd/system/sluiced.service" ||
  fail "the unit does not reload the policy with SIGHUP"
grep -q '^ExecReload=/bin/kill -HUP \$MAINPID$' "$tmp/x/usr/lib/systemd/user/sluiced.service" ||
  fail "the user unit does not reload the policy with SIGHUP"
grep -q "^FileDescriptorName=control$" "$tmp/x/usr/lib/systemd/system/sluiced.socket" ||
  fail "the socket unit does not name its fd control"
echo "contents: as expected"

# Limit: the whole install, run and removal, far above its few seconds.
timeout 300 unshare -m -n --fork --kill-child bash "$self" --in-namespace "$deb" "$tmp/ns"
echo "PASS"
