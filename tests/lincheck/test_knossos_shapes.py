"""Every history shape Knossos reads: a vector or a list of op maps, one map per line, tuples."""

from __future__ import annotations

import pytest
from lincheck.formats import detect_format, parse_history
from lincheck.history import HistoryError
from lincheck.models import get_model
from lincheck.search import check

# The shape of Knossos' cas-register/bad/rethink-fail*.edn: a list of maps, with comments.
EDN_LIST = """({:type :invoke, :f :write, :value 0, :process 0}
 {:type :ok, :f :write, :value 0, :process 0}
 ; the value is 0; then a write of 4 runs concurrently with a read of 3
 {:type :invoke, :f :read, :value nil, :process 1}
 {:type :invoke, :f :write, :value 4, :process 2}
 {:type :ok, :f :read, :value 3, :process 1}
 {:type :ok, :f :write, :value 4, :process 2}
)
"""
EDN_VECTOR = "[" + EDN_LIST.strip()[1:-1] + "]\n"
EDN_LINES = "\n".join(line.strip(" ()") for line in EDN_LIST.splitlines()) + "\n"
# The shape of Knossos' cas-failure.edn: [process type f value] tuples, an error after some.
EDN_TUPLES = """[0 :invoke :write 0]
[0 :ok :write 0]
[:nemesis :info :start "cut off [:n1 #[:n2]]"]
[1 :invoke :read nil]
[2 :invoke :write 4]
[1 :ok :read 3]
[2 :info :write 4 :conn-lost]
"""


@pytest.mark.parametrize("text", [EDN_LIST, EDN_VECTOR, EDN_LINES, EDN_TUPLES],
                         ids=["list", "vector", "map-per-line", "tuples"])
def test_every_knossos_shape_reads_the_same_operations(text: str) -> None:
    history = parse_history(text, "edn", "h.edn")
    ops = [(op.process, op.f, op.input, op.output) for op in history.operations]
    assert ops[:3] == [(0, "write", 0, 0), (1, "read", None, 3), (2, "write", 4, 4 if
                                                                      text != EDN_TUPLES else None)]
    assert detect_format(text) == "edn"
    assert check(history, get_model("cas-register")).verdict == "illegal"


def test_lines_of_a_list_of_maps_are_those_of_each_map() -> None:
    history = parse_history(EDN_LIST, "edn", "h.edn")
    assert [op.call_line for op in history.operations] == [1, 4, 5]
    assert history.operations[1].ret_line == 6


def test_tuples_keep_the_nemesis_apart_and_ignore_the_error() -> None:
    history = parse_history(EDN_TUPLES, "edn", "h.edn")
    assert [ev.f for ev in history.nemesis] == ["start"]
    assert history.operations[2].status == "info"


def test_a_file_of_one_tuple_is_one_event() -> None:
    history = parse_history("[0 :invoke :read nil]\n", "edn", "h.edn")
    assert [(op.process, op.f, op.status) for op in history.operations] == [(0, "read", "info")]


def test_a_list_of_lists_names_the_line_of_the_bad_record() -> None:
    with pytest.raises(HistoryError) as info:
        parse_history("({:process 0 :type :invoke :f :read}\n (1 2))", "edn", "h.edn")
    assert str(info.value).startswith("h.edn:2: expected a map/object, found list")


def test_a_collection_followed_by_more_forms_reads_each_form_as_a_record() -> None:
    with pytest.raises(HistoryError) as info:
        parse_history("[{:process 0 :type :invoke :f :read}]\n{:process 1 :type :invoke :f :read}",
                      "edn", "h.edn")
    assert str(info.value).startswith("h.edn:1: expected a map/object, found list")
