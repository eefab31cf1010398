"""``python -m harness.live.clocked CONTROL MODULE ARG...``: run a node whose clocks the harness
can change while it runs (the live ``clock`` fault).

Two clocks, as on a real machine:

- the timer clock: a node process times everything it does by Trio's clock (ticks, election
  timeouts, CheckQuorum leases, read and request timeouts), so this wrapper runs the node's
  module with ``trio.run`` given a ``RateClock``: Trio time advances ``rate`` times as fast as
  real time, as the simulator's clock fault makes a node's ticks run ``factor`` times as fast.
  Trio time stays continuous and monotonic across changes (a rate, not a jump), as a
  monotonic clock does when the wall clock is stepped.
- the wall clock (``time.time``; raftlib's leader time for session expiry runs on Trio's
  clock and reads it only to seed a new cluster's, so a step here must change nothing
  a client sees): ``WallClock`` adds the control file's ``offset_s`` (a bump: the clock stepped
  forward or back, as by ``settimeofday``) and, with ``strobe``, flips between that and
  ``delta_s`` more every ``period_ms`` (Jepsen's strobe). ``time.time`` is replaced before
  the node's modules are imported, so their ``clock=time.time`` defaults get it too.

The control file is JSON (``{"rate": 4.0, "offset_s": -60.0, "strobe": {"delta_s": 30.0,
"period_ms": 10.0}}``), rewritten atomically by the harness at the start and end of each
fault window, read again by a restarted node.
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

import attrs
import trio

# How often the clock looks at its control file, in real seconds; also the longest Trio may
# sleep at once, so a new rate takes effect within this bound.
CONTROL_POLL_SECONDS = 0.05
RATE_MIN = 0.01
RATE_MAX = 100.0
# The largest wall-clock step the control file may hold (seconds): a day either way.
OFFSET_S_MAX = 86_400.0
USAGE = "usage: python -m harness.live.clocked CONTROL_FILE MODULE [ARG...]"


@attrs.frozen
class ClockControl:
    rate: float = 1.0
    offset_s: float = 0.0
    strobe_delta_s: float = 0.0
    strobe_period_ms: float = 0.0  # 0: no strobe

    def wall(self, real_wall: float, real_monotonic: float) -> float:
        """The node's wall clock when the machine's reads ``real_wall``."""
        wall = real_wall + self.offset_s
        if self.strobe_period_ms > 0 and int(real_monotonic * 1000 / self.strobe_period_ms) % 2:
            wall += self.strobe_delta_s
        return wall


def write_control(control: Path, value: ClockControl) -> None:
    """Set a clocked node's clocks (atomically: the node never reads half a file)."""
    if not (math.isfinite(value.rate) and RATE_MIN <= value.rate <= RATE_MAX):
        raise ValueError(f"clock rate must be in [{RATE_MIN}, {RATE_MAX}], got {value.rate!r}")
    for name in ("offset_s", "strobe_delta_s"):
        if not (math.isfinite(getattr(value, name)) and abs(getattr(value, name)) <= OFFSET_S_MAX):
            raise ValueError(f"clock {name} must be within +-{OFFSET_S_MAX:g} s, got "
                             f"{getattr(value, name)!r}")
    if not (math.isfinite(value.strobe_period_ms) and value.strobe_period_ms >= 0):
        raise ValueError(f"strobe period must be >= 0 ms, got {value.strobe_period_ms!r}")
    partial = control.with_suffix(".tmp")
    partial.write_text(json.dumps(attrs.asdict(value)) + "\n", encoding="utf-8")
    partial.replace(control)


def write_rate(control: Path, rate: float) -> None:
    """Set the rate a clocked node's timers run at (its wall clock then runs true)."""
    write_control(control, ClockControl(rate=rate))


def read_control(control: Path) -> ClockControl:
    """The clocks in ``control``; true clocks when the file is absent or not sane."""
    try:
        raw = json.loads(control.read_text(encoding="utf-8"))
        value = ClockControl(**{k: float(raw[k]) for k in attrs.fields_dict(ClockControl)
                                if k in raw})
    except (OSError, ValueError, KeyError, TypeError):
        return ClockControl()
    if not (RATE_MIN <= value.rate <= RATE_MAX and abs(value.offset_s) <= OFFSET_S_MAX
            and abs(value.strobe_delta_s) <= OFFSET_S_MAX and value.strobe_period_ms >= 0):
        return ClockControl()
    return value


def read_rate(control: Path) -> float:
    """The rate in ``control``; 1.0 when the file is absent or does not hold a sane rate."""
    return read_control(control).rate


class _Poller:
    """Rereads the control file when it changed, at most every ``CONTROL_POLL_SECONDS``."""

    def __init__(self, control: Path) -> None:
        self._control = control
        self._stamp: int | None = None
        self._next_poll = 0.0
        self.value = read_control(control)

    def poll(self, real: float) -> bool:
        """True when the value changed."""
        if real < self._next_poll:
            return False
        self._next_poll = real + CONTROL_POLL_SECONDS
        try:
            stamp = os.stat(self._control).st_mtime_ns
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        value = read_control(self._control)
        changed = value != self.value
        self.value = value
        return changed


class WallClock:
    """``time.time`` of a clocked node: the machine's, bumped and strobed as the file says."""

    def __init__(self, control: Path, real_wall: Callable[[], float] = time.time,
                 real_monotonic: Callable[[], float] = time.monotonic) -> None:
        self._poller = _Poller(control)
        self._real_wall = real_wall
        self._real_monotonic = real_monotonic

    def time(self) -> float:
        monotonic = self._real_monotonic()
        self._poller.poll(monotonic)
        return self._poller.value.wall(self._real_wall(), monotonic)

    def time_ns(self) -> int:
        return int(self.time() * 1e9)


class RateClock(trio.abc.Clock):
    """Trio time = the time at the last rate change + real time since then x rate."""

    def __init__(self, control: Path, real: Callable[[], float] = time.perf_counter) -> None:
        self._poller = _Poller(control)
        self._real = real  # the real clock underneath (a test passes its own)
        self._real0 = real()
        self._fake0 = self._real0
        self._rate = self._poller.value.rate
        self.changes = 0

    def _poll(self, real: float) -> None:
        if not self._poller.poll(real):
            return
        rate = self._poller.value.rate
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
    wall = WallClock(control)
    # Before the node's modules are imported (their ``clock=time.time`` defaults bind now).
    time.time = wall.time
    time.time_ns = wall.time_ns
    plain_run = trio.run

    def clocked_run(*args: Any, **kwargs: Any) -> Any:
        # Replacing the node's own clock (``raftlib serve`` passes a SuspendAwareClock): this
        # one is the node's timer clock in a run with clock faults.
        kwargs["clock"] = clock
        return plain_run(*args, **kwargs)

    # The node's own trio.run call gets the clock (the node's code is not changed for it).
    trio.run = clocked_run  # type: ignore[assignment]
    sys.argv = [module, *argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
