"""A scripted, deterministic network of RaftCores for scenario tests.

Each node has durable state (hard state + entries) that survives ``crash``/``restart``; a
restart builds a fresh RaftCore from it, as the driver would from storage. Messages sit in one
FIFO queue until ``deliver`` hands them over; links can be cut, nodes taken down, messages
dropped, duplicated or reordered. Every event goes to a trace that the test harness prints when
a test fails (see conftest.py), so a scenario reads like a script and fails like a log:

    net = Network(3)
    net.campaign(1); net.stabilize()
    net.cut(1, 2); net.propose(1, b"x"); net.stabilize()

The network checks Raft's safety properties as it goes (``check_safety``): election safety,
log matching, leader completeness and state machine safety.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    Message,
    NodeId,
    RaftCore,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Ready,
    RequestVote,
    RequestVoteResponse,
    Role,
    TimeoutNow,
)
from raftlib.core.membership import Change

TRACE_LINES_MAX = 4000
# The scenarios here were written for a heartbeat every tick (their expected traces count
# ticks), not the library's default of two.
CORE_TEST_DEFAULTS: dict[str, Any] = {"heartbeat_interval_ticks": 1}


def fmt_message(msg: Message) -> str:
    head = f"{msg.src}->{msg.dst} t{msg.term} "
    if isinstance(msg, AppendEntries):
        ents = ""
        if msg.entries:
            ents = f" ents={msg.entries[0].index}..{msg.entries[-1].index}"
            ents += f"@t{msg.entries[0].term}"
            if msg.entries[-1].term != msg.entries[0].term:
                ents += f"-t{msg.entries[-1].term}"
        ctx = f" ctx={msg.read_ctx}" if msg.read_ctx else ""
        return (
            f"{head}App prev={msg.prev_log_index}/t{msg.prev_log_term}{ents} "
            f"commit={msg.commit}{ctx}"
        )
    if isinstance(msg, AppendEntriesResponse):
        if msg.success:
            return f"{head}AppResp ok match={msg.match_index} ctx={msg.read_ctx}"
        return (
            f"{head}AppResp REJECT at={msg.match_index} hint={msg.conflict_index}"
            f"/t{msg.conflict_term}"
        )
    if isinstance(msg, RequestVote):
        kind = "PreVote" if msg.pre_vote else "Vote"
        extra = " transfer" if msg.transfer else ""
        return f"{head}{kind} last={msg.last_log_index}/t{msg.last_log_term}{extra}"
    if isinstance(msg, RequestVoteResponse):
        kind = "PreVoteResp" if msg.pre_vote else "VoteResp"
        return f"{head}{kind} {'GRANT' if msg.granted else 'reject'}"
    if isinstance(msg, TimeoutNow):
        return f"{head}TimeoutNow"
    if isinstance(msg, ReadIndexRequest):
        return f"{head}ReadIndex req={msg.request_id}"
    if isinstance(msg, ReadIndexResponse):
        return f"{head}ReadIndexResp req={msg.request_id} index={msg.index}"
    return f"{head}{msg!r}"


class SafetyViolation(AssertionError):
    pass


class Durable:
    """What a node's storage holds after fsync: hard state and the log."""

    def __init__(self) -> None:
        self.hard_state = HardState()
        self.entries: list[Entry] = []

    def persist(self, ready: Ready) -> None:
        if ready.entries:
            first = ready.entries[0].index
            if first > len(self.entries) + 1:
                raise SafetyViolation(f"append at {first} leaves a gap after {len(self.entries)}")
            del self.entries[first - 1 :]
            self.entries.extend(ready.entries)
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        if self.hard_state.commit > len(self.entries):
            raise SafetyViolation(
                f"durable commit {self.hard_state.commit} beyond durable log {len(self.entries)}"
            )


class Network:
    def __init__(
        self,
        size: int | Sequence[NodeId] = 3,
        *,
        seed: int = 0,
        check: bool = True,
        **config: Any,
    ) -> None:
        ids = tuple(range(1, size + 1)) if isinstance(size, int) else tuple(size)
        self.ids = ids
        # The founding voters; nodes added later (``add_node``) start knowing no configuration.
        self.founders = ids
        self.seed = seed
        self.config_overrides = config
        self.check = check
        self.rng = random.Random(seed)
        self.trace: list[tuple[str, Any]] = []
        self.durable = {i: Durable() for i in ids}
        self.nodes: dict[NodeId, RaftCore] = {}
        self.incarnation = dict.fromkeys(ids, 0)
        # Applied by each node's current incarnation (its state machine restarts empty).
        self.applied: dict[NodeId, list[Entry]] = {i: [] for i in ids}
        self.read_states: dict[NodeId, list[ReadState]] = {i: [] for i in ids}
        self.dropped_reads: dict[NodeId, list[int]] = {i: [] for i in ids}
        self.queue: list[Message] = []
        self.cut_links: set[tuple[NodeId, NodeId]] = set()
        self.down: set[NodeId] = set()
        # Optional filter: return False to drop a message at delivery.
        self.filter: Callable[[Message], bool] | None = None
        # Safety bookkeeping: the one leader of each term, the committed prefix ever seen.
        self.leader_of_term: dict[int, NodeId] = {}
        self.committed: list[Entry] = []
        self._leaders_checked: set[tuple[int, NodeId]] = set()
        self.delivered_count = 0
        for i in ids:
            self._boot(i)

    # --- construction ----------------------------------------------------------------------

    def make_config(self, node_id: NodeId) -> CoreConfig:
        voters = self.founders if node_id in self.founders else ()
        return CoreConfig(node_id=node_id, voters=voters,
                          **{**CORE_TEST_DEFAULTS, **self.config_overrides})

    def add_node(self, node_id: NodeId) -> None:
        """A new, empty node that joins: it knows no configuration until the leader's log (or
        snapshot) tells it; making it a member is a configuration change (``change``)."""
        if node_id in self.ids:
            raise ValueError(f"node {node_id} exists")
        self.log("add", node_id)
        self.ids = (*self.ids, node_id)
        self.durable[node_id] = Durable()
        self.incarnation[node_id] = 0
        self.read_states[node_id] = []
        self.dropped_reads[node_id] = []
        self._boot(node_id)

    def change(self, node_id: NodeId, *changes: Change) -> int:
        """Propose a configuration change at ``node_id`` (the leader)."""
        self.log("change", f"{node_id} {changes}")
        index = self.nodes[node_id].propose_conf_change(changes)
        self.process(node_id)
        return index

    def _boot(self, node_id: NodeId) -> None:
        durable = self.durable[node_id]
        self.incarnation[node_id] += 1
        rng = random.Random(self.seed * 7919 + node_id * 104729 + self.incarnation[node_id])
        self.nodes[node_id] = RaftCore(
            self.make_config(node_id), rng, durable.hard_state, list(durable.entries)
        )
        self.applied[node_id] = []

    def log(self, kind: str, detail: Any = "") -> None:
        self.trace.append((kind, detail))

    def format_trace(self) -> str:
        lines = []
        for kind, detail in self.trace[-TRACE_LINES_MAX:]:
            text = fmt_message(detail) if isinstance(detail, Message) else str(detail)
            lines.append(f"{kind:>9} {text}")
        skipped = len(self.trace) - TRACE_LINES_MAX
        if skipped > 0:
            lines.insert(0, f"... {skipped} earlier events omitted")
        lines.insert(0, f"network seed={self.seed}")
        return "\n".join(lines)

    # --- script verbs ----------------------------------------------------------------------

    def node(self, node_id: NodeId) -> RaftCore:
        return self.nodes[node_id]

    def campaign(self, node_id: NodeId) -> None:
        self.log("campaign", node_id)
        self.nodes[node_id].campaign()
        self.process(node_id)

    def tick(self, node_id: NodeId, count: int = 1) -> None:
        if node_id in self.down:
            return
        node = self.nodes[node_id]
        for _ in range(count):
            node.tick()
        self.log("tick", f"{node_id} x{count}")
        self.process(node_id)

    def tick_all(self, count: int = 1) -> None:
        for _ in range(count):
            for node_id in self.ids:
                if node_id not in self.down:
                    self.nodes[node_id].tick()
            self.process_all()
        self.log("tick", f"all x{count}")

    def propose(self, node_id: NodeId, *datas: bytes) -> int:
        self.log("propose", f"{node_id} {len(datas)} cmd(s)")
        index = self.nodes[node_id].propose_batch(datas)
        self.process(node_id)
        return index

    def read_index(self, node_id: NodeId, request_id: int) -> None:
        self.log("read", f"{node_id} req={request_id}")
        self.nodes[node_id].read_index(request_id)
        self.process(node_id)

    def cut(self, a: NodeId, b: NodeId) -> None:
        """Drop messages both ways between a and b."""
        self.log("cut", f"{a}<->{b}")
        self.cut_links.add((a, b))
        self.cut_links.add((b, a))

    def cut_one_way(self, src: NodeId, dst: NodeId) -> None:
        self.log("cut", f"{src}->{dst}")
        self.cut_links.add((src, dst))

    def isolate(self, node_id: NodeId) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[NodeId]) -> None:
        sets = [set(g) for g in groups]
        for a in self.ids:
            for b in self.ids:
                if a != b and not any(a in s and b in s for s in sets):
                    self.cut_links.add((a, b))
        self.log("partition", " | ".join(",".join(map(str, sorted(s))) for s in sets))

    def heal(self) -> None:
        self.log("heal")
        self.cut_links.clear()

    def crash(self, node_id: NodeId) -> None:
        """Stop a node: volatile state is lost, durable state stays."""
        self.log("crash", node_id)
        self.down.add(node_id)

    def restart(self, node_id: NodeId) -> None:
        self.log("restart", node_id)
        self.down.discard(node_id)
        self._boot(node_id)
        self.process(node_id)

    def crash_mid_ready(self, node_id: NodeId, persisted: bool) -> None:
        """Crash while handling a Ready: after (or before) its fsync, before any send."""
        node = self.nodes[node_id]
        if node.has_ready():
            ready = node.ready()
            if persisted:
                self.durable[node_id].persist(ready)
        self.log("crash", f"{node_id} mid-ready (persisted={persisted})")
        self.down.add(node_id)

    # --- the driver loop -------------------------------------------------------------------

    def process(self, node_id: NodeId) -> None:
        """Run the node's Ready loop as the driver does: persist, send, apply, advance."""
        if node_id in self.down:
            return
        node = self.nodes[node_id]
        while node.has_ready():
            ready = node.ready()
            self.durable[node_id].persist(ready)
            if ready.soft_state is not None:
                self.log("state", f"{node_id} {ready.soft_state.role.value} t{node.term}")
            self.queue.extend(ready.messages)
            self.applied[node_id].extend(ready.committed)
            self.read_states[node_id].extend(ready.read_states)
            self.dropped_reads[node_id].extend(ready.dropped_reads)
            node.advance(ready)
        if self.check:
            self.check_node(node_id)

    def process_all(self) -> None:
        for node_id in self.ids:
            self.process(node_id)

    def _deliverable(self, msg: Message) -> bool:
        return (
            msg.dst not in self.down
            and (msg.src, msg.dst) not in self.cut_links
            and (self.filter is None or self.filter(msg))
        )

    def deliver_one(self, msg: Message) -> None:
        if not self._deliverable(msg):
            self.log("drop", msg)
            return
        self.log("deliver", msg)
        self.delivered_count += 1
        self.nodes[msg.dst].step(msg)
        self.process(msg.dst)

    def deliver(self, count: int | None = None) -> int:
        """Deliver the queued messages (``count`` of them, or all queued right now; replies
        they cause wait for the next call). Returns how many were taken off the queue."""
        take = len(self.queue) if count is None else min(count, len(self.queue))
        batch, self.queue = self.queue[:take], self.queue[take:]
        for msg in batch:
            self.deliver_one(msg)
        return take

    def take(self, predicate: Callable[[Message], bool]) -> list[Message]:
        """Remove and return queued messages matching ``predicate`` (to inspect or reorder)."""
        taken = [m for m in self.queue if predicate(m)]
        self.queue = [m for m in self.queue if not predicate(m)]
        return taken

    def drop_queued(self, predicate: Callable[[Message], bool] = lambda m: True) -> None:
        for msg in self.take(predicate):
            self.log("drop", msg)

    def stabilize(self, rounds_max: int = 1000) -> int:
        """Process and deliver until no message is in flight. Returns the rounds it took."""
        for rounds in range(rounds_max):
            self.process_all()
            if not self.queue:
                return rounds
            self.deliver()
        raise AssertionError(f"network did not stabilize in {rounds_max} rounds")

    # --- observations ----------------------------------------------------------------------

    def leader(self) -> NodeId | None:
        """The live leader with the highest term, if any."""
        best: tuple[int, NodeId] | None = None
        for node_id, node in self.nodes.items():
            is_leader = node_id not in self.down and node.role is Role.LEADER
            if is_leader and (best is None or node.term > best[0]):
                best = (node.term, node_id)
        return None if best is None else best[1]

    def leaders(self) -> list[NodeId]:
        return [i for i in self.ids if i not in self.down and self.nodes[i].role is Role.LEADER]

    def applied_data(self, node_id: NodeId) -> list[bytes]:
        return [e.data for e in self.applied[node_id] if e.kind == EntryKind.NORMAL]

    def terms(self, node_id: NodeId) -> list[int]:
        return [e.term for e in self.nodes[node_id].log_entries()]

    # --- safety ----------------------------------------------------------------------------

    def check_node(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        status = node.status()
        if status.safety_anomalies:
            raise SafetyViolation(f"node {node_id} saw {status.safety_anomalies} anomalies")
        # Election Safety (§5.2): at most one leader per term, over the whole run.
        if node.role is Role.LEADER:
            holder = self.leader_of_term.setdefault(node.term, node_id)
            if holder != node_id:
                raise SafetyViolation(
                    f"two leaders in term {node.term}: nodes {holder} and {node_id}"
                )
            if (node.term, node_id) not in self._leaders_checked:
                self._leaders_checked.add((node.term, node_id))
                self.log("leader", f"{node_id} t{node.term}")
                self._check_leader_completeness(node_id)
        self._record_committed(node_id)
        # State Machine Safety (§5.4.3): what a node applied is the committed prefix.
        applied = self.applied[node_id]
        if applied and applied[-1].index > len(self.committed):
            raise SafetyViolation(f"node {node_id} applied beyond the committed prefix")
        if applied and applied[0].index != 1:
            raise SafetyViolation(f"node {node_id} applied from index {applied[0].index}")
        tail = len(applied)
        if tail and applied[-1] != self.committed[tail - 1]:
            raise SafetyViolation(
                f"node {node_id} applied {applied[-1]!r} but index {tail} committed as "
                f"{self.committed[tail - 1]!r}"
            )

    def _record_committed(self, node_id: NodeId) -> None:
        node = self.nodes[node_id]
        commit = node.commit_index
        known = len(self.committed)
        if commit == 0:
            return
        # Every node's committed prefix agrees with every other's (Log Matching + §5.4); by
        # Log Matching, agreeing on the last overlapping entry means agreeing on all before.
        overlap = min(commit, known)
        if overlap:
            (ours,) = node.entries(overlap, overlap)
            if ours != self.committed[overlap - 1]:
                raise SafetyViolation(
                    f"node {node_id} committed {ours!r} at {overlap}, but "
                    f"{self.committed[overlap - 1]!r} was committed there"
                )
        if commit > known:
            self.committed.extend(node.entries(known + 1, commit))

    def _check_leader_completeness(self, node_id: NodeId) -> None:
        """§5.4: a leader's log holds every entry committed before its term."""
        entries = self.nodes[node_id].log_entries()
        known = len(self.committed)
        if entries[:known] != self.committed:
            raise SafetyViolation(
                f"leader {node_id} (term {self.nodes[node_id].term}) lacks committed entries"
            )

    def check_log_matching(self) -> None:
        """§5.3 Log Matching: two logs with an entry of the same index and term are identical
        up to it."""
        logs = {i: self.nodes[i].log_entries() for i in self.ids}
        for a in self.ids:
            for b in self.ids:
                if a >= b:
                    continue
                la, lb = logs[a], logs[b]
                for index in range(min(len(la), len(lb)), 0, -1):
                    if la[index - 1].term == lb[index - 1].term:
                        if la[:index] != lb[:index]:
                            raise SafetyViolation(
                                f"logs of {a} and {b} agree on term at {index} but differ before"
                            )
                        break

    def check_safety(self) -> None:
        for node_id in self.ids:
            if node_id not in self.down:
                self.check_node(node_id)
        self.check_log_matching()


# --- single-core helpers (paper rule tests drive one RaftCore by hand) ----------------------


def entries_of_terms(terms: Sequence[int]) -> list[Entry]:
    """A log whose entry i (1-based) has term terms[i-1] and data b"<i>"."""
    return [Entry(term, index, b"%d" % index) for index, term in enumerate(terms, start=1)]


def make_core(
    node_id: NodeId = 1,
    voters: Sequence[NodeId] = (1, 2, 3),
    *,
    term: int = 0,
    vote: NodeId = 0,
    commit: int = 0,
    log_terms: Sequence[int] = (),
    seed: int = 0,
    **config: Any,
) -> RaftCore:
    """A core restarted from the given durable state."""
    cfg = CoreConfig(node_id=node_id, voters=tuple(voters), **{**CORE_TEST_DEFAULTS, **config})
    return RaftCore(
        cfg, random.Random(seed), HardState(term, vote, commit), entries_of_terms(log_terms)
    )


def drain(core: RaftCore) -> list[Ready]:
    """Take every Ready the core has, acknowledging each as a driver would."""
    readies = []
    while core.has_ready():
        ready = core.ready()
        readies.append(ready)
        core.advance(ready)
    return readies


def sent(core: RaftCore) -> list[Message]:
    """Messages from every pending Ready, in order."""
    return [m for r in drain(core) for m in r.messages]


def become_leader(core: RaftCore) -> list[Message]:
    """Make ``core`` win an election by granting it every vote; return what it then sent.

    Works with PreVote on or off: each vote request gets the grant it asks for.
    """
    core.campaign()
    for _ in range(2):
        for msg in sent(core):
            if isinstance(msg, RequestVote):
                core.step(RequestVoteResponse(msg.term, msg.dst, msg.src, True, msg.pre_vote))
        if core.role is Role.LEADER:
            break
    if core.role is not Role.LEADER:
        raise AssertionError(f"node {core.node_id} did not become leader: {core.role}")
    return sent(core)


def ack_all(core: RaftCore, msgs: Iterable[Message]) -> None:
    """Answer every AppendEntries in ``msgs`` with success, as followers with matching logs."""
    for msg in msgs:
        if isinstance(msg, AppendEntries):
            core.step(
                AppendEntriesResponse(
                    msg.term,
                    msg.dst,
                    msg.src,
                    True,
                    msg.prev_log_index + len(msg.entries),
                    read_ctx=msg.read_ctx,
                    stream=msg.stream,
                )
            )
