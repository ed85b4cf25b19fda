# The control protocol between sluicectl (client) and sluice-worker (server).
#
# Transport: a UNIX stream socket created by sluiced (mode 0660) and served by
# the worker. Framing: standard Cap'n Proto stream framing, one Response or
# Request per frame. The server speaks first with Response.hello; the client
# answers with Request.hello; then the client sends requests, and every request
# gets exactly one response carrying the request's id.
#
# The worker checks each frame's segment table itself before decoding (Debian's
# Cap'n Proto 0.9.2 predates the 2026 segment-count fix) and decodes every
# message in exactly one place, into plain values (schema/codec.h).
@0x92edbf2481e11147;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("sluice::capnp_control");

const magic :UInt32 = 0x54434c53;  # "SLCT" little-endian
const protocolVersion :UInt32 = 1;

enum Pif {
  host @0;    # inbound: -t/-u
  splice @1;  # outbound from the target namespace: -T/-U
}

enum Proto {
  tcp @0;
  udp @1;
}

struct Rule {
  proto @0 :Proto;
  listen @1 :Data;       # exactly 16 bytes; IPv4 v4-mapped; :: with dualStack for "*"
  ifname @2 :Text;       # empty, or 1..15 bytes
  first @3 :UInt16;
  last @4 :UInt16;
  to @5 :UInt16;         # port n goes to to + n - first
  target @6 :Data;       # exactly 16 bytes; all zero = default target
  dualStack @7 :Bool;
  weak @8 :Bool;
  scan @9 :Bool;
}

struct Table {
  pif @0 :Pif;
  rules @1 :List(Rule);
}

struct Capabilities {
  ipv4 @0 :Bool;
  ipv6 @1 :Bool;
  tcp @2 :Bool;
  udp @3 :Bool;
  scan @4 :Bool;
  ifname @5 :Bool;
}

struct PifInfo {
  pif @0 :Pif;
  name @1 :Text;
}

struct Limits {
  rulesPerTable @0 :UInt32;
  listenersPerTable @1 :UInt32;
  messageBytes @2 :UInt32;
}

struct ServerHello {
  magic @0 :UInt32;
  protocolVersion @1 :UInt32;
  serverVersion @2 :Text;
  capabilities @3 :Capabilities;
  limits @4 :Limits;
  pifs @5 :List(PifInfo);
  ephemeralFirst @6 :UInt16;  # the server's ip_local_port_range, used for "all"
  ephemeralLast @7 :UInt16;
}

struct ClientHello {
  magic @0 :UInt32;
  protocolVersion @1 :UInt32;
  clientVersion @2 :Text;
}

struct State {
  generation @0 :UInt64;  # bumped by every applied commit
  digest @1 :Data;        # SHA-256 of the canonical encoding of the tables
  tables @2 :List(Table);
}

enum ErrorCode {
  malformed @0;           # the frame or message could not be decoded
  unsupportedVersion @1;  # magic or protocol version not spoken
  unknownRequest @2;      # a request kind this server does not serve
  notPermitted @3;        # the control policy refuses this peer the request
  tooLarge @4;            # the frame exceeds the message limit
  outOfOrder @5;          # a request before hello, or a second hello
  timeout @6;             # the client was idle or too slow
}

struct ProtocolError {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct Request {
  id @0 :UInt64;
  union {
    hello @1 :ClientHello;
    getState @2 :Void;
  }
}

struct Response {
  id @0 :UInt64;  # the request's id; 0 for the server's hello
  union {
    hello @1 :ServerHello;
    state @2 :State;
    error @3 :ProtocolError;  # the connection is closed after this
  }
}
