"""KV snapshot format 3 writes the string table as a map (no sort of every key on the leader);
snapshots of formats 1 and 2 (sorted arrays of pairs) still restore."""

from __future__ import annotations

import io

import msgspec

from raftlib.kv.commands import Request, Set, encode_command
from raftlib.kv.machine import SNAPSHOT_FORMAT_VERSION, KvStateMachine


def _filled(count: int) -> KvStateMachine:
    sm = KvStateMachine()
    for n in reversed(range(count)):  # inserted out of order: a sort would show
        sm.apply(encode_command(Request(0, 0, 1000, Set(b"k%03d" % n, b"v%d" % n))))
    return sm


def test_a_snapshot_writes_the_strings_as_a_map_in_table_order() -> None:
    sm = _filled(20)
    buffer = io.BytesIO()
    sm.snapshot(buffer)
    raw = msgspec.msgpack.decode(buffer.getvalue())
    assert raw[0] == SNAPSHOT_FORMAT_VERSION == 3
    assert isinstance(raw[1], dict) and list(raw[1]) == list(sm.data)
    restored = KvStateMachine()
    restored.restore(io.BytesIO(buffer.getvalue()))
    assert restored.data == sm.data


def test_a_format_2_snapshot_of_sorted_pairs_still_restores() -> None:
    sm = _filled(20)
    buffer = io.BytesIO()
    sm.snapshot(buffer)
    raw = msgspec.msgpack.decode(buffer.getvalue())
    raw[0] = 2
    raw[1] = sorted([key, value] for key, value in raw[1].items())
    restored = KvStateMachine()
    restored.restore(io.BytesIO(msgspec.msgpack.encode(raw)))
    assert restored.data == sm.data
    assert restored.sessions.dump() == sm.sessions.dump()
