"""Malformed histories are rejected with one line naming the source and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from lincheck.formats import parse_history, read_history
from lincheck.history import HistoryError
from lincheck.models import get_model
from lincheck.validate import validate_functions

W0 = '{"process": 0, "type": "invoke", "f": "write", "value": 1}'
W0_OK = '{"process": 0, "type": "ok", "f": "write", "value": 1}'


def _error(text: str, fmt: str = "jsonl") -> HistoryError:
    with pytest.raises(HistoryError) as info:
        parse_history(text, fmt, "h.txt")
    return info.value


def _assert_names_line(err: HistoryError, line: int, words: str) -> None:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"h.txt:{line}: "), text
    assert err.line == line
    assert words in text, text


def test_process_invoking_while_its_operation_is_open_is_rejected() -> None:
    err = _error("\n".join([W0, W0]))
    _assert_names_line(err, 2, "still open")


def test_completion_without_invocation_is_rejected() -> None:
    _assert_names_line(_error(W0_OK), 1, "no open invocation")


def test_unknown_event_type_is_rejected() -> None:
    err = _error(W0 + '\n{"process": 0, "type": "done", "f": "write"}')
    _assert_names_line(err, 2, "unknown type")


def test_unknown_event_type_in_edn_is_rejected() -> None:
    err = _error("{:process 0, :type :invoke, :f :read}\n{:process 0, :type :maybe, :f :read}",
                 "edn")
    _assert_names_line(err, 2, "unknown type")


def test_unknown_event_type_in_etcd_log_is_rejected() -> None:
    err = _error("INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
                 "INFO  jepsen.util - 0\t:done\t:read\tnil", "porcupine-etcd")
    _assert_names_line(err, 2, "unknown type")


def test_completion_with_another_function_is_rejected() -> None:
    err = _error(W0 + '\n{"process": 0, "type": "ok", "f": "read", "value": 1}')
    _assert_names_line(err, 2, "differs")


def test_unknown_function_for_the_model_is_rejected() -> None:
    h = parse_history(W0 + "\n" + W0_OK + '\n{"process": 1, "type": "invoke", "f": "push"}',
                      "jsonl", "h.txt")
    with pytest.raises(HistoryError) as info:
        validate_functions(h, get_model("cas-register"))
    _assert_names_line(info.value, 3, "unknown function 'push'")


def test_failed_operation_of_unknown_function_is_still_rejected() -> None:
    h = parse_history('{"process": 1, "type": "invoke", "f": "push"}\n'
                      '{"process": 1, "type": "fail", "f": "push"}', "jsonl", "h.txt")
    with pytest.raises(HistoryError) as info:
        validate_functions(h, get_model("register"))
    _assert_names_line(info.value, 1, "unknown function")


def test_badly_shaped_value_for_the_model_is_rejected() -> None:
    h = parse_history('{"process": 1, "type": "invoke", "f": "cas", "value": 3}', "jsonl",
                      "h.txt")
    with pytest.raises(HistoryError) as info:
        validate_functions(h, get_model("cas-register"))
    _assert_names_line(info.value, 1, "cas value")


def test_bad_json_is_rejected() -> None:
    _assert_names_line(_error(W0 + "\n{not json"), 2, "bad JSON")


def test_json_line_that_is_not_an_object_is_rejected() -> None:
    _assert_names_line(_error(W0 + "\n[1, 2]"), 2, "expected a map")


def test_missing_required_key_is_rejected() -> None:
    _assert_names_line(_error('{"process": 0, "f": "read"}'), 1, "missing 'type'")


@pytest.mark.parametrize(("line", "words"), [
    ('{"process": true, "type": "invoke", "f": "read"}', "process"),
    ('{"process": 0, "type": "invoke", "f": ""}', "f must be"),
    ('{"process": 0, "type": "invoke", "f": "read", "time": "noon"}', "time"),
    ('{"process": 0, "type": "invoke", "f": "read", "index": -1}', "index"),
])
def test_bad_field_values_are_rejected(line: str, words: str) -> None:
    _assert_names_line(_error(line), 1, words)


def test_index_that_does_not_increase_is_rejected() -> None:
    text = ('{"process": 0, "type": "invoke", "f": "read", "index": 5}\n'
            '{"process": 0, "type": "ok", "f": "read", "index": 5}')
    _assert_names_line(_error(text), 2, "does not increase")


def test_bad_edn_is_rejected() -> None:
    err = _error("{:process 0, :type :invoke, :f :read}\n{:process 0 :type", "edn")
    _assert_names_line(err, 2, "bad EDN")


def test_bad_edn_inside_a_vector_names_its_line() -> None:
    err = _error("[{:process 0, :type :invoke, :f :read}\n\n {:process 0 :type :ok :f}]", "edn")
    _assert_names_line(err, 3, "bad EDN")


def test_unparsable_etcd_log_line_is_rejected() -> None:
    err = _error("INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - garbage",
                 "porcupine-etcd")
    _assert_names_line(err, 2, "unparsable")


def test_read_history_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(W0 + "\n" + W0 + "\n")
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert str(info.value).startswith(f"{path}:2: ")


def test_nemesis_events_are_not_paired_strictly() -> None:
    h = parse_history('{"process": "nemesis", "type": "info", "f": "start"}\n'
                      '{"process": "nemesis", "type": "info", "f": "stop"}', "jsonl")
    assert h.operations == [] and len(h.nemesis) == 2


def test_invocation_never_completed_counts_as_info() -> None:
    h = parse_history(W0, "jsonl")
    assert h.operations[0].status == "info" and h.operations[0].ret is None


def test_txn_completion_with_other_micro_operations_than_its_invocation_is_refused() -> None:
    """A completed transaction must be the invoked one with its reads filled in: a completion
    that turns a read into a write is not a record of that transaction."""
    text = "\n".join([
        '{"process": 0, "type": "invoke", "f": "txn", "value": [["r", "x", null]]}',
        '{"process": 0, "type": "ok", "f": "txn", "value": [["w", "x", 1]]}',
    ])
    history = parse_history(text, "jsonl", source="h.jsonl")
    with pytest.raises(HistoryError, match=r"h\.jsonl:\d+: .*does not match its invocation"):
        validate_functions(history, get_model("multi-register"))
