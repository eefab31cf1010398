"""HistoryRecorder: the run's history as lincheck's JSON Lines events, in the order they
happen, stamped with virtual time in seconds.

Client events carry ``process``, ``type``, ``f``, ``value`` (and ``key`` for keyed workloads);
fault events use the process ``"nemesis"`` with ``start-<kind>``/``stop-<kind>`` so lincheck's
report shades the fault windows.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from lincheck import Event, write_jsonl

from harness.workloads import OpSpec


class HistoryRecorder:
    def __init__(self, clock_us: Callable[[], int], keyed: bool) -> None:
        self._clock_us = clock_us
        self._keyed = keyed
        self.events: list[Event] = []
        self.counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}

    def _add(self, process: int | str, kind: str, f: str, value: Any, key: Any) -> None:
        self.events.append(
            Event(
                index=len(self.events),
                process=process,
                type=kind,  # type: ignore[arg-type]
                f=f,
                value=value,
                key=key if self._keyed else None,
                time=self._clock_us() / 1_000_000,
            )
        )

    def invoke(self, process: int, spec: OpSpec) -> None:
        self.counts["invoke"] += 1
        self._add(process, "invoke", spec.f, spec.value if spec.is_write else None, spec.key)

    def complete(self, process: int, spec: OpSpec, outcome: str, output: Any) -> None:
        self.counts[outcome] += 1
        self._add(process, outcome, spec.f, output, spec.key)

    def nemesis(self, f: str, value: dict[str, Any]) -> None:
        # Sorted keys: a schedule read back from nemesis.json gives the same bytes.
        self._add("nemesis", "info", f, dict(sorted(value.items())), None)

    def jsonl(self) -> str:
        buffer = io.StringIO()
        write_jsonl(self.events, buffer)
        return buffer.getvalue()
