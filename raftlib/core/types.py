"""Plain data shared by the Raft core, storage, transports and the node driver.

Messages and entries are ``msgspec.Struct`` classes: immutable records that the core builds and
reads like any data class, and that the wire codec (``raftlib.transport.codec``) encodes without
a conversion step. Nothing here does I/O.

The records that hold only numbers, bytes, strings and tuples of such records are declared
``gc=False``: no reference cycle can run through them, and the cyclic garbage collector then
never walks the log held in memory nor counts the messages a busy leader builds per batch
(its collections were a tenth of a SET's cost on the leader).

Index and term conventions (as in the Raft paper):
- log indexes start at 1; index 0 with term 0 is the empty prefix every log agrees on;
- ``NO_NODE`` (0) means "nobody": no vote cast, no leader known. Node ids are positive ints.
"""

from __future__ import annotations

import enum

import msgspec

NodeId = int
NO_NODE: NodeId = 0


class EntryKind(enum.IntEnum):
    """What an entry carries. Only NORMAL entries reach the user's state machine."""

    NORMAL = 0
    # Appended by a new leader at the start of its term: committing it commits every earlier
    # entry (§5.4.2 forbids counting replicas of earlier terms directly) and lets ReadIndex work.
    NOOP = 1
    # A new cluster configuration (``raftlib.core.membership``): the whole ConfState, encoded.
    # It takes effect when committed and handed out to be applied; the state machine never
    # sees it.
    CONF = 2


class Entry(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One log entry. ``data`` is opaque to Raft."""

    term: int
    index: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


class HardState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What must survive a crash before any message that depends on it is sent (Figure 2)."""

    term: int = 0
    vote: NodeId = NO_NODE
    commit: int = 0


class ConfState(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """The cluster configuration in force at some log position: who votes and who only
    listens. ``voters_outgoing`` is non-empty only in a joint configuration (thesis §4.3), when
    a decision needs a majority of ``voters`` AND of ``voters_outgoing``."""

    voters: tuple[NodeId, ...]
    learners: tuple[NodeId, ...] = ()
    voters_outgoing: tuple[NodeId, ...] = ()
    # (node id, address) of members the drivers reach by an address (opaque to the core).
    addresses: tuple[tuple[NodeId, str], ...] = ()


class SnapshotMeta(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """What a snapshot stands for: every entry up to ``index`` (whose term is ``term``) applied,
    under configuration ``conf``. The log after a snapshot starts at ``index + 1``."""

    index: int
    term: int
    conf: ConfState


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# --- Messages -------------------------------------------------------------------------------
# Every message names its sender (``src``), its receiver (``dst``) and the sender's term.
# Tags are small ints so frames stay compact; never renumber a tag (it is a wire format).


class RequestVote(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=1):
    """Candidate -> voter (§5.2). With ``pre_vote`` it is a PreVote probe (thesis §9.6): ``term``
    is the term the sender *would* campaign in, and the receiver changes no state for it."""

    term: int
    src: NodeId
    dst: NodeId
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    # Set by a candidate campaigning on a leader's TimeoutNow (leadership transfer): voters
    # then grant even though they heard from that leader recently (thesis §3.10, §9.6).
    transfer: bool = False


class RequestVoteResponse(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=2):
    term: int
    src: NodeId
    dst: NodeId
    granted: bool
    pre_vote: bool = False


class AppendEntries(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=3):
    """Leader -> follower (§5.3). With no entries it is a heartbeat. ``read_ctx`` is the highest
    ReadIndex request id this round confirms (0 = none); the follower echoes it. ``stream``
    names the leader's current run of appends to this follower (``progress.Progress``); the
    follower echoes it, so the leader can tell a late or duplicated answer to an earlier run
    from one to the current run."""

    term: int
    src: NodeId
    dst: NodeId
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    read_ctx: int = 0
    stream: int = 0


class AppendEntriesResponse(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=4):
    """Follower -> leader. On success ``match_index`` is the last index known to match. On
    rejection, ``conflict_index``/``conflict_term`` are the fast-backtracking hints (thesis §5.3
    optimisation): the leader can skip a whole conflicting term per round trip."""

    term: int
    src: NodeId
    dst: NodeId
    success: bool
    match_index: int = 0
    conflict_index: int = 0
    conflict_term: int = 0
    read_ctx: int = 0
    stream: int = 0  # the answered append's (0: an answer to no append, e.g. a snapshot's)


class TimeoutNow(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=5):
    """Leader -> chosen successor: campaign now, skipping PreVote (leadership transfer)."""

    term: int
    src: NodeId
    dst: NodeId


class ReadIndexRequest(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=6):
    """Follower -> leader: ask for a read index on behalf of a local reader (thesis §6.4)."""

    term: int
    src: NodeId
    dst: NodeId
    request_id: int


class ReadIndexResponse(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=7):
    """Leader -> follower: ``index`` once leadership is confirmed; 0 means refused (not leader)."""

    term: int
    src: NodeId
    dst: NodeId
    request_id: int
    index: int


class InstallSnapshot(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=8):
    """Leader -> follower whose next entry the leader has compacted away: replace your state
    with snapshot ``meta`` (thesis §5.1). The core sends and receives only this; the snapshot's
    bytes travel beside it as ``SnapshotChunk``s that the drivers stream (with flow control and a
    checksum), and the receiving driver steps this message into its core only once the whole
    snapshot is in a file of its storage."""

    term: int
    src: NodeId
    dst: NodeId
    meta: SnapshotMeta


class SnapshotChunk(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=9):
    """Leader driver -> follower driver: ``data`` at byte ``offset`` of the snapshot ``meta``
    stands for (``size`` bytes in all, CRC-32C ``crc`` of the whole payload, checked when the
    last chunk arrives). ``stream`` tells one transfer from a restarted one."""

    term: int
    src: NodeId
    dst: NodeId
    meta: SnapshotMeta
    stream: int
    offset: int
    size: int
    crc: int
    data: bytes


class SnapshotChunkAck(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=10):
    """Follower driver -> leader driver: every byte before ``offset`` of ``stream`` arrived
    (``offset`` == size: the snapshot is whole and handed to the core); ``offset`` -1: refused,
    start again."""

    term: int
    src: NodeId
    dst: NodeId
    stream: int
    offset: int


Message = (
    RequestVote
    | RequestVoteResponse
    | AppendEntries
    | AppendEntriesResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
    | InstallSnapshot
    | SnapshotChunk
    | SnapshotChunkAck
)
MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
    InstallSnapshot,
    SnapshotChunk,
    SnapshotChunkAck,
)


class ReadState(msgspec.Struct, frozen=True):
    """A linearizable read may be served once the node has applied up to ``index``."""

    request_id: int
    index: int


class SoftState(msgspec.Struct, frozen=True):
    """Volatile state the driver reports; need not be persisted. ``reason`` says why the role
    last changed ("election timeout", "higher term 7 from node 3", "lost quorum",
    "leadership transfer", ...), for the operator's log."""

    role: Role
    leader: NodeId
    reason: str = ""


class Anomaly(msgspec.Struct, frozen=True):
    """Something Raft says cannot happen, seen by the core (an input no correct cluster can
    produce: two leaders in one term, a leader whose log contradicts an entry we committed).
    ``fatal`` ones mean this node's committed state disagrees with the cluster's: the driver
    must stop the node with ``text`` rather than apply anything more. The others are ignored
    inputs the driver logs loudly and counts."""

    text: str
    fatal: bool = False


class Ready(msgspec.Struct, frozen=True):
    """The core's output batch. The driver must, in this order:

    1. persist ``hard_state`` (when not None) and ``entries`` (an append that first truncates
       any stored entry with index >= entries[0].index), with ONE fsync covering both;
    2. only then send ``messages`` (votes and acknowledgements depend on step 1);
    3. apply ``committed`` entries, in order, to the state machine (they are already durable);
    4. call ``RaftCore.advance(ready)``.
    Two relaxations are safe (see ``raft.py``): ``AppendEntries`` in ``messages`` may be sent
    before step 1 (a leader's appends depend on nothing it has yet to persist), and so may
    everything else when ``hard_state`` differs from the last one only in ``commit`` and there
    are no ``entries`` (the commit index may reach the disk with a later sync). Step 3 depends
    on no part of step 1 either: ``committed`` entries were made durable by an earlier Ready.
    ``read_states`` may be served once the applied index reaches each one's ``index``;
    ``dropped_reads`` lists ReadIndex request ids that cannot be served (leadership lost).
    ``anomalies`` must each be logged at error level; after a fatal one the core is halted
    and the driver stops the node (``raftlib.errors.Diverged``).
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...] = ()
    dropped_reads: tuple[int, ...] = ()
    soft_state: SoftState | None = None
    anomalies: tuple[Anomaly, ...] = ()
    # A snapshot received from the leader that the core accepted: before this Ready's entries
    # and hard state, commit its file (the driver holds it) and then either drop the log up to
    # its index (``snapshot_keeps_log``: the log already holds its last entry) or reset the
    # log to start after it; once durable, restore the state machine from it.
    snapshot: SnapshotMeta | None = None
    snapshot_keeps_log: bool = False

    def is_empty(self) -> bool:
        return not (
            self.hard_state is not None
            or self.entries
            or self.messages
            or self.committed
            or self.read_states
            or self.dropped_reads
            or self.soft_state is not None
            or bool(self.anomalies)
            or self.snapshot is not None
        )
