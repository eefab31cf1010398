"""Hostile input to every parser (RESP, wire codec, history formats, NodeConfig, CLI) yields a
value or that parser's own one-line error, never another exception, and memory stays bounded."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lincheck.formats import FORMATS, parse_history, write_jsonl
from lincheck.history import HistoryError

from raftlib.cli import UsageError, parse_peers, parse_serve_args
from raftlib.core.config import setting_names
from raftlib.errors import ConfigError
from raftlib.node import NodeConfig
from raftlib.resp.protocol import RespLimits, RespParser, RespProtocolError, encode_command
from raftlib.transport.codec import CodecError, FrameDecoder

SMALL = RespLimits(bulk_bytes_max=64, array_items_max=8, line_bytes_max=32, depth_max=2)

commands = st.lists(st.lists(st.binary(max_size=64), min_size=1, max_size=8), max_size=8)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[last:point])
        last = point
    return pieces


@given(commands, st.lists(st.integers(0, 10_000), max_size=20))
def test_resp_commands_are_the_same_however_the_stream_is_cut(
    sent: list[list[bytes]], cuts: list[int]
) -> None:
    wire = b"".join(encode_command(c) for c in sent)
    parser = RespParser(SMALL)
    got: list[list[bytes]] = []
    for piece in split(wire, cuts):
        parser.feed(piece)
        while (command := parser.next_command()) is not None:
            got.append(command)
    assert got == sent
    assert parser.buffered_bytes == 0


@given(st.binary(max_size=2000), st.integers(1, 300))
def test_resp_parser_never_buffers_beyond_its_limits(data: bytes, chunk: int) -> None:
    parser = RespParser(SMALL)
    bound = chunk + SMALL.bulk_bytes_max + 2 * SMALL.line_bytes_max + 8
    for start in range(0, len(data), chunk):
        parser.feed(data[start : start + chunk])
        try:
            while parser.next_command() is not None:
                pass
        except RespProtocolError as exc:
            assert "\n" not in str(exc)
            return
        assert parser.buffered_bytes <= bound


@given(st.binary(max_size=3000), st.integers(1, 500))
def test_frame_decoder_never_buffers_more_than_one_frame(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder(max_frame_bytes=256, frame_messages_max=16)
    for start in range(0, len(data), chunk):
        try:
            decoder.feed(data[start : start + chunk])
        except CodecError as exc:
            assert "\n" not in str(exc)
            return
        assert decoder.buffered_bytes() <= 4 + 256


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=5))
jsonl_lines = st.fixed_dictionaries(
    {"process": st.one_of(st.integers(0, 3), st.just("nemesis")),
     "type": st.sampled_from(["invoke", "ok", "fail", "info", "bogus"]),
     "f": st.sampled_from(["read", "write", "cas", ""])},
    optional={"value": json_scalars, "key": json_scalars, "time": st.floats(allow_nan=True),
              "index": st.integers(-2, 50)},
)


@pytest.mark.parametrize("fmt", FORMATS)
@given(text=st.text(max_size=300))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_history_formats_give_a_history_or_a_one_line_history_error(
    fmt: str, text: str
) -> None:
    try:
        parse_history(text, fmt)
    except HistoryError as exc:
        assert "\n" not in str(exc)


@given(st.lists(jsonl_lines, max_size=12))
def test_jsonl_histories_that_parse_round_trip_through_write_jsonl(
    records: list[dict[str, Any]],
) -> None:
    import io
    import json

    text = "\n".join(json.dumps(r) for r in records)
    try:
        history = parse_history(text, "jsonl")
    except HistoryError as exc:
        assert "\n" not in str(exc)
        return
    out = io.StringIO()
    write_jsonl(history, out)
    again = parse_history(out.getvalue(), "jsonl")
    assert [(o.process, o.f, o.input, o.output, o.status) for o in again.operations] == [
        (o.process, o.f, o.input, o.output, o.status) for o in history.operations]


anything = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**70), st.text(max_size=4),
                     st.floats(allow_nan=True, allow_infinity=True))
config_fields = ["node_id", "tick_seconds", "election_timeout_ticks_min",
                 "election_timeout_ticks_max", "heartbeat_interval_ticks", "append_entries_max",
                 "append_bytes_max", "inflight_appends_max", "uncommitted_entries_max",
                 "input_queue_items_max", "inputs_per_iteration_max", "pending_requests_max",
                 "read_timeout_seconds"]


@given(st.dictionaries(st.sampled_from(config_fields), anything, max_size=4),
       st.one_of(st.just({1: "a", 2: "b", 3: "c"}),
                 st.dictionaries(anything, anything, max_size=3)))
def test_node_config_accepts_or_names_the_bad_field_in_one_line(
    fields: dict[str, Any], peers: Any
) -> None:
    fields.setdefault("node_id", 1)
    core = {name: fields.pop(name) for name in list(fields) if name in setting_names()}
    try:
        NodeConfig(peers=peers, **fields).with_core(**core)
    except ConfigError as exc:
        text = str(exc)
        assert "\n" not in text
        assert any(name in text for name in [*config_fields, "peers", "node_id", "voters",
                                              "election_timeout", "heartbeat"]), text


tokens = st.sampled_from([
    "--id", "--peers", "--data", "--insecure", "--tls-dir", "--ca", "--cert", "--key",
    "--client-port", "--client-peers", "--max-clients", "--max-frame-bytes",
    "--max-value-bytes", "--client-idle-timeout", "--peer-idle-timeout", "--handshake-timeout",
    "--tick-ms", "--client-auth", "--client-plaintext", "1", "0", "-1", "nan", "inf", "x",
    "1=127.0.0.1:7001", "1=h:1,2=h:2", "2=::1:80", "=", "", "1e9", "d", "--bogus",
])


@given(st.lists(tokens, max_size=14))
def test_serve_arguments_parse_or_fail_with_one_usage_line(argv: list[str]) -> None:
    try:
        args, peers = parse_serve_args(argv)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert args.id in peers
    assert args.insecure or args.tls_dir or args.ca
    assert math.isfinite(args.handshake_timeout) and args.handshake_timeout > 0


@given(st.text(max_size=60))
def test_peer_lists_parse_or_fail_with_one_usage_line(text: str) -> None:
    try:
        peers = parse_peers(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert peers and all(n >= 1 and 0 < p < 65536 for n, (_, p) in peers.items())


def test_partial_reads_do_not_accumulate_memory_in_the_resp_parser() -> None:
    # Regression (found by the atheris run): a shared "incomplete" exception re-raised on
    # every partial read chained each raise onto its traceback, keeping frames alive forever.
    import gc
    import tracemalloc

    def partial_reads(count: int) -> None:
        for _ in range(count):
            parser = RespParser()
            parser.feed(b"*2\r\n$3\r\nGET\r\n$5\r\nke")
            assert parser.next_command() is None

    partial_reads(1000)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        partial_reads(5_000)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 256 * 1024, f"{growth} bytes retained after 5,000 partial reads"
