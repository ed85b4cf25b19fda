#include "client/spec_context.h"

namespace sluice {

SpecContext spec_context(const control::ServerHello& hello) {
  SpecContext ctx;
  ctx.ephemeral_first = hello.ephemeral_first;
  ctx.ephemeral_last = hello.ephemeral_last;
  ctx.ipv4 = hello.caps.ipv4;
  ctx.ipv6 = hello.caps.ipv6;
  return ctx;
}

}  // namespace sluice
