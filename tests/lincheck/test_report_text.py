"""The terminal explanation names the verdict, the failing key, the culprit, its lines and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lincheck import report_text
from lincheck.formats import history_from_events, read_history
from lincheck.history import History, Operation
from lincheck.models import get_model
from lincheck.report_text import clip_middle, describe_op, explain, format_seconds, format_value
from lincheck.result import PartitionResult, Result
from lincheck.search import check


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


def kv_history() -> History:
    """Key "a": p0 puts 1, then p1 gets 3. Key "b": p2 puts 5 and reads it back."""
    return history_from_events(
        [
            ev(0, "invoke", "put", 1, key="a"),
            ev(0, "ok", "put", 1, key="a"),
            ev(2, "invoke", "put", 5, key="b"),
            ev(2, "ok", "put", 5, key="b"),
            ev(1, "invoke", "get", key="a"),
            ev(1, "ok", "get", 3, key="a"),
            ev(2, "invoke", "get", key="b"),
            ev(2, "ok", "get", 5, key="b"),
        ],
        source="kv.jsonl",
    )


def kv_result() -> Result:
    a = PartitionResult("a", "illegal", (0, 2), longest=(0,), states=("1",), unplaced=(2,))
    b = PartitionResult("b", "ok", (1, 3), longest=(1, 3), states=("5", "5"))
    return Result("illegal", "kv", (b, a), seconds=0.0123)


def test_illegal_names_key_culprit_process_lines_and_why() -> None:
    text = explain(kv_history(), kv_result())
    first = text.splitlines()[0]
    assert first.startswith("NOT LINEARIZABLE: kv.jsonl")
    assert "model kv" in first and "4 operations" in first and "12 ms" in first
    assert 'In key "a": 1 of 2 operations linearized' in text
    assert "process 0    put(1)  [lines 1–2]  ⇒ state 1" in text
    culprit = next(line for line in text.splitlines() if ">>>" in line)
    assert "process 1" in culprit and "get → 3" in culprit and "lines 5–6" in culprit
    assert "get returned 3 but the state was 1" in text
    assert "key \"b\"" not in text  # the ok partition is not part of the story


def test_only_the_last_steps_are_listed() -> None:
    n = report_text.last_steps_shown_max + 5
    events = []
    for i in range(n):
        events += [ev(0, "invoke", "write", i), ev(0, "ok", "write", i)]
    events += [ev(1, "invoke", "read"), ev(1, "ok", "read", -1)]
    history = history_from_events(events)
    part = PartitionResult(
        None, "illegal", tuple(range(n + 1)), tuple(range(n)), tuple(map(str, range(n))), (n,)
    )
    text = explain(history, Result("illegal", "register", (part,)))
    assert "… 5 earlier" in text
    assert text.count("⇒ state") == report_text.last_steps_shown_max
    assert f"state {n - 1}" in text and "state 4 " not in text


def test_why_for_non_read_names_the_state_and_op() -> None:
    history = history_from_events(
        [ev(0, "invoke", "cas", [1, 2]), ev(0, "ok", "cas", [1, 2])], source="c.jsonl"
    )
    part = PartitionResult(None, "illegal", (0,), unplaced=(0,))
    text = explain(history, Result("illegal", "cas-register", (part,)))
    assert "Why: from the initial state, the model does not allow cas([1, 2])" in text


def test_ok_is_one_line() -> None:
    part = PartitionResult("a", "ok", (0, 2), longest=(0, 2), states=("1", "3"))
    text = explain(kv_history(), Result("ok", "kv", (part,), seconds=2.5))
    assert text == (
        "linearizable: kv.jsonl (model kv, 4 operations of 3 processes, checked in 2.50 s, "
        "decided by search)"
    )


def test_unknown_gives_reason_and_undecided_keys() -> None:
    a = PartitionResult("a", "unknown", (0, 2))
    b = PartitionResult("b", "ok", (1, 3))
    result = Result("unknown", "kv", (a, b), reason="deadline of 0.5 s reached")
    text = explain(kv_history(), result)
    assert text.startswith("UNKNOWN")
    assert "Reason: deadline of 0.5 s reached" in text
    assert '1 of 2 partitions decided (all linearizable); undecided: key "a"' in text


def test_other_failing_partitions_are_counted() -> None:
    parts = [PartitionResult(f"k{i}", "illegal", (0,), unplaced=(0,)) for i in range(8)]
    text = explain(kv_history(), Result("illegal", "kv", tuple(parts)))
    assert '7 other partitions also not linearizable: key "k1"' in text
    assert "and 2 more" in text


def test_values_stay_on_one_short_line() -> None:
    assert format_value("a\nb\tc") == '"a\\nb\\tc"'
    assert format_value(None) == "nil"
    assert format_value(frozenset({2, 1})) == "[1, 2]"
    long = format_value("x" * 500)
    assert len(long) == report_text.value_chars_max and long.endswith("…")
    assert format_value(float("nan")) == "nan"
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    assert format_value(deep) == "<deeply nested value>"


def test_describe_op_marks_unknown_outcomes_and_hides_echoes() -> None:
    history = history_from_events(
        [
            ev(0, "invoke", "write", 4),
            ev(0, "ok", "write", 4),
            ev(1, "invoke", "write", 5),
            ev(1, "info", "write", 5),
            ev(2, "invoke", "read"),
            ev(2, "ok", "read", 4),
        ]
    )
    texts = [describe_op(op) for op in history.operations]
    assert texts == ["write(4)", "write(5) → ?", "read → 4"]


def test_format_seconds_keeps_useful_digits() -> None:
    assert [format_seconds(s) for s in (2.345, 0.0456, 0.00031)] == ["2.35 s", "46 ms", "0.31 ms"]


def test_an_op_in_the_linearization_is_never_named_as_unplaced() -> None:
    part = PartitionResult("a", "illegal", (0, 2), longest=(0,), states=("1",), unplaced=(0, 2))
    text = explain(kv_history(), Result("illegal", "kv", (part,)))
    culprit = next(line for line in text.splitlines() if ">>>" in line)
    assert "get → 3" in culprit
    assert text.count("put(1)") == 1  # listed once, as linearized


def test_failure_at_the_first_step_names_the_models_initial_state() -> None:
    history = history_from_events([ev(0, "invoke", "read"), ev(0, "ok", "read", 3)])
    part = PartitionResult(None, "illegal", (0,), unplaced=(0,))
    text = explain(history, Result("illegal", "register", (part,)), model=get_model("register", 5))
    assert "read returned 3 but the state was 5 (initial)" in text


# --- explanations of real search results ------------------------------------------------------

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "porcupine"


def _explain(events: list[dict[str, Any]], name: str, initial: Any = None) -> str:
    history = history_from_events(events, source="h.jsonl")
    model = get_model(name, initial)
    return explain(history, check(history, model), model=model)


def _why(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("  Why: "))


def test_why_names_the_state_the_culprit_met_not_an_unrelated_one() -> None:
    text = _explain(
        [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1), ev(1, "invoke", "read"),
         ev(2, "invoke", "write", 2), ev(1, "ok", "read", 3), ev(2, "ok", "write", 2)],
        "register",
    )
    culprit = next(line for line in text.splitlines() if ">>>" in line)
    assert "process 1" in culprit and "read → 3" in culprit and "lines 3–5" in culprit
    assert _why(text).startswith(
        "  Why: read returned 3 but the state was 2; nor could it go earlier: after step 1, "
        "the soonest it may go, the state was 1;"
    )
    assert "2 of 3 operations linearized" in text


def test_other_candidates_are_listed_with_their_own_reasons() -> None:
    text = _explain(
        [ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1), ev(1, "invoke", "cas", [5, 6]),
         ev(2, "invoke", "write", 7), ev(3, "invoke", "read"), ev(3, "ok", "read", 4),
         ev(1, "ok", "cas", [5, 6]), ev(2, "info", "write", 7),
         ev(4, "invoke", "write", 4), ev(4, "ok", "write", 4)],
        "cas-register",
    )
    assert "Could not be placed next, in state 1" in text
    assert "cas expected 5, but the state was 1" in text
    assert "outcome unknown: it may take effect here (state 7), but then no completed " \
           "operation fits either" in text
    assert "Must come later: 1 more completed operation, invoked after the culprit " \
           "returned (line 6)." in text
    assert "the 1 other operation" not in _why(text)  # one of the two others is unhelpful
    assert "none of the others that could go before it helps" in _why(text)


def test_a_failed_cas_is_explained_as_a_comparison_that_should_have_succeeded() -> None:
    write = Operation(0, 0, "write", 1, 1, 0, 1, "ok", call_line=1, ret_line=2)
    cas = Operation(1, 1, "cas", [1, 2], False, 2, 3, "ok", call_line=3, ret_line=4)
    history = History([write, cas], source="h.jsonl")
    model = get_model("cas-register")
    text = explain(history, check(history, model), model=model)
    assert _why(text).startswith(
        "  Why: cas reported that the value was not 1, but the state was 1;")


def test_long_values_say_where_they_part() -> None:
    long = "abc" * 30
    text = _explain(
        [ev(0, "invoke", "put", long, key="k"), ev(0, "ok", "put", long, key="k"),
         ev(0, "invoke", "append", "XYZ", key="k"), ev(0, "ok", "append", "XYZ", key="k"),
         ev(1, "invoke", "get", key="k"), ev(1, "ok", "get", long + "XY!", key="k")],
        "kv",
    )
    why = _why(text)
    assert "the first 92 characters agree, then the read has \"!\" where the state has " \
           "\"Z\"" in why
    assert '…' in why  # both values are long: clipped in the middle, ends kept


def test_clip_middle_keeps_both_ends() -> None:
    text = "head-" + "x" * 200 + "-tail"
    clipped = clip_middle(text, 40)
    assert len(clipped) == 40 and clipped.startswith("head-") and clipped.endswith("-tail")
    assert clip_middle("short", 40) == "short"


def test_unknown_from_the_memo_limit_advises_memory_not_time() -> None:
    events = [ev(p, "invoke", "append", f"<{p}>", key="k") for p in range(12)]
    events += [ev(12, "invoke", "put", "z", key="k"), ev(12, "ok", "put", "z", key="k")]
    events += [ev(p, "ok", "append", f"<{p}>", key="k") for p in range(12)]
    events += [ev(13, "invoke", "get", key="k"), ev(13, "ok", "get", "nope", key="k")]
    history = history_from_events(events)
    result = check(history, get_model("kv"), memo_entries_max=100)
    text = explain(history, result)
    assert text.startswith("UNKNOWN")
    assert "memo_entries_max" in text and "--timeout" not in text


@pytest.mark.skipif(not CORPUS.exists(), reason="../shared/data/porcupine is absent")
def test_etcd_000_blames_the_read_that_returned_first_with_a_true_reason() -> None:
    history = read_history(str(CORPUS / "jepsen" / "etcd_000.log"))
    model = get_model("cas-register")
    text = explain(history, check(history, model), model=model)
    culprit = next(line for line in text.splitlines() if ">>>" in line)
    assert "process 11" in culprit and "read → 2" in culprit and "lines 85–86" in culprit
    assert _why(text).startswith("  Why: read returned 2 but the state was 0;")
    assert "returned 2 but the state was 2" not in text


def _kv_read(value: Any) -> History:
    return history_from_events([
        {"process": 0, "type": "invoke", "f": "get", "key": "k", "value": None},
        {"process": 0, "type": "ok", "f": "get", "key": "k", "value": value},
    ])


def test_a_null_kv_read_is_told_that_an_absent_key_reads_as_empty_string() -> None:
    model = get_model("kv")
    history = _kv_read(None)
    text = explain(history, check(history, model), model=model)
    assert 'kv reads an absent key as "" (as Porcupine does)' in text
    assert """--initial '{"k": null}'""" in text


def test_the_absent_key_note_is_given_only_for_a_null_read() -> None:
    model = get_model("kv")
    history = _kv_read("x")
    text = explain(history, check(history, model), model=model)
    assert "absent key" not in text
