"""Guards of the driver (raftlib/driver.py) that no test pinned down: each test here fails on a
small change (a mutant) of one check or step of the driver that left the driver, node,
simulator and storage tests green.

The mutants each test kills are named in its docstring as ``driver.py:line`` of the code it
guards (as of the mutation audit that added this file), so a later audit can tell which check
a test is about. The scenarios run ``Driver`` by hand on the fake storage of the driver's
snapshot tests: one node stepped message by message, so each test says which input made the
driver do what."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, BinaryIO

import crc32c
import pytest

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    RaftCore,
    Role,
)
from raftlib.core.membership import Change, ChangeOp
from raftlib.core.types import (
    ConfState,
    InstallSnapshot,
    Message,
    RequestVoteResponse,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
)
from raftlib.driver import DEFERRED_COMMIT_TICKS_MAX, Driver, DriverHooks, recover
from raftlib.errors import (
    CorruptSnapshot,
    Diverged,
    NotLeader,
    ProposalOutcomeUnknown,
    ProposalQueueFull,
)
from raftlib.snapshots import SnapshotPolicy
from raftlib.storage.base import SnapshotWriter
from tests.raftlib.core.network import entries_of_terms
from tests.raftlib.driver.test_driver_snapshots import (
    IDS,
    TINY,
    Counter,
    FakeStorage,
    _Reader,
    _transfer_in_progress,
    _Writer,
)

CONF = ConfState(IDS)
# No snapshot unless a test asks for one.
NEVER = SnapshotPolicy(entries=0, bytes=0)


class Outcome:
    """A waiter that keeps what it was told."""

    def __init__(self) -> None:
        self.told = False
        self.value: Any = None
        self.error: BaseException | None = None

    def set_value(self, value: Any) -> None:
        assert not self.told, "a waiter is told once"
        self.told, self.value = True, value

    def set_error(self, error: BaseException) -> None:
        assert not self.told, "a waiter is told once"
        self.told, self.error = True, error


class Store(FakeStorage):
    """The snapshot tests' storage, keeping every snapshot writer it made and every
    compaction asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[_Writer] = []
        self.compactions: list[int] = []

    def create_snapshot(self, meta: SnapshotMeta) -> _Writer:
        self.created.append(_Writer(self, meta))
        return self.created[-1]

    def compact(self, index: int) -> None:
        self.compactions.append(index)
        super().compact(index)


class Node:
    """Node 1's driver on a ``Store``, with what it sent; ``pump`` runs its jobs (and, with
    ``run_tasks``, its snapshot tasks) until it has nothing more to do."""

    def __init__(
        self,
        voters: Sequence[int] = IDS,
        *,
        hard_state: HardState = HardState(),  # noqa: B008 - immutable value
        entries: Sequence[Entry] = (),
        policy: SnapshotPolicy = NEVER,
        machine: Any = None,
        storage: bool = True,
        store: type[Store] = Store,
        **driver: Any,
    ) -> None:
        self.store = store()
        self.store.hard, self.store.entries = hard_state, list(entries)
        config = CoreConfig(node_id=1, voters=tuple(voters), pre_vote=False, check_quorum=False,
                            election_timeout_ticks_min=10, election_timeout_ticks_max=11)
        core = RaftCore(config, random.Random(1), hard_state, entries)
        self.sm = machine if machine is not None else Counter()
        self.sent: list[Message] = []
        self.driver = Driver(core, self.sm, self.sent.extend, snapshot_policy=policy,
                             storage=self.store if storage else None, **driver)
        self.core = core

    def pump(self, run_tasks: bool = True) -> None:
        driver = self.driver
        while True:
            job = driver.pump()
            task = driver.snapshot_task
            if task is not None and run_tasks:
                driver.snapshot_task = None
                task.run()
                driver.snapshot_written(task)
                continue
            if job is None:
                return
            job.run(self.store)
            driver.persisted(job)

    def lead(self) -> None:
        """Win an election (node 2 grants its vote) and persist the term's noop."""
        self.core.campaign()
        self.pump()
        if self.core.role is not Role.LEADER:
            self.driver.step([RequestVoteResponse(self.core.term, 2, 1, True)])
            self.pump()
        assert self.core.role is Role.LEADER

    def follow(self, leader: int = 2, term: int = 1, commit: int = 0) -> None:
        """Hear from ``leader`` of ``term`` (a heartbeat matching our log)."""
        last = self.core.last_index
        prev_term = self.core.term_at(last) or 0
        self.driver.step([AppendEntries(term, leader, 1, last, prev_term, (), commit=commit)])
        self.pump()
        assert self.core.role is Role.FOLLOWER and self.core.leader == leader

    def propose(self, *values: int, run_tasks: bool = True) -> list[Outcome]:
        outcomes = [Outcome() for _ in values]
        self.driver.propose([b"%d" % v for v in values], outcomes)
        self.pump(run_tasks)
        return outcomes


def closed(writer: SnapshotWriter) -> bool:
    """Whether a writer of the fake storage was committed or aborted."""
    assert isinstance(writer, _Writer)
    return writer.closed


def whole_snapshot(meta: SnapshotMeta, data: bytes, term: int = 1, leader: int = 2,
                   stream: int = 1) -> SnapshotChunk:
    """The leader's snapshot ``meta`` in one chunk."""
    return SnapshotChunk(term, leader, 1, meta, stream, 0, len(data), crc32c.crc32c(data), data)


def counter_bytes(total: int, count: int) -> bytes:
    return b"%d;%d" % (total, count)


# --- ticks ------------------------------------------------------------------------------------


def test_a_stall_reported_as_several_ticks_reaches_the_core_as_as_many_ticks() -> None:
    """A node that missed ticks reports them all: ``tick(2)`` is two ticks of the core, so with
    an election timeout of 10 ticks a follower is still one after nine ticks reported as four
    ``tick(2)`` and a ``tick(1)``, and campaigns on the next ``tick(2)`` (driver.py:330: the
    one-tick shortcut taken for a count other than 1)."""
    node = Node()
    for _ in range(4):
        node.driver.tick(2)
    node.driver.tick(1)
    roles = [node.core.role]
    node.driver.tick(2)
    roles.append(node.core.role)
    assert roles == [Role.FOLLOWER, Role.CANDIDATE]


# --- proposals and reads ------------------------------------------------------------------------


def test_requests_beyond_the_pending_bound_fail_with_queue_full_and_reach_no_log() -> None:
    """``pending_requests_max`` bounds what the driver tracks: a batch that fits exactly is
    taken, anything past the bound fails at once with ProposalQueueFull and is never appended
    (driver.py:342, :343 proposals; :360, :361 conf changes; :375, :376 reads)."""
    node = Node(voters=(1,), pending_requests_max=2)
    node.lead()
    last = node.core.last_index
    first = [Outcome(), Outcome()]
    node.driver.propose([b"1", b"2"], first)
    assert node.core.last_index == last + 2 and not any(o.told for o in first)
    over = Outcome()
    node.driver.propose([b"3"], [over])
    assert isinstance(over.error, ProposalQueueFull)
    conf = Outcome()
    node.driver.propose_conf_change([Change(ChangeOp.ADD_LEARNER, 4)], conf)
    assert isinstance(conf.error, ProposalQueueFull)
    assert node.core.last_index == last + 2
    reads = [Outcome() for _ in range(3)]
    for read in reads:
        node.driver.read(read)
    assert [r.told for r in reads] == [False, False, True]
    assert isinstance(reads[2].error, ProposalQueueFull)
    node.pump()
    assert [o.value for o in first] == [1, 3]
    assert [r.value for r in reads[:2]] == [last] * 2  # the commit index when they came


def test_a_follower_fails_proposals_with_the_drivers_not_leader_error() -> None:
    """A proposal or a configuration change made on a follower fails with the error of the
    driver's ``not_leader`` factory (the node's carries the leader's address), not the core's
    bare NotLeader (driver.py:348, :349; :366)."""
    hint = NotLeader(2, "leader-address")
    node = Node(not_leader=lambda: hint)
    node.follow()
    proposal, conf = Outcome(), Outcome()
    node.driver.propose([b"1"], [proposal])
    node.driver.propose_conf_change([Change(ChangeOp.ADD_LEARNER, 4)], conf)
    assert proposal.error is hint and conf.error is hint


def test_a_configuration_change_is_answered_none_and_reported_once() -> None:
    """The waiter of a configuration change gets None once it is applied (a CONF entry has no
    state machine result), and ``on_conf`` hears of the new configuration once, not on every
    later Ready (driver.py:603; :584, :585)."""
    confs: list[ConfState] = []
    node = Node(voters=(1,), hooks=DriverHooks(on_conf=confs.append))
    node.lead()
    conf = Outcome()
    node.driver.propose_conf_change([Change(ChangeOp.ADD_LEARNER, 4)], conf)
    node.pump()
    assert conf.told and conf.error is None and conf.value is None
    assert 4 in node.core.conf.learners
    assert any(isinstance(m, AppendEntries) and m.dst == 4 for m in node.sent)
    node.propose(1)
    node.propose(2)
    assert confs == [node.core.conf]


def test_a_cancelled_read_is_forgotten_whether_it_is_served_dropped_or_done() -> None:
    """A read its caller gave up on (``cancel_read``) is forgotten: its read state arriving
    later, or its drop when the leader changes, is handed to no one and must not fail the
    driver; cancelling a read already answered is a no-op (driver.py:633; :573; :383)."""
    node = Node(voters=(1,))
    node.lead()
    cancelled, kept = Outcome(), Outcome()
    request_id = node.driver.read(cancelled)
    kept_id = node.driver.read(kept)
    node.driver.cancel_read(request_id)
    node.pump()
    assert not cancelled.told
    assert kept.value == node.core.commit_index
    node.driver.cancel_read(kept_id)  # answered already: nothing left to forget

    follower = Node(hard_state=HardState(1, 0, 0))
    follower.follow()
    forwarded = Outcome()
    follower.driver.cancel_read(follower.driver.read(forwarded))
    follower.driver.step([AppendEntries(2, 3, 1, 0, 0)])  # a new leader: forwarded reads drop
    follower.pump()
    assert not forwarded.told


def test_stop_fails_every_waiting_proposal_and_read_with_its_error() -> None:
    """``stop(error)`` answers every outstanding proposal and read with ``error`` and marks the
    driver stopped (driver.py:469, :471, :473)."""
    node = Node(voters=(1,))
    node.lead()
    proposal, read = Outcome(), Outcome()
    node.driver.propose([b"1"], [proposal])
    node.driver.read(read)
    error = RuntimeError("node stopping")
    node.driver.stop(error)
    assert proposal.error is error and read.error is error
    assert node.driver.stopped is error
    assert not node.driver.proposals and not node.driver.reads


def test_stop_aborts_a_snapshot_half_received_or_waiting_to_be_installed() -> None:
    """A stopped driver leaves no snapshot file open: the one being received is aborted, and
    so is a whole one the core accepted and no Ready installed yet (driver.py:480, :481;
    :482, :483)."""
    meta = SnapshotMeta(3, 1, CONF)
    data = counter_bytes(6, 3)
    half = Node(hard_state=HardState(1, 0, 0))
    half.follow()
    half.driver.step([SnapshotChunk(1, 2, 1, meta, 1, 0, len(data), crc32c.crc32c(data),
                                    data[:2])])
    (receiving,) = half.store.created
    half.driver.stop(RuntimeError("stop"))
    assert receiving.closed and half.store.snap is None

    whole = Node(hard_state=HardState(1, 0, 0))
    whole.follow()
    whole.driver.step([whole_snapshot(meta, data)])
    assert whole.core.pending_install is meta
    (accepted,) = whole.store.created
    whole.driver.stop(RuntimeError("stop"))
    assert accepted.closed and whole.store.snap is None


def test_a_clean_exit_with_no_deferred_commit_index_needs_no_job() -> None:
    """``final_job`` is None when no commit index waits for a sync (driver.py:465), and the
    deferred one otherwise."""
    node = Node(voters=(1,))
    assert node.driver.final_job() is None
    node.lead()  # commits the noop: a change of the commit index alone, deferred
    job = node.driver.final_job()
    assert job is not None and job.hard_state == HardState(1, 1, 1)
    assert node.driver.final_job() is None
    node.propose(1)
    for _ in range(DEFERRED_COMMIT_TICKS_MAX):
        node.driver.tick()
    node.pump()  # the deferred commit index got a sync of its own
    assert node.store.hard.commit == 2 and node.driver.final_job() is None


class Bare:
    """A state machine that can neither be snapshotted nor restored."""

    def apply(self, command: bytes) -> int:
        return int(command)


class RestoreOnly(Bare):
    def restore(self, file: BinaryIO) -> None:
        file.read()


class SnapshotOnly(Bare):
    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"state")


@pytest.mark.parametrize(("machine", "storage"),
                         [(Counter, False), (SnapshotOnly, True), (RestoreOnly, True)])
def test_a_driver_takes_no_snapshot_it_could_not_store_or_restore(
    machine: type[Any], storage: bool
) -> None:
    """Snapshots need storage, a ``restore`` to load them and a ``snapshot`` or
    ``prepare_snapshot`` to take them: without any of these none is taken, whatever the
    policy says, and the driver runs on (driver.py:266 to :269)."""
    node = Node(voters=(1,), machine=machine(), storage=storage,
                policy=SnapshotPolicy(entries=1, state_ratio=0, trailing_entries=0))
    node.lead()
    node.propose(1, 2)
    assert node.driver.snapshot_task is None and node.store.snap is None
    assert node.driver.applied == 3


def test_a_snapshot_a_state_machine_cannot_restore_is_refused_at_recovery() -> None:
    """A restart from a snapshot needs the state machine's ``restore``: without one the node
    refuses to start (CorruptSnapshot, saying why) rather than replay only the log after the
    snapshot onto an empty state (driver.py:133 to :136)."""
    store = Store()
    store.snap = (SnapshotMeta(3, 1, CONF), counter_bytes(6, 3))
    store.hard = HardState(1, 0, 3)
    with pytest.raises(CorruptSnapshot, match=r"no restore\(\)"):
        recover(store, Bare())

# --- anomalies ----------------------------------------------------------------------------------


def test_a_fatal_anomaly_is_reported_then_stops_the_driver_with_diverged() -> None:
    """A leader contradicting a committed entry: the driver hands the anomaly to its hook,
    counts it, fails every waiting request with Diverged and is stopped with it
    (driver.py:525, :527, :529; :535)."""
    seen: list[Any] = []
    node = Node(hard_state=HardState(1, 0, 5), entries=entries_of_terms([1] * 5),
                hooks=DriverHooks(on_anomaly=seen.append))
    node.follow(commit=5)
    read = Outcome()
    node.driver.read(read)
    node.driver.step([AppendEntries(2, 2, 1, 2, 1, (Entry(2, 3, b"", EntryKind.NOOP),), commit=2)])
    with pytest.raises(Diverged) as raised:
        node.pump()
    assert [a.fatal for a in seen] == [True] and node.driver.counters["anomalies"] == 1
    assert node.driver.stopped is raised.value
    assert read.error is raised.value


# --- sends ----------------------------------------------------------------------------------


def test_a_snapshot_offer_in_a_batch_holds_back_none_of_the_other_messages() -> None:
    """InstallSnapshot leaves as chunks, the rest of its batch as it is: a heartbeat sent in the
    same batch as an offer still goes out (driver.py:555, :556)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    term = driver.core.term
    other = next(n for n in IDS if n not in (leader, lagging))
    meta = c.storage[leader].snap
    assert meta is not None
    heartbeat = AppendEntries(term, leader, other, 0, 0)
    c.queue.clear()
    driver._send([InstallSnapshot(term, leader, lagging, meta[0]), heartbeat])
    assert heartbeat in c.queue


# --- local snapshots ----------------------------------------------------------------------------


class Prepared(Counter):
    """A state machine that only offers ``prepare_snapshot``: a consistent copy taken on the
    loop, written out later."""

    snapshot = None  # type: ignore[assignment]

    def prepare_snapshot(self) -> Any:
        state = counter_bytes(self.total, len(self.applied))

        def write(file: BinaryIO) -> None:
            file.write(state)

        return write


def test_a_state_machine_with_prepare_snapshot_is_snapshotted_through_it() -> None:
    """A state machine with ``prepare_snapshot`` (and no ``snapshot``) is copied when the
    snapshot is due; commands applied before the copy is written out are not in it
    (driver.py:656, :657, :659)."""
    node = Node(voters=(1,), machine=Prepared(),
                policy=SnapshotPolicy(entries=2, state_ratio=0, trailing_entries=0))
    node.lead()
    node.propose(5, run_tasks=False)
    task = node.driver.snapshot_task
    assert task is not None and task.meta.index == 2
    node.driver.propose([b"7"], [Outcome()])
    node.pump(run_tasks=False)
    assert node.sm.total == 12
    node.driver.snapshot_task = None
    task.run()
    node.driver.snapshot_written(task)
    node.pump()
    assert node.store.snap == (task.meta, counter_bytes(5, 1))


def test_one_local_snapshot_is_taken_at_a_time() -> None:
    """While a snapshot task is being written no other starts, however many entries are
    applied meanwhile (driver.py:644, :669)."""
    node = Node(voters=(1,), policy=SnapshotPolicy(entries=2, state_ratio=0, trailing_entries=0))
    node.lead()
    node.propose(1, run_tasks=False)
    task = node.driver.snapshot_task
    assert task is not None
    for value in range(2, 8):
        node.driver.propose([b"%d" % value], [Outcome()])
        node.pump(run_tasks=False)
    assert node.driver.snapshot_task is task


def test_a_failed_snapshot_task_leaves_no_file_and_the_next_one_is_taken() -> None:
    """A snapshot task that failed (a full disk) has its file aborted, and the next snapshot
    is taken when due again (driver.py:716, :717)."""
    node = Node(voters=(1,), policy=SnapshotPolicy(entries=2, state_ratio=0, trailing_entries=0))
    node.lead()
    node.propose(1, run_tasks=False)
    task = node.driver.snapshot_task
    assert task is not None
    node.driver.snapshot_task = None
    node.driver.snapshot_failed(task, OSError("disk full"))
    assert closed(task.writer) and node.store.snap is None
    node.propose(2, 3)
    assert node.store.snap is not None and node.store.snap[0].index == 4

def test_a_node_without_a_snapshot_weighs_the_log_against_an_empty_state() -> None:
    """Before the first snapshot the state counts as 0 bytes: a count trigger with a state
    ratio fires on the count alone, even on entries holding no command bytes (driver.py:681)."""
    node = Node(voters=(1,), policy=SnapshotPolicy(entries=1, bytes=0, state_ratio=1.0,
                                                   trailing_entries=0))
    node.lead()  # the noop: one entry, no bytes
    assert node.store.snap is not None and node.store.snap[0].index == 1


def test_the_byte_trigger_counts_the_bytes_applied_since_the_last_snapshot() -> None:
    """``bytes`` counts the command bytes since the last snapshot, from zero each time: with
    one-byte commands and ``bytes=3`` a snapshot falls on every third command (driver.py:671)."""
    node = Node(voters=(1,), policy=SnapshotPolicy(entries=0, bytes=3, trailing_entries=0))
    node.lead()
    taken = []
    for value in range(1, 7):
        node.propose(value)
        assert node.store.snap is not None or value < 3
        if node.store.snap is not None and node.store.snap[0].index not in taken:
            taken.append(node.store.snap[0].index)
    assert taken == [4, 7]  # after the noop and three commands, then three more


def test_the_byte_trigger_counts_from_zero_after_the_leaders_snapshot() -> None:
    """Installing the leader's snapshot restarts the count of command bytes: with one-byte
    commands and ``bytes=3`` the first local snapshot falls on the third entry after it
    (driver.py:744)."""
    node = Node(hard_state=HardState(1, 0, 0),
                policy=SnapshotPolicy(entries=0, bytes=3, trailing_entries=0))
    node.follow()
    node.driver.step([whole_snapshot(SnapshotMeta(6, 1, CONF), counter_bytes(21, 6))])
    node.pump()
    taken = []
    for index in (7, 8, 9):
        node.driver.step([AppendEntries(1, 2, 1, index - 1, 1, (Entry(1, index, b"1"),),
                                        commit=index)])
        node.pump()
        assert node.store.snap is not None
        taken.append(node.store.snap[0].index)
    assert taken == [6, 6, 9]

@pytest.mark.parametrize(("trailing", "compacted"), [(2, [1]), (3, []), (5, [])])
def test_a_local_snapshot_keeps_the_trailing_entries_and_compacts_the_rest(
    trailing: int, compacted: list[int]
) -> None:
    """After a snapshot at index 3 the log keeps the ``trailing_entries`` before it: storage
    and core drop exactly the entries below 3 - trailing, and nothing at all when that is 0
    or less (driver.py:705, :709, :750)."""
    node = Node(voters=(1,), policy=SnapshotPolicy(entries=3, state_ratio=0,
                                                   trailing_entries=trailing))
    node.lead()
    node.propose(1, 2)
    assert node.store.snap is not None and node.store.snap[0].index == 3
    assert node.store.compactions == compacted
    assert node.core.first_index == (compacted[-1] + 1 if compacted else 1)


# --- received snapshots -------------------------------------------------------------------------


def test_a_local_snapshot_overtaken_by_the_leaders_is_dropped() -> None:
    """A local snapshot still being written when the leader's (newer) snapshot arrives is
    aborted when written: committing it would move the snapshot back (driver.py:700, :701,
    :702)."""
    node = Node(hard_state=HardState(1, 0, 0), policy=SnapshotPolicy(entries=2, state_ratio=0,
                                                                       trailing_entries=0))
    node.follow()
    entries = tuple(entries_of_terms([1, 1, 1]))
    node.driver.step([AppendEntries(1, 2, 1, 0, 0, entries, commit=3)])
    node.pump(run_tasks=False)
    task = node.driver.snapshot_task
    assert task is not None and task.meta.index == 3
    node.driver.snapshot_task = None
    meta = SnapshotMeta(6, 1, CONF)
    node.driver.step([whole_snapshot(meta, counter_bytes(21, 6))])
    node.pump()
    task.run()
    node.driver.snapshot_written(task)
    node.pump()
    assert closed(task.writer) and node.store.snap is not None and node.store.snap[0] == meta
    assert node.driver.applied == 6 and node.sm.total == 21


def test_a_local_snapshot_waiting_for_its_sync_gives_way_to_the_leaders() -> None:
    """A local snapshot written but not yet committed when the leader's snapshot is to be
    installed is aborted, and the leader's is committed (driver.py:712, :761, :764, :765)."""
    node = Node(hard_state=HardState(1, 0, 0), policy=SnapshotPolicy(entries=2, state_ratio=0,
                                                                       trailing_entries=0))
    node.follow()
    node.driver.step([AppendEntries(1, 2, 1, 0, 0, tuple(entries_of_terms([1, 1])), commit=2)])
    node.pump(run_tasks=False)
    task = node.driver.snapshot_task
    assert task is not None
    node.driver.snapshot_task = None
    task.run()
    node.driver.snapshot_written(task)  # its commit waits for the next storage job
    meta = SnapshotMeta(6, 1, CONF)
    node.driver.step([whole_snapshot(meta, counter_bytes(21, 6))])
    node.pump()
    assert closed(task.writer)
    assert node.store.snap == (meta, counter_bytes(21, 6))
    assert node.sm.total == 21


def test_a_snapshot_that_keeps_the_log_compacts_storage_up_to_it() -> None:
    """The leader's snapshot whose last entry our log holds keeps the entries after it: the
    storage is compacted to the snapshot's index, not reset (driver.py:769, :770)."""
    node = Node(hard_state=HardState(1, 0, 0))
    node.follow()
    node.driver.step([AppendEntries(1, 2, 1, 0, 0, tuple(entries_of_terms([1] * 4)), commit=1)])
    node.pump()
    meta = SnapshotMeta(3, 1, CONF)
    node.driver.step([whole_snapshot(meta, counter_bytes(6, 3))])
    node.pump()
    assert node.store.compactions == [3]
    assert [e.index for e in node.store.entries] == [4]
    assert node.core.last_index == 4 and node.driver.applied == 3


def test_an_installed_snapshot_that_storage_does_not_hold_is_refused() -> None:
    """Once its job is durable, the leader's snapshot must be the one storage opens: a storage
    that kept an older one (a lost commit) stops the node rather than restore the wrong state
    (driver.py:728, :729)."""

    class Losing(Store):
        def create_snapshot(self, meta: SnapshotMeta) -> _Writer:
            writer = super().create_snapshot(meta)
            writer.commit = lambda: setattr(writer, "closed", True)  # type: ignore[method-assign]
            return writer

    node = Node(hard_state=HardState(1, 0, 0), store=Losing)
    node.store.snap = (SnapshotMeta(1, 1, CONF), counter_bytes(1, 1))
    node.follow()
    node.driver.step([whole_snapshot(SnapshotMeta(6, 1, CONF), counter_bytes(21, 6))])
    with pytest.raises(CorruptSnapshot, match="installed snapshot 6"):
        node.pump()


def test_a_proposal_the_leaders_snapshot_covers_fails_as_outcome_unknown() -> None:
    """A deposed leader's proposal at or below the index of the snapshot it installs may or may
    not be in it: its waiter learns the outcome is unknown (driver.py:736 to :738)."""
    node = Node()
    node.lead()
    (proposal,) = node.propose(5)  # index 2, never committed: no follower answered
    assert node.core.last_index == 2
    node.driver.step([AppendEntries(3, 3, 1, 0, 0)])
    node.pump()
    node.driver.step([whole_snapshot(SnapshotMeta(2, 3, CONF), counter_bytes(9, 1), term=3,
                                     leader=3)])
    node.pump()
    assert isinstance(proposal.error, ProposalOutcomeUnknown)
    assert not node.driver.proposals and node.driver.applied == 2 and node.sm.total == 9


def test_a_snapshot_chunk_of_an_earlier_term_is_ignored() -> None:
    """A chunk from a deposed leader (a term below ours) is dropped unanswered: it starts no
    file and acknowledges nothing (driver.py:779)."""
    node = Node(hard_state=HardState(2, 0, 0))
    node.follow(term=2)
    node.sent.clear()
    node.driver.step([whole_snapshot(SnapshotMeta(3, 1, CONF), counter_bytes(6, 3), term=1)])
    assert node.sent == [] and node.store.created == []


def test_a_driver_without_snapshot_storage_ignores_snapshot_chunks() -> None:
    """A driver given no storage takes no snapshot: a chunk is dropped, not a crash
    (driver.py:779)."""
    node = Node(hard_state=HardState(1, 0, 0), storage=False)
    node.follow()
    node.sent.clear()
    node.driver.step([whole_snapshot(SnapshotMeta(3, 1, CONF), counter_bytes(6, 3))])
    assert node.sent == [] and node.core.pending_install is None


def test_a_whole_snapshot_the_core_refuses_is_aborted() -> None:
    """A snapshot that arrived whole but holds nothing past our commit index is refused by the
    core: its file is aborted and nothing waits to install it (driver.py:785, :788)."""
    node = Node(hard_state=HardState(1, 0, 3), entries=entries_of_terms([1, 1, 1]))
    node.follow(commit=3)
    node.driver.step([whole_snapshot(SnapshotMeta(2, 1, CONF), counter_bytes(3, 2))])
    (refused,) = node.store.created
    assert refused.closed and node.store.snap is None
    meta = SnapshotMeta(5, 1, CONF)
    node.driver.step([whole_snapshot(meta, counter_bytes(15, 5), stream=2)])
    node.pump()  # the next one installs (the driver holds no stale one)
    assert node.store.snap == (meta, counter_bytes(15, 5))


# --- sending snapshots --------------------------------------------------------------------------


def test_an_acknowledgement_of_another_stream_moves_no_transfer() -> None:
    """An acknowledgement names its stream: one of another transfer to the same follower (an
    earlier one, restarted) changes nothing in the current one (driver.py:801)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    acked, term = sender.acked, driver.core.term
    driver.step([SnapshotChunkAck(term, lagging, leader, sender.stream + 1, sender.size)])
    assert driver._senders[lagging] is sender and sender.acked == acked


def test_a_refused_transfer_starts_over_on_a_new_stream_of_its_term() -> None:
    """A follower that refuses a transfer (ack -1) gets it again from byte 0 on a new stream
    of the same term: an acknowledgement of the old stream cannot be taken for the new one, and
    the old transfer's file is closed (driver.py:804, :805; :816 to :818; :823, :829)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    term = driver.core.term
    c.queue.clear()
    driver.step([SnapshotChunkAck(term, lagging, leader, sender.stream, -1)])
    again = driver._senders[lagging]
    assert again is not sender and again.stream != sender.stream and again.term == term
    assert sender._reader is None  # the old transfer's file was closed
    chunks = [m for m in c.queue if isinstance(m, SnapshotChunk)]
    assert chunks and chunks[0].offset == 0 and chunks[0].stream == again.stream
    assert all(m.dst == lagging and m.term == term for m in chunks)


def test_each_acknowledged_chunk_tells_the_core_the_transfer_progresses() -> None:
    """An acknowledgement that moves the transfer restarts the core's stall count for that
    follower, so a long transfer that progresses is never abandoned (driver.py:807)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    progress = driver.core._progress[lagging]
    progress.snapshot_elapsed = 5
    driver.step([SnapshotChunkAck(driver.core.term, lagging, leader, sender.stream,
                                  sender.acked + TINY.chunk_bytes)])
    assert progress.snapshot_elapsed == 0


def _probe_state(driver: Driver, peer: int) -> str:
    return driver.core.status().progress[peer].state


def test_a_leader_without_snapshot_storage_tells_the_core_the_transfer_failed() -> None:
    """A driver with no storage cannot stream a snapshot: the core hears at once that the
    transfer failed and probes the follower again (driver.py:819, :820)."""
    c, leader, lagging = _transfer_in_progress()
    core = c.drivers[leader].core
    assert _probe_state(c.drivers[leader], lagging) == "snapshot"
    bare = Driver(core, Counter(), c.queue.extend)
    meta = c.storage[leader].snap
    assert meta is not None
    bare._send([InstallSnapshot(core.term, leader, lagging, meta[0])])
    assert _probe_state(bare, lagging) == "probe"


def test_a_snapshot_the_leader_cannot_open_tells_the_core_the_transfer_failed() -> None:
    """A snapshot file that cannot be opened fails the transfer, not the leader: the core
    probes the follower again (driver.py:825 to :827)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    meta = c.storage[leader].snap
    assert meta is not None
    driver._close_senders()
    c.storage[leader].snap = None
    driver._send([InstallSnapshot(driver.core.term, leader, lagging, meta[0])])
    assert lagging not in driver._senders
    assert _probe_state(driver, lagging) == "probe"


def test_a_snapshot_that_ends_early_fails_the_transfer_and_tells_the_core() -> None:
    """A snapshot file shorter than it said (damaged) ends the transfer when a chunk cannot be
    read: the sender is dropped and the core probes the follower again (driver.py:839 to
    :847)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    short = _Reader(sender.meta, b"")
    short.size = sender.size
    c.storage[leader].open_snapshot = lambda: short  # type: ignore[method-assign]
    # The follower refuses the transfer: the new one reads the damaged file.
    driver.step([SnapshotChunkAck(driver.core.term, lagging, leader, sender.stream, -1)])
    assert lagging not in driver._senders
    assert _probe_state(driver, lagging) == "probe"


def test_a_leaders_tick_keeps_its_transfers_and_resends_what_was_not_acknowledged() -> None:
    """Ticks close the transfers of a node that no longer leads, never a leader's: its
    transfer resends the unacknowledged window after ``resend_ticks`` (driver.py:863)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    c.queue.clear()
    for _ in range(TINY.resend_ticks):
        driver.tick()
    assert driver._senders.get(lagging) is sender
    resent = [m for m in c.queue if isinstance(m, SnapshotChunk)]
    assert resent and resent[0].offset == sender.acked



# --- counters (what metrics and status report) ---------------------------------------------------


def test_the_counters_count_what_the_driver_did() -> None:
    """The driver's counters are what an operator sees of its work: each must count exactly
    what it names, checked here against what the driver handed to the network, the storage and
    the core (driver.py:408, :414, :496, :497, :544, :545)."""
    node = Node()
    readies = 0
    take = node.core.ready

    def counted_ready() -> Any:
        nonlocal readies
        readies += 1
        return take()

    def acknowledge() -> None:
        """Followers 2 and 3 take every append sent so far."""
        answers = [AppendEntriesResponse(m.term, m.dst, 1, True, m.prev_log_index + len(m.entries),
                                         stream=m.stream)
                   for m in node.sent if isinstance(m, AppendEntries)]
        node.driver.step(answers)

    persisted: list[Any] = []
    made_durable = node.driver.persisted

    def counted_persisted(job: Any) -> None:
        persisted.append(job)
        made_durable(job)

    node.core.ready = counted_ready  # type: ignore[method-assign]
    node.driver.persisted = counted_persisted  # type: ignore[method-assign]
    node.lead()
    acknowledge()
    node.pump()
    for batch in ([b"a", b"b", b"c"], [b"d"], [b"e", b"f"]):
        node.driver.propose(batch, [Outcome() for _ in batch])
        job = node.driver.pump()
        assert job is not None
        acknowledge()
        # A proposal while the sync runs: its appends leave before the sync returns.
        node.driver.propose([b"early"], [Outcome()])
        assert node.driver.pump() is None
        job.run(node.store)
        node.driver.persisted(job)
        acknowledge()
        node.pump()
    counters = node.driver.counters
    appends = [m for m in node.sent if isinstance(m, AppendEntries) and m.entries]
    early = [m for m in appends if any(e.data == b"early" for e in m.entries)]
    assert counters["readies"] == readies > 0
    assert counters["append_messages_sent"] == len(appends) > 0
    assert counters["append_entries_sent"] == sum(len(m.entries) for m in appends)
    assert counters["early_append_messages"] == len(early) > 0
    assert counters["syncs"] == len(persisted) > 3  # a job, a sync
    assert counters["entries_persisted"] == sum(len(job.entries) for job in persisted)
    assert counters["entries_persisted"] == node.core.last_index  # every entry, once
