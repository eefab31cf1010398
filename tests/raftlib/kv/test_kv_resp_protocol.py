"""RESP2 parsing and serialization: incremental input, pipelining, limits, hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftlib.resp import (
    ErrorReply,
    Reply,
    RespLimits,
    RespParser,
    RespProtocolError,
    SimpleString,
    encode,
    encode_command,
)


def commands(data: bytes, limits: RespLimits | None = None) -> list[list[bytes]]:
    parser = RespParser(limits)
    parser.feed(data)
    out = []
    while (cmd := parser.next_command()) is not None:
        out.append(cmd)
    return out


def test_commands_arrive_whole_even_when_fed_one_byte_at_a_time() -> None:
    wire = encode_command([b"SET", b"k", b"v\r\nx"]) + b"PING\r\n" + encode_command([b"GET", b""])
    parser = RespParser()
    got = []
    for i in range(len(wire)):
        parser.feed(wire[i : i + 1])
        while (cmd := parser.next_command()) is not None:
            got.append(cmd)
    assert got == [[b"SET", b"k", b"v\r\nx"], [b"PING"], [b"GET", b""]]


def test_empty_arrays_and_blank_inline_lines_are_skipped() -> None:
    assert commands(b"*0\r\n\r\nPING\r\n") == [[b"PING"]]


@pytest.mark.parametrize(
    ("wire", "needle"),
    [
        (b"*1\r\n$3\r\nabcXY", "not followed by CRLF"),
        (b"*x\r\n", "invalid array length"),
        (b"*1\r\n:5\r\n", "array of bulk strings"),
        (b"*1\r\n$-5\r\n", "bulk string of -5"),
        (b"*1\r\n$100\r\n", "bulk_bytes_max"),
        (b"*100\r\n", "array_items_max"),
        (b"*1\r\n?\r\n", "unexpected type byte"),
        (b"A" * 200, "line_bytes_max"),
    ],
)
def test_malformed_or_oversized_input_raises_a_protocol_error_naming_the_problem(
    wire: bytes, needle: str
) -> None:
    limits = RespLimits(bulk_bytes_max=50, array_items_max=10, line_bytes_max=100)
    with pytest.raises(RespProtocolError, match=needle):
        commands(wire, limits)


def test_an_oversized_bulk_is_refused_before_its_payload_is_buffered() -> None:
    parser = RespParser(RespLimits(bulk_bytes_max=10))
    parser.feed(b"*1\r\n$999999999\r\n")
    with pytest.raises(RespProtocolError, match="byte 4"):
        parser.next_command()


replies = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=20)
    | st.text(max_size=10).map(lambda t: SimpleString(t.replace("\r", "").replace("\n", "")))
    | st.text(max_size=10).map(lambda t: ErrorReply("ERR " + t.replace("\r", "")
                                                    .replace("\n", ""))),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


@given(replies)
def test_every_reply_survives_a_round_trip(value: Reply) -> None:
    parser = RespParser()
    parser.feed(encode(value))
    assert parser.next_value() == (value,)
    assert parser.buffered_bytes == 0


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_commands_or_a_protocol_error_never_a_crash(data: bytes) -> None:
    parser = RespParser(RespLimits(bulk_bytes_max=64, array_items_max=16, line_bytes_max=64))
    parser.feed(data)
    try:
        while (cmd := parser.next_command()) is not None:
            assert cmd and all(isinstance(a, bytes) for a in cmd)
    except RespProtocolError:
        pass
