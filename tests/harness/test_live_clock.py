"""The live clock fault: a node's Trio clock runs at the rate its control file says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.live import clocked
from harness.live.clocked import RateClock, read_rate, write_rate

# It passes its own clock, as ``raftlib serve`` does: the harness's must replace it.
_SLEEPER = (
    "import time, trio\n"
    "from raftlib.suspend_clock import SuspendAwareClock\n"
    "async def main():\n"
    "    start = time.perf_counter()\n"
    "    await trio.sleep(0.4)\n"
    "    print(round(time.perf_counter() - start, 3))\n"
    "trio.run(main, clock=SuspendAwareClock())\n"
)


def _real_seconds_of_a_trio_sleep(tmp_path: Path, rate: float) -> float:
    (tmp_path / "sleeper.py").write_text(_SLEEPER)
    control = tmp_path / "clock.json"
    write_rate(control, rate)
    done = subprocess.run([sys.executable, "-m", "harness.live.clocked", str(control),
                           "sleeper"], capture_output=True, text=True, timeout=30, check=True,
                          env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": ""})
    return float(done.stdout)


def test_a_clocked_process_sleeps_at_the_rate_in_its_control_file(tmp_path: Path) -> None:
    # The module's own trio.run gets the clock: 0.4 s of Trio time at rate 4 is 0.1 s real.
    assert _real_seconds_of_a_trio_sleep(tmp_path, 4.0) < 0.3
    assert _real_seconds_of_a_trio_sleep(tmp_path, 1.0) >= 0.4


def test_the_rate_clock_is_continuous_and_monotonic_across_rate_changes(
    tmp_path: Path,
) -> None:
    real = [100.0]
    control = tmp_path / "clock.json"
    clock = RateClock(control, real=lambda: real[0])
    assert clock.current_time() == 100.0
    real[0] += 1.0
    assert clock.current_time() == 101.0  # no file: rate 1
    write_rate(control, 4.0)
    real[0] += 1.0  # past the poll interval: the new rate starts now, from where time was
    assert clock.current_time() == 102.0
    real[0] += 0.5
    assert clock.current_time() == 104.0
    assert clock.deadline_to_sleep_time(104.1) == pytest.approx(0.025)  # 0.1 s at rate 4
    assert clock.deadline_to_sleep_time(200.0) == clocked.CONTROL_POLL_SECONDS  # bounded
    write_rate(control, 1.0)
    real[0] += 1.0
    assert clock.current_time() == 108.0  # 4 x 1 s, then the change: never backwards
    real[0] += 1.0
    assert clock.current_time() == 109.0
    assert clock.changes == 2


def test_bad_rates_are_refused_when_written_and_ignored_when_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="clock rate"):
        write_rate(tmp_path / "c.json", 0.0)
    (tmp_path / "c.json").write_text('{"rate": -3}')
    assert read_rate(tmp_path / "c.json") == 1.0
    (tmp_path / "c.json").write_text("garbage")
    assert read_rate(tmp_path / "c.json") == 1.0
