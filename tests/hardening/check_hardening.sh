#!/usr/bin/env bash
# Checks that each binary given was built with the hardening of the normal
# build (CMakeLists.txt, SLUICE_HARDEN; security review item 16), from the
# binary itself, with binutils' readelf and objdump:
#   - PIE: ELF type DYN;
#   - full RELRO: a GNU_RELRO segment, and BIND_NOW (or FLAGS/FLAGS_1 NOW), so
#     the GOT is read-only once the dynamic linker is done;
#   - in sluice::log_write(), which every binary links (base/log.cc) and which
#     holds a 4 KiB buffer and formats into it with snprintf/vsnprintf:
#       -fstack-protector-strong  a call to __stack_chk_fail;
#       -D_FORTIFY_SOURCE=2       a call to __snprintf_chk or __vsnprintf_chk;
#       -fstack-clash-protection  a probe of the stack ("or $0x0,(%rsp)"),
#                                 since its frame is larger than a page;
#       -fcf-protection (x86_64)  endbr64 as its first instruction.
# The static libraries linked in bring their own __stack_chk_fail and *_chk
# references, so the whole binary's symbols would prove nothing about our
# code; one function of ours does.
#
# Usage: check_hardening.sh BINARY...   Exit 0 when all pass, 1 otherwise.
set -uo pipefail

failed=0  # any binary failed
bad=0     # the current binary failed

# Prints a failure for binary $1: what is missing ($2) and the flag that
# provides it ($3).
fail() {
  echo "FAIL $1: $2 ($3)"
  failed=1
  bad=1
}

for bin in "$@"; do
  bad=0
  name=$(basename "$bin")
  if [ ! -f "$bin" ]; then
    fail "$name" "no such file $bin" "build it first"
    continue
  fi
  header=$(readelf -hW "$bin")
  segments=$(readelf -lW "$bin")
  dynamic=$(readelf -dW "$bin")
  grep -Eq 'Type:[[:space:]]+DYN' <<<"$header" ||
    fail "$name" "not PIE (ELF type is not DYN)" "-pie / CMAKE_POSITION_INDEPENDENT_CODE"
  grep -q 'GNU_RELRO' <<<"$segments" ||
    fail "$name" "no GNU_RELRO segment" "-Wl,-z,relro"
  grep -Eq '\(BIND_NOW\)|\(FLAGS\).*BIND_NOW|\(FLAGS_1\).*NOW' <<<"$dynamic" ||
    fail "$name" "no BIND_NOW: the GOT stays writable (partial RELRO)" "-Wl,-z,now"

  sym=$(nm "$bin" 2>/dev/null | grep -Eo '_ZN6sluice9log_write[A-Za-z0-9_]*' | head -n 1)
  if [ -z "$sym" ]; then
    fail "$name" "no symbol sluice::log_write to inspect" "is the binary stripped?"
    continue
  fi
  code=$(objdump -d --no-show-raw-insn --disassemble="$sym" "$bin")
  grep -q '__stack_chk_fail' <<<"$code" ||
    fail "$name" "log_write has no stack protector" "-fstack-protector-strong"
  grep -Eq '__v?snprintf_chk' <<<"$code" ||
    fail "$name" "log_write calls snprintf unchecked" "-D_FORTIFY_SOURCE=2 with optimisation"
  grep -Eq 'or[lq]? +\$0x0,\(%rsp\)' <<<"$code" ||
    fail "$name" "log_write's large frame is not probed" "-fstack-clash-protection"
  if grep -q 'Machine:.*X86-64' <<<"$header"; then
    first=$(grep -A1 "<$sym>:" <<<"$code" | tail -n 1)
    grep -q 'endbr64' <<<"$first" ||
      fail "$name" "log_write does not start with endbr64" "-fcf-protection"
  fi
  [ $bad -eq 0 ] && echo "ok $name"
done
exit $failed
