"""Every reader error is one line, whatever text it is given: what it quotes is escaped."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lincheck import edn
from lincheck.formats import FORMATS, parse_history, read_history
from lincheck.history import HistoryError
from lincheck.models import MODELS, get_model
from lincheck.validate import validate_functions

# Every character str.splitlines() breaks a line at: a message holding one spans two lines.
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"

# Text near each format's grammar, so that the readers' deeper error paths are reached, mixed
# with line breaks of every kind.
_EDN_BITS = ("#", "#_", "#{", "#inst ", "\\", "\\u", "\\newline", '"', '"\\', "\\u12", ":",
             "::", "{", "}", "[", "]", "(", ")", ";", ",", " ", "nil", "1N", "2.5M", "-",
             "+1", ":process", ":type", ":invoke", ":ok", ":info", ":fail", ":f", ":read",
             ":write", ":value", ":key", ":index", ":time", "0", "1", "a")
_JSON_BITS = ('{"process": 0, ', '"type": "invoke", ', '"type": "ok", ', '"f": "read"',
              '"f": "write", "value": 1', '"key": "k"', '"index": -1', '"time": "x"', "}",
              "[", "]", "null", '"', "\\", ",")
_ETCD_BITS = ("INFO  jepsen.util - ", "0", "1", "\t", " ", ":invoke", ":ok", ":fail", ":info",
              ":read", ":write", ":cas", "nil", "[1 2]", "#", "\\", "[", "{")
_BITS = _EDN_BITS + _JSON_BITS + _ETCD_BITS + tuple(LINE_BREAKS)

texts = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(_BITS), max_size=30).map("".join),
    st.lists(st.one_of(st.sampled_from(_BITS), st.text(max_size=3)), max_size=20).map("".join),
)

SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def assert_one_line(message: str) -> None:
    found = [c for c in message if c in LINE_BREAKS]
    assert not found, f"line break {found[0]!r} in {message!r}"


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(text=texts)
@example(text="#\n")
@example(text="[#\x85]")
@example(text="[\\a\x0bb]")
@example(text='["\\\n"]')
@example(text="INFO  jepsen.util - 0\t:invoke\t:read\t#\x85")
@example(text="{:process 0 :type :invoke :f :read :value :a\x85b}\n"
              "{:process 0 :type :ok :f :read :value :x}")
def test_every_reader_error_is_one_line(fmt: str, text: str) -> None:
    """A reader accepts the text or refuses it with a HistoryError of one line, naming it."""
    try:
        history = parse_history(text, fmt, "h.txt")
    except HistoryError as error:
        assert_one_line(str(error))
        assert str(error).startswith("h.txt")
        return
    for name in MODELS:
        try:
            validate_functions(history, get_model(name))
        except HistoryError as error:
            assert_one_line(str(error))


@SETTINGS
@given(text=texts)
@example(text="#\n")
def test_every_edn_error_is_one_line(text: str) -> None:
    """The EDN reader's own errors, before the history reader wraps them."""
    try:
        list(edn.read_forms(text))
    except edn.EdnError as error:
        assert_one_line(str(error))


@pytest.mark.parametrize("text", ["#\n", "#\u2028", "\\a\x0bb", '"\\\n"', '"\\\x85"'])
def test_quoted_line_break_in_an_edn_error_is_escaped(text: str) -> None:
    with pytest.raises(edn.EdnError) as info:
        edn.read_one(text)
    assert_one_line(str(info.value))


def test_keyword_holding_a_line_break_reprs_on_one_line() -> None:
    assert repr(edn.Keyword("a\x85b")) == ":a\\x85b"
    assert repr(edn.Keyword("read")) == ":read"


def test_a_file_name_holding_a_line_break_is_escaped_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(HistoryError) as info:
        read_history(tmp_path / "no\nsuch\u2028file")
    assert_one_line(str(info.value))
    assert "no\\nsuch" in str(info.value)
