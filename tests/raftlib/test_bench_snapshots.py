"""bench/snapshots.py: its figures are computed right (slope unit, redis-benchmark CSV, log
stamps), and its catch-up run drives the replacement of a lost follower of live processes (a
new node under a new id) to a snapshot install."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import re
import shutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_snapshots", ROOT / "bench/snapshots.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _bench()


def test_slope_is_in_mib_per_100k_commands_and_zero_when_flat() -> None:
    commands = [0.0, 100_000.0, 200_000.0, 300_000.0]
    assert bench.per_100k_mib(commands, [5.0 * (1 << 20)] * 4) == 0.0
    growing = [c / 100_000 * 3 * (1 << 20) + 7 for c in commands]  # 3 MiB per 100k
    assert bench.per_100k_mib(commands, growing) == 3.0
    assert bench.per_100k_mib([1.0, 1.0], [1.0, 2.0]) is None  # no commands: no slope


def test_p99_is_read_from_redis_benchmark_7_csv() -> None:
    text = ('"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms",'
            '"p99_latency_ms","max_latency_ms"\n'
            '"SET","5376.34","8.512","1.040","7.999","17.007","26.031","40.511"\n')
    figures = bench.parse_csv(text)
    assert figures["p99_latency_ms"] == 26.031
    assert figures["rps"] == 5376.34


def test_log_lines_give_their_stamp_and_match() -> None:
    text = (b"2026-12-06 22:10:12,490 INFO raftlib.driver: node 2: sending the snapshot at "
            b"index 511 (521239 bytes) to node 1\n"
            b"2026-12-06 22:10:12,508 INFO raftlib.driver: node 1: installed the leader's "
            b"snapshot at index 511 (term 1)\n")
    ((sent_at, sent),) = bench.log_matches(text, bench.SNAPSHOT_SENT)
    ((installed_at, installed),) = bench.log_matches(text, bench.SNAPSHOT_INSTALLED)
    assert sent.group(2) == b"521239"
    assert installed.group(1) == b"511"
    assert installed_at - sent_at == pytest.approx(0.018, abs=1e-6)


def test_a_lost_followers_replacement_catches_up_by_installing_the_leaders_snapshot(
        tmp_path: Path) -> None:
    if shutil.which("redis-benchmark") is None:
        pytest.skip("redis-tools (redis-benchmark) is not installed")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = bench.main(["--quick", "--catch-up", "--tmp", str(tmp_path)])
    report = json.loads(out.getvalue())
    assert status == 0, report
    catch_up = report["catch_up"]
    assert catch_up["new_node"] == 4 and catch_up["lost_node"] in (1, 2, 3)
    assert catch_up["snapshot_bytes"] > 0
    assert catch_up["installed_snapshot_indexes"]
    assert re.fullmatch(r"[\d.]+", str(catch_up["mb_per_second"]))
