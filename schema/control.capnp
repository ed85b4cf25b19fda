# The control protocol between sluicectl (client) and sluice-worker (server).
#
# Transport: a UNIX stream socket created by sluiced (mode 0660) and served by
# the worker. Framing: standard Cap'n Proto stream framing, one Response or
# Request per frame. The server speaks first with Response.hello; the client
# answers with Request.hello, which the server accepts with Response.welcome
# (or refuses with Response.error); then the client sends requests. Every
# request gets exactly one response carrying the request's id.
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
  targetNamespace @8 :Bool;   # HOST rules connect in a target namespace (sluiced --netns)
}

struct ClientHello {
  magic @0 :UInt32;
  protocolVersion @1 :UInt32;
  clientVersion @2 :Text;
}

# A commit applied with confirmWithinSeconds that waits for a confirm
# request; unless one comes by the deadline, the worker commits the tables of
# rollbackGeneration again (the automatic rollback, a new generation).
struct PendingConfirm {
  generation @0 :UInt64;          # the applied commit that waits
  rollbackGeneration @1 :UInt64;  # the generation whose tables come back
  deadlineUnixMillis @2 :Int64;   # when the rollback starts (UTC)
  remainingMillis @3 :UInt64;     # until the deadline, when the reply was made
  pid @4 :Int32;                  # who committed it
  uid @5 :UInt32;
}

struct State {
  generation @0 :UInt64;  # bumped by every applied commit
  digest @1 :Data;        # SHA-256 of the canonical encoding of the tables
  tables @2 :List(Table);
  pendingConfirm @3 :PendingConfirm;  # null when no commit waits for confirmation
  # Ports of best-effort rules of the tables that do not listen: their bind
  # failed at the last commit for a reason that may pass (in use, no such
  # interface or address yet; not the bind policy or the privileged port
  # limit). A commit of the same tables tries them again.
  unbound @4 :UInt32;
}

enum ErrorCode {
  malformed @0;           # the frame or message could not be decoded
  unsupportedVersion @1;  # magic or protocol version not spoken
  unknownRequest @2;      # a request kind this server does not serve
  notPermitted @3;        # the control policy refuses this peer the request
  tooLarge @4;            # the frame exceeds the message limit
  outOfOrder @5;          # a request before hello, or a second hello
  timeout @6;             # the client was idle or too slow
  busy @7;                # the server has too many control clients now; try again
}

struct ProtocolError {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct CommitRequest {
  tables @0 :List(Table);       # the complete new tables, one per pif (a missing pif: empty)
  expectedGeneration @1 :UInt64; # compare-and-swap: the generation the client edited
  dryRun @2 :Bool;              # validate, plan and trial-bind, but change nothing
  comment @3 :Text;             # free text for the audit record, at most 1 KiB
  endRemovedFlows @4 :Bool;     # also end the connections of removed rules
  confirmWithinSeconds @5 :UInt32;  # 0: none; else rolled back unless confirmed in time
}

enum FailureKind {
  invalid @0;
  conflict @1;
  policyDenied @2;
  bindFailed @3;
  capacity @4;
  staleGeneration @5;
  confirmPending @6;  # another commit waits for confirmation: only a confirm (or dry runs) now
}

struct Failure {
  pif @0 :Pif;
  rule @1 :Int32;       # index in its table, -1 for the table or commit as a whole
  text @2 :Text;        # the rule in listing format, empty when rule is -1
  port @3 :UInt16;      # 0 when the failure is not about one port
  errno @4 :Int32;      # 0 when not a syscall's failure
  errnoName @5 :Text;   # "EADDRINUSE", empty when errno is 0
  kind @6 :FailureKind;
  message @7 :Text;     # what failed, why, and what to do
  otherRule @8 :Int32 = -1;  # the other rule of a conflict (same table), else -1
}

struct CommitResult {
  applied @0 :Bool;
  dryRun @1 :Bool;
  generation @2 :UInt64;  # after the commit (unchanged when not applied)
  digest @3 :Data;        # after the commit
  kept @4 :UInt32;        # listening sockets carried over
  opened @5 :UInt32;
  closed @6 :UInt32;
  rebound @7 :UInt32;     # opens that clash with a closing socket, sharing its port until the swap
  failures @8 :List(Failure);
  durationMicros @9 :UInt64;
  # Failures in all: `failures` lists at most 4,096 (the last one then says
  # how many more there were); 0 from a server that does not send it.
  failureCount @10 :UInt32;
  # Ports of best-effort rules that did not bind (each rule keeps its other
  # ports) and of auto-scan rules (tried again at the next scan), as
  # failures: at most 4,096, cut as `failures` is.
  warnings @11 :List(Failure);
}

enum Outcome {
  applied @0;
  rejected @1;
  dryRun @2;
  stale @3;
}

struct HistoryEntry {
  sequence @0 :UInt64;
  unixMillis @1 :Int64;
  pid @2 :Int32;
  uid @3 :UInt32;
  gid @4 :UInt32;
  comment @5 :Text;
  outcome @6 :Outcome;
  generationBefore @7 :UInt64;
  generationAfter @8 :UInt64;
  added @9 :List(Text);    # rules added, in listing format with their pif
  removed @10 :List(Text);
  kept @11 :UInt32;
  opened @12 :UInt32;
  closed @13 :UInt32;
  rebound @14 :UInt32;
  failures @15 :UInt32;
  durationMicros @16 :UInt64;
}

# An inclusive run of ports, first <= last.
struct PortRange {
  first @0 :UInt16;
  last @1 :UInt16;
}

# Counters of one rule, since it entered the tables (a commit that keeps the
# rule keeps its counters).
struct RuleStats {
  pif @0 :Pif;
  rule @1 :UInt32;              # index in its table
  text @2 :Text;                # the rule in listing format
  accepted @3 :UInt64;          # TCP connections accepted
  active @4 :UInt64;            # TCP connections open now
  failed @5 :UInt64;            # TCP connections whose target could not be reached
  bytesToTarget @6 :UInt64;     # client to target, TCP and UDP payload
  bytesToClient @7 :UInt64;     # target to client
  flowsActive @8 :UInt64;       # UDP flows open now
  flowsCreated @9 :UInt64;      # UDP flows created
  datagramsToTarget @10 :UInt64;
  datagramsToClient @11 :UInt64;
  dropped @12 :UInt64;          # UDP datagrams dropped (flow limit, full socket buffers)
  proto @13 :Proto;
  loops @14 :UInt64;            # came from sluice itself: TCP connections reset, UDP datagrams dropped
  scanActive @15 :List(PortRange);  # an auto-scan rule's ports listening now, in increasing
                                    # disjoint runs (an empty list: none now); absent (null)
                                    # for a rule without auto-scan
  pausedAtRuleLimit @16 :UInt64;    # times a listener of the rule paused at its limit or share
  pausedAtGlobalLimit @17 :UInt64;  # times a listener of the rule paused at --max-connections
  refusedBySource @18 :UInt64;      # TCP connections reset at --max-connections-per-source
  closedIdle @19 :UInt64;           # TCP connections reset by --idle-timeout
  targetErrors @20 :UInt64;         # UDP: errors the kernel reported on the rule's flow
                                    # sockets (ICMP: port closed, unreachable); a socket keeps
                                    # one pending error, so the ICMP errors that arrive before
                                    # a read count once: errors reported, not datagrams
  # An auto-scan rule's ports bound on the side it follows that it could not
  # listen on at the last try (in use on this side, the bind policy, the
  # privileged port limit), each as a failure that says why; tried again at
  # the next scan. Empty for every other rule. At most 4,096 over all rules.
  scanFailing @21 :List(Failure);
}

struct Stats {
  generation @0 :UInt64;
  uptimeMillis @1 :UInt64;      # since the worker started
  rules @2 :List(RuleStats);    # every rule of every table, in table order
  connectionsActive @3 :UInt64;
  connectionLimit @4 :UInt64;
  flowsActive @5 :UInt64;
  flowLimit @6 :UInt64;
  listeners @7 :UInt64;         # listening sockets in force
  pausedListeners @8 :UInt64;   # listeners not accepting now (a limit was reached)
  pipeSize @9 :UInt32;          # bytes per splice pipe (--pipe-size)
  connectTimeoutSeconds @10 :UInt32;  # --connect-timeout
  udpIdleTimeoutSeconds @11 :UInt32;  # --udp-idle-timeout
  auditLinesLost @12 :UInt64;     # audit lines not written whole (sink errors, full backlog)
  auditBytesWaiting @13 :UInt64;  # audit bytes waiting for a sink that pushes back
  idleTimeoutSeconds @14 :UInt32;        # --idle-timeout; 0: off
  connectionLimitPerRule @15 :UInt64;    # --max-connections-per-rule; 0: the fair share only
  connectionLimitPerSource @16 :UInt64;  # --max-connections-per-source; 0: off
  connectionShare @17 :UInt64;           # slots each TCP rule may always use now (fair share)
  connectionReserve @18 :UInt64;         # free slots a rule past its share may not take
  sourcesActive @19 :UInt64;             # sources (IPv4 addresses, IPv6 /64s) holding connections
  # Commit attempts since the worker started, by outcome (pesto updates
  # included; auto-scan's internal jobs are no commits).
  commitsApplied @20 :UInt64;
  commitsRejected @21 :UInt64;
  commitsDryRun @22 :UInt64;
  commitsStale @23 :UInt64;
  rollbacks @24 :UInt64;              # automatic rollbacks of unconfirmed commits
  pendingConfirm @25 :PendingConfirm;  # null when no commit waits for confirmation
  # Policy reloads (sluiced's SIGHUP) the worker put in force, and the rules in
  # force that the policy in force no longer lets pass, one failure each (kind
  # policyDenied): they keep forwarding until a commit removes or changes them.
  policyReloads @26 :UInt64;
  policyFailures @27 :List(Failure);
  # The worker's log: lines a sink that pushed back dropped (its standard
  # error not read fast enough), and whether the connection log is on.
  logLinesDropped @28 :UInt64;
  connectionLog @29 :Bool;  # --log-connections
  # TCP connections each data-path thread served since the worker started
  # (sluiced --data-threads), the main thread first: those it accepted and
  # kept, and those another thread accepted and handed to it.
  threadsAccepted @30 :List(UInt64);
  # The process sluiced --netns PID named has exited (the container
  # stopped): the namespace lives on only through sluiced, and HOST rules'
  # connections into it are refused. False without --netns PID.
  targetExited @31 :Bool;
}

struct ConfirmResult {
  confirmed @0 :Bool;     # a pending commit was confirmed by this request
  generation @1 :UInt64;  # the generation confirmed, or the one in force
  message @2 :Text;       # what happened, one line: why nothing was confirmed
}

struct Request {
  id @0 :UInt64;
  union {
    hello @1 :ClientHello;
    getState @2 :Void;
    commit @3 :CommitRequest;
    history @4 :UInt32;  # the last N commit attempts, N at most 256
    stats @5 :Void;      # counters per rule (read access)
    confirm @6 :Void;    # confirm the commit that waits (commit access)
  }
}

struct Response {
  id @0 :UInt64;  # the request's id; 0 for the server's hello
  union {
    hello @1 :ServerHello;
    state @2 :State;
    error @3 :ProtocolError;  # the connection is closed after this
    commit @4 :CommitResult;
    history @5 :List(HistoryEntry);
    welcome @6 :Void;  # the client's hello is accepted: requests may follow
    stats @7 :Stats;
    confirm @8 :ConfirmResult;
  }
}

# The worker's state blob (not a control message: one worker writes it, sluiced
# keeps it without reading it, and the next worker reads it after a crash;
# schema/codec.h encode_state_blob). The tables in force and their
# generation; the reader treats it as untrusted input, exactly as a commit.
const stateBlobMagic :UInt32 = 0x54534c53;  # "SLST" little-endian

struct StateBlob {
  magic @0 :UInt32;          # stateBlobMagic
  generation @1 :UInt64;     # the generation of the tables
  tables @2 :List(Table);    # one per pif, as in CommitRequest
  # Set while the tables above wait for confirmation (sluicectl
  # --confirm-within): the generation they replaced and its tables. A worker
  # that resumes from such a blob commits those at once instead, as the
  # automatic rollback of the unconfirmed commit.
  unconfirmed @3 :Bool;
  rollbackGeneration @4 :UInt64;
  rollbackTables @5 :List(Table);   # one per pif
  confirmSeconds @6 :UInt32;        # as the unconfirmed commit asked
}
