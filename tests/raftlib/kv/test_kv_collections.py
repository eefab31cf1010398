"""Sets and lists in the KV state machine (SADD, SMEMBERS, RPUSH, LPOP): Redis semantics, one
type per key, exactly-once under session retries, deterministic replay and snapshots, and the
RESP commands and client methods on an in-process cluster."""

from __future__ import annotations

import io
import random

import msgspec
import trio
import trio.testing

from raftlib.kv import KvStateMachine, OpenSession, Request, Set, encode_command
from raftlib.kv.commands import Append, Cas, Delete, Incr, KvError, LPop, Op, RPush, SAdd
from raftlib.kv.machine import _Snapshot
from raftlib.resp.protocol import ErrorReply
from raftlib.testing import open_local_cluster
from tests.raftlib.kv.workload import client_for, handler_for, machine


def run(sm: KvStateMachine, op: Op, *, session: int = 0, seq: int = 0) -> object:
    return sm.apply(encode_command(Request(session, seq, 0, op)))


def test_sadd_counts_new_members_and_smembers_lists_them_sorted() -> None:
    sm = KvStateMachine()
    assert run(sm, SAdd(b"s", (b"b", b"a"))) == 2
    assert run(sm, SAdd(b"s", (b"a", b"c", b"c"))) == 1
    assert sm.smembers(b"s") == [b"a", b"b", b"c"]
    assert sm.smembers(b"absent") == []
    assert sm.type_of(b"s") == "set" and sm.key_count() == 1


def test_rpush_and_lpop_are_first_in_first_out_and_an_emptied_list_is_removed() -> None:
    sm = KvStateMachine()
    assert run(sm, RPush(b"q", (b"1", b"2"))) == 2
    assert run(sm, RPush(b"q", (b"3",))) == 3
    assert [run(sm, LPop(b"q")) for _ in range(3)] == [b"1", b"2", b"3"]
    assert sm.type_of(b"q") is None and sm.key_count() == 0
    assert run(sm, LPop(b"q")) is None  # empty or absent: nil, and nothing is created
    assert sm.key_count() == 0


def test_a_command_for_another_type_is_wrongtype_and_changes_nothing() -> None:
    sm = KvStateMachine()
    run(sm, Set(b"str", b"5"))
    run(sm, SAdd(b"set", (b"m",)))
    run(sm, RPush(b"list", (b"x",)))
    wrong: list[Op] = [SAdd(b"str", (b"m",)), RPush(b"str", (b"x",)), LPop(b"set"),
                       RPush(b"set", (b"x",)), SAdd(b"list", (b"m",)), Append(b"set", b"x"),
                       Incr(b"list", 1), Cas(b"list", None, b"y"), Cas(b"set", b"m", b"y")]
    for op in wrong:
        result = run(sm, op)
        assert isinstance(result, KvError) and result.code == "WRONGTYPE", op
    assert isinstance(sm.smembers(b"list"), KvError)
    assert sm.get(b"str") == b"5" and sm.smembers(b"set") == [b"m"]
    assert list(sm.lists[b"list"]) == [b"x"] and sm.key_count() == 3


def test_set_replaces_a_key_of_any_type_and_del_removes_every_type() -> None:
    sm = KvStateMachine()
    run(sm, SAdd(b"a", (b"m",)))
    run(sm, RPush(b"b", (b"x",)))
    assert run(sm, Set(b"a", b"v")) is True
    assert sm.type_of(b"a") == "string" and b"a" not in sm.sets
    assert run(sm, Delete((b"a", b"b", b"none"))) == 2
    assert sm.key_count() == 0


def test_a_retried_lpop_in_a_session_returns_the_same_head_and_pops_once() -> None:
    sm = KvStateMachine()
    sid = sm.apply(encode_command(OpenSession(0)))
    assert isinstance(sid, int)
    run(sm, RPush(b"q", (b"1", b"2")), session=sid, seq=1)
    assert run(sm, LPop(b"q"), session=sid, seq=2) == b"1"
    assert run(sm, LPop(b"q"), session=sid, seq=2) == b"1"  # the retry: the cached reply
    assert list(sm.lists[b"q"]) == [b"2"]
    assert run(sm, RPush(b"q", (b"3",)), session=sid, seq=3) == 2
    assert run(sm, RPush(b"q", (b"3",)), session=sid, seq=3) == 2
    assert run(sm, SAdd(b"s", (b"m",)), session=sid, seq=4) == 1
    assert run(sm, SAdd(b"s", (b"m",)), session=sid, seq=4) == 1  # cached, not a fresh 0
    assert list(sm.lists[b"q"]) == [b"2", b"3"] and sm.sessions.duplicates == 3


def _random_log(rng: random.Random, length: int) -> list[bytes]:
    keys = [b"a", b"b", b"c"]
    ops: list[Op] = []
    for _ in range(length):
        key = rng.choice(keys)
        member = b"%d" % rng.randrange(5)
        choices: list[Op] = [SAdd(key, (member,)), RPush(key, (member,)), LPop(key),
                             Set(key, member), Delete((key,))]
        ops.append(rng.choice(choices))
    return [encode_command(Request(0, 0, i, op)) for i, op in enumerate(ops)]


def _snapshot_bytes(sm: KvStateMachine) -> bytes:
    buffer = io.BytesIO()
    sm.snapshot(buffer)
    return buffer.getvalue()


def test_replaying_a_log_gives_the_same_replies_and_snapshot_and_restore_round_trips() -> None:
    rng = random.Random(3)
    for _ in range(20):
        log = _random_log(rng, 60)
        first, second = KvStateMachine(), KvStateMachine()
        assert [first.apply(c) for c in log] == [second.apply(c) for c in log]
        snapshot = _snapshot_bytes(first)
        assert snapshot == _snapshot_bytes(second)
        restored = KvStateMachine()
        restored.restore(io.BytesIO(snapshot))
        assert (restored.data, restored.sets, restored.lists) == (
            first.data, first.sets, first.lists)
        tail = _random_log(rng, 20)
        assert [restored.apply(c) for c in tail] == [first.apply(c) for c in tail]


def test_a_version_1_snapshot_without_sets_or_lists_still_restores() -> None:
    old = _Snapshot(version=1, data=[(b"k", b"v")], sessions=[], next_session_id=1,
                    clock_ms=0, applied_commands=1)
    raw = msgspec.msgpack.encode(old)
    # A version 1 writer knew no sets or lists: its array has the first six fields only.
    raw = msgspec.msgpack.encode(msgspec.msgpack.decode(raw)[:6])
    sm = KvStateMachine()
    sm.restore(io.BytesIO(raw))
    assert sm.get(b"k") == b"v" and sm.sets == {} and sm.lists == {}


async def test_resp_commands_for_sets_and_lists_on_a_cluster(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=5, state_machine_factory=KvStateMachine) as c:
        leader = await c.wait_leader()
        handle = handler_for(c, leader).handle
        assert await handle([b"SADD", b"s", b"b", b"a"]) == 2
        assert await handle([b"SMEMBERS", b"s"]) == [b"a", b"b"]
        assert await handle([b"RPUSH", b"q", b"1", b"2"]) == 2
        assert await handle([b"LPOP", b"q"]) == b"1"
        wrong = await handle([b"GET", b"q"])
        assert isinstance(wrong, ErrorReply) and wrong.code == "WRONGTYPE"
        wrong = await handle([b"SMEMBERS", b"q"])
        assert isinstance(wrong, ErrorReply) and wrong.code == "WRONGTYPE"
        arity = await handle([b"SADD", b"s"])
        assert isinstance(arity, ErrorReply) and "wrong number" in arity.text
        in_session = await handle([b"SESSION.CALL", b"1", b"1", b"SMEMBERS", b"s"])
        assert isinstance(in_session, ErrorReply)
        client = client_for(c)
        assert await client.sadd(b"s", b"c") == 1
        assert await client.smembers(b"s") == [b"a", b"b", b"c"]
        assert await client.rpush(b"q", b"3") == 2
        assert [await client.lpop(b"q"), await client.lpop(b"q"), await client.lpop(b"q")] == [
            b"2", b"3", None]
        await c.wait_converged()
        for nid in c.ids:
            assert machine(c, nid).smembers(b"s") == [b"a", b"b", b"c"], f"node {nid}"
            assert machine(c, nid).type_of(b"q") is None
