"""The RESP parser's work is linear in the bytes received, and every byte it holds is within a
named limit (request_bytes_max, unparsed_bytes_max), refused with one error naming it."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftlib.resp.protocol import (
    ARGUMENT_OVERHEAD_BYTES,
    RespLimits,
    RespParser,
    RespProtocolError,
    encode_command,
)


def count_calls(fn: Any) -> int:
    """How many Python and C function calls ``fn()`` makes: a deterministic measure of work
    (a clock would depend on the machine's load)."""
    calls = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return calls


def parse_in_reads(wire: bytes, read_bytes: int, limits: RespLimits | None = None) -> list[
        list[bytes]]:
    parser = RespParser(limits)
    got: list[list[bytes]] = []
    for start in range(0, len(wire), read_bytes):
        parser.feed(wire[start : start + read_bytes])
        while (command := parser.next_command()) is not None:
            got.append(command)
    return got


def test_parsing_a_command_of_many_arguments_is_linear_in_its_bytes_however_it_is_cut() -> None:
    # The old parser restarted a command from its first byte on every read: 65,536 arguments
    # took 1.3 s in 64 KiB reads (quadratic). Work must not depend on how the bytes are cut.
    args = [b"DEL"] + [b"key:%06d" % i for i in range(2047)]
    wire = encode_command(args)
    cut = count_calls(lambda: parse_in_reads(wire, 256))
    reads = -(-len(wire) // 256)
    assert parse_in_reads(wire, 256) == [args]
    # A bounded number of calls per argument and per read (about 16 and 12 today); nothing
    # may scale with the arguments already parsed (re-parsing made this ~2,000,000).
    assert cut <= 20 * len(args) + 20 * reads, (cut, len(args), reads)


def test_a_line_trickling_in_byte_by_byte_is_searched_once_not_from_its_start_each_time(
) -> None:
    limits = RespLimits(line_bytes_max=60_000)
    parser = RespParser(limits)
    line = b"SET k " + b"v" * 50_000 + b"\r\n"
    searched = 0
    real_find = bytearray.find

    class Counting(bytearray):
        def find(self, sub: Any, start: Any = None, end: Any = None) -> int:
            nonlocal searched
            stop = len(self) if end is None else min(end, len(self))
            searched += max(0, stop - (start or 0))
            return real_find(self, sub, start, end)

    parser._buf = Counting()  # observe the searches; nothing else changes
    got = None
    for i in range(len(line)):
        parser.feed(line[i : i + 1])
        got = parser.next_command() or got
    assert got == [b"SET", b"k", b"v" * 50_000]
    assert searched <= 3 * len(line), searched


def test_a_bulk_that_would_cross_request_bytes_max_is_refused_at_its_header() -> None:
    limits = RespLimits(bulk_bytes_max=600, request_bytes_max=1000, line_bytes_max=64)
    parser = RespParser(limits)
    parser.feed(b"*3\r\n$3\r\nDEL\r\n$500\r\n" + b"a" * 500 + b"\r\n$500\r\n")
    with pytest.raises(RespProtocolError, match=r"request_bytes_max is 1000") as caught:
        parser.next_command()
    assert "at byte 521" in str(caught.value)  # the header that crossed it
    assert "\n" not in str(caught.value)


def test_many_small_arguments_are_refused_once_they_add_up_past_request_bytes_max() -> None:
    limits = RespLimits(bulk_bytes_max=64, line_bytes_max=64, request_bytes_max=4096)
    wire = encode_command([b"DEL"] + [b"k" * 10] * 1000)
    with pytest.raises(RespProtocolError, match="request_bytes_max is 4096"):
        parse_in_reads(wire, 100, limits)


def test_input_beyond_unparsed_bytes_max_is_refused_by_feed() -> None:
    limits = RespLimits(bulk_bytes_max=100, line_bytes_max=50, unparsed_bytes_max=200)
    parser = RespParser(limits)
    parser.feed(b"*1\r\n$100\r\n")
    with pytest.raises(RespProtocolError, match="unparsed_bytes_max is 200"):
        parser.feed(b"x" * 250)


@pytest.mark.parametrize(("fields", "needle"), [
    ({"request_bytes_max": 10, "bulk_bytes_max": 100}, "request_bytes_max"),
    ({"unparsed_bytes_max": 10}, "unparsed_bytes_max"),
    ({"array_items_max": 0}, "array_items_max"),
])
def test_inconsistent_limits_are_refused_naming_the_field(
    fields: dict[str, int], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        RespLimits(**fields)


SMALL = RespLimits(bulk_bytes_max=64, array_items_max=32, line_bytes_max=32, depth_max=2,
                   request_bytes_max=512, unparsed_bytes_max=100)


@given(st.lists(st.lists(st.binary(max_size=64), min_size=1, max_size=6), max_size=6),
       st.lists(st.integers(1, 200), min_size=1, max_size=50))
def test_a_legal_stream_read_within_room_bytes_always_fits_and_parses_whole(
    sent: list[list[bytes]], reads: list[int]
) -> None:
    wire = b"".join(encode_command(c) for c in sent)
    parser = RespParser(SMALL)
    got: list[list[bytes]] = []
    offset, n = 0, 0
    while offset < len(wire):
        room = parser.room_bytes()
        assert room >= 1
        size = min(room, reads[n % len(reads)])
        n += 1
        parser.feed(wire[offset : offset + size])
        offset += size
        while (command := parser.next_command()) is not None:
            got.append(command)
        assert parser.buffered_bytes <= SMALL.unparsed_bytes_max
    assert got == sent


@given(st.binary(max_size=3000), st.integers(1, 100))
def test_what_a_parser_holds_never_exceeds_request_plus_unparsed_bytes_max(
    data: bytes, read_bytes: int
) -> None:
    parser = RespParser(SMALL)
    bound = (SMALL.request_bytes_max + SMALL.unparsed_bytes_max
             + SMALL.array_items_max * ARGUMENT_OVERHEAD_BYTES)
    offset = 0
    while offset < len(data):
        size = min(read_bytes, parser.room_bytes())
        try:
            parser.feed(data[offset : offset + size])
            while parser.next_command() is not None:
                pass
        except RespProtocolError as exc:
            assert "\n" not in str(exc)
            return
        offset += size
        assert parser.held_bytes <= bound


def outcome_of(pieces: list[bytes], limits: RespLimits) -> tuple[list[list[bytes]], str]:
    parser = RespParser(limits)
    got: list[list[bytes]] = []
    try:
        for piece in pieces:
            parser.feed(piece)
            while (command := parser.next_command()) is not None:
                got.append(command)
    except RespProtocolError as exc:
        return got, str(exc)
    return got, ""


valid_or_not = st.lists(
    st.one_of(
        st.lists(st.binary(max_size=70), min_size=1, max_size=5).map(encode_command),
        st.sampled_from([b"*1\r\n$-1\r\n", b"*2\r\n$1\r\nx\r\n:1\r\n", b"*1\r\n$+1\r\nx\r\n",
                         b"*1\r\n$ 1\r\nx\r\n", b"*-1\r\n", b"*0\r\n", b"PING\r\n", b"\r\n",
                         b"*1\r\n$1\r\nxy", b"*99\r\n", b"*1\r\n$99999\r\n"]),
        st.binary(max_size=12)),
    max_size=6).map(b"".join)


@given(valid_or_not, st.integers(1, 40))
def test_whole_and_trickled_input_give_the_same_commands_and_the_same_error(
    wire: bytes, read_bytes: int
) -> None:
    # Commands that arrive whole take a one-pass fast path; cut ones the general state
    # machine. Both must agree on every input, valid or not, error message included.
    limits = RespLimits(bulk_bytes_max=64, array_items_max=4, line_bytes_max=32,
                        request_bytes_max=200, unparsed_bytes_max=4096)
    whole = outcome_of([wire], limits)
    cut = outcome_of([wire[i : i + read_bytes] for i in range(0, len(wire), read_bytes)],
                     limits)
    bytewise = outcome_of([wire[i : i + 1] for i in range(len(wire))], limits)
    assert whole == cut == bytewise
