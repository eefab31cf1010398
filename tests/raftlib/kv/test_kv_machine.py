"""The KV state machine: each command's semantics, exactly-once sessions, deterministic
expiry by leader time in the log, the bounded session table, snapshots, and hostile bytes."""

from __future__ import annotations

import io
import random

from hypothesis import given
from hypothesis import strategies as st

from raftlib.kv import (
    Append,
    Cas,
    Delete,
    Incr,
    KvError,
    KvStateMachine,
    OpenSession,
    Request,
    Set,
    encode_command,
)
from raftlib.kv.commands import Command, Op
from raftlib.statemachine import SnapshotStateMachine


def run(sm: KvStateMachine, op: Op, *, session: int = 0, seq: int = 0, now_ms: int = 0) -> object:
    return sm.apply(encode_command(Request(session, seq, now_ms, op)))


def open_session(sm: KvStateMachine, now_ms: int = 0) -> int:
    sid = sm.apply(encode_command(OpenSession(now_ms)))
    assert isinstance(sid, int)
    return sid


def test_commands_have_redis_semantics() -> None:
    sm = KvStateMachine()
    assert run(sm, Set(b"k", b"v")) is True
    assert sm.get(b"k") == b"v"
    assert run(sm, Append(b"k", b"w")) == 2
    assert run(sm, Append(b"new", b"abc")) == 3
    assert run(sm, Incr(b"n", 5)) == 5
    assert run(sm, Incr(b"n", -7)) == -2
    assert run(sm, Cas(b"k", b"nope", b"x")) is False
    assert run(sm, Cas(b"k", b"vw", b"x")) is True
    assert sm.get(b"k") == b"x"
    assert run(sm, Cas(b"absent", None, b"y")) is True
    assert run(sm, Delete((b"k", b"k", b"missing", b"n"))) == 2
    assert sm.get(b"k") is None
    assert sm.key_count() == 2


def test_incr_of_a_non_integer_or_overflow_is_an_error_value_and_changes_nothing() -> None:
    sm = KvStateMachine()
    run(sm, Set(b"s", b"hello"))
    result = run(sm, Incr(b"s", 1))
    assert isinstance(result, KvError) and result.code == "ERR"
    assert sm.get(b"s") == b"hello"
    run(sm, Set(b"big", b"%d" % (2**63 - 1)))
    assert isinstance(run(sm, Incr(b"big", 1)), KvError)
    assert sm.get(b"big") == b"%d" % (2**63 - 1)
    run(sm, Set(b"sp", b" 1"))
    assert isinstance(run(sm, Incr(b"sp", 1)), KvError)


def test_a_retried_request_is_applied_once_and_answered_from_the_cache() -> None:
    sm = KvStateMachine()
    sid = open_session(sm)
    assert run(sm, Incr(b"c", 1), session=sid, seq=1) == 1
    assert run(sm, Incr(b"c", 1), session=sid, seq=1) == 1
    assert sm.get(b"c") == b"1"
    assert run(sm, Incr(b"c", 1), session=sid, seq=2) == 2
    assert sm.sessions.duplicates == 1


def test_a_stale_sequence_number_is_refused_and_not_applied() -> None:
    sm = KvStateMachine()
    sid = open_session(sm)
    run(sm, Incr(b"c", 1), session=sid, seq=1)
    run(sm, Incr(b"c", 1), session=sid, seq=2)
    result = run(sm, Incr(b"c", 1), session=sid, seq=1)
    assert isinstance(result, KvError) and result.code == "STALESEQ"
    assert sm.get(b"c") == b"2"


def test_unknown_session_is_refused_as_expired() -> None:
    sm = KvStateMachine()
    result = run(sm, Set(b"k", b"v"), session=42, seq=1)
    assert isinstance(result, KvError) and result.code == "SESSIONEXPIRED"
    assert sm.get(b"k") is None


def test_sessions_expire_by_leader_time_in_the_log_never_going_backwards() -> None:
    sm = KvStateMachine(session_ttl_ms=1000)
    idle = open_session(sm, now_ms=0)
    busy = open_session(sm, now_ms=0)
    run(sm, Set(b"k", b"1"), session=busy, seq=1, now_ms=900)
    # A leader whose clock is behind does not move the replicated clock backwards.
    run(sm, Set(b"k", b"2"), session=busy, seq=2, now_ms=100)
    assert sm.sessions.clock_ms == 900
    run(sm, Set(b"k", b"3"), session=busy, seq=3, now_ms=1500)
    result = run(sm, Set(b"k", b"x"), session=idle, seq=1, now_ms=1500)
    assert isinstance(result, KvError) and result.code == "SESSIONEXPIRED"
    assert run(sm, Set(b"k", b"4"), session=busy, seq=4, now_ms=1500) is True
    assert sm.sessions.expired == 1


def test_the_session_table_is_bounded_and_evicts_the_least_recently_used() -> None:
    sm = KvStateMachine(sessions_max=2)
    first = open_session(sm)
    second = open_session(sm)
    run(sm, Set(b"k", b"v"), session=first, seq=1)  # first is now the most recent
    third = open_session(sm)
    assert len(sm.sessions) == 2
    evicted = run(sm, Set(b"k", b"v"), session=second, seq=1)
    assert isinstance(evicted, KvError) and evicted.code == "SESSIONEXPIRED"
    assert run(sm, Set(b"k", b"w"), session=first, seq=2) is True
    assert run(sm, Set(b"k", b"z"), session=third, seq=1) is True


@given(st.binary(max_size=200))
def test_hostile_command_bytes_give_an_error_value_never_an_exception(data: bytes) -> None:
    sm = KvStateMachine()
    result = sm.apply(data)
    assert result is not None


def _random_commands(seed: int, count: int) -> list[Command]:
    rng = random.Random(seed)
    out: list[Command] = [OpenSession(0), OpenSession(0)]
    seqs = {1: 0, 2: 0}
    for i in range(count):
        key = rng.choice([b"a", b"b", b"c"])
        choices: list[Op] = [
            Set(key, b"%d" % i), Append(key, b"x"), Incr(key, 1), Delete((key,)),
            Cas(key, b"%d" % (i - 1), b"y"),
        ]
        op = rng.choice(choices)
        sid = rng.choice([0, 1, 2])
        if sid:
            seqs[sid] += rng.choice([0, 1, 1])  # some retries
        out.append(Request(sid, seqs.get(sid, 0), i * 10, op))
    return out


def test_replicas_applying_the_same_log_agree_and_a_snapshot_restores_everything() -> None:
    commands = [encode_command(c) for c in _random_commands(seed=3, count=300)]
    a, b = KvStateMachine(), KvStateMachine()
    results_a = [a.apply(c) for c in commands[:200]]
    results_b = [b.apply(c) for c in commands[:200]]
    assert results_a == results_b
    assert isinstance(a, SnapshotStateMachine)
    buf = io.BytesIO()
    a.snapshot(buf)
    buf.seek(0)
    restored = KvStateMachine()
    restored.restore(buf)
    assert [restored.apply(c) for c in commands[200:]] == [b.apply(c) for c in commands[200:]]
    assert restored.data == b.data
    assert restored.sessions.dump() == b.sessions.dump()


def test_a_damaged_snapshot_is_refused_with_a_clear_error() -> None:
    sm = KvStateMachine()
    try:
        sm.restore(io.BytesIO(b"\x93garbage"))
    except ValueError as exc:
        assert "KV snapshot" in str(exc)
    else:
        raise AssertionError("a damaged snapshot was accepted")
