"""What a ``RespServer`` is configured with and counts, and the handlers it calls: shared by
the task-per-connection path (``raftlib.resp.server``) and the event loop
(``raftlib.resp.reactor``), which import it and not each other's module."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import attrs

from raftlib.resp.protocol import Reply, RespLimits

# Answers one command.
Handler = Callable[[list[bytes]], Awaitable[Reply]]
# Answers the pipelined commands of one read together: one reply per command, in order, with
# the effects of running them one after another.
BatchHandler = Callable[[list[list[bytes]]], Awaitable[list[Reply]]]


def _positive_int(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"ServerLimits.{attribute.name} must be an int >= 1, got {value!r}")


def _seconds(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(
            f"ServerLimits.{attribute.name} must be a finite number >= 0, got {value!r}"
        )


@attrs.frozen
class ServerLimits:
    connections_max: int = attrs.field(default=10_000, validator=_positive_int)
    # 0: connections may stay idle forever (Redis's default); ``raftlib serve`` sets a limit.
    idle_timeout_seconds: float = attrs.field(default=0.0, validator=_seconds)
    # TLS only: the handshake's deadline, counted from the accept (0: no deadline).
    handshake_timeout_seconds: float = attrs.field(default=10.0, validator=_seconds)
    receive_bytes_max: int = attrs.field(default=64 * 1024, validator=_positive_int)
    # Pipelined commands answered as one batch (one send of their replies); more complete
    # commands wait in the parser for the next batch. Bounds a batch's replies in memory to
    # this many replies.
    batch_commands_max: int = attrs.field(default=1024, validator=_positive_int)
    # What the parsers of all connections together may hold (``parser_bytes_held``: unfinished
    # commands and unparsed input). The connection whose read goes past it is answered with an
    # error naming this limit and closed. Per connection the bound is request_bytes_max +
    # unparsed_bytes_max; this caps the sum, whatever connections_max allows.
    parser_bytes_total_max: int = attrs.field(default=256 * 1024 * 1024,
                                              validator=_positive_int)
    protocol: RespLimits = attrs.field(factory=RespLimits)


@attrs.define
class ServerStatistics:
    connections_open: int = 0
    connections_total: int = 0
    connections_refused: int = 0
    commands: int = 0
    batches: int = 0  # commands / batches: how much pipelining the clients do
    # What every connection's parser holds now (RespParser.held_bytes, summed): unparsed input
    # plus commands still arriving. At most connections_max x (request_bytes_max +
    # unparsed_bytes_max); see the module docstring.
    parser_bytes_held: int = 0
    protocol_errors: int = 0
    budget_closed: int = 0  # connections closed for parser_bytes_total_max
    handshake_failures: int = 0
    idle_closed: int = 0
    # Connections closed because handling a command raised (a bug, logged with its traceback):
    # that client's connection ends, the server and the node go on.
    handler_errors: int = 0
