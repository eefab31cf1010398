"""What Raft says cannot happen is reported loudly: a leader contradicting a committed entry
halts the follower with a fatal anomaly naming the index and both terms; it is never answered
with "success" (which would let two state machines differ at one committed index)."""

from __future__ import annotations

from raftlib.core import AppendEntries, AppendEntriesResponse, Entry, EntryKind, Role
from tests.raftlib.core.network import drain, entries_of_terms, make_core


def _lost_tail_append() -> AppendEntries:
    # Nodes 2 and 3 lost the tail of their logs (entries 3..5 of term 1) and elected node 2 in
    # term 2; its NOOP lands at index 3, where node 1 has a committed entry of term 1.
    return AppendEntries(2, 2, 1, 2, 1, (Entry(2, 3, b"", EntryKind.NOOP),), commit=2)


def test_a_leader_overwriting_a_committed_entry_halts_the_follower_loudly() -> None:
    core = make_core(1, term=1, commit=5, log_terms=[1, 1, 1, 1, 1])
    drain(core)
    core.step(_lost_tail_append())
    readies = drain(core)
    anomalies = [a for r in readies for a in r.anomalies]
    assert len(anomalies) == 1 and anomalies[0].fatal
    text = anomalies[0].text
    assert "index 3" in text and "term 2" in text and "term 1" in text
    replies = [m for r in readies for m in r.messages if isinstance(m, AppendEntriesResponse)]
    assert not any(m.success for m in replies)
    assert core.status().safety_anomalies == 1
    # Halted: nothing more is applied, and no input moves it.
    core.tick()
    core.step(AppendEntries(2, 2, 1, 5, 1, (), commit=5))
    assert not any(r.committed or r.messages for r in drain(core))


def test_a_leader_whose_prev_contradicts_a_committed_entry_halts_the_follower() -> None:
    core = make_core(1, term=2, commit=4, log_terms=[1, 1, 2, 2])
    drain(core)
    core.step(AppendEntries(3, 2, 1, 3, 1, (), commit=3))
    anomalies = [a for r in drain(core) for a in r.anomalies]
    assert anomalies and anomalies[0].fatal and "index 3" in anomalies[0].text


def test_matching_committed_entries_are_accepted_quietly() -> None:
    core = make_core(1, term=1, commit=3, log_terms=[1, 1, 1])
    drain(core)
    core.step(AppendEntries(2, 2, 1, 1, 1, tuple(entries_of_terms([1, 1, 1, 2])[1:]), commit=3))
    readies = drain(core)
    assert not [a for r in readies for a in r.anomalies]
    acks = [m for r in readies for m in r.messages if isinstance(m, AppendEntriesResponse)]
    assert acks and acks[-1].success and acks[-1].match_index == 4
    assert core.role is Role.FOLLOWER and core.last_index == 4


def test_two_leaders_in_one_term_are_logged_not_obeyed() -> None:
    core = make_core(1, term=3, commit=0, log_terms=[])
    drain(core)
    core.step(AppendEntries(3, 2, 1, 0, 0, (), commit=0))
    core.step(AppendEntries(3, 3, 1, 0, 0, (), commit=0))
    anomalies = [a for r in drain(core) for a in r.anomalies]
    assert len(anomalies) == 1 and not anomalies[0].fatal
    assert "two leaders in term 3" in anomalies[0].text
