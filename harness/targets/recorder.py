"""A target client as a Jepsen worker: each operation is invoked, bounded, classified, recorded.

``RecordingClient.execute`` records the invocation, runs the target client's ``invoke`` for at
most ``timeout`` seconds (plus ``GUARD_SLACK_SECONDS`` for the client's own cleanup), turns how
it ended into ``ok``/``fail``/``info`` with ``harness.targets.base.classify`` and records the
completion. After an ``info`` the process id is retired, as in Jepsen: the operation may still
take effect at any later time, so the worker goes on as a new process. It has the shape of
``harness.live.clients.LiveClient`` (``execute``, ``busy``, ``aclose``), so the live workers
run either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from harness.history import HistoryRecorder
from harness.targets.base import Client, Outcome, Unknown, classify
from harness.workloads import OpSpec

# Beyond the request timeout, the bound on one operation (the client closing what it opened).
GUARD_SLACK_SECONDS = 1.0


class RecordingClient:
    def __init__(self, client: Client, *, history: HistoryRecorder,
                 new_process: Callable[[], int], timeout: float) -> None:
        self.client = client
        self._history = history
        self._new_process = new_process
        self._timeout = timeout
        self.process = new_process()
        self.busy = False
        self.errors: dict[str, int] = {}  # error type -> count, for the statistics

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(GUARD_SLACK_SECONDS):
            await self.client.close()

    async def execute(self, spec: OpSpec) -> Outcome:
        """Invoke ``spec``, wait for its outcome, record both; the outcome."""
        self.busy = True
        process = self.process
        self._history.invoke(process, spec)
        error: BaseException | None = Unknown("no answer within the request timeout")
        output: Any = spec.value
        try:
            with trio.move_on_after(self._timeout + GUARD_SLACK_SECONDS):
                try:
                    with trio.fail_after(self._timeout):
                        output = await self.client.invoke(spec)
                    error = None
                except Exception as exc:  # every error is an outcome: classify says which
                    error = exc
        finally:
            outcome = classify(spec, error)
            if error is not None:
                name = type(error).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                output = spec.value  # a write's input; a read saw nothing
                if not spec.is_write:
                    output = None
            self._history.complete(process, spec, outcome, output)
            if outcome == "info":
                self.process = self._new_process()
            self.busy = False
        return outcome
