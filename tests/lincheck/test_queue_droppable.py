"""Queue models drop crashed enqueues of elements no dequeue returned (``Model.droppable``):
verdicts unchanged (the property tests compare with brute force), searches kept small."""

from __future__ import annotations

import time

import lincheck
from lincheck import Event

# One queue of a live raft-harness run (3 nodes, partition, kill and pause): three crashed
# enqueues (26, 28, 38) nobody dequeued, beside crashed ones that were. With the three in the
# search, lincheck took 15 s on it; a decision well inside this bound shows they were dropped.
DECIDED_SECONDS_MAX = 5.0
LIVE_QUEUE = [
    (6, "invoke", "enqueue", 1), (6, "ok", "enqueue", 1), (5, "invoke", "enqueue", 4),
    (5, "ok", "enqueue", 4), (2, "invoke", "enqueue", 14), (2, "ok", "enqueue", 14),
    (6, "invoke", "enqueue", 16), (9, "invoke", "enqueue", 18), (5, "invoke", "enqueue", 19),
    (1, "invoke", "enqueue", 22), (6, "info", "enqueue", 16), (9, "info", "enqueue", 18),
    (5, "info", "enqueue", 19), (1, "info", "enqueue", 22), (13, "invoke", "dequeue", None),
    (20, "invoke", "enqueue", 26), (22, "invoke", "enqueue", 28), (13, "info", "dequeue", None),
    (20, "info", "enqueue", 26), (22, "info", "enqueue", 28), (37, "invoke", "enqueue", 38),
    (46, "invoke", "enqueue", 40), (46, "ok", "enqueue", 40), (37, "info", "enqueue", 38),
    *[(10, kind, "dequeue", value if kind == "ok" else None)
      for value in (4, 14, 22, 19, 18, 16, 40, None, None, None, None)
      for kind in ("invoke", "ok")],
]


def test_crashed_enqueues_nobody_dequeued_do_not_multiply_the_search() -> None:
    events = [Event(i, p, kind, f, value)  # type: ignore[arg-type]
              for i, (p, kind, f, value) in enumerate(LIVE_QUEUE)]
    history = lincheck.history_from_events(events)
    model = lincheck.get_model("fifo-queue")
    assert model.droppable is not None
    ids = model.droppable(history.operations)
    dropped = {op.input for op in history.operations if op.id in ids}
    assert dropped == {26, 28, 38}
    started = time.monotonic()
    result = lincheck.check(history, model, timeout=30, parallel=False)
    assert result.verdict == "ok"
    assert time.monotonic() - started < DECIDED_SECONDS_MAX


def test_a_crashed_enqueue_whose_element_was_dequeued_is_kept() -> None:
    events = [Event(0, 0, "invoke", "enqueue", 7), Event(1, 0, "info", "enqueue", 7),
              Event(2, 1, "invoke", "dequeue"), Event(3, 1, "ok", "dequeue", 7)]
    history = lincheck.history_from_events(events)
    model = lincheck.get_model("fifo-queue")
    assert model.droppable is not None
    assert model.droppable(history.operations) == set()
    assert lincheck.check(history, model).verdict == "ok"
