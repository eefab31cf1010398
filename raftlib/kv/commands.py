"""The KV service's log commands and results, encoded compactly with msgspec MessagePack.

Every command is a tagged array (``[tag, field, ...]``), so a ``SET k v`` costs a few bytes of
framing beyond its key and value. Two kinds of entries reach the log:

``Request(session, seq, now_ms, op)``  one write. ``session`` 0 means "no session" (applied
    every time it is committed: at-most-once is then the client's problem); otherwise the pair
    (session, seq) makes the write exactly-once (see ``sessions``). ``now_ms`` is the proposing
    leader's clock, the only notion of time the state machine ever sees.
``OpenSession(now_ms)``  registers a client session; its result is the new session id.

Reads (GET) are never commands: they are served by ``Node.read`` (ReadIndex).
"""

from __future__ import annotations

from typing import Final

import msgspec

# Integer tags keep the encoding small and stable; never reuse or renumber one.


# ``gc=False`` (as the core's records, ``raftlib.core.types``): numbers and bytes only, no
# cycle can run through a command, and one is built and decoded per write.
class Set(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=1):
    key: bytes
    value: bytes


class Delete(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=2):
    keys: tuple[bytes, ...]


class Append(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=3):
    key: bytes
    value: bytes


class Incr(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=4):
    key: bytes
    by: int


class Cas(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=5):
    """Set ``key`` to ``new`` if its value is ``expected`` (``None``: if the key is absent)."""

    key: bytes
    expected: bytes | None
    new: bytes


class SAdd(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=6):
    """Add ``members`` to the set at ``key``; the result is how many were not there yet."""

    key: bytes
    members: tuple[bytes, ...]


class RPush(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=7):
    """Append ``values`` to the tail of the list at ``key``; the result is its new length."""

    key: bytes
    values: tuple[bytes, ...]


class LPop(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=8):
    """Remove and return the head of the list at ``key`` (``None``: empty or absent)."""

    key: bytes


Op = Set | Delete | Append | Incr | Cas | SAdd | RPush | LPop


class Request(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=10):
    session: int
    seq: int
    now_ms: int
    op: Op


class OpenSession(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=11):
    now_ms: int


Command = Request | OpenSession


class KvError(msgspec.Struct, frozen=True, array_like=True, gc=False, tag=20):
    """A command that was applied but could not be carried out, as a value (never raised by
    ``apply``, so it can be cached in a session and returned to the proposer). ``code`` is the
    RESP error prefix: ``ERR``, ``WRONGTYPE``, ``SESSIONEXPIRED`` or ``STALESEQ``."""

    code: str
    message: str

    def text(self) -> str:
        return f"{self.code} {self.message}"


# What ``apply`` returns: OK (True) / a count / a new value / a CAS verdict / a popped element
# (``None``: the list was empty) / an error.
Result = bool | int | bytes | None | KvError

NO_SESSION: Final = 0

_encoder = msgspec.msgpack.Encoder()
_command_decoder = msgspec.msgpack.Decoder(Command)


class CommandError(ValueError):
    """Bytes that are not a valid command (never produced by this module's encoder)."""


def encode_command(command: Command) -> bytes:
    return _encoder.encode(command)


def decode_command(data: bytes) -> Command:
    try:
        command: Command = _command_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CommandError(f"undecodable KV command ({len(data)} bytes): {exc}") from None
    return command
