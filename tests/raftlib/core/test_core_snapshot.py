"""Snapshots in the pure core: a leader sends its snapshot to a follower whose next entry it
compacted away, the follower installs it (keeping its log's suffix only when the snapshot's
last entry is in it), and a node restarts from a snapshot plus the log after it."""

from __future__ import annotations

import random

import pytest

from raftlib.core import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    HardState,
    RaftCore,
    Role,
)
from raftlib.core.types import ConfState, InstallSnapshot, Ready, SnapshotMeta
from raftlib.errors import ConfigError
from tests.raftlib.core.network import ack_all, become_leader, drain, entries_of_terms, make_core

CONF = ConfState((1, 2, 3))


def _leader_with_compacted_log(entries: int = 10, keep_after: int = 8) -> RaftCore:
    leader = make_core(1, pre_vote=False, check_quorum=False)
    msgs = become_leader(leader)
    ack_all(leader, msgs)
    drain(leader)
    leader.propose_batch([b"c%d" % i for i in range(entries)])
    for _ in range(3):
        ack_all(leader, [m for r in drain(leader) for m in r.messages])
    assert leader.commit_index == entries + 1
    meta = SnapshotMeta(keep_after, leader.term_at(keep_after) or 0, CONF)
    leader.snapshot_taken(meta)
    leader.compact(keep_after)
    assert leader.first_index == keep_after + 1
    return leader


def test_a_follower_behind_the_compacted_log_is_sent_the_snapshot() -> None:
    leader = _leader_with_compacted_log()
    # Follower 2 restarted with an empty log: it refuses the heartbeat at its old match.
    leader.step(AppendEntriesResponse(leader.term, 2, 1, False, match_index=11,
                                      conflict_index=1, conflict_term=0))
    sent = [m for r in drain(leader) for m in r.messages if m.dst == 2]
    snaps = [m for m in sent if isinstance(m, InstallSnapshot)]
    assert len(snaps) == 1 and snaps[0].meta.index == 8
    assert leader.status().progress[2].state == "snapshot"
    # While it travels, only heartbeats (from the log's base) go to that follower.
    for _ in range(3):
        leader.tick()
    beats = [m for r in drain(leader) for m in r.messages
             if m.dst == 2 and isinstance(m, AppendEntries)]
    assert beats and all(not m.entries and m.prev_log_index == 8 for m in beats)
    # Installed: the follower answers with the snapshot's index; entries after it stream.
    leader.step(AppendEntriesResponse(leader.term, 2, 1, True, match_index=8))
    after = [m for r in drain(leader) for m in r.messages
             if m.dst == 2 and isinstance(m, AppendEntries)]
    assert after and after[0].prev_log_index == 8 and after[0].entries[0].index == 9
    assert leader.status().progress[2].state == "replicate"


def test_a_stalled_snapshot_transfer_is_retried() -> None:
    leader = _leader_with_compacted_log()
    leader.step(AppendEntriesResponse(leader.term, 2, 1, False, match_index=11,
                                      conflict_index=1, conflict_term=0))
    drain(leader)
    leader.snapshot_failed(2)
    again = [m for r in drain(leader) for m in r.messages
             if m.dst == 2 and isinstance(m, InstallSnapshot)]
    assert again, "a failed transfer must be retried"


def _follower_install(log_terms: list[int], commit: int, meta: SnapshotMeta) -> tuple[
        RaftCore, Ready]:
    follower = make_core(2, term=3, commit=commit, log_terms=log_terms)
    drain(follower)
    follower.step(InstallSnapshot(3, 1, 2, meta))
    rd = follower.ready()
    return follower, rd


def test_a_follower_without_the_snapshots_last_entry_resets_its_log() -> None:
    meta = SnapshotMeta(8, 3, CONF)
    follower, rd = _follower_install([1, 1, 2], commit=2, meta=meta)
    assert rd.snapshot == meta and not rd.snapshot_keeps_log
    assert rd.committed == ()  # the state machine is replaced, not fed entries
    acks = [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    assert acks and acks[0].success and acks[0].match_index == 8
    follower.advance(rd)
    assert follower.applied_index == 8 and follower.commit_index == 8
    assert follower.first_index == 9 and follower.last_index == 8


def test_a_follower_holding_the_snapshots_last_entry_keeps_the_entries_after_it() -> None:
    terms = [1, 1, 2, 2, 3, 3]
    meta = SnapshotMeta(4, 2, CONF)
    follower, rd = _follower_install(terms, commit=2, meta=meta)
    assert rd.snapshot == meta and rd.snapshot_keeps_log
    follower.advance(rd)
    assert [e.index for e in follower.log_entries()] == [5, 6]
    assert follower.commit_index == 4


def test_a_snapshot_older_than_the_commit_index_changes_nothing() -> None:
    follower, rd = _follower_install([1, 1, 2, 2], commit=4, meta=SnapshotMeta(3, 2, CONF))
    assert rd.snapshot is None
    acks = [m for m in rd.messages if isinstance(m, AppendEntriesResponse)]
    assert acks and acks[0].match_index == 4
    follower.advance(rd)
    assert follower.last_index == 4 and follower.first_index == 1


def test_a_node_restarts_from_a_snapshot_and_the_log_after_it() -> None:
    cfg = CoreConfig(node_id=1, voters=(1, 2, 3))
    meta = SnapshotMeta(5, 2, CONF)
    tail = [Entry(2, 6, b"x"), Entry(3, 7, b"y")]
    core = RaftCore(cfg, random.Random(0), HardState(3, 0, 6), tail, snapshot=meta)
    assert core.applied_index == 5 and core.commit_index == 6
    assert core.first_index == 6 and core.last_index == 7
    rd = core.ready()
    assert [e.index for e in rd.committed] == [6]
    core.advance(rd)
    # A candidate's log position counts the snapshot: term 3 at index 7.
    core.campaign()
    assert core.role in (Role.PRE_CANDIDATE, Role.CANDIDATE)


def test_a_restart_state_whose_log_does_not_follow_the_snapshot_is_refused() -> None:
    cfg = CoreConfig(node_id=1, voters=(1, 2, 3))
    with pytest.raises(ConfigError, match="index 6"):
        RaftCore(cfg, random.Random(0), HardState(3, 0, 5), entries_of_terms([1, 1]),
                 snapshot=SnapshotMeta(5, 2, CONF))


def test_an_append_below_the_followers_snapshot_is_not_a_divergence() -> None:
    follower = RaftCore(CoreConfig(node_id=2, voters=(1, 2, 3)), random.Random(0),
                        HardState(3, 0, 5), [], snapshot=SnapshotMeta(5, 2, CONF))
    drain(follower)
    entries = tuple(Entry(2, i, b"") for i in range(3, 7))
    follower.step(AppendEntries(3, 1, 2, 2, 2, entries, commit=6))
    readies = drain(follower)
    assert not [a for r in readies for a in r.anomalies]
    acks = [m for r in readies for m in r.messages if isinstance(m, AppendEntriesResponse)]
    assert acks[-1].success and acks[-1].match_index == 6
