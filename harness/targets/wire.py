"""The two wire protocols the shipped targets speak, each with honest failure reporting.

- ``RespConnection``: RESP2 over TCP (Redis, Sentinel, any Redis-protocol service), one command
  at a time, replies parsed by ``raftlib.resp.RespParser``.
- ``post_json``: one HTTP/1.0 POST of a JSON body (etcd's v3 JSON gateway). HTTP/1.0 because
  the server then closes the connection after a plain, unchunked body: reading to the end of
  the stream is the whole parser, and a connection per request keeps no state across faults.

Both raise ``NotApplied`` when the connection could not be made (nothing was sent) and
``Unknown`` when it broke or stalled after the request was sent, however little of it.
"""

from __future__ import annotations

import json
from typing import Any

import trio

from harness.targets.base import NotApplied, Unknown
from raftlib.resp import Reply, RespParser, RespProtocolError, encode_command

# One read from a socket takes at most this many bytes.
RECEIVE_BYTES_MAX = 65536
# An HTTP answer larger than this is not one of the gateway's (a harness or server bug).
HTTP_RESPONSE_BYTES_MAX = 1 << 20


async def connect(host: str, port: int) -> trio.SocketStream:
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:  # refused, unreachable: no byte of the request left
        raise NotApplied(f"connect to {host}:{port}: {exc.strerror or exc}") from None


def _arg(value: bytes | str | int) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


class RespConnection:
    """One RESP connection; ``call`` sends a command and returns its reply (an error reply is
    returned as ``ErrorReply``: the service answered)."""

    def __init__(self, stream: trio.abc.Stream, where: str) -> None:
        self._stream = stream
        self._parser = RespParser()
        self.where = where
        self.broken = False

    @classmethod
    async def open(cls, host: str, port: int) -> RespConnection:
        return cls(await connect(host, port), f"{host}:{port}")

    async def call(self, *args: bytes | str | int) -> Reply:
        assert not self.broken, "a broken connection is closed, not reused"
        self.broken = True  # until the reply is in: a cancellation leaves it broken
        try:
            await self._stream.send_all(encode_command([_arg(a) for a in args]))
            while (value := self._parser.next_value()) is None:
                data = await self._stream.receive_some(RECEIVE_BYTES_MAX)
                if not data:
                    raise Unknown(f"{self.where} closed the connection before replying")
                self._parser.feed(data)
        except (OSError, trio.BrokenResourceError, RespProtocolError) as exc:
            raise Unknown(f"{self.where}: {type(exc).__name__}: {exc}") from None
        self.broken = False
        return value[0]

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._stream.aclose()


async def post_json(host: str, port: int, path: str, body: dict[str, Any]) -> Any:
    """POST ``body`` to ``http://host:port/path``; the decoded JSON answer of a 200. Another
    status raises ``HttpError`` (the server answered: the caller knows what its code means)."""
    payload = json.dumps(body).encode()
    request = (f"POST {path} HTTP/1.0\r\nHost: {host}:{port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
               ).encode() + payload
    stream = await connect(host, port)
    received = bytearray()
    try:
        async with stream:
            await stream.send_all(request)
            while data := await stream.receive_some(RECEIVE_BYTES_MAX):
                received += data
                if len(received) > HTTP_RESPONSE_BYTES_MAX:
                    raise Unknown(f"{host}:{port}{path}: answer over "
                                  f"{HTTP_RESPONSE_BYTES_MAX} bytes")
    except (OSError, trio.BrokenResourceError) as exc:
        raise Unknown(f"{host}:{port}{path}: {type(exc).__name__}: {exc}") from None
    head, _, content = bytes(received).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        raise Unknown(f"{host}:{port}{path}: no HTTP status in {status_line[:80]!r}")
    try:
        answer = json.loads(content) if content else {}
    except ValueError:
        answer = {"error": content[:200].decode("utf-8", "replace")}
    if parts[1] != "200":
        raise HttpError(int(parts[1]), answer)
    return answer


class HttpError(Exception):
    """A non-200 answer: the status and its decoded body."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error") or body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body
