"""``python -m harness.live.clocked CONTROL MODULE ARG...``: run a node whose Trio clock the
harness can speed up or slow down while it runs (the live ``clock`` fault).

The simulator's clock fault makes a node's ticks run ``factor`` times as fast. A node process
times everything it does by Trio's clock (ticks, election timeouts, CheckQuorum leases, read
and request timeouts), so this wrapper runs the node's module with ``trio.run`` given a
``RateClock``: Trio time advances ``rate`` times as fast as real time, the rate read from the
JSON file ``CONTROL`` (``{"rate": 4.0}``), which the harness rewrites at the start and end
of each fault window. Trio time stays continuous and monotonic across changes (a rate, not a
jump), and survives restarts (a restarted node reads the file again).

Not faked: the wall clock (``time.time``), which raftlib stamps into writes as leader time for
session expiry. A clock fault here is a drifting timer, not a wrong calendar.
"""

from __future__ import annotations

import json
import math
import os
import runpy
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

# How often the clock looks at its control file, in real seconds; also the longest Trio may
# sleep at once, so a new rate takes effect within this bound.
CONTROL_POLL_SECONDS = 0.05
RATE_MIN = 0.01
RATE_MAX = 100.0
USAGE = "usage: python -m harness.live.clocked CONTROL_FILE MODULE [ARG...]"


def write_rate(control: Path, rate: float) -> None:
    """Set the rate a clocked node runs at (atomically: the node never reads half a file)."""
    if not (math.isfinite(rate) and RATE_MIN <= rate <= RATE_MAX):
        raise ValueError(f"clock rate must be in [{RATE_MIN}, {RATE_MAX}], got {rate!r}")
    partial = control.with_suffix(".tmp")
    partial.write_text(json.dumps({"rate": rate}) + "\n", encoding="utf-8")
    partial.replace(control)


def read_rate(control: Path) -> float:
    """The rate in ``control``; 1.0 when the file is absent or does not hold a sane rate."""
    try:
        rate = json.loads(control.read_text(encoding="utf-8"))["rate"]
    except (OSError, ValueError, KeyError, TypeError):
        return 1.0
    if not isinstance(rate, (int, float)) or not RATE_MIN <= rate <= RATE_MAX:
        return 1.0
    return float(rate)


class RateClock(trio.abc.Clock):
    """Trio time = the time at the last rate change + real time since then x rate."""

    def __init__(self, control: Path, real: Callable[[], float] = time.perf_counter) -> None:
        self._control = control
        self._real = real  # the real clock underneath (a test passes its own)
        self._real0 = real()
        self._fake0 = self._real0
        self._rate = read_rate(control)
        self._stamp: int | None = None
        self._next_poll = 0.0
        self.changes = 0

    def _poll(self, real: float) -> None:
        if real < self._next_poll:
            return
        self._next_poll = real + CONTROL_POLL_SECONDS
        try:
            stamp = os.stat(self._control).st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        rate = read_rate(self._control)
        if rate != self._rate:
            self._fake0 = self._at(real)  # continuous: the new rate starts from now
            self._real0 = real
            self._rate = rate
            self.changes += 1

    def _at(self, real: float) -> float:
        return self._fake0 + (real - self._real0) * self._rate

    def start_clock(self) -> None:
        pass

    def current_time(self) -> float:
        real = self._real()
        self._poll(real)
        return self._at(real)

    def deadline_to_sleep_time(self, deadline: float) -> float:
        real_wait = (deadline - self.current_time()) / self._rate
        return max(0.0, min(real_wait, CONTROL_POLL_SECONDS))


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    control, module = Path(argv[0]), argv[1]
    clock = RateClock(control)
    plain_run = trio.run

    def clocked_run(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("clock", clock)
        return plain_run(*args, **kwargs)

    # The node's own trio.run call gets the clock (the node's code is not changed for it).
    trio.run = clocked_run  # type: ignore[assignment]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
