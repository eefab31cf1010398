"""Workloads are seeded generators; the command encoding round-trips; the object under test
applies commands as the lincheck models expect."""

from __future__ import annotations

import random

import pytest

from harness import commands
from harness.testkv import HarnessKV
from harness.workloads import AppendWorkload, KvWorkload, make_workload


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


def test_command_encoding_round_trips_and_rejects_garbage() -> None:
    data = commands.encode("3.7", "cas", 4, [1, 2])
    assert commands.decode(data) == commands.Command("3.7", "cas", 4, [1, 2])
    for bad in (b"\xff", b"{}", b'["1","drop",null,1]', b"x" * (commands.COMMAND_BYTES_MAX + 1)):
        with pytest.raises(commands.CommandError):
            commands.decode(bad)
    with pytest.raises(ValueError):
        commands.encode("1.1", "read", None, None)


def test_harness_kv_applies_like_the_models() -> None:
    register = HarnessKV(None)
    assert register.apply(commands.encode("0.1", "write", None, 3)) is None
    assert register.apply(commands.encode("0.2", "cas", None, [2, 4])) is False
    assert register.apply(commands.encode("0.3", "cas", None, [3, 4])) is True
    assert register.read(None) == 4
    lists = HarnessKV([])
    lists.apply(commands.encode("0.4", "append", 1, 10))
    lists.apply(commands.encode("0.5", "append", 1, 11))
    assert lists.read(1) == [10, 11] and lists.read(2) == []
