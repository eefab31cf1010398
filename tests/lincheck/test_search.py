"""The search: three-valued verdicts, partial linearizations, partitions, deadline, pruning."""

from __future__ import annotations

from typing import Any

from lincheck.brute import brute_force_check
from lincheck.formats import history_from_events
from lincheck.history import History, Operation
from lincheck.linearize import MemoBudget, Partition
from lincheck.models import Model, get_model
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


# --- what an illegal result says: the longest prefix, the culprit, the candidates -----------

# Shrunk from a Jepsen-style cas-register history (initial 0) on which the search used to
# report 3 steps: a branch point resumed with a stale copy of the best length and overwrote a
# longer prefix found deeper, and prefixes ending where the walk gave up were never counted.
# Six steps exist: both writes of 3, write 0, write 1, the unknown cas 1→0 and the read of 3;
# only the read of 99 cannot be placed.
LONGEST_REGRESSION = (
    (4, "invoke", "write", 0), (3, "invoke", "write", 3), (3, "ok", "write", 3),
    (4, "ok", "write", 0), (1, "invoke", "cas", [1, 0]), (4, "invoke", "write", 1),
    (1, "info", "cas", [1, 0]), (4, "ok", "write", 1), (4, "invoke", "write", 3),
    (0, "invoke", "read", None), (4, "ok", "write", 3), (0, "ok", "read", 3),
    (7, "invoke", "read", None), (7, "ok", "read", 99),
)


def test_longest_is_the_deepest_prefix_the_search_saw() -> None:
    result = check(h(*LONGEST_REGRESSION), get_model("cas-register", 0))
    failure = result.first_failure()
    assert failure is not None
    # Every completed operation but the read of 99; the crashed cas to 0 (a value nothing
    # reads) is left out of the search, so it is in no prefix.
    assert failure.longest_searched == 5
    assert len(failure.longest) == 5 and len(failure.states) == 5
    assert 2 not in failure.longest
    assert failure.unplaced == (6,)  # the read of 99


def test_longest_counts_reads_placed_before_the_walk_gives_up() -> None:
    hist = h((2, "invoke", "read", None), (2, "ok", "read", 0),
             (3, "invoke", "read", None), (3, "ok", "read", 3))
    failure = check(hist, get_model("cas-register", 0)).first_failure()
    assert failure is not None
    assert failure.longest == (0,) and failure.longest_searched == 1
    assert failure.unplaced == (1,)


def test_culprit_is_the_left_out_completed_op_that_returned_first() -> None:
    # The write of 1 is over before the read is called; the write of 2 is concurrent with
    # the read and returns after it. The read of 3 is the one that returned first.
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (1, "invoke", "read", None), (2, "invoke", "write", 2),
             (1, "ok", "read", 3), (2, "ok", "write", 2))
    failure = check(hist, get_model("register")).first_failure()
    assert failure is not None
    assert failure.unplaced[0] == 1
    assert failure.candidates[0].op_id == 1 and failure.candidates[0].outcome == "rejected"
    # Greedy extension: write 2 fits after write 1, so the prefix is two steps long.
    assert failure.longest == (0, 2) and failure.states == ("1", "2")
    # The read could go after step 1 already (its window), and is rejected there too.
    assert failure.candidates[0].after_step == 1 and failure.candidates[0].read_only


def test_candidates_are_the_ops_invoked_before_the_culprit_returned() -> None:
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (1, "invoke", "cas", [5, 6]), (2, "invoke", "write", 7),
             (3, "invoke", "read", None), (3, "ok", "read", 4),
             (1, "ok", "cas", [5, 6]), (2, "info", "write", 7),
             (4, "invoke", "write", 4), (4, "ok", "write", 4))
    failure = check(hist, get_model("cas-register")).first_failure()
    assert failure is not None
    assert failure.longest == (0,)
    by_id = {c.op_id: c.outcome for c in failure.candidates}
    # read → 4 (culprit), the cas expecting 5, and the unknown write of 7, which may happen
    # but after which nothing completed fits. The write of 4 was invoked after the read
    # returned: it must come later, so it is no candidate.
    assert failure.candidates[0].op_id == 3
    assert by_id == {3: "rejected", 1: "rejected", 2: "unhelpful"}
    unhelpful = next(c for c in failure.candidates if c.op_id == 2)
    assert unhelpful.state_after == "7"
    assert failure.unplaced == (3, 1, 4)


def test_memo_limit_gives_unknown_with_a_named_reason() -> None:
    result = check(_hard_history(12), get_model("kv"), memo_entries_max=200)
    assert result.verdict == "unknown"
    assert "memo_entries_max" in result.reason and "key 'k'" in result.reason
    assert "200" in result.reason
    (part,) = result.partitions
    assert "memo_entries_max" in part.reason


def _put_among_appends(key: str, seen: str, n: int = 6) -> list[tuple[Any, ...]]:
    """A put of "z" among ``n`` concurrent appends, then a get: linearizable for a ``seen``
    of "z" and appends after it, but only after some wrong orders have failed."""
    rows: list[tuple[Any, ...]] = [(p, "invoke", "append", f"<{p}>", key) for p in range(n)]
    rows += [(n, "invoke", "put", "z", key), (n, "ok", "put", "z", key)]
    rows += [(p, "ok", "append", f"<{p}>", key) for p in range(n)]
    rows += [(n + 1, "invoke", "get", None, key), (n + 1, "ok", "get", seen, key)]
    return rows


def test_memo_entries_are_given_back_when_a_partition_finishes() -> None:
    from lincheck import search

    model = get_model("kv")
    ((key, ops),) = model.partition(_hard_history(6).operations)  # type: ignore[misc]
    budget = MemoBudget(10**6)
    job = search._Job(key, ops, model, None, budget)
    held_max = 0
    while job.advance(1) is None:
        held_max = max(held_max, budget.entries)
    assert job.verdict == "illegal"
    assert held_max > 100  # the search did hold entries while it ran ...
    assert budget.entries == 0 and job.search.memo_entries == 0  # ... and gave them all back


def test_memo_limit_counts_only_live_entries() -> None:
    # One key alone needs a few hundred entries at most; twenty keys checked in turn must not
    # add up against a limit that one key fits in.
    one = _put_among_appends("a", "z<5><3><1>")
    assert check(h(*one), get_model("kv"), memo_entries_max=1000).verdict == "ok"
    rows = [row for k in range(20) for row in _put_among_appends(f"k{k}", "z<5><3><1>")]
    result = check(h(*rows), get_model("kv"), memo_entries_max=1000, parallel=False)
    assert result.verdict == "ok", result.reason


def test_memo_limit_in_one_partition_does_not_hide_an_illegal_one() -> None:
    rows: list[tuple[Any, ...]] = [(p, "invoke", "append", f"<{p}>", "k") for p in range(12)]
    rows += [(12, "invoke", "put", "z", "k"), (12, "ok", "put", "z", "k")]
    rows += [(p, "ok", "append", f"<{p}>", "k") for p in range(12)]
    rows += [(13, "invoke", "get", None, "k"), (13, "ok", "get", "nope", "k")]
    rows += [(20, "invoke", "put", "a", "j"), (20, "ok", "put", "a", "j"),
             (21, "invoke", "get", None, "j"), (21, "ok", "get", "b", "j")]
    result = check(h(*rows), get_model("kv"), memo_entries_max=200, parallel=False)
    assert result.verdict == "illegal"
    failure = result.first_failure()
    assert failure is not None and failure.key == "j"
    hard_part = next(p for p in result.partitions if p.key == "k")
    assert hard_part.verdict == "unknown" and "memo_entries_max" in hard_part.reason


def test_memo_entries_max_must_be_positive() -> None:
    import pytest

    with pytest.raises(ValueError, match="memo_entries_max"):
        check(STALE_READ, get_model("register"), memo_entries_max=0)


def test_running_out_of_memory_is_unknown_with_a_reason_not_a_crash() -> None:
    def step(state: Any, op: Operation) -> Any:
        raise MemoryError

    model = Model("greedy", lambda: 0, step, frozenset({"write"}))
    history = history_from_events([
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
    ])
    result = check(history, model)
    assert result.verdict == "unknown"
    assert "ran out of memory" in result.reason


def test_crashed_writes_of_values_nobody_observes_are_left_out_of_the_search() -> None:
    rows = [(0, "invoke", "write", 5), (0, "info", "write", 5),  # 5: never read
            (1, "invoke", "write", 7), (1, "info", "write", 7),  # 7: read below
            (2, "invoke", "cas", [7, 8]), (2, "info", "cas", [7, 8]),  # 8: never read
            (3, "invoke", "read", None), (3, "ok", "read", 7)]
    hist = h(*rows)
    searched = Partition(hist.operations, get_model("cas-register"), None)
    assert [op.id for op in searched.ops] == [1, 3]
    assert check(hist, get_model("cas-register")).verdict == "ok"


def test_a_crashed_write_is_kept_when_a_failed_cas_observed_the_register() -> None:
    # write 1 crashed; a cas saw the value was not 0 (the initial): only write 1 explains it.
    hist = h((0, "invoke", "write", 1), (0, "info", "write", 1),
             (1, "invoke", "cas", [0, 5]), (1, "ok", "cas", False))
    assert check(hist, get_model("cas-register", 0)).verdict == "ok"


# --- a value someone still needs is never overwritten for good (ValueWatch.value_lost) ------------


def _search_verdict(hist: History, model: str = "cas-register") -> str:
    """The search's own verdict (the zone algorithm would decide some of these first)."""
    return Partition(hist.operations, get_model(model), None).run()[0]


def test_an_overwritten_value_that_a_later_write_brings_back_is_not_lost() -> None:
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (1, "invoke", "write", 2), (1, "ok", "write", 2),
             (2, "invoke", "write", 1), (2, "ok", "write", 1),
             (3, "invoke", "read", None), (3, "ok", "read", 1))
    assert _search_verdict(hist) == "ok" == brute_force_check(hist, get_model("cas-register"))


def test_an_overwritten_value_that_an_open_write_may_bring_back_is_not_lost() -> None:
    # Write 2 must go between the two writes of 1, while the second one is still open.
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (2, "invoke", "write", 1),
             (1, "invoke", "write", 2), (1, "ok", "write", 2),
             (2, "ok", "write", 1),
             (3, "invoke", "read", None), (3, "ok", "read", 1))
    assert _search_verdict(hist) == "ok" == brute_force_check(hist, get_model("cas-register"))


def test_an_overwritten_value_that_a_crashed_write_may_bring_back_is_not_lost() -> None:
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (2, "invoke", "write", 1), (2, "info", "write", 1),
             (1, "invoke", "write", 2), (1, "ok", "write", 2),
             (3, "invoke", "cas", [1, 3]), (3, "ok", "cas", [1, 3]))
    assert _search_verdict(hist) == "ok" == brute_force_check(hist, get_model("cas-register"))


def test_a_value_overwritten_for_good_ends_the_branch_where_it_is_overwritten() -> None:
    """A stale read late in a 20-process history is refuted where its value is overwritten,
    not where the read comes: without the rule the search walks about 200,000 nodes."""
    import importlib.util
    from pathlib import Path

    bench = Path(__file__).resolve().parents[2] / "bench" / "lincheck_vs_porcupine.py"
    spec = importlib.util.spec_from_file_location("lincheck_vs_porcupine_gen", bench)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    events = generator.generate_cas_history(20, 500, 5, True, seed=4)
    search = Partition(history_from_events(events).operations, get_model("cas-register"), None)
    assert search.run()[0] == "illegal"
    assert search.nodes < 60_000


def test_a_crashed_cas_alone_writing_a_value_someone_read_needs_its_expected_value() -> None:
    """The crashed cas must have happened (nothing else writes 3), so 2 must still come."""
    hist = h((0, "invoke", "write", 1), (0, "ok", "write", 1),
             (1, "invoke", "cas", [1, 2]), (1, "info", "cas", [1, 2]),
             (2, "invoke", "cas", [2, 3]), (2, "info", "cas", [2, 3]),
             (3, "invoke", "read", None), (3, "ok", "read", 3))
    search = Partition(hist.operations, get_model("cas-register"), None)
    by_id = dict(zip((op.id for op in search.ops), search.needs or [], strict=True))
    assert (by_id[1], by_id[2], by_id[3]) == (1, 2, 3)  # up the chain: 3 needs 2 needs 1
    assert search.run()[0] == "ok" == brute_force_check(hist, get_model("cas-register"))


def test_a_crashed_cas_needs_nothing_when_another_op_may_write_its_value() -> None:
    hist = h((1, "invoke", "cas", [1, 2]), (1, "info", "cas", [1, 2]),
             (2, "invoke", "write", 2), (2, "info", "write", 2),
             (3, "invoke", "read", None), (3, "ok", "read", 2))
    search = Partition(hist.operations, get_model("cas-register", 1), None)
    by_id = dict(zip((op.id for op in search.ops), search.needs or [], strict=True))
    assert by_id[0] != 1 and by_id[2] == 2  # the write of 2 may do it: the cas need not
    assert search.run()[0] == "ok" == brute_force_check(hist, get_model("cas-register", 1))
