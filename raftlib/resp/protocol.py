"""RESP2 (the Redis serialization protocol, version 2): an incremental parser and a serializer.

Values map to Python as: simple string ``+OK`` -> ``SimpleString("OK")``, error ``-ERR x`` ->
``ErrorReply("ERR x")``, integer -> ``int``, bulk string -> ``bytes``, null bulk or null array
-> ``None``, array -> ``list``. A server reads *commands*: arrays of bulk strings (what every
client library sends) or, for people typing into telnet, inline commands (one line of words).

Hostile input is bounded by ``RespLimits``: a bulk string longer than ``bulk_bytes_max``, an
array longer than ``array_items_max``, a header or inline line longer than ``line_bytes_max``,
nesting deeper than ``depth_max``, or anything that is not RESP raises ``RespProtocolError``
before the data is buffered. After a protocol error the stream's framing is lost, so a server
answers with one error and closes the connection (as Redis does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias

import attrs


@attrs.frozen
class SimpleString:
    text: str


@attrs.frozen
class ErrorReply:
    """An error reply; ``text`` starts with its code (``ERR``, ``MOVED``, ``TRYAGAIN`` ...)."""

    text: str

    @property
    def code(self) -> str:
        return self.text.split(" ", 1)[0]


Reply: TypeAlias = SimpleString | ErrorReply | int | bytes | list["Reply"] | None

OK: Final = SimpleString("OK")


class RespProtocolError(ValueError):
    """Bytes that are not RESP, or exceed a limit; the message says which and where."""


@attrs.frozen
class RespLimits:
    bulk_bytes_max: int = 8 * 1024 * 1024
    array_items_max: int = 65536
    line_bytes_max: int = 64 * 1024
    depth_max: int = 8


class _Incomplete(Exception):
    """More bytes are needed. Raised as a fresh instance every time: re-raising one shared
    instance would chain every raise onto its traceback, keeping each frame (and the buffers
    they reference) alive forever, a leak that grows with every partial read."""


class RespParser:
    """Feed bytes in, take complete values (or commands) out; never buffers past a limit."""

    def __init__(self, limits: RespLimits | None = None) -> None:
        self.limits = limits or RespLimits()
        self._buf = bytearray()
        self._pos = 0
        self.consumed_bytes = 0  # offset of the next value in the stream (for error messages)
        self._start = 0  # buffer position of the value being parsed

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf) - self._pos

    def next_value(self) -> tuple[Reply] | None:
        """The next complete value as a 1-tuple, or ``None`` until more bytes arrive."""
        start = self._start = self._pos
        try:
            value = self._value(0)
        except _Incomplete:
            self._pos = start
            self._check_pending_line()
            return None
        self.consumed_bytes += self._pos - start
        return (value,)

    def next_command(self) -> list[bytes] | None:
        """The next command (a non-empty list of arguments), or ``None`` until more arrive."""
        while True:
            if self._pos >= len(self._buf):
                return None
            if self._buf[self._pos] != ord("*"):
                inline = self._inline()
                if inline is None:
                    return None
                if inline:
                    return inline
                continue  # an empty line: skip it, as Redis does
            start = self._pos
            got = self.next_value()
            if got is None:
                return None
            value = got[0]
            if not isinstance(value, list) or not all(isinstance(a, bytes) for a in value):
                raise self._error(start, "a command must be an array of bulk strings")
            if not value:
                continue  # "*0\r\n" is a no-op, as in Redis
            return [a for a in value if isinstance(a, bytes)]

    # --- internals -----------------------------------------------------------------------

    def _error(self, pos: int, what: str) -> RespProtocolError:
        offset = self.consumed_bytes + max(0, pos - self._start)
        return RespProtocolError(f"RESP protocol error at byte {offset}: {what}")

    def _check_pending_line(self) -> None:
        # An incomplete value must still be able to finish within the limits: a header that
        # already exceeds line_bytes_max without its CRLF will never be valid.
        if self.buffered_bytes > self.limits.line_bytes_max and b"\r\n" not in self._buf[
            self._pos : self._pos + self.limits.line_bytes_max + 2
        ]:
            raise self._error(self._pos, f"line longer than line_bytes_max "
                              f"({self.limits.line_bytes_max})")

    def _line(self) -> bytes:
        end = self._buf.find(b"\r\n", self._pos, self._pos + self.limits.line_bytes_max + 2)
        if end < 0:
            if len(self._buf) - self._pos > self.limits.line_bytes_max:
                raise self._error(self._pos, "line longer than line_bytes_max "
                                  f"({self.limits.line_bytes_max})")
            raise _Incomplete
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    def _int(self, text: bytes, what: str) -> int:
        body = text[1:] if text[:1] == b"-" else text
        if not body or not body.isdigit() or len(body) > 19:
            raise self._error(self._pos, f"invalid {what} {text[:32]!r}")
        return int(text)

    def _value(self, depth: int) -> Reply:
        if self._pos >= len(self._buf):
            raise _Incomplete
        if depth > self.limits.depth_max:
            raise self._error(self._pos, f"nesting deeper than depth_max ({self.limits.depth_max})")
        kind = self._buf[self._pos]
        header = self._pos
        line = self._line()
        body = line[1:]
        if kind == ord("+"):
            return SimpleString(body.decode("utf-8", "replace"))
        if kind == ord("-"):
            return ErrorReply(body.decode("utf-8", "replace"))
        if kind == ord(":"):
            return self._int(body, "integer")
        if kind == ord("$"):
            return self._bulk(self._int(body, "bulk length"), header)
        if kind == ord("*"):
            count = self._int(body, "array length")
            if count == -1:
                return None
            if not 0 <= count <= self.limits.array_items_max:
                raise self._error(header, f"array of {count} items (array_items_max is "
                                  f"{self.limits.array_items_max})")
            return [self._value(depth + 1) for _ in range(count)]
        raise self._error(header, f"unexpected type byte {bytes([kind])!r}")

    def _bulk(self, length: int, header: int) -> bytes | None:
        if length == -1:
            return None
        if not 0 <= length <= self.limits.bulk_bytes_max:
            raise self._error(header, f"bulk string of {length} bytes (bulk_bytes_max is "
                              f"{self.limits.bulk_bytes_max})")
        end = self._pos + length
        if len(self._buf) < end + 2:
            raise _Incomplete
        if self._buf[end : end + 2] != b"\r\n":
            raise self._error(end, "bulk string not followed by CRLF")
        data = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return data

    def _inline(self) -> list[bytes] | None:
        start = self._start = self._pos
        end = self._buf.find(b"\n", start, start + self.limits.line_bytes_max + 2)
        if end < 0:
            if len(self._buf) - start > self.limits.line_bytes_max:
                raise self._error(start, "inline command longer than line_bytes_max "
                                  f"({self.limits.line_bytes_max})")
            return None
        line = bytes(self._buf[start:end]).rstrip(b"\r")
        self._pos = end + 1
        self.consumed_bytes += end + 1 - start
        words = line.split()
        if len(words) > self.limits.array_items_max:
            raise self._error(start, "inline command with too many words")
        return words


def encode(value: Reply) -> bytes:
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def encode_command(args: Sequence[bytes]) -> bytes:
    out = bytearray(b"*%d\r\n" % len(args))
    for arg in args:
        out += b"$%d\r\n" % len(arg)
        out += arg
        out += b"\r\n"
    return bytes(out)


def _line_safe(text: str) -> bytes:
    # A simple string or error must be one line: a CR or LF inside would break the framing.
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def _encode_into(out: bytearray, value: Reply) -> None:
    if value is None:
        out += b"$-1\r\n"
    elif isinstance(value, SimpleString):
        out += b"+" + _line_safe(value.text) + b"\r\n"
    elif isinstance(value, ErrorReply):
        out += b"-" + _line_safe(value.text) + b"\r\n"
    elif isinstance(value, bool):
        raise TypeError("RESP has no booleans; reply with an integer")
    elif isinstance(value, int):
        out += b":%d\r\n" % value
    elif isinstance(value, bytes):
        out += b"$%d\r\n" % len(value)
        out += value
        out += b"\r\n"
    elif isinstance(value, list):
        out += b"*%d\r\n" % len(value)
        for item in value:
            _encode_into(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")
