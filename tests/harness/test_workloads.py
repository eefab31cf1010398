"""Workloads are seeded generators; the command encoding round-trips; the object under test
applies commands as the lincheck models expect."""

from __future__ import annotations

import random

import pytest

from harness import commands
from harness.workloads import AppendWorkload, KvWorkload, make_workload
from raftlib.kv.commands import NO_SESSION, Request, encode_command
from raftlib.kv.machine import KvStateMachine


@pytest.mark.parametrize("name", ["register", "kv", "append"])
def test_same_seed_gives_same_operations(name: str) -> None:
    a = make_workload(name, random.Random(5))
    b = make_workload(name, random.Random(5))
    assert [a.next_op() for _ in range(200)] == [b.next_op() for _ in range(200)]


def test_kv_keys_are_retired_after_ops_per_key_max() -> None:
    workload = KvWorkload(random.Random(1))
    ops = [workload.next_op() for _ in range(1000)]
    counts: dict[object, int] = {}
    for op in ops:
        counts[op.key] = counts.get(op.key, 0) + 1
    assert max(counts.values()) <= KvWorkload.ops_per_key_max
    assert len(counts) >= 1000 // KvWorkload.ops_per_key_max


def test_append_elements_are_unique_and_final_reads_cover_every_key() -> None:
    workload = AppendWorkload(random.Random(2))
    ops = [workload.next_op() for _ in range(300)]
    appended = [op.value for op in ops if op.f == "append"]
    assert len(appended) == len(set(appended)) > 50
    probe = workload.probe_ops()
    assert probe[0].f == "append"
    assert {op.key for op in probe[1:]} == {op.key for op in ops} | {probe[0].key}


def _apply(sm: KvStateMachine, f: str, key: object, value: object, initial: object) -> object:
    op = commands.write_op(f, key, value, initial)
    result = sm.apply(encode_command(Request(NO_SESSION, 0, 0, op)))
    return commands.write_output(f, value, result)


def test_command_mapping_refuses_what_it_cannot_represent() -> None:
    for f, key, value in [("read", None, None), ("write", "x", 1), ("cas", None, 3),
                          ("put", 1, True), ("append", -1, 3)]:
        with pytest.raises(commands.CommandError):
            commands.write_op(f, key, value, None)
    # kv: 0 is the absent key, so storing it would make reads ambiguous.
    with pytest.raises(commands.CommandError):
        commands.write_op("put", 1, 0, 0)
    cases: list[tuple[bytes, object]] = [(b"x", None), (b"1,2", []), (b"1,a,", []),
                                         (b"x" * (2 << 20), 0)]
    for raw, initial in cases:
        with pytest.raises(commands.CommandError):
            commands.read_value(raw, initial)


def test_raftlib_kv_applies_the_mapped_commands_like_the_models() -> None:
    register = KvStateMachine()
    key = commands.key_bytes(None)
    assert commands.read_value(register.get(key), None) is None
    assert _apply(register, "write", None, 3, None) == ("ok", 3)
    assert _apply(register, "cas", None, [2, 4], None) == ("ok", False)
    assert _apply(register, "cas", None, [3, 4], None) == ("ok", True)
    assert commands.read_value(register.get(key), None) == 4
    kv = KvStateMachine()
    assert _apply(kv, "cas", 7, [0, 2], 0) == ("ok", True)  # the initial 0 is the absent key
    assert _apply(kv, "cas", 7, [0, 3], 0) == ("ok", False)
    assert commands.read_value(kv.get(commands.key_bytes(7)), 0) == 2
    assert commands.read_value(kv.get(commands.key_bytes(8)), 0) == 0
    lists = KvStateMachine()
    _apply(lists, "append", 1, 10, [])
    _apply(lists, "append", 1, 11, [])
    assert commands.read_value(lists.get(commands.key_bytes(1)), []) == [10, 11]
    assert commands.read_value(lists.get(commands.key_bytes(2)), []) == []


@pytest.mark.parametrize("name", ["register", "kv"])
def test_register_and_kv_write_each_value_once_and_never_the_initial(name: str) -> None:
    """lincheck's zone algorithm (no search, however many operations crash) needs it."""
    workload = make_workload(name, random.Random(3))
    ops = [workload.next_op() for _ in range(2000)] + workload.probe_ops()
    written = [op.value[1] if op.f == "cas" else op.value for op in ops
               if op.f in ("write", "put", "cas")]
    assert len(written) == len(set(written)) > 500
    assert workload.initial not in written
    expected = [op.value[0] for op in ops if op.f == "cas"]
    # Most cas expect a value written before them (else few would ever succeed).
    assert sum(e in written for e in expected) > len(expected) // 2
