"""The shared driver's snapshots, end to end on a scripted network: a cluster of ``Driver``s
snapshots and compacts by its thresholds, streams a snapshot in small chunks to a follower
that missed the compacted entries (including through lost chunks and a restart mid-transfer),
and every state machine ends equal. After MIT 6.5840's SnapshotBasic / SnapshotInstall /
SnapshotInstallUnreliable / SnapshotInstallCrash, at the driver level."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, BinaryIO

import crc32c
import pytest

from raftlib.core import CoreConfig, Entry, HardState, Message, RaftCore, Role
from raftlib.core.types import (
    ConfState,
    InstallSnapshot,
    RequestVote,
    SnapshotChunk,
    SnapshotChunkAck,
    SnapshotMeta,
)
from raftlib.driver import Driver, PersistJob, recover
from raftlib.errors import CorruptSnapshot
from raftlib.snapshots import SnapshotPolicy, SnapshotReceiver, SnapshotSender
from raftlib.storage.base import Recovered

IDS = (1, 2, 3)


class Counter:
    def __init__(self) -> None:
        self.total = 0
        self.applied: list[bytes] = []

    def apply(self, command: bytes) -> int:
        self.total += int(command)
        self.applied.append(command)
        return self.total

    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"%d;%d" % (self.total, len(self.applied)))

    def restore(self, file: BinaryIO) -> None:
        total, count = file.read().split(b";")
        self.total = int(total)
        self.applied = [b"?"] * int(count)  # what a snapshot cannot say


class _Writer:
    def __init__(self, store: FakeStorage, meta: SnapshotMeta) -> None:
        self.meta = meta
        self._store = store
        self._data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self._data += data

    def commit(self) -> None:
        assert not self.closed
        self.closed = True
        current = self._store.snap
        assert current is None or current[0].index < self.meta.index, "snapshot went back"
        self._store.snap = (self.meta, bytes(self._data))

    def abort(self) -> None:
        self.closed = True


class _Reader:
    def __init__(self, meta: SnapshotMeta, data: bytes) -> None:
        self.meta = meta
        self.size = len(data)
        self._data = data
        self._pos = 0

    def read(self, n: int) -> bytes:
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def close(self) -> None:
        pass


class FakeStorage:
    """Durable on sync (every test here crashes between jobs, never inside one)."""

    def __init__(self) -> None:
        self.hard = HardState()
        self.entries: list[Entry] = []  # after the snapshot's index
        self.snap: tuple[SnapshotMeta, bytes] | None = None

    def _base(self) -> int:
        return self.snap[0].index if self.snap else 0

    def load(self) -> Recovered:
        return Recovered(self.hard, self.snap[0] if self.snap else None, list(self.entries))

    def append(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        self.entries = [e for e in self.entries if e.index < first] + list(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.hard = hard_state

    def sync(self) -> None:
        pass

    def compact(self, index: int) -> None:
        assert self.snap is not None and index <= self.snap[0].index
        self.entries = [e for e in self.entries if e.index > self._base()]

    def reset_log(self, meta: SnapshotMeta) -> None:
        self.entries = []

    def create_snapshot(self, meta: SnapshotMeta) -> _Writer:
        return _Writer(self, meta)

    def open_snapshot(self) -> _Reader | None:
        return _Reader(*self.snap) if self.snap else None


class PaddedCounter(Counter):
    """A counter whose snapshot is ``PAD_BYTES`` larger: a state far bigger than a command."""

    PAD_BYTES = 200

    def snapshot(self, file: BinaryIO) -> None:
        super().snapshot(file)
        file.write(b" " * self.PAD_BYTES)

    def restore(self, file: BinaryIO) -> None:
        total, count = file.read().rstrip(b" ").split(b";")
        self.total = int(total)
        self.applied = [b"?"] * int(count)


class Cluster:
    def __init__(self, policy: SnapshotPolicy, seed: int = 0, loss: float = 0.0,
                 machine: type[Counter] = Counter) -> None:
        self.policy = policy
        self.machine = machine
        self.rng = random.Random(seed)
        self.loss = loss
        self.storage = {i: FakeStorage() for i in IDS}
        self.sms: dict[int, Counter] = {}
        self.drivers: dict[int, Driver] = {}
        self.queue: list[Message] = []
        self.down: set[int] = set()
        self.results: list[Any] = []
        for i in IDS:
            self.boot(i)

    def boot(self, node: int) -> None:
        sm = self.machine()
        rec = recover(self.storage[node], sm)
        core = RaftCore(CoreConfig(node_id=node, voters=IDS, pre_vote=False, check_quorum=False),
                        random.Random(node * 7 + len(self.results)), rec.hard_state,
                        rec.entries, snapshot=rec.snapshot)
        self.sms[node] = sm
        self.drivers[node] = Driver(core, sm, self.queue.extend, storage=self.storage[node],
                                    snapshot_policy=self.policy)
        self.down.discard(node)

    def crash(self, node: int) -> None:
        self.down.add(node)
        del self.drivers[node]

    def pump(self, node: int) -> None:
        driver = self.drivers[node]
        while True:
            job: PersistJob | None = driver.pump()
            task = driver.snapshot_task
            if task is not None:
                driver.snapshot_task = None
                task.run()
                driver.snapshot_written(task)
            if job is None:
                if driver.persisting is None and driver.core.has_ready():
                    continue
                if task is not None:
                    continue
                return
            job.run(self.storage[node])
            driver.persisted(job)

    def round(self) -> list[Message]:
        """Pump every node, then deliver what they sent; returns what was delivered."""
        for node in list(self.drivers):
            self.pump(node)
        batch, self.queue[:] = list(self.queue), []
        delivered = []
        for msg in batch:
            if msg.dst in self.down or self.rng.random() < self.loss:
                continue
            self.drivers[msg.dst].step([msg])
            delivered.append(msg)
        return delivered

    def settle(self, rounds: int = 2000) -> None:
        for _ in range(rounds):
            self.round()
            if not self.queue:
                for node in list(self.drivers):
                    self.pump(node)
                if not self.queue:
                    return
        raise AssertionError("the cluster did not settle")

    def tick_all(self, count: int = 1) -> None:
        for _ in range(count):
            for node in list(self.drivers):
                self.drivers[node].tick()
            self.settle()

    def leader(self) -> int:
        for _ in range(200):
            leaders = [n for n, d in self.drivers.items() if d.core.role is Role.LEADER]
            if leaders:
                return leaders[0]
            self.tick_all()
        raise AssertionError("no leader")

    def propose(self, *values: int) -> None:
        leader = self.leader()

        class W:
            def set_value(w, v: Any) -> None:
                self.results.append(v)

            def set_error(w, e: BaseException) -> None:
                self.results.append(e)

        for v in values:
            self.drivers[leader].propose([b"%d" % v], [W()])
            self.settle()


TINY = SnapshotPolicy(entries=5, trailing_entries=2, chunk_bytes=3, chunks_inflight_max=2,
                      resend_ticks=2, state_ratio=0)


def test_snapshots_are_taken_by_threshold_and_the_log_is_compacted() -> None:
    c = Cluster(TINY)
    c.propose(*range(1, 31))
    c.tick_all(5)
    for node, driver in c.drivers.items():
        assert driver.counters["snapshots_taken"] >= 4, node
        assert driver.core.first_index > 20, node
        assert c.storage[node].snap is not None
        assert len(c.storage[node].entries) <= 5 + TINY.trailing_entries + 1
    assert {sm.total for sm in c.sms.values()} == {sum(range(1, 31))}


def test_the_entries_trigger_waits_for_commands_of_state_ratio_times_the_snapshot() -> None:
    policy = SnapshotPolicy(entries=10, bytes=1000, state_ratio=1.0)
    assert not policy.due(9, 500, 100)  # too few entries
    assert not policy.due(10, 99, 100)  # enough entries, a log smaller than the state
    assert policy.due(10, 100, 100)
    assert policy.due(10, 0, 0)  # no snapshot yet: the count alone
    assert policy.due(1, 1000, 10**9)  # the bytes bound holds whatever the state's size
    assert SnapshotPolicy(entries=10, state_ratio=0).due(10, 0, 10**9)
    assert not SnapshotPolicy(entries=0, bytes=0).due(10**6, 10**9, 0)


RATIO = SnapshotPolicy(entries=5, bytes=0, trailing_entries=2, state_ratio=1.0)


def test_a_large_state_is_snapshotted_once_the_log_since_is_as_large() -> None:
    c = Cluster(RATIO, machine=PaddedCounter)
    c.propose(*range(1, 6))  # no snapshot yet: the first is taken by count
    taken = {n: d.counters["snapshots_taken"] for n, d in c.drivers.items()}
    assert set(taken.values()) == {1}, taken
    c.propose(*range(10, 60))  # 100 bytes of commands: half the 200-byte state
    assert {d.counters["snapshots_taken"] for d in c.drivers.values()} == {1}
    c.propose(*range(60, 110))  # 200 bytes since the snapshot: the next one
    assert {d.counters["snapshots_taken"] for d in c.drivers.values()} == {2}
    assert {sm.total for sm in c.sms.values()} == {sum(range(1, 6)) + sum(range(10, 110))}


def test_a_restarted_node_weighs_the_log_against_the_snapshot_it_loaded() -> None:
    c = Cluster(RATIO, machine=PaddedCounter)
    c.propose(*range(1, 6))
    node = next(n for n in IDS if n != c.leader())
    c.crash(node)
    c.boot(node)  # its snapshot's size comes from the storage
    c.propose(*range(10, 40))  # 30 entries, 60 bytes: well past the count, not the ratio
    assert c.drivers[node].counters["snapshots_taken"] == 0
    assert c.sms[node].total == sum(range(1, 6)) + sum(range(10, 40))


@pytest.mark.parametrize("loss", [0.0, 0.2])
def test_a_follower_behind_the_compacted_log_installs_the_snapshot(loss: float) -> None:
    c = Cluster(TINY, seed=3)
    leader = c.leader()
    lagging = next(n for n in IDS if n != leader)
    c.crash(lagging)
    c.propose(*range(1, 41))
    assert c.drivers[leader].core.first_index > 10
    c.loss = loss  # chunks, acknowledgements and heartbeats lost from here on
    c.boot(lagging)
    for _ in range(300):
        c.tick_all()
        if c.sms[lagging].total == sum(range(1, 41)):
            break
    assert c.sms[lagging].total == sum(range(1, 41))
    assert c.drivers[lagging].counters["snapshots_installed"] >= 1
    assert sum(d.counters["snapshots_sent"] for d in c.drivers.values()) >= 1
    # Replication goes on from the snapshot.
    c.loss = 0.0
    c.propose(100)
    c.tick_all(3)
    assert {sm.total for sm in c.sms.values()} == {sum(range(1, 41)) + 100}


def test_the_snapshot_counters_count_each_transfer_and_each_chunk_once() -> None:
    """``snapshots_sent``, ``snapshot_chunks_sent`` and ``snapshots_installed`` are what an
    operator reads of snapshot traffic (metrics, INFO): one follower behind the compacted log
    is one transfer the leader completes and the follower installs, and every chunk the leader
    puts on the wire (resends included) is counted once."""
    c = Cluster(TINY, seed=3)
    leader = c.leader()
    lagging = next(n for n in IDS if n != leader)
    c.crash(lagging)
    c.propose(*range(1, 41))
    before = dict(c.drivers[leader].counters)
    c.boot(lagging)
    chunks = 0
    for _ in range(300):
        for node in list(c.drivers):
            c.drivers[node].tick()
        while True:
            delivered = c.round()  # no loss: every message sent is delivered
            chunks += sum(1 for m in delivered
                          if type(m) is SnapshotChunk and m.src == leader)
            if not c.queue and not delivered:
                break
        if c.sms[lagging].total == sum(range(1, 41)):
            break
    assert c.sms[lagging].total == sum(range(1, 41))
    after = c.drivers[leader].counters
    assert after["snapshots_sent"] - before["snapshots_sent"] == 1
    assert after["snapshot_chunks_sent"] - before["snapshot_chunks_sent"] == chunks > 1
    assert c.drivers[lagging].counters["snapshots_installed"] == 1


def test_a_transfer_interrupted_by_a_follower_crash_starts_over_cleanly() -> None:
    c = Cluster(TINY, seed=5)
    leader = c.leader()
    lagging = next(n for n in IDS if n != leader)
    c.crash(lagging)
    c.propose(*range(1, 41))
    c.boot(lagging)
    # Let a few chunks through, then crash the follower mid-transfer.
    for _ in range(200):
        for driver in c.drivers.values():
            driver.tick()
        if any(isinstance(m, SnapshotChunk) and m.dst == lagging and m.offset > 0
               for m in c.round()):
            break
    else:
        raise AssertionError("no snapshot transfer started")
    c.crash(lagging)
    assert c.storage[lagging].snap is None, "half a snapshot must never become current"
    c.boot(lagging)
    for _ in range(300):
        c.tick_all()
        if c.sms[lagging].total == sum(range(1, 41)):
            break
    assert c.sms[lagging].total == sum(range(1, 41))


def test_a_restart_loads_the_snapshot_and_replays_only_the_tail() -> None:
    c = Cluster(TINY)
    c.propose(*range(1, 21))
    c.tick_all(3)
    node = 2
    c.crash(node)
    store = c.storage[node]
    assert store.snap is not None and store.snap[0].index >= 15
    c.boot(node)
    assert c.drivers[node].applied == store.snap[0].index
    c.tick_all(5)
    assert c.sms[node].total == sum(range(1, 21))


def test_a_missing_snapshot_that_the_log_needs_is_refused() -> None:
    store = FakeStorage()
    meta = SnapshotMeta(5, 1, ConfState(IDS))
    store.load = lambda: Recovered(HardState(1, 0, 5), meta, [])  # type: ignore[method-assign]
    with pytest.raises(CorruptSnapshot, match="index 5"):
        recover(store, Counter())


def test_a_resend_after_the_snapshot_was_replaced_sends_the_same_bytes() -> None:
    """Found by the SIGKILL test: a leader took a newer snapshot while a transfer waited for
    acknowledgements, and its resend reopened the file and crashed the node."""
    store = FakeStorage()
    meta = SnapshotMeta(5, 1, ConfState(IDS))
    store.snap = (meta, b"abcdefghij")
    sender = SnapshotSender(store, 2, 1, TINY, term=1)
    first = sender.chunks(1, 1)
    assert [c.data for c in first] == [b"abc", b"def"]  # the window: 2 chunks of 3 bytes
    store.snap = (SnapshotMeta(9, 1, ConfState(IDS)), b"something else entirely")
    for _ in range(TINY.resend_ticks):
        resend = sender.tick()
    assert resend
    again = sender.chunks(1, 1)
    assert [c.data for c in again] == [b"abc", b"def"] and again[0].meta == meta
    sender.on_ack(6)
    assert [c.data for c in sender.chunks(1, 1)] == [b"ghi", b"j"]
    sender.on_ack(10)
    assert sender.done


def test_a_restarted_leaders_stream_is_not_mistaken_for_its_old_one() -> None:
    """Found by a sim campaign (a message storm): a leader restarted and numbered its streams
    from 1 again; the follower took its chunks for the old transfer and acknowledged an offset
    of that one, and the two sides bounced the window between them forever."""
    created: list[_Writer] = []
    store = FakeStorage()

    def create(meta: SnapshotMeta) -> _Writer:
        created.append(_Writer(store, meta))
        return created[-1]

    receiver = SnapshotReceiver(create, TINY)
    old = SnapshotMeta(5, 1, ConfState(IDS))
    new = SnapshotMeta(9, 2, ConfState(IDS))
    chunk = SnapshotChunk(1, 4, 1, old, 1, 0, 10, crc32c.crc32c(b"abc"), b"abc")
    ack, _ = receiver.on_chunk(chunk)
    assert ack.offset == 3
    later = SnapshotChunk(2, 4, 1, new, 1, 3, 12, crc32c.crc32c(b"xyz"), b"xyz")
    ack, whole = receiver.on_chunk(later)
    assert ack.offset == -1 and whole is None  # start over, never splice two snapshots


def test_duplicate_acknowledgements_rewind_the_window_once() -> None:
    store = FakeStorage()
    store.snap = (SnapshotMeta(5, 1, ConfState(IDS)), b"abcdefghij")
    sender = SnapshotSender(store, 2, 1, TINY, term=1)
    assert len(sender.chunks(1, 1)) == 2
    sender.on_ack(0)  # the first chunk was lost: the follower says where it stands
    assert len(sender.chunks(1, 1)) == 2
    sender.on_ack(0)  # ... and says it again for the second chunk of the old window
    assert sender.chunks(1, 1) == []  # no second resend: the timer handles a further loss


def test_an_acknowledgement_that_makes_progress_never_resends_the_window() -> None:
    """Found by a swarm campaign (a message storm with 16-byte chunks): every acknowledgement
    of a chunk while the rest of the window was in flight rewound the window, and each resent
    chunk brought another acknowledgement."""
    store = FakeStorage()
    store.snap = (SnapshotMeta(5, 1, ConfState(IDS)), b"abcdefghij")
    sender = SnapshotSender(store, 2, 1, TINY, term=1)
    assert [c.data for c in sender.chunks(1, 1)] == [b"abc", b"def"]
    sender.on_ack(3)  # "abc" arrived; "def" is still on its way
    assert [c.data for c in sender.chunks(1, 1)] == [b"ghi"]  # only what the window opened
    sender.on_ack(6)
    assert [c.data for c in sender.chunks(1, 1)] == [b"j"]


def test_duplicates_acking_later_offsets_do_not_rewind_again_before_recovery() -> None:
    """Found by a swarm campaign (a message storm with duplicated messages): after a rewind,
    each duplicate chunk brought an acknowledgement of a later offset that made no progress,
    and each rewound the window again; now none does until the resent window is acked."""
    store = FakeStorage()
    store.snap = (SnapshotMeta(5, 1, ConfState(IDS)), b"abcdefghij")
    sender = SnapshotSender(store, 2, 1, TINY, term=1)
    assert [c.data for c in sender.chunks(1, 1)] == [b"abc", b"def"]
    sender.on_ack(0)  # "abc" was lost, "def" arrived out of order
    assert [c.data for c in sender.chunks(1, 1)] == [b"abc", b"def"]  # the one rewind
    sender.on_ack(3)  # the resent "abc" arrived
    sender.on_ack(3)  # a duplicate of it: no progress, but the window is being resent
    assert [c.data for c in sender.chunks(1, 1)] == [b"ghi"]


def _transfer_in_progress() -> tuple[Cluster, int, int]:
    """A leader streaming its snapshot to a follower that came back behind its log."""
    c = Cluster(TINY, seed=3)
    leader = c.leader()
    lagging = next(n for n in IDS if n != leader)
    c.crash(lagging)
    c.propose(*range(1, 41))
    c.boot(lagging)
    for _ in range(50):
        c.drivers[leader].tick()
        c.round()
        if c.drivers[leader]._senders:
            return c, leader, lagging
    raise AssertionError("no transfer started")


def test_a_leader_that_stepped_down_sends_no_chunk_of_its_old_transfer() -> None:
    """Swarm seed 2660: a leader paused mid-transfer resumed, stepped down on a queued vote
    request of term t+1, then answered a queued chunk acknowledgement of term t+1 with the
    next chunk, stamped with the term it was now in: a follower saw two leaders in term t+1.
    A transfer belongs to the term that started it, and only its leader sends its chunks."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    sender = driver._senders[lagging]
    term = driver.core.term
    assert sender.term == term
    other = next(n for n in IDS if n not in (leader, lagging))
    c.queue.clear()
    driver.step([RequestVote(term + 1, other, leader, 10**6, term + 1)])
    assert driver.core.role is not Role.LEADER and driver.core.term == term + 1
    driver.step([SnapshotChunkAck(term + 1, lagging, leader, sender.stream, sender.acked)])
    c.pump(leader)
    chunks = [m for m in c.queue if isinstance(m, SnapshotChunk)]
    assert chunks == [], chunks
    assert not driver._senders


def test_a_snapshot_offer_of_an_earlier_term_starts_no_transfer() -> None:
    """A Ready's messages may leave after its sync, when the node has stepped down since: an
    InstallSnapshot of the term it no longer leads starts nothing (its chunks would claim
    the current term)."""
    c, leader, lagging = _transfer_in_progress()
    driver = c.drivers[leader]
    term = driver.core.term
    driver._close_senders()
    driver.step([RequestVote(term + 1, lagging, leader, 10**6, term + 1)])
    assert driver.core.role is not Role.LEADER
    meta = c.storage[leader].snap
    assert meta is not None
    c.queue.clear()
    driver._send([InstallSnapshot(term, leader, lagging, meta[0])])
    assert not driver._senders and c.queue == []
