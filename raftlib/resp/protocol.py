"""RESP2 (the Redis serialization protocol, version 2): an incremental parser and a serializer.

Values map to Python as: simple string ``+OK`` -> ``SimpleString("OK")``, error ``-ERR x`` ->
``ErrorReply("ERR x")``, integer -> ``int``, bulk string -> ``bytes``, null bulk or null array
-> ``None``, array -> ``list``. A server reads *commands*: arrays of bulk strings (what every
client library sends) or, for people typing into telnet, inline commands (one line of words).

The parser is a state machine: each byte is examined a bounded number of times, whatever the
reads look like. A value in progress keeps its finished items and where it stopped (an open
array, a bulk whose header was read, how far a line was searched for its CRLF), so a command
of 65,536 arguments arriving in many reads costs time linear in its size, not quadratic.

Hostile input is bounded by ``RespLimits`` (see there), checked as soon as the bytes that break
a limit arrive, and before any payload they announce is buffered. Breaking one raises
``RespProtocolError`` naming the limit and the stream offset. After that the stream's framing
is lost, so a server answers with one error and closes the connection (as Redis does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, TypeAlias, cast

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


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"RespLimits.{attribute.name} must be an int >= 1, got {value!r}")


def _unparsed_default(limits: RespLimits) -> int:
    # Room for the largest single item still waiting for its end (a bulk or a line) plus one
    # network read, so a legal stream always fits.
    return max(limits.bulk_bytes_max, limits.line_bytes_max) + 2 + UNPARSED_SLACK_BYTES


# What ``unparsed_bytes_max`` allows on top of the largest item by default: one read's worth.
UNPARSED_SLACK_BYTES: Final = 64 * 1024


@attrs.frozen
class RespLimits:
    """Bounds on what one peer can make the parser hold. Units are in the names."""

    # One bulk string (a command argument, or a reply's value).
    bulk_bytes_max: int = attrs.field(default=8 * 1024 * 1024, validator=_positive)
    # Items in one array: for a command, its arguments (name included).
    array_items_max: int = attrs.field(default=65536, validator=_positive)
    # A header line (``*3``, ``$5``, ``+OK`` ...) or an inline command, without its CRLF.
    line_bytes_max: int = attrs.field(default=64 * 1024, validator=_positive)
    # Arrays inside arrays (replies only: a command is one flat array).
    depth_max: int = attrs.field(default=8, validator=_positive)
    # One whole request or value as it is on the wire, headers and CRLFs included: what the
    # finished arguments of a command still in progress may add up to. Checked at each header,
    # so a bulk that would cross it is refused before its payload arrives.
    request_bytes_max: int = attrs.field(default=12 * 1024 * 1024, validator=_positive)
    # Bytes received but not yet consumed: what ``feed`` may hold at once. A server reads at
    # most ``room_bytes()`` so this is never exceeded by a legal stream.
    unparsed_bytes_max: int = attrs.field(
        default=attrs.Factory(_unparsed_default, takes_self=True), validator=_positive)

    def __attrs_post_init__(self) -> None:
        item = max(self.bulk_bytes_max, self.line_bytes_max) + 2
        if self.unparsed_bytes_max < item:
            raise ValueError(
                f"RespLimits.unparsed_bytes_max ({self.unparsed_bytes_max}) must hold one "
                f"bulk or line with its CRLF ({item} bytes)")
        if self.request_bytes_max < self.bulk_bytes_max:
            raise ValueError(
                f"RespLimits.request_bytes_max ({self.request_bytes_max}) is below "
                f"bulk_bytes_max ({self.bulk_bytes_max}): a largest bulk could never be sent")


_CR: Final = 13
_LF: Final = 10
_STAR: Final = ord("*")
_DOLLAR: Final = ord("$")
_PLUS: Final = ord("+")
_MINUS: Final = ord("-")
_COLON: Final = ord(":")
_TYPE_BYTES: Final = frozenset((_STAR, _DOLLAR, _PLUS, _MINUS, _COLON))
_NO_BULK: Final = -1
# The fast path handles headers up to this long (``*65536``, ``$8388608``); longer ones, legal
# or not, go the general way.
_FAST_HEADER_BYTES_MAX: Final = 24
# Python's cost of holding one finished argument beyond its bytes (a ``bytes`` object and a
# list slot), counted by ``held_bytes`` so the bound it reports is about real memory.
ARGUMENT_OVERHEAD_BYTES: Final = 41


class RespParser:
    """Feed bytes in, take complete values (or commands) out; never holds past a limit.

    Use one parser for commands (``next_command``) or for values (``next_value``), not both.
    """

    def __init__(self, limits: RespLimits | None = None) -> None:
        self.limits = limits or RespLimits()
        self._buf = bytearray()
        self._pos = 0  # next unconsumed byte in _buf
        self._base = 0  # stream offset of _buf[0]
        self._scan = 0  # a line search already looked at _buf[_pos:_scan] and found no end
        # The value in progress: open arrays (items so far, items still to come), the length
        # of a bulk whose header was consumed, and the stream offset where the value began.
        self._arrays: list[tuple[list[Reply], int]] = []
        self._bulk = _NO_BULK
        self._start = 0
        self._items = 0  # finished arguments held by the command in progress

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; raises ``RespProtocolError`` past ``unparsed_bytes_max``."""
        limit = self.limits.unparsed_bytes_max
        buffered = len(self._buf) - self._pos
        if buffered + len(data) > limit:
            raise RespProtocolError(
                f"RESP protocol error at byte {self._base + len(self._buf)}: "
                f"{buffered + len(data)} bytes of unparsed input "
                f"(unparsed_bytes_max is {limit})")
        if self._pos:
            # Dropping a bytearray's head is O(1) in CPython (it moves its start), so this
            # costs nothing per read however large the unparsed rest is.
            del self._buf[: self._pos]
            self._base += self._pos
            self._scan = max(0, self._scan - self._pos)
            self._pos = 0
        self._buf += data

    @property
    def buffered_bytes(self) -> int:
        """Bytes received and not yet consumed (at most ``unparsed_bytes_max``)."""
        return len(self._buf) - self._pos

    def room_bytes(self) -> int:
        """How much ``feed`` accepts now: what a server may read next (always >= 1 unless a
        complete item is waiting to be taken)."""
        return self.limits.unparsed_bytes_max - (len(self._buf) - self._pos)

    @property
    def held_bytes(self) -> int:
        """What this parser holds for its peer: unparsed input plus the finished parts of the
        value in progress (wire bytes, plus ``ARGUMENT_OVERHEAD_BYTES`` per argument)."""
        partial = self._base + self._pos - self._start if self._in_value() else 0
        return len(self._buf) - self._pos + partial + self._items * ARGUMENT_OVERHEAD_BYTES

    def next_value(self) -> tuple[Reply] | None:
        """The next complete value as a 1-tuple, or ``None`` until more bytes arrive."""
        return self._advance(command=False)

    def next_command(self) -> list[bytes] | None:
        """The next command (a non-empty list of arguments), or ``None`` until more arrive."""
        while True:
            if not self._in_value():
                if self._pos >= len(self._buf):
                    return None
                if self._buf[self._pos] == _STAR:
                    fast = self._whole_command()
                    if fast is not None:
                        return fast
                else:
                    inline = self._inline()
                    if inline is None:
                        return None
                    if inline:
                        return inline
                    continue  # an empty line: skip it, as Redis does
            got = self._advance(command=True)
            if got is None:
                return None
            value = got[0]
            assert isinstance(value, list), "command mode yields arrays only"
            if value:
                return cast(list[bytes], value)  # bulks only: _header checked each item
            # "*0\r\n" is a no-op, as in Redis

    # --- internals -----------------------------------------------------------------------

    def _whole_command(self) -> list[bytes] | None:
        """The command at ``_pos`` in one pass, when all of it is already buffered and it is
        plain (small headers, within every limit); else ``None`` and nothing consumed: the
        general path then takes it, keeping its progress across reads and naming any error.
        Most commands arrive whole, so this is the common case; a command that does not is
        scanned at most twice (once here, once by the general path), so work stays linear."""
        buf = self._buf
        start = self._pos
        end = buf.find(b"\r\n", start, start + _FAST_HEADER_BYTES_MAX)
        if end < 0:
            return None
        digits = buf[start + 1 : end]
        if not digits.isdigit():
            return None
        count = int(digits)
        limits = self.limits
        if not 0 < count <= limits.array_items_max:
            return None
        size = len(buf)
        stop = min(size, start + limits.request_bytes_max)
        bulk_max = limits.bulk_bytes_max
        args: list[bytes] = []
        pos = end + 2
        for _ in range(count):
            if pos >= stop or buf[pos] != _DOLLAR:
                return None
            end = buf.find(b"\r\n", pos, pos + _FAST_HEADER_BYTES_MAX)
            if end < 0:
                return None
            digits = buf[pos + 1 : end]
            if not digits.isdigit():
                return None
            length = int(digits)
            pos = end + 2 + length
            if length > bulk_max or pos + 2 > stop or buf[pos : pos + 2] != b"\r\n":
                return None
            args.append(bytes(buf[end + 2 : pos]))
            pos += 2
        self._pos = pos
        self._scan = 0
        return args

    def _in_value(self) -> bool:
        return bool(self._arrays) or self._bulk != _NO_BULK

    def _error(self, pos: int, what: str) -> RespProtocolError:
        return RespProtocolError(f"RESP protocol error at byte {self._base + pos}: {what}")

    def _advance(self, *, command: bool) -> tuple[Reply] | None:
        """Consume items until a top-level value is complete (returned) or input runs out."""
        buf = self._buf
        while True:
            if not self._in_value():
                self._start = self._base + self._pos
            if self._bulk != _NO_BULK:
                end = self._pos + self._bulk
                if len(buf) < end + 2:
                    return None
                if buf[end] != _CR or buf[end + 1] != _LF:
                    raise self._error(end, "bulk string not followed by CRLF")
                item: Reply = bytes(buf[self._pos : end])
                self._pos = end + 2
                self._bulk = _NO_BULK
            else:
                header = self._pos
                line = self._line()
                if line is None:
                    return None
                got = self._header(line, header, command)
                if got is None:
                    continue  # an array was opened or a bulk announced
                item = got[0]
            done = self._place(item)
            if done is not None:
                self._items = 0
                return done

    def _place(self, item: Reply) -> tuple[Reply] | None:
        """Put a finished item into its array; closes every array it completes."""
        arrays = self._arrays
        while arrays:
            items, left = arrays[-1]
            items.append(item)
            if left > 1:
                arrays[-1] = (items, left - 1)
                if len(arrays) == 1:
                    self._items += 1
                return None
            arrays.pop()
            item = items
        return (item,)

    def _header(self, line: bytes, header: int, command: bool) -> tuple[Reply] | None:
        """Interpret one header line: a finished scalar, or ``None`` after opening an array or
        announcing a bulk (the value continues)."""
        if not line:
            raise self._error(header, "empty header line")
        kind = line[0]
        if kind not in _TYPE_BYTES:
            raise self._error(header, f"unexpected type byte {bytes([kind])!r}")
        depth = len(self._arrays)
        if command and depth and kind != _DOLLAR:
            raise self._error(header, "a command must be an array of bulk strings")
        if command and not depth and kind != _STAR:
            raise self._error(header, "a command must be an array of bulk strings")
        used = self._base + self._pos - self._start
        if kind == _DOLLAR:
            length = self._int(line, header, "bulk length")
            if length == -1:
                if command:
                    raise self._error(header, "a command's arguments cannot be null bulks")
                return (None,)
            limits = self.limits
            if not 0 <= length <= limits.bulk_bytes_max:
                raise self._error(header, f"bulk string of {length} bytes (bulk_bytes_max is "
                                  f"{limits.bulk_bytes_max})")
            if used + length + 2 > limits.request_bytes_max:
                raise self._error(header, f"request of at least {used + length + 2} bytes "
                                  f"(request_bytes_max is {limits.request_bytes_max})")
            self._bulk = length
            return None
        if used > self.limits.request_bytes_max:
            raise self._error(header, f"request of at least {used} bytes "
                              f"(request_bytes_max is {self.limits.request_bytes_max})")
        if kind == _STAR:
            count = self._int(line, header, "array length")
            if count == -1 and not command:
                return (None,)
            if not 0 <= count <= self.limits.array_items_max:
                raise self._error(header, f"array of {count} items (array_items_max is "
                                  f"{self.limits.array_items_max})")
            if depth >= self.limits.depth_max:
                raise self._error(header, "nesting deeper than depth_max "
                                  f"({self.limits.depth_max})")
            if count == 0:
                return ([],)
            self._arrays.append(([], count))
            return None
        if kind == _PLUS:
            return (SimpleString(line[1:].decode("utf-8", "replace")),)
        if kind == _MINUS:
            return (ErrorReply(line[1:].decode("utf-8", "replace")),)
        assert kind == _COLON, kind
        return (self._int(line, header, "integer"),)

    def _int(self, line: bytes, header: int, what: str) -> int:
        text = line[1:]
        body = text[1:] if text[:1] == b"-" else text
        if not body or not body.isdigit() or len(body) > 19:
            raise self._error(header, f"invalid {what} {text[:32]!r}")
        return int(text)

    def _find_end(self, needle: bytes, what: str) -> int:
        """Where the line at ``_pos`` ends (index of ``needle``), or -1 until more bytes come.
        Resumes where the last search stopped, so a line arriving byte by byte is scanned
        once; refuses a line that can no longer end within ``line_bytes_max``."""
        line_max = self.limits.line_bytes_max
        limit = self._pos + line_max + len(needle)
        end = self._buf.find(needle, max(self._pos, self._scan), limit)
        if end >= 0:
            self._scan = 0
            return end
        if len(self._buf) - self._pos > line_max + len(needle) - 1:
            raise self._error(self._pos, f"{what} longer than line_bytes_max ({line_max})")
        # The needle's first byte may be the last byte received: look at it again next time.
        self._scan = max(self._pos, len(self._buf) - len(needle) + 1)
        return -1

    def _line(self) -> bytes | None:
        end = self._find_end(b"\r\n", "line")
        if end < 0:
            return None
        line = bytes(self._buf[self._pos : end])
        self._pos = end + 2
        return line

    def _inline(self) -> list[bytes] | None:
        start = self._pos
        end = self._find_end(b"\n", "inline command")
        if end < 0:
            return None
        words = bytes(self._buf[start:end]).rstrip(b"\r").split()
        if len(words) > self.limits.array_items_max:
            raise self._error(start, f"inline command of {len(words)} words (array_items_max "
                              f"is {self.limits.array_items_max})")
        self._pos = end + 1
        return words


def encode(value: Reply) -> bytes:
    out = bytearray()
    encode_into(out, value)
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


def encode_into(out: bytearray, value: Reply) -> None:
    """Append ``value``'s encoding to ``out`` (one buffer for a batch of replies)."""
    if value is None:
        out += b"$-1\r\n"
    elif value is OK:  # most writes' reply
        out += b"+OK\r\n"
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
            encode_into(out, item)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as RESP")
