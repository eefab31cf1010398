"""The search: three-valued verdicts, partial linearizations, partitions, deadline, pruning."""

from __future__ import annotations

from typing import Any

from lincheck.brute import brute_force_check
from lincheck.formats import history_from_events
from lincheck.history import History
from lincheck.models import get_model
from lincheck.search import check


def h(*rows: tuple[Any, ...]) -> History:
    """Rows of (process, type, f, value[, key])."""
    events = []
    for row in rows:
        ev: dict[str, Any] = {"process": row[0], "type": row[1], "f": row[2], "value": row[3]}
        if len(row) > 4:
            ev["key"] = row[4]
        events.append(ev)
    return history_from_events(events)


STALE_READ = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
               (1, "invoke", "read", None), (1, "ok", "read", None))


def test_empty_history_is_linearizable() -> None:
    assert check(h(), get_model("register")).verdict == "ok"


def test_concurrent_read_may_see_either_value() -> None:
    for seen in (None, 1):
        hist = h((0, "invoke", "write", 1), (1, "invoke", "read", None),
                 (1, "ok", "read", seen), (0, "ok", "write", 1))
        assert check(hist, get_model("register")).verdict == "ok"


def test_stale_read_after_a_completed_write_is_illegal_and_reported() -> None:
    result = check(STALE_READ, get_model("register"))
    assert result.verdict == "illegal" and not result.ok
    failure = result.first_failure()
    assert failure is not None
    assert failure.longest == (0,) and failure.states == ("1",)
    assert failure.unplaced == (1,)
    assert "operation 1 cannot be placed" in result.reason


def test_ok_result_carries_a_full_linearization_with_states() -> None:
    hist = h((0, "invoke", "write", 1), (1, "invoke", "write", 2), (0, "ok", "write", 1),
             (1, "ok", "write", 2), (2, "invoke", "read", None), (2, "ok", "read", 1))
    result = check(hist, get_model("register"))
    assert result.verdict == "ok"
    (part,) = result.partitions
    assert part.longest == (1, 0, 2) and part.states == ("2", "1", "1")


def test_info_write_may_take_effect_late_or_never() -> None:
    late = h((0, "invoke", "write", 1), (0, "info", "write", 1),
             (1, "invoke", "read", None), (1, "ok", "read", None),
             (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check(late, get_model("register")).verdict == "ok"
    flip = h((0, "invoke", "write", 1), (0, "info", "write", 1),
             (1, "invoke", "read", None), (1, "ok", "read", 1),
             (1, "invoke", "read", None), (1, "ok", "read", None))
    assert check(flip, get_model("register")).verdict == "illegal"


def test_info_write_takes_effect_at_most_once() -> None:
    hist = h((0, "invoke", "write", 1), (0, "info", "write", 1),
             (1, "invoke", "write", 2), (1, "ok", "write", 2),
             (1, "invoke", "read", None), (1, "ok", "read", 1),
             (1, "invoke", "write", 2), (1, "ok", "write", 2),
             (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check(hist, get_model("register")).verdict == "illegal"
    assert brute_force_check(hist, get_model("register")) == "illegal"


def test_identical_concurrent_operations_are_interchangeable() -> None:
    rows: list[tuple[Any, ...]] = [(p, "invoke", "write", 1) for p in range(6)]
    rows += [(p, "ok", "write", 1) for p in range(6)]
    rows += [(9, "invoke", "read", None), (9, "ok", "read", 1)]
    assert check(h(*rows), get_model("register")).verdict == "ok"


def test_kv_keys_are_checked_as_separate_partitions() -> None:
    hist = h((0, "invoke", "put", "x", "a"), (0, "ok", "put", "x", "a"),
             (1, "invoke", "get", None, "b"), (1, "ok", "get", "", "b"),
             (1, "invoke", "get", None, "a"), (1, "ok", "get", "y", "a"))
    result = check(hist, get_model("kv"), parallel=False)
    assert result.verdict == "illegal"
    assert {p.key for p in result.partitions} == {"a", "b"}
    failure = result.first_failure()
    assert failure is not None and failure.key == "a"
    assert "key 'a'" in result.reason


def test_parallel_check_gives_the_same_verdicts_as_serial() -> None:
    rows: list[tuple[Any, ...]] = []
    for k in range(6):
        rows += [(k, "invoke", "append", "x", str(k)), (k, "ok", "append", "x", str(k)),
                 (k, "invoke", "get", None, str(k)), (k, "ok", "get", "x", str(k))]
    good = h(*rows)
    bad = h(*rows, (0, "invoke", "get", None, "3"), (0, "ok", "get", "", "3"))
    for hist, verdict in ((good, "ok"), (bad, "illegal")):
        par = check(hist, get_model("kv"), parallel=True)
        ser = check(hist, get_model("kv"), parallel=False)
        assert par.verdict == ser.verdict == verdict
        assert par.stats["workers"] >= 1 and ser.stats["workers"] == 0


def _hard_history(n: int) -> History:
    """Many concurrent unique appends read back only at the end: a wide search."""
    rows: list[tuple[Any, ...]] = [(p, "invoke", "append", f"<{p}>", "k") for p in range(n)]
    rows += [(n, "invoke", "put", "z", "k"), (n, "ok", "put", "z", "k")]
    rows += [(p, "ok", "append", f"<{p}>", "k") for p in range(n)]
    rows += [(n + 1, "invoke", "get", None, "k"), (n + 1, "ok", "get", "nope", "k")]
    return h(*rows)


def test_deadline_gives_unknown_with_a_reason() -> None:
    result = check(_hard_history(14), get_model("kv"), timeout=0.05)
    assert result.verdict == "unknown"
    assert "deadline" in result.reason
    assert result.partitions[0].verdict == "unknown"


def test_unknown_reads_are_dropped_and_counted() -> None:
    hist = h((0, "invoke", "read", None), (0, "info", "read", None),
             (1, "invoke", "write", 1), (1, "ok", "write", 1))
    result = check(hist, get_model("register"))
    assert result.verdict == "ok" and result.stats["info_reads_dropped"] == 1


def test_check_rejects_an_operation_the_model_does_not_know() -> None:
    import pytest
    from lincheck.history import HistoryError

    with pytest.raises(HistoryError, match="unknown function 'push'"):
        check(h((0, "invoke", "push", 1)), get_model("register"))
