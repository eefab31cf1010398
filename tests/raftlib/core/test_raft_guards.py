"""Guards of raft.py's second half (time, elections, message dispatch, role changes, status)
that no test pinned down: each test here fails on a small change (a mutant) of one check that
left the core, driver, node and simulator tests green.

The mutants each test kills are named in its docstring as ``raft.py:line`` of the code it
guards (as of the mutation audit that added this file). Companion of test_core_guards.py,
whose audit covered the other core files."""

from __future__ import annotations

import random

from raftlib.core import (
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    HardState,
    RaftCore,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
)
from raftlib.core.types import ConfState, SnapshotMeta
from tests.raftlib.core.network import ack_all, become_leader, drain, make_core, sent


def test_a_request_of_an_older_term_is_refused_with_our_term() -> None:
    """§5.1: a request from an older term is rejected, telling the sender our term: a vote or
    pre-vote request gets a refusal (never a grant: a candidate that reaches our term later
    would count it) that echoes whether it was a pre-vote; a read request gets index 0, the
    answer that serves no read (raft.py:382, :384)."""
    core = make_core(1, term=5, log_terms=[1, 2])
    drain(core)
    for pre_vote in (False, True):
        core.step(RequestVote(3, 2, 1, 9, 3, pre_vote=pre_vote))
        assert sent(core) == [RequestVoteResponse(5, 1, 2, False, pre_vote)]
    core.step(ReadIndexRequest(3, 2, 1, 7))
    assert sent(core) == [ReadIndexResponse(5, 1, 2, 7, 0)]
    assert core.term == 5 and core.vote == 0
    assert not any(isinstance(m, AppendEntriesResponse) for m in sent(core))


def test_status_reports_the_cores_own_state() -> None:
    """``status()`` is what operators and the harness read: it names this node, its vote, how
    far its log is durable and applied, and the snapshot its log starts after (raft.py:258,
    :261, :264, :266, :271)."""
    snapshot = SnapshotMeta(5, 2, ConfState((1, 2, 3)))
    entries = [Entry(2, 6), Entry(3, 7)]
    core = RaftCore(CoreConfig(node_id=1, voters=(1, 2, 3)), random.Random(0),
                    HardState(3, 2, 6), entries, 6, snapshot)
    status = core.status()
    assert (status.node_id, status.term, status.vote) == (1, 3, 2)
    assert (status.commit, status.applied, status.persisted_index) == (6, 6, 7)
    assert (status.snapshot_index, status.first_index, status.last_index) == (5, 6, 7)


# --- the constructor (RaftCore.__init__) ------------------------------------------------------


def test_a_node_that_never_led_has_no_configuration_change_pending() -> None:
    """``change_pending`` is how a caller learns that a configuration change this node appended
    as leader has not taken effect yet (``propose_conf_change`` refuses the next one until it
    has). A node that never led appended none: from its start it must answer False, neither
    claim a change at index 1 that nothing appended nor fail to answer at all (the pending
    index starts at 0, below anything applied: raft.py:140). Once it leads, its no-op is the
    pending barrier until it took effect."""
    fresh = make_core(1)
    assert fresh.change_pending is False
    restarted = make_core(1, term=3, vote=2)
    assert restarted.change_pending is False
    ack_all(restarted, become_leader(restarted))
    assert restarted.change_pending is True  # its no-op (index 1) is not applied yet
    drain(restarted)
    assert restarted.commit_index == restarted.applied_index == 1
    assert restarted.change_pending is False


def test_the_first_ready_after_a_restart_from_a_snapshot_carries_no_snapshot_to_install() -> None:
    """``Ready.snapshot_keeps_log`` tells the driver how to treat its log when it commits the
    Ready's snapshot (keep what follows the snapshot's index, or reset it); it goes with a
    snapshot the core accepted from a leader and means nothing without one. A node restarted
    from its own durable snapshot has accepted none: its first Ready (here the committed
    entries after the snapshot, to apply) carries no snapshot and must not ask to keep the log
    either: a driver acting on the flag would drop log entries for a snapshot that does not
    exist (raft.py:143)."""
    snapshot = SnapshotMeta(5, 2, ConfState((1, 2, 3)))
    core = RaftCore(CoreConfig(node_id=1, voters=(1, 2, 3)), random.Random(0),
                    HardState(2, 0, 7), [Entry(2, 6), Entry(2, 7)], None, snapshot)
    assert core.has_ready()
    ready = core.ready()
    assert [entry.index for entry in ready.committed] == [6, 7]
    assert ready.snapshot is None
    assert ready.snapshot_keeps_log is False
    assert core.pending_install is None
