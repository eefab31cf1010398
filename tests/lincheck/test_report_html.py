"""The HTML report is self-contained, escapes every user value, and shows the failure."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from lincheck import report_html
from lincheck.formats import history_from_events
from lincheck.history import History
from lincheck.report_html import render_html, write_html
from lincheck.result import PartitionResult, Result

HOSTILE = '<script>alert("x")</script>'
HOSTILE_ATTR = '" onmouseover="alert(1)'


def ev(process: Any, type_: str, f: str, value: Any = None, **extra: Any) -> dict[str, Any]:
    return {"process": process, "type": type_, "f": f, "value": value, **extra}


def stale_read_history() -> History:
    """p0 writes 1; p1 reads 1; then p0 reads 3 while nobody wrote 3 (op 2 is the culprit)."""
    return history_from_events(
        [
            ev(0, "invoke", "write", 1, time=0.0),
            ev(1, "invoke", "read", time=0.1),
            ev(0, "ok", "write", 1, time=0.2),
            ev(1, "ok", "read", 1, time=0.3),
            ev("nemesis", "info", "start", "partition [n1] [n2 n3]", time=0.35),
            ev(0, "invoke", "read", time=0.4),
            ev(2, "invoke", "write", 2, time=0.45),
            ev(0, "ok", "read", 3, time=0.5),
            ev("nemesis", "info", "stop", None, time=0.6),
        ],
        source="stale.jsonl",
    )


def stale_read_result() -> Result:
    part = PartitionResult(
        key=None,
        verdict="illegal",
        operation_ids=(0, 1, 2, 3),
        longest=(0, 1),
        states=("STATE-ONE", "STATE-ONE-AGAIN"),
        unplaced=(2,),
    )
    return Result("illegal", "register", (part,), seconds=0.01)


def op_group(page: str, op_id: int) -> str:
    """The opening tag of the bar of operation ``op_id``."""
    found = re.search(rf'<g class="op[^"]*" data-op="{op_id}"[^>]*>', page)
    assert found, f"no bar for operation {op_id}"
    return found.group(0)


def test_page_is_self_contained() -> None:
    page = render_html(stale_read_history(), stale_read_result())
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    assert "src=" not in lowered
    assert "<link" not in lowered
    assert "@import" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert lowered.count("<script") == 1  # the one inline script, no external one
    assert "<style>" in page


def test_unplaced_operation_is_highlighted_and_only_it() -> None:
    page = render_html(stale_read_history(), stale_read_result())
    culprit = op_group(page, 2)
    assert "bad" in culprit and "first" in culprit
    assert page.count('class="op bad first"') + page.count('class="op lin bad first"') == 1
    for other in (0, 1, 3):
        assert "first" not in op_group(page, other)
    assert "lin" in op_group(page, 0).split('"')[1].split()


def test_linearized_ops_carry_their_state_for_hover() -> None:
    page = render_html(stale_read_history(), stale_read_result())
    tip_of_0 = re.search(r'data-op="0" data-tip="([^"]*)"', page)
    assert tip_of_0 is not None
    assert "STATE-ONE" in tip_of_0.group(1)
    assert "linearized #1" in tip_of_0.group(1)
    # The culprit's tooltip says which state it could not follow.
    tip_of_2 = re.search(r'data-op="2" data-tip="([^"]*)"', page)
    assert tip_of_2 is not None and "STATE-ONE-AGAIN" in tip_of_2.group(1)


def test_linearization_is_drawn_as_numbered_points_in_order() -> None:
    page = render_html(stale_read_history(), stale_read_result())
    assert '<polyline class="linpath"' in page
    steps = re.findall(r'<g class="pt" data-op="(\d+)"', page)
    assert steps == ["0", "1"]
    xs = [float(x) for x in re.findall(r'<g class="pt"[^>]*><circle cx="([\d.]+)"', page)]
    assert xs == sorted(xs)


def test_unknown_outcome_op_runs_to_the_end_of_the_axis() -> None:
    history = stale_read_history()
    page = render_html(history, stale_read_result())
    info_bar = op_group(page, 3)
    assert "info" in info_bar
    widths = {
        int(m.group(1)): float(m.group(2)) + float(m.group(3))
        for m in re.finditer(
            r'data-op="(\d+)" data-tip="[^"]*"><rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)"',
            page,
        )
    }
    assert widths[3] == max(widths.values())


def test_nemesis_events_and_fault_window_are_drawn() -> None:
    page = render_html(stale_read_history(), stale_read_result())
    assert page.count('<g class="nem"') == 2
    assert page.count('<rect class="fault"') == 1
    assert "partition [n1] [n2 n3]" in page


def test_hostile_values_are_escaped_everywhere() -> None:
    history = history_from_events(
        [
            ev(HOSTILE, "invoke", HOSTILE, HOSTILE_ATTR, key=HOSTILE),
            ev(HOSTILE, "ok", HOSTILE, HOSTILE, key=HOSTILE),
            ev("nemesis", "info", HOSTILE, HOSTILE_ATTR),
        ],
        source=f"{HOSTILE}.jsonl",
    )
    part = PartitionResult(
        key=HOSTILE, verdict="illegal", operation_ids=(0,), longest=(), states=(), unplaced=(0,)
    )
    result = Result("illegal", HOSTILE, (part,), reason=HOSTILE)
    page = render_html(history, result, model_name=HOSTILE)
    assert HOSTILE not in page
    assert HOSTILE_ATTR not in page
    assert "&lt;script&gt;" in page
    assert_only_our_markup(page)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


OUR_TAGS = {
    "html", "head", "meta", "title", "style", "body", "svg", "defs", "pattern", "rect", "g",
    "text", "path", "line", "polyline", "circle", "header", "div", "b", "details", "summary",
    "pre", "p", "span", "i", "label", "select", "option", "section", "h2", "table", "thead",
    "tbody", "tr", "th", "td", "script",
}


def assert_only_our_markup(page: str) -> None:
    """Parsed as a browser would, the page holds only the elements and attributes we emit."""
    parser = _Tags()
    parser.feed(page)
    names = [tag for tag, _ in parser.tags]
    assert set(names) <= OUR_TAGS, set(names) - OUR_TAGS
    assert names.count("script") == 1
    for tag, attrs in parser.tags:
        for name, _ in attrs:
            assert not name.startswith("on"), (tag, name)


def test_hostile_states_are_escaped() -> None:
    history = stale_read_history()
    part = PartitionResult(
        key=None,
        verdict="illegal",
        operation_ids=(0, 1, 2, 3),
        longest=(0, 1),
        states=(HOSTILE, HOSTILE_ATTR),
        unplaced=(2,),
    )
    page = render_html(history, Result("illegal", "register", (part,)))
    assert HOSTILE not in page and HOSTILE_ATTR not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert_only_our_markup(page)


def many_ops_history(n_ops: int, processes: int = 4) -> History:
    events: list[dict[str, Any]] = []
    for i in range(n_ops):
        process = i % processes
        events.append(ev(process, "invoke", "write", i))
        events.append(ev(process, "ok", "write", i))
    return history_from_events(events, source="big.jsonl")


def test_huge_partition_is_windowed_around_the_failure_with_a_note() -> None:
    n_ops = report_html.ops_drawn_per_partition_max * 3
    history = many_ops_history(n_ops)
    culprit = n_ops // 2
    part = PartitionResult(
        key=None,
        verdict="illegal",
        operation_ids=tuple(range(n_ops)),
        longest=tuple(range(culprit)),
        states=tuple(str(i) for i in range(culprit)),
        unplaced=(culprit,),
    )
    page = render_html(history, Result("illegal", "register", (part,)))
    assert page.count('<g class="op') == report_html.ops_drawn_per_partition_max
    assert "first" in op_group(page, culprit)
    assert f"of {n_ops:,} of this partition" in page


def test_many_partitions_failing_first_and_capped_with_a_note() -> None:
    n_parts = report_html.partitions_drawn_max + 20
    history = many_ops_history(n_parts, processes=2)
    parts = [
        PartitionResult(key=f"k{i}", verdict="ok", operation_ids=(i,), longest=(i,), states=("s",))
        for i in range(n_parts - 1)
    ]
    bad = PartitionResult(
        key="bad-key", verdict="illegal", operation_ids=(n_parts - 1,), unplaced=(n_parts - 1,)
    )
    page = render_html(history, Result("illegal", "kv", (*parts, bad)))
    sections = re.findall(r'<section class="part" id="(part-\d+)"( hidden)?>', page)
    assert len(sections) == report_html.partitions_drawn_max
    assert sections[0] == ("part-0", "")  # the first one is visible
    assert all(hidden for _, hidden in sections[1:])
    first_section = page[page.index('id="part-0"') : page.index('id="part-1"')]
    assert "key &quot;bad-key&quot;" in first_section
    assert "20 more partitions not drawn (20 ok)" in page
    assert '<select id="pick">' in page


def test_ok_result_renders_without_failure_markers() -> None:
    history = stale_read_history()
    part = PartitionResult(
        key=None, verdict="ok", operation_ids=(0, 1, 3), longest=(0, 1, 3), states=("1", "1", "2")
    )
    page = render_html(history, Result("ok", "register", (part,)))
    assert "Linearizable" in page
    classes = " ".join(re.findall(r'<g class="(op[^"]*)"', page)).split()
    assert classes.count("op") == 3
    assert classes.count("lin") == 3
    assert "bad" not in classes and "first" not in classes
    assert '<line class="stuck"' not in page


def test_empty_history_renders_a_note() -> None:
    history = history_from_events([], source="empty.jsonl")
    page = render_html(history, Result("ok", "register", ()))
    assert "has no client operations" in page


def test_write_html_writes_utf8_file(tmp_path: Path) -> None:
    target = write_html(stale_read_history(), stale_read_result(), tmp_path / "r.html")
    text = target.read_text(encoding="utf-8")
    assert text == render_html(stale_read_history(), stale_read_result())


@pytest.mark.parametrize("verdict", ["ok", "illegal", "unknown"])
def test_header_states_the_verdict(verdict: str) -> None:
    result = Result(verdict, "register", (), reason="deadline of 1 s reached")  # type: ignore[arg-type]
    page = render_html(stale_read_history(), result)
    assert f'<header class="v-{verdict}">' in page
    assert "deadline of 1 s reached" in page


# --- the page and the text tell the same story about a real search result -------------------


def _stuck_history() -> History:
    """p0 writes 1; p1 reads 4 (the culprit); p2's cas [5 6] and p3's unknown write of 7 could
    go before it but do not fit; p4's write of 4 is invoked after the read returned."""
    return history_from_events(
        [
            ev(0, "invoke", "write", 1), ev(0, "ok", "write", 1),
            ev(2, "invoke", "cas", [5, 6]), ev(3, "invoke", "write", 7),
            ev(1, "invoke", "read"), ev(1, "ok", "read", 4),
            ev(2, "ok", "cas", [5, 6]), ev(3, "info", "write", 7),
            ev(4, "invoke", "write", 4), ev(4, "ok", "write", 4),
        ],
        source="stuck.jsonl",
    )


def _checked() -> tuple[History, Result, str, str]:
    from lincheck.models import get_model
    from lincheck.report_text import explain
    from lincheck.search import check

    history = _stuck_history()
    model = get_model("cas-register")
    result = check(history, model)
    return history, result, render_html(history, result, model=model), explain(
        history, result, model=model)


def test_the_highlighted_op_is_the_culprit_the_text_names() -> None:
    history, result, page, text = _checked()
    failure = result.first_failure()
    assert failure is not None
    culprit = failure.unplaced[0]
    assert "first" in op_group(page, culprit)
    assert re.findall(r'<g class="op[^"]*\bfirst\b[^"]*" data-op="(\d+)"', page) == [str(culprit)]
    marked = next(line for line in text.splitlines() if ">>>" in line)
    op = history.operations[culprit]
    assert f"process {op.process}" in marked and "read → 4" in marked
    why = next(line for line in text.splitlines() if line.startswith("  Why: "))
    reason = why[len("  Why: "):].split(";")[0]
    assert reason == "read returned 4 but the state was 1"
    header = page[: page.index("</header>")]
    assert "process 1&#x27;s read → 4 (lines 5–6) could not be placed: " + reason in header


def test_other_candidates_are_outlined_and_say_why_on_hover() -> None:
    _, _, page, _ = _checked()
    cas_bar = op_group(page, 1)
    assert "cand" in cas_bar.split('"')[1].split() and "first" not in cas_bar
    assert "why: cas expected 5, but the state was 1" in cas_bar
    info_bar = op_group(page, 2)
    assert "cand" in info_bar and "outcome unknown: it may take effect here (state 7)" in info_bar
    later_bar = op_group(page, 4)
    assert "cand" not in later_bar.split('"')[1].split()
    assert "invoked after the first one returned: it must come later" in later_bar
    assert 'class="sw cand"' in page  # the legend explains the orange outline


def test_step_table_lists_each_candidate_with_its_reason() -> None:
    _, _, page, _ = _checked()
    table = page[page.index('<details class="steps"'):]
    assert "could not be placed (first): read returned 4 but the state was 1" in table
    assert "could go next, but: cas expected 5, but the state was 1" in table
    assert "1 more completed operation was invoked after the first one returned" in table
