"""What each simulated node's disk holds for certain, as the harness sees it from outside.

The Raft core's commit rule counts acknowledgements; what it must guarantee is that a committed
entry is on the disks of a majority of the voters that decide (each majority of a joint
configuration), so that no later election can go without it. The harness checks that guarantee
itself, at every commit a leader makes (``SimNode._check_commit``), against this record rather
than against the leader's bookkeeping: a leader that counts the wrong voters, a learner, an
acknowledgement sent before its fsync, or its own entry before its own fsync, commits an entry
that this record shows a minority holds, whether or not a later fault turns that into a lost
write.

A node's record starts, at each boot, as what it recovered from its disk (``booted``), then
grows with the entries and snapshot of each persist job written (``written``) once an fsync
completes after it (``synced``: an fsync makes every earlier write durable, as the storage's
does); a lost disk (``lost``) forgets it. What a boot recovers after a process crash may include
writes that never were synced (the OS still had them), and a fault that destroys synced data
later is not seen here: the record can only overstate what a node holds, so the check it feeds
may miss a violation, never invent one. A job that does not continue the record is a harness
bug (``RuntimeError``), never a finding about the system under test.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftlib.core.types import Entry, SnapshotMeta
from raftlib.driver import PersistJob


class DurableLog:
    """One node's synced log: the term of each entry after ``base`` (the index its latest
    durable snapshot covers; 0 without one)."""

    __slots__ = ("_written", "base", "terms")

    def __init__(self) -> None:
        self.base = 0
        self.terms: list[int] = []
        self._written: list[PersistJob] = []  # written, no fsync completed since: in order

    def booted(self, snapshot: SnapshotMeta | None, entries: Sequence[Entry]) -> None:
        """The node started on what its disk gave back (``raftlib.driver.recover``)."""
        self.base = snapshot.index if snapshot is not None else 0
        self.terms = [e.term for e in entries if e.index > self.base]
        self._written = []  # an earlier life's writes: in what it recovered, or lost
        if entries and entries[0].index > self.base + 1:
            raise RuntimeError(f"harness.sim.durable: recovered entries start at "
                               f"{entries[0].index} after a base of {self.base}")

    def written(self, job: PersistJob) -> None:
        """``job`` was handed to the storage (not durable yet)."""
        self._written.append(job)

    def synced(self, job: PersistJob) -> None:
        """The fsync after ``job`` completed: it, and every job written before it, is on the
        disk (a job of an earlier life, or one an earlier fsync covered, changes nothing)."""
        written = self._written
        if not any(item is job for item in written):
            return
        while written:
            done = written.pop(0)
            self._apply(done)
            if done is job:
                return

    def _apply(self, job: PersistJob) -> None:
        snapshot = job.snapshot
        if snapshot is not None and snapshot.index > self.base:
            position = snapshot.index - self.base - 1
            if position < len(self.terms) and self.terms[position] == snapshot.term:
                del self.terms[: position + 1]  # a snapshot of our own log: compacted
            else:
                self.terms = []  # a leader's snapshot replaced the log
            self.base = snapshot.index
        entries = job.entries
        if entries:
            cut = entries[0].index - self.base - 1
            if cut > len(self.terms):
                raise RuntimeError(
                    f"harness.sim.durable: a persist job starting at {entries[0].index} after "
                    f"a gap: the record ends at {self.base + len(self.terms)}")
            del self.terms[max(cut, 0):]
            self.terms.extend(e.term for e in entries if e.index > self.base)

    def holds(self, index: int, term: int) -> bool:
        """Whether the entry (``index``, ``term``) is on the disk: in the synced log, or
        covered by the durable snapshot (which holds only applied, hence committed, entries)."""
        if index <= self.base:
            return True
        position = index - self.base - 1
        return position < len(self.terms) and self.terms[position] == term

    def lost(self) -> None:
        """The disk is gone (the membership nemesis's wipe)."""
        self.base = 0
        self.terms = []
        self._written = []
