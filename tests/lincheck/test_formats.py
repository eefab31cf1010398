"""History readers and the writer: JSON Lines, Jepsen EDN, porcupine-etcd, porcupine-kv."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from lincheck import edn
from lincheck.formats import (
    FORMATS,
    detect_format,
    history_from_events,
    parse_history,
    read_history,
    write_jsonl,
)
from lincheck.history import HistoryError

JSONL = """{"process": 0, "type": "invoke", "f": "write", "value": 3, "time": 0.5}
{"process": 1, "type": "invoke", "f": "read", "value": null}

{"process": 0, "type": "ok", "f": "write", "value": 3, "time": 1.5}
{"process": 1, "type": "ok", "f": "read", "value": 3}
{"process": "nemesis", "type": "info", "f": "start", "value": null}
"""

EDN_VECTOR = """[{:process 0, :type :invoke, :f :write, :value 1, :time 1000000000}
 {:process 0, :type :ok, :f :write, :value 1}
 ; a comment
 {:process :nemesis, :type :info, :f :start, :value nil}
 {:process 1, :type :invoke, :f :read, :value nil}
 {:process 1, :type :ok, :f :read, :value nil}
 {:process 2, :type :invoke, :f :cas, :value [1 2]}
 {:process 2, :type :fail, :f :cas, :value [1 2]}
 {:process 3, :type :invoke, :f :write, :value #_ 9 4}
 {:process 3, :type :info, :f :write, :value 4}]
"""

ETCD = """INFO  jepsen.util - 0\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:ok\t:read\tnil
INFO  jepsen.core - something else entirely
INFO  jepsen.util - 1   :invoke :cas    [1 4]
INFO  jepsen.util - 1   :fail   :cas    [1 4]
INFO  jepsen.util - 2\t:invoke\t:read\tnil
INFO  jepsen.util - 2\t:fail\t:read\t:timed-out
INFO  jepsen.util - 3\t:invoke\t:write\t2
INFO  jepsen.util - 3\t:info\t:write\t:timed-out
"""

KV = """{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
{:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}
{:process 1, :type :invoke, :f :get, :key "0", :value nil}
{:process 1, :type :ok, :f :get, :key "0", :value nil}
"""


def test_formats_tuple_lists_every_supported_format() -> None:
    assert FORMATS == ("auto", "jsonl", "edn", "porcupine-etcd", "porcupine-kv")


@pytest.mark.parametrize(("text", "expected"), [
    (JSONL, "jsonl"), (EDN_VECTOR, "edn"), (ETCD, "porcupine-etcd"), (KV, "porcupine-kv"),
    ('{:process 0, :type :invoke, :f :read, :value nil}\n', "edn"), ("", "jsonl")])
def test_detect_format_recognises_each_format(text: str, expected: str) -> None:
    assert detect_format(text) == expected


def test_detect_format_reads_a_path(tmp_path: Path) -> None:
    path = tmp_path / "h.log"
    path.write_text(ETCD)
    assert detect_format(path) == "porcupine-etcd"
    assert detect_format(str(path)) == "porcupine-etcd"


def test_jsonl_pairs_operations_and_keeps_nemesis_apart() -> None:
    h = parse_history(JSONL, "jsonl", "h.jsonl")
    assert [(op.process, op.f, op.input, op.output, op.status) for op in h.operations] == [
        (0, "write", 3, 3, "ok"), (1, "read", None, 3, "ok")]
    assert h.operations[0].call_line == 1 and h.operations[0].ret_line == 4
    assert h.operations[0].call_time == 0.5
    assert [ev.f for ev in h.nemesis] == ["start"]
    assert len(h.events) == 5 and h.source == "h.jsonl"


def test_edn_vector_applies_jepsen_semantics() -> None:
    h = parse_history(EDN_VECTOR, "edn", "h.edn")
    ops = {op.process: op for op in h.operations}
    assert ops[0].status == "ok" and ops[0].output == 1 and ops[0].call_time == 1.0
    # Knossos' rule: a read of nil constrains nothing, so its outcome is unknown.
    assert ops[1].status == "info" and ops[1].ret is not None
    assert 2 not in ops  # a failed cas did not happen
    assert ops[3].status == "info" and ops[3].ret is None and ops[3].input == 4
    assert [ev.process for ev in h.nemesis] == ["nemesis"]
    assert ops[1].call_line == 5


def test_edn_one_map_per_line_reads_like_a_vector() -> None:
    lines = "\n".join(line.strip().lstrip("[").rstrip("]")
                      for line in EDN_VECTOR.splitlines() if not line.strip().startswith(";"))
    def shape(text: str) -> list[tuple[object, ...]]:
        return [(op.process, op.f, op.input, op.output, op.status)
                for op in parse_history(text, "edn").operations]
    assert shape(lines) == shape(EDN_VECTOR)
    assert len(shape(lines)) == 3


def test_porcupine_etcd_semantics_differ_from_jepsen_edn() -> None:
    h = parse_history(ETCD, "porcupine-etcd", "etcd.log")
    ops = {op.process: op for op in h.operations}
    assert ops[0].status == "ok" and ops[0].output is None  # a real read of the absent key
    assert ops[1].status == "ok" and ops[1].output is False  # observed failed comparison
    assert ops[1].input == [1, 4]
    assert ops[2].status == "info"  # timed-out read: unknown
    assert ops[3].status == "info" and ops[3].input == 2
    assert ops[1].call_line == 4


def test_porcupine_kv_keeps_keys_and_nil_values() -> None:
    h = parse_history(KV, "porcupine-kv")
    assert [(op.f, op.key, op.output, op.status) for op in h.operations] == [
        ("append", "0", "x 0 0 y", "ok"), ("get", "0", None, "ok")]


def test_history_from_events_accepts_mappings_and_events() -> None:
    h = history_from_events([
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
    ])
    again = history_from_events(h.events)
    assert again.operations == h.operations


def test_write_jsonl_round_trips_every_format(tmp_path: Path) -> None:
    for text, fmt in ((JSONL, "jsonl"), (EDN_VECTOR, "edn"), (ETCD, "porcupine-etcd"),
                      (KV, "porcupine-kv")):
        h = parse_history(text, fmt)
        out = tmp_path / f"{fmt}.jsonl"
        write_jsonl(h, out)
        back = read_history(out, "jsonl")
        # Completed info reads come back as plain info: compare what the checker uses.
        def key(op: object) -> tuple[object, ...]:
            return (op.process, op.f, op.input, op.status,  # type: ignore[attr-defined]
                    op.output if op.status == "ok" else None,  # type: ignore[attr-defined]
                    op.key)  # type: ignore[attr-defined]
        assert [key(op) for op in back.operations] == [key(op) for op in h.operations], fmt
        assert len(back.nemesis) == len(h.nemesis)


def test_write_jsonl_writes_events_to_an_open_file() -> None:
    h = parse_history(JSONL, "jsonl")
    buf = io.StringIO()
    write_jsonl(h.events, buf)
    back = parse_history(buf.getvalue(), "jsonl")
    assert [(op.process, op.f, op.input, op.output, op.call_time) for op in back.operations] == [
        (op.process, op.f, op.input, op.output, op.call_time) for op in h.operations]


def test_empty_history_has_no_operations_in_any_format() -> None:
    for fmt in FORMATS:
        assert parse_history("", fmt).operations == []


def test_unknown_format_name_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        parse_history("", "xml")


def test_unreadable_file_is_a_history_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(HistoryError, match=r"missing\.jsonl"):
        read_history(missing)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HistoryError, match="not UTF-8"):
        read_history(binary)


def test_edn_reader_reads_the_jepsen_subset() -> None:
    value = edn.read_one(
        '{:a [1 -2 3.5 4N 5M] :b #{:x} :c (nil true false) :d "q\\"\\n" :e sym '
        ':f #inst "2020" :g \\a}')
    assert value == {"a": [1, -2, 3.5, 4, 5.0], "b": frozenset({"x"}),
                     "c": [None, True, False], "d": 'q"\n', "e": "sym", "f": "2020", "g": "a"}
    assert isinstance(value["b"], frozenset)
    assert repr(edn.Keyword("x")) == ":x"


@pytest.mark.parametrize("bad", ["{:a}", "[1 2", "(]", '"open', "#?x", "1.2.3", ":"])
def test_edn_reader_rejects_malformed_input_with_a_line(bad: str) -> None:
    with pytest.raises(edn.EdnError) as info:
        edn.read_one("\n" + bad, 1)
    assert info.value.line == 2


def test_edn_reader_refuses_hostile_nesting() -> None:
    with pytest.raises(edn.EdnError, match="nesting"):
        edn.read_one("[" * 10_000)


@pytest.mark.parametrize("value", ["\x85", "a\u2028b", "\u2029"])
def test_jsonl_values_with_unicode_line_breaks_round_trip(value: str) -> None:
    """JSON Lines split at "\\n" only; U+0085 and U+2028 inside a string are data (found by
    the Hypothesis search profile)."""
    text = (f'{{"process": 0, "type": "invoke", "f": "write", "value": {json.dumps(value)}}}\n'
            f'{{"process": 0, "type": "ok", "f": "write", "value": {json.dumps(value)}}}\n')
    text = text.replace(json.dumps(value), '"' + value + '"')  # raw, as ensure_ascii=False writes
    h = parse_history(text, "jsonl")
    buf = io.StringIO()
    write_jsonl(h.events, buf)
    back = parse_history(buf.getvalue(), "jsonl")
    assert [op.input for op in back.operations] == [value]
