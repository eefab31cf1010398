"""The bug zoo: deliberately broken variants of raftlib that only the harness can switch on.

A bug is a set of method patches (``harness.zoo.bugs``) applied for the length of a sim run
by ``active(name)`` and restored on exit, so the library itself has no flag for any of them
and is untouched when no bug is active. ``raft-harness bugs`` lists them;
``raft-harness run --bug NAME`` (and ``campaign --bug NAME``) runs with one switched on; on
the live backend every node process applies the patches itself (``harness.zoo.live``, with a
bug's ``live_patches`` where a real node needs them to differ).

Each bug also names a campaign that exposes it (``Detection``): the workload and nemeses that
make it show, used by the tests and by ``bench/zoo_detection.py`` for the recipe table
(``DETECTION-recipes.md``). The README's table needs no recipe: ``bench/zoo_detection.py
--swarm`` finds every bug with swarm campaigns (``DETECTION.md``). A bug the harness cannot
find would be a hole in the harness, not a reason to weaken the bug.

    with harness.zoo.active("figure8"):
        report = harness.run(options, out_dir=None)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import attrs

from harness.zoo import bugs
from harness.zoo.bugs import Patch


@attrs.frozen
class Detection:
    """The sim campaign that finds a bug: run options other than the seed."""

    workload: str
    nemesis: tuple[str, ...]
    nodes: int = 5
    clients: int = 10
    time_limit: float = 10.0
    rate: float = 20.0
    nemesis_interval: float = 2.0
    # Core settings (overrides of raftlib.core.CoreConfig, as RunOptions.core): legitimate
    # configurations under which a bug's window opens wide (no PreVote: candidates compete
    # within one term).
    core: Mapping[str, Any] = attrs.field(factory=dict)
    # Snapshot thresholds (RunOptions' of the same names): tiny ones make snapshots,
    # compaction and InstallSnapshot happen every few dozen entries.
    snapshot_entries: int = 10_000
    snapshot_trailing: int = 1024
    snapshot_chunk_bytes: int = 256 << 10
    # Seconds before a client gives up on an attempt; short: a client stuck on a deposed
    # leader moves on to the new one within a lease.
    request_timeout: float = 1.0
    # Clock windows' tick-rate factors within [1/x, x] (0: as drawn, up to 4.4 either way).
    clock_rate_max: float = 0.0

    def options(self) -> dict[str, Any]:
        return attrs.asdict(self, recurse=False)


@attrs.frozen
class Bug:
    name: str
    summary: str  # one line, for `raft-harness bugs`
    patches: Callable[[], list[Patch]]
    detection: Detection
    # The patches for a real node process (harness.zoo.live) where they must differ: a node
    # runs its storage on a thread, one job at a time, where the simulator calls it inline.
    live_patches: Callable[[], list[Patch]] | None = None

    def patches_for(self, live: bool) -> list[Patch]:
        return (self.live_patches or self.patches)() if live else self.patches()


def _bug(name: str, summary: str, patches: Callable[[], list[Patch]],
         live_patches: Callable[[], list[Patch]] | None = None, **detection: Any) -> Bug:
    return Bug(name, summary, patches, Detection(**detection), live_patches)


_CRASHES = ("kill", "disk")
# No PreVote and no CheckQuorum: partitions leave many candidates racing in one term.
_NO_PREVOTE: dict[str, Any] = {"pre_vote": False, "check_quorum": False}
_LEASE_READS: dict[str, Any] = {"lease_reads": True, "election_timeout_ticks_min": 40,
                                 "election_timeout_ticks_max": 44, "lease_drift_ticks": 16}
BUGS: dict[str, Bug] = {
    bug.name: bug
    for bug in (
        # A voter must forget a grant while a rival candidate of the same term still asks it:
        # crash-after-vote crashes each granting voter at once and restarts it within
        # milliseconds, delay keeps the rival's RequestVote in flight meanwhile, and without
        # PreVote and CheckQuorum partitions leave many candidates racing in one term.
        _bug("vote-not-persisted", "a vote is granted but never made durable: a restarted "
             "node can vote twice in one term", bugs.vote_not_persisted,
             workload="register", nemesis=("partition", "delay", "crash-after-vote"),
             nemesis_interval=0.3, core=_NO_PREVOTE),
        _bug("term-not-persisted", "the current term is not saved: a restarted node "
             "recovers an older term from its log and votes in a term again",
             bugs.term_not_persisted,
             workload="register", nemesis=("partition", *_CRASHES), nemesis_interval=0.5),
        _bug("figure8", "a leader commits an earlier term's entry by counting replicas "
             "(Raft paper, Figure 8)", bugs.figure8,
             # One entry per append lets an old-term entry reach a majority before the new
             # leader's no-op; crash-new-leader leaves a rival whose newer-term no-op nobody
             # has, crash-after-commit kills the early committer before its no-op spreads.
             workload="append",
             nemesis=("partition", "crash-new-leader", "crash-after-commit"),
             nemesis_interval=0.3, rate=100.0, core={**_NO_PREVOTE, "append_entries_max": 1}),
        _bug("local-reads", "reads are served from the local state machine without "
             "ReadIndex", bugs.local_reads,
             workload="register", nemesis=("partition", "pause")),
        _bug("ack-before-fsync", "a Ready is acted on (acks sent, entries applied, client "
             "told ok) before its fsync returns", bugs.ack_before_fsync,
             live_patches=bugs.ack_before_fsync_live,
             workload="append", nemesis=("disk",), nemesis_interval=0.5, rate=200.0),
        _bug("send-before-fsync", "votes and append acknowledgements leave before the "
             "fsync of what they promise (only AppendEntries may)", bugs.send_before_fsync,
             workload="register", nemesis=("partition", "delay", "crash-after-vote", "disk"),
             nemesis_interval=0.3, core=_NO_PREVOTE),
        _bug("no-prevlog-check", "a follower skips the prevLogIndex/prevLogTerm "
             "consistency check on append", bugs.no_prevlog_check,
             workload="append", nemesis=("partition", "kill"), nemesis_interval=0.5,
             rate=100.0),
        _bug("truncate-on-stale-append", "a follower truncates its log after a stale "
             "(delayed or duplicated) append", bugs.truncate_on_stale_append,
             workload="append", nemesis=("kill", "delay", "reorder"),
             nemesis_interval=0.5, rate=100.0),
        _bug("leader-ignores-higher-term", "a leader that hears of a higher term keeps "
             "leading instead of stepping down", bugs.leader_ignores_higher_term,
             workload="register", nemesis=("partition",)),
        _bug("apply-before-commit", "entries are applied (and clients answered) before "
             "they are committed", bugs.apply_before_commit,
             workload="append", nemesis=("partition",), rate=100.0),
        # Snapshots every few entries with no trailing log: a follower that was down or cut
        # off comes back behind the compaction point and must install one.
        _bug("snapshot-forgets-sessions", "snapshots hold the data but not the session "
             "table: a node restored from one applies a retried write twice",
             bugs.snapshot_forgets_sessions,
             workload="append", nemesis=("kill", "partition"), nemesis_interval=0.5,
             rate=100.0, snapshot_entries=8, snapshot_trailing=0, snapshot_chunk_bytes=64),
        _bug("snapshot-ahead-of-apply", "a snapshot is labelled with the last log index, not "
             "the applied one, so compaction drops entries it does not hold",
             bugs.snapshot_ahead_of_apply,
             workload="append", nemesis=("partition", "kill"), nemesis_interval=0.5,
             rate=100.0, snapshot_entries=8, snapshot_trailing=0, snapshot_chunk_bytes=64),
        _bug("snapshot-regresses-commit", "a follower installs a snapshot older than its "
             "commit index: its state goes back in time", bugs.snapshot_regresses_commit,
             workload="register", nemesis=("partition", "delay", "reorder"),
             nemesis_interval=0.5, rate=100.0, snapshot_entries=8, snapshot_trailing=0,
             snapshot_chunk_bytes=64),
        # Membership: the member nemesis changes the configuration every half second with
        # partitions and crashes around it.
        _bug("learner-in-quorum", "a leader counts learners towards the commit quorum",
             bugs.learner_in_quorum,
             workload="append", nemesis=("member", "partition", "kill"),
             nemesis_interval=0.3, rate=100.0, nodes=3),
        _bug("pending-conf-ignored", "elections and commits count only the configuration "
             "in force, not the latest one the log's configuration entries bring",
             bugs.pending_conf_ignored,
             # The swarm seed that found it (462): a leader keeps restarting from an old
             # snapshot while crash triggers and membership changes go on.
             workload="append",
             nemesis=("partition", "pause", "delay", "reorder", "clock", "crash-after-vote",
                      "crash-after-commit", "member"),
             nemesis_interval=0.3, rate=200.0, nodes=3, clients=10,
             core={"append_entries_max": 1}, snapshot_entries=4, snapshot_trailing=1024,
             snapshot_chunk_bytes=4096),
        _bug("early-leave-joint", "the joint configuration is left before the entry that "
             "enters it committed", bugs.early_leave_joint,
             workload="append", nemesis=("member", "partition", "kill"),
             nemesis_interval=0.3, rate=100.0),
        _bug("removed-node-campaigns", "a removed node ignores its removal and goes on "
             "campaigning among the old voters", bugs.removed_node_campaigns,
             workload="append", nemesis=("member", "partition", "kill"),
             nemesis_interval=0.3, rate=100.0, core=_NO_PREVOTE),
        # Lease reads on, under clocks whose rates differ by at most 1.2 either way (so a
        # leader's tick may last 1.44 times a follower's) and a drift bound that covers it:
        # the lease is 40 - 16 = 24 ticks, safe up to a ratio of 39/24 = 1.6. Partitions cut
        # a leader off while it holds its lease; 20 clients at 200 op/s with a short request
        # timeout reach the successor and write while others still read from the old leader.
        # Long election timeouts (in ticks) make the drift window wide enough to hit.
        _bug("lease-ignores-drift", "a leader's read lease lasts the whole election timeout, "
             "ignoring clock drift: it serves stale reads after its successor took writes",
             bugs.lease_ignores_drift,
             workload="register", nemesis=("partition", "clock"), clients=20, rate=200.0,
             time_limit=15.0, nemesis_interval=1.5, request_timeout=0.1, clock_rate_max=1.2,
             core=_LEASE_READS),
        _bug("session-cache-off", "the session table forgets replies: a retried write is "
             "applied twice", bugs.session_cache_off,
             workload="append", nemesis=("kill", "partition"), nemesis_interval=0.5,
             rate=100.0),
    )
}


class UnknownBug(ValueError):
    """A bug name not in the zoo (one line listing the known ones)."""


class ZooUnavailable(RuntimeError):
    """The bugs cannot be planted in this process (one line: why)."""


def refuse_if_native() -> None:
    """The zoo swaps methods of raftlib's classes; the native build (``raftlib.native``)
    compiled them, and compiled code calls its methods directly, so a patch there would
    silently not take effect: a bug that is never planted, a campaign that cannot fail."""
    from raftlib import native

    if native.active():
        raise ZooUnavailable(
            f"--bug: the bug zoo patches raftlib's core and driver, which the native build "
            f"compiled ({native.ENVIRONMENT_VARIABLE} is set); run without it")


def get(name: str) -> Bug:
    bug = BUGS.get(name)
    if bug is None:
        raise UnknownBug(f"--bug: unknown bug {name!r} (known: {', '.join(BUGS)}; "
                         "see raft-harness bugs)")
    return bug


def listing() -> str:
    """One line per bug, for ``raft-harness bugs``."""
    width = max(len(name) for name in BUGS)
    return "\n".join(f"{bug.name:<{width}}  {bug.summary}" for bug in BUGS.values())


@contextmanager
def active(name: str | None, live: bool = False) -> Iterator[Bug | None]:
    """Switch bug ``name`` on for the block (``None`` or ``""``: no bug); ``live``: in a real
    node process (``harness.zoo.live``). The patched methods are restored on exit, however
    the block ends."""
    if not name:
        yield None
        return
    bug = get(name)
    refuse_if_native()
    saved: list[tuple[type, str, Any]] = []
    try:
        for owner, attribute, wrap in bug.patches_for(live):
            if attribute not in owner.__dict__:
                raise AssertionError(f"bug {name}: {owner.__name__}.{attribute} does not exist "
                                     "(the library changed; update harness/zoo/bugs.py)")
            original = owner.__dict__[attribute]
            saved.append((owner, attribute, original))
            setattr(owner, attribute, wrap(original))
        yield bug
    finally:
        for owner, attribute, original in reversed(saved):
            setattr(owner, attribute, original)


__all__ = ["BUGS", "Bug", "Detection", "UnknownBug", "ZooUnavailable", "active", "get", "listing",
           "refuse_if_native"]
