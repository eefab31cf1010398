"""atheris target: the RESP2 parser (server commands and client replies) on arbitrary bytes.

Properties checked on every input:
- ``RespParser.next_command`` / ``next_value`` raise nothing but ``RespProtocolError``;
- every command is a non-empty list of bytes within ``array_items_max`` and ``bulk_bytes_max``,
  and ``encode_command`` of it parses back to the same command;
- re-encoding is stable: ``encode(parse(encode(v))) == encode(v)`` for every parsed value ``v``
  (a CR or LF inside a simple string is turned into a space by ``encode``, by design);
- the parser never holds more than ``request_bytes_max`` + ``unparsed_bytes_max`` (plus the
  named per-argument overhead), and its unparsed input never exceeds ``unparsed_bytes_max``
  when reads are sized by ``room_bytes()`` as the server sizes them; a legal stream never
  finds ``room_bytes()`` at 0.

Run by ``fuzz/run.py``; alone: ``python fuzz/resp_target.py -runs=100000 [corpus_dir]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["raftlib"]):
    from raftlib.resp.protocol import (
        ARGUMENT_OVERHEAD_BYTES,
        RespLimits,
        RespParser,
        RespProtocolError,
        encode,
        encode_command,
    )

from fuzz._common import chunks

LIMITS = RespLimits(bulk_bytes_max=512, array_items_max=16, line_bytes_max=64, depth_max=3,
                    request_bytes_max=1024, unparsed_bytes_max=800)
HELD_BYTES_MAX = (LIMITS.request_bytes_max + LIMITS.unparsed_bytes_max
                  + LIMITS.array_items_max * ARGUMENT_OVERHEAD_BYTES)


def _commands(data: bytes) -> None:
    parser = RespParser(LIMITS)
    for piece in chunks(data):
        while piece:
            # Read as the server does: never more than the parser has room for.
            room = parser.room_bytes()
            if room < 1:
                raise AssertionError("a drained parser has no room for more input")
            part, piece = piece[:room], piece[room:]
            try:
                parser.feed(part)
                while (command := parser.next_command()) is not None:
                    _check_command(command)
            except RespProtocolError:
                return
            if parser.buffered_bytes > LIMITS.unparsed_bytes_max:
                raise AssertionError(f"parser holds {parser.buffered_bytes} unparsed bytes")
            if parser.held_bytes > HELD_BYTES_MAX:
                raise AssertionError(f"parser holds {parser.held_bytes} bytes")


def _check_command(command: list[bytes]) -> None:
    if not command or not all(isinstance(a, bytes) for a in command):
        raise AssertionError(f"bad command {command!r}")
    if len(command) > LIMITS.array_items_max:
        raise AssertionError(f"command of {len(command)} arguments")
    if any(len(a) > max(LIMITS.bulk_bytes_max, LIMITS.line_bytes_max) for a in command):
        raise AssertionError("argument above the limits")
    again = RespParser(LIMITS)
    again.feed(encode_command(command))
    if again.next_command() != command:
        raise AssertionError(f"command {command!r} does not round-trip")


def _values(data: bytes) -> None:
    parser = RespParser(LIMITS)
    for piece in chunks(data):
        parser.feed(piece)
        try:
            while (got := parser.next_value()) is not None:
                wire = encode(got[0])
                again = RespParser(LIMITS)
                again.feed(wire)
                back = again.next_value()
                if back is None or encode(back[0]) != wire:
                    raise AssertionError(f"value {got[0]!r} does not re-encode stably")
        except RespProtocolError:
            return


def test_one_input(data: bytes) -> None:
    _commands(data)
    _values(data)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
