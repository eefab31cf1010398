"""The one place that knows how a client operation becomes a log command and back.

The simulator proposes ``encode(op_id, f, key, value)`` and the state machine under test
decodes it. Keeping the encoding here makes the switch from the harness's own state machine
(``harness.testkv``) to ``raftlib.kv`` a change of this module and that one only.

``op_id`` is unique in a run (``"<process>.<n>"``), so the bytes of every command are unique:
the durability check finds an acknowledged command in a node's log by its bytes alone.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

# A command larger than this is refused at decode: nothing the harness writes comes close.
COMMAND_BYTES_MAX = 64 * 1024

WRITE_FUNCTIONS = frozenset({"write", "put", "cas", "append"})
READ_FUNCTIONS = frozenset({"read", "get"})


class CommandError(ValueError):
    """Bytes that are not a command of this encoding (one line naming what is wrong)."""


@attrs.frozen
class Command:
    op_id: str
    f: str
    key: Any
    value: Any


def encode(op_id: str, f: str, key: Any, value: Any) -> bytes:
    if f not in WRITE_FUNCTIONS:
        raise ValueError(f"only writes go through the log, not {f!r}")
    # Compact and key-sorted, so the same operation always gives the same bytes.
    text = json.dumps([op_id, f, key, value], separators=(",", ":"), sort_keys=True)
    return text.encode()


def decode(data: bytes) -> Command:
    if len(data) > COMMAND_BYTES_MAX:
        raise CommandError(f"command of {len(data)} bytes exceeds {COMMAND_BYTES_MAX}")
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError(f"command is not JSON: {exc}") from None
    if not (isinstance(raw, list) and len(raw) == 4 and isinstance(raw[0], str)):
        raise CommandError("command must be a JSON array [op_id, f, key, value]")
    op_id, f, key, value = raw
    if f not in WRITE_FUNCTIONS:
        raise CommandError(f"unknown command function {f!r}")
    return Command(op_id, f, key, value)
