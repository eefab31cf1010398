"""A Trio client for the replicated KV service, honest about what it does not know.

    async with raftlib.client.open_client(["127.0.0.1:6379", "127.0.0.1:6380"]) as kv:
        await kv.set(b"k", b"v")
        n = await kv.incr(b"counter")           # applied exactly once, even across retries
        value = await kv.get(b"k")              # linearizable

How a request travels: to the leader it last heard of (or the next address, round robin); a
``-MOVED`` reply names the leader and the request goes there at once (unless that node
redirects again: nodes that disagree on the leader are retried after a backoff);
``-TRYAGAIN`` (nothing applied: election, full queue, dropped proposal) waits a backoff and
tries again; a timeout, a broken connection or ``-UNKNOWN`` means the request may have been
applied, so it is retried (on another node) with the SAME session sequence number, which
makes a write that was applied return its original reply instead of applying again. Each
client has one session (opened lazily with ``SESSION.OPEN``) and one request outstanding at a
time; use one client per concurrent worker.

What an operation can raise:

- ``OutcomeUnknown``: at least one attempt may have reached the log and no definite answer came
  within ``attempts_max`` / ``op_timeout_seconds``. The write may be applied later or never.
  Never treat it as "failed". An attempt "may have reached" a node from the moment its bytes
  are handed to the connection until a definite answer, whatever cuts it short: a broken
  connection, a reply that is not RESP, the request timeout, or ``op_timeout_seconds`` ending
  the whole operation while the attempt is in flight.
- ``Unavailable``: every attempt was refused before anything could be applied (connection
  refused or not opened in time, ``-MOVED``, ``-TRYAGAIN``, no session could be opened for the
  write); the write was NOT applied.
- ``CommandError``: the service answered with an error about the command itself (not an
  integer, value too large ...) and no earlier attempt may have been applied (after one that
  may have, any error reply leaves the outcome unknown: it speaks for its own attempt only).

The connection layer is a ``Connector``: ``connect`` opens a connection (sending nothing, so
any failure there is a refusal), ``call`` sends one request and waits for its reply.
``TcpConnector`` speaks RESP over TCP, or over TLS
when given an ``ssl_context`` (``raftlib.transport.tls.client_context(ca, cert=..., key=...)``;
the handshake counts against ``connect_timeout_seconds`` and a failed one is ``NotDelivered``);
``InProcessConnector`` calls handlers directly, which is how the
in-process cluster tests drive the very same retry logic under a virtual clock.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Final, Protocol, TypedDict, Unpack

import trio

from raftlib.errors import RaftError
from raftlib.resp.protocol import (
    ErrorReply,
    Reply,
    RespLimits,
    RespParser,
    RespProtocolError,
    SimpleString,
    encode_command,
)


class ClientError(RaftError):
    """Base of the client's errors."""


class OutcomeUnknown(ClientError):
    """The request may or may not have taken effect (it may still take effect later)."""


class Unavailable(ClientError):
    """No node accepted the request; it was definitely not applied."""


class CommandError(ClientError):
    """The service refused the command itself; ``reply`` is its error text."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)


class NotDelivered(Exception):
    """The connector could not hand the request to the node (connection refused, node down):
    the node never saw it."""


class Connector(Protocol):
    async def connect(self, address: str) -> None:
        """Make sure ``call(address, ...)`` can send at once: open the connection if there
        is none. Sends nothing of a request, so however it ends (``NotDelivered``, a timeout,
        a cancellation), no request reached the node through it."""
        ...

    async def call(self, address: str, args: Sequence[bytes]) -> Reply:
        """Send one command to ``address`` and return its reply. Raise ``NotDelivered`` when
        the request surely never reached the node; any other ending (an error, a timeout, a
        cancellation) means it may have."""
        ...

    async def aclose(self) -> None: ...


Handler = Callable[[list[bytes]], Awaitable[Reply]]


class InProcessConnector:
    """Calls in-process handlers; ``resolve(address)`` returns the handler or ``None`` when
    that node is down."""

    def __init__(self, resolve: Callable[[str], Handler | None]) -> None:
        self._resolve = resolve

    async def connect(self, address: str) -> None:
        if self._resolve(address) is None:
            raise NotDelivered(f"{address} is down")

    async def call(self, address: str, args: Sequence[bytes]) -> Reply:
        handler = self._resolve(address)
        if handler is None:
            raise NotDelivered(f"{address} is down")
        return await handler(list(args))

    async def aclose(self) -> None:
        pass


class _Connection:
    def __init__(self, stream: trio.abc.Stream, limits: RespLimits) -> None:
        self.stream = stream
        self.parser = RespParser(limits)


class TcpConnector:
    """RESP over TCP, one connection per address, reopened after any error."""

    receive_bytes_max: Final = 64 * 1024

    def __init__(
        self,
        *,
        connect_timeout_seconds: float = 1.0,
        limits: RespLimits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.connect_timeout_seconds = connect_timeout_seconds
        self._limits = limits or RespLimits()
        self._ssl_context = ssl_context
        self._connections: dict[str, _Connection] = {}

    async def connect(self, address: str) -> None:
        await self._connect(address)

    async def _connect(self, address: str) -> _Connection:
        conn = self._connections.get(address)
        if conn is not None:
            return conn
        host, _, port = address.rpartition(":")
        stream: trio.abc.Stream | None = None
        try:
            with trio.fail_after(self.connect_timeout_seconds):
                stream = await trio.open_tcp_stream(host, int(port))
                if self._ssl_context is not None:
                    stream = trio.SSLStream(stream, self._ssl_context, server_hostname=host)
                    await stream.do_handshake()
        except (OSError, trio.TooSlowError, ValueError, trio.BrokenResourceError) as exc:
            if stream is not None:
                await trio.aclose_forcefully(stream)
            # trio reports a failed TLS handshake as BrokenResourceError caused by the SSLError.
            reason = exc.__cause__ or exc
            raise NotDelivered(f"cannot connect to {address}: {reason}") from None
        raced = self._connections.get(address)
        if raced is not None:
            # Another task connected to the same address while we did: one connection per
            # address, so ours goes (overwriting theirs leaked it unclosed).
            await trio.aclose_forcefully(stream)
            return raced
        conn = self._connections[address] = _Connection(stream, self._limits)
        return conn

    async def call(self, address: str, args: Sequence[bytes]) -> Reply:
        conn = await self._connect(address)
        try:
            await conn.stream.send_all(encode_command(args))
            while True:
                try:
                    got = conn.parser.next_value()
                except RespProtocolError as exc:
                    # Garbage where the reply should be: the request was sent and whether
                    # it was applied cannot be told from these bytes.
                    raise ConnectionResetError(f"{address} answered non-RESP: {exc}") from None
                if got is not None:
                    return got[0]
                data = await conn.stream.receive_some(self.receive_bytes_max)
                if not data:
                    raise ConnectionResetError(f"{address} closed the connection")
                conn.parser.feed(bytes(data))
        except BaseException:
            # Whatever happened (a timeout cancelling us included), the framing of this
            # connection is no longer known: never reuse it.
            self._connections.pop(address, None)
            with trio.CancelScope(shield=True):
                await conn.stream.aclose()
            raise

    async def aclose(self) -> None:
        connections, self._connections = self._connections, {}
        for conn in connections.values():
            await conn.stream.aclose()


class KvClient:
    """One logical client: one session, one request at a time (see the module docstring)."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        connector: Connector | None = None,
        request_timeout_seconds: float = 1.0,
        op_timeout_seconds: float = 15.0,
        attempts_max: int = 100,
        backoff_seconds: float = 0.02,
        backoff_max_seconds: float = 0.5,
        use_session: bool = True,
    ) -> None:
        if not addresses:
            raise ValueError("KvClient needs at least one address")
        self.addresses = list(addresses)
        self._connector: Connector = connector or TcpConnector()
        self.request_timeout_seconds = request_timeout_seconds
        self.op_timeout_seconds = op_timeout_seconds
        self.attempts_max = attempts_max
        self.backoff_seconds = backoff_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.use_session = use_session
        self.session: int | None = None
        self.seq = 0
        self.leader: str | None = None
        self._next = 0
        self._lock = trio.Lock()

    # --- operations -----------------------------------------------------------------------

    async def get(self, key: bytes) -> bytes | None:
        reply = await self._request([b"GET", key], write=False)
        if reply is not None and not isinstance(reply, bytes):
            raise ClientError(f"unexpected GET reply {reply!r}")
        return reply

    async def set(self, key: bytes, value: bytes) -> None:
        await self._request([b"SET", key, value], write=True)

    async def delete(self, *keys: bytes) -> int:
        return self._int(await self._request([b"DEL", *keys], write=True))

    async def append(self, key: bytes, value: bytes) -> int:
        return self._int(await self._request([b"APPEND", key, value], write=True))

    async def incr(self, key: bytes, by: int = 1) -> int:
        return self._int(await self._request([b"INCRBY", key, b"%d" % by], write=True))

    async def cas(self, key: bytes, expected: bytes, new: bytes) -> bool:
        return self._int(await self._request([b"CAS", key, expected, new], write=True)) == 1

    async def setnx(self, key: bytes, value: bytes) -> bool:
        """Set ``key`` only if it is absent; whether it was set."""
        return self._int(await self._request([b"SETNX", key, value], write=True)) == 1

    async def sadd(self, key: bytes, *members: bytes) -> int:
        return self._int(await self._request([b"SADD", key, *members], write=True))

    async def smembers(self, key: bytes) -> list[bytes]:
        reply = await self._request([b"SMEMBERS", key], write=False)
        if not (isinstance(reply, list) and all(isinstance(m, bytes) for m in reply)):
            raise ClientError(f"unexpected SMEMBERS reply {reply!r}")
        return [m for m in reply if isinstance(m, bytes)]

    async def rpush(self, key: bytes, *values: bytes) -> int:
        return self._int(await self._request([b"RPUSH", key, *values], write=True))

    async def lpop(self, key: bytes) -> bytes | None:
        reply = await self._request([b"LPOP", key], write=True)
        if reply is not None and not isinstance(reply, bytes):
            raise ClientError(f"unexpected LPOP reply {reply!r}")
        return reply

    async def info(self, address: str) -> dict[str, str]:
        """One node's INFO as a dict (no retries: this asks that node specifically)."""
        with trio.fail_after(self.request_timeout_seconds):
            reply = await self._connector.call(address, [b"INFO"])
        if not isinstance(reply, bytes):
            raise ClientError(f"unexpected INFO reply {reply!r}")
        pairs = (line.split(":", 1) for line in reply.decode().splitlines() if ":" in line)
        return {k: v for k, v in pairs}

    async def aclose(self) -> None:
        await self._connector.aclose()

    @staticmethod
    def _int(reply: Reply) -> int:
        if not isinstance(reply, int):
            raise ClientError(f"expected an integer reply, got {reply!r}")
        return reply

    # --- the retry loop -----------------------------------------------------------------------

    async def _request(self, args: list[bytes], *, write: bool) -> Reply:
        async with self._lock:
            if not (write and self.use_session):
                return await self._attempts(args, retry_unknown=not write)
            if self.session is None:
                self.session = await self._open_session_for(args)
            self.seq += 1
            return await self._attempts(args, retry_unknown=True, sequenced=True)

    async def _open_session(self) -> int:
        # An OPEN whose outcome is unknown may leave an unused session behind; it expires.
        reply = await self._attempts([b"SESSION.OPEN"], retry_unknown=True)
        session = self._int(reply)
        self.seq = 0
        return session

    async def _open_session_for(self, args: list[bytes]) -> int:
        """The session a write needs. The write is sent only once there is one, so however the
        OPEN ends, an OPEN without a session means the write was not applied."""
        try:
            return await self._open_session()
        except OutcomeUnknown as exc:
            what = " ".join(_show(a) for a in args)
            raise Unavailable(f"{what}: not sent, as no session could be opened ({exc})") from None

    def _target(self) -> str:
        if self.leader is not None:
            return self.leader
        address = self.addresses[self._next % len(self.addresses)]
        self._next += 1
        return address

    async def _attempts(
        self, args: list[bytes], *, retry_unknown: bool, sequenced: bool = False
    ) -> Reply:
        # Whether some attempt may have reached a node. An attempt counts from the moment its
        # request is handed to the connector (``in_flight``) until a definite answer, so that
        # whatever cuts it short, the operation deadline below included, leaves it counted.
        maybe_applied = False
        in_flight = False
        backoff = self.backoff_seconds
        last = "no attempt made"
        # The addresses that answered MOVED since any other outcome: a redirect to one of them
        # closes a loop (nodes that disagree on who leads: an election under way, a stale
        # view), which unpaced would bounce as fast as the network goes.
        redirecting: set[str] = set()
        with trio.move_on_after(self.op_timeout_seconds):
            for _attempt in range(self.attempts_max):
                wire = args
                if sequenced:
                    assert self.session is not None
                    wire = [b"SESSION.CALL", b"%d" % self.session, b"%d" % self.seq, *args]
                address = self._target()
                request_deadline = trio.current_time() + self.request_timeout_seconds
                try:
                    # Connecting sends nothing: a failure or timeout here is a refusal.
                    with trio.fail_at(request_deadline):
                        await self._connector.connect(address)
                    in_flight = True
                    with trio.fail_at(request_deadline):
                        reply = await self._connector.call(address, wire)
                except NotDelivered as exc:
                    redirecting.clear()
                    in_flight = False
                    last = str(exc)
                    self.leader = None
                    await trio.sleep(backoff / len(self.addresses))
                    continue
                except (trio.TooSlowError, OSError, trio.BrokenResourceError) as exc:
                    redirecting.clear()
                    last = f"{address}: {type(exc).__name__} {exc}"
                    self.leader = None
                    if not in_flight:
                        continue  # the connect timed out: nothing was sent
                    in_flight = False
                    maybe_applied = True
                    if not retry_unknown:
                        break
                    continue
                in_flight = False
                if not isinstance(reply, ErrorReply):
                    if isinstance(reply, SimpleString) and reply.text != "OK":
                        raise ClientError(f"unexpected reply {reply!r}")
                    return reply
                last = f"{address}: {reply.text}"
                code = reply.code
                if code == "MOVED" and len(reply.text.split()) == 3:
                    target = reply.text.split()[2]
                    redirecting.add(address)
                    if target in redirecting:
                        await trio.sleep(backoff)
                        backoff = min(backoff * 2, self.backoff_max_seconds)
                    self.leader = target
                    continue
                redirecting.clear()
                if code in ("TRYAGAIN", "UNKNOWN"):
                    if code == "UNKNOWN":
                        maybe_applied = True
                        if not retry_unknown:
                            break
                    self.leader = None
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, self.backoff_max_seconds)
                    continue
                if code == "SESSIONEXPIRED" and sequenced and not maybe_applied:
                    # Refused without being applied: a fresh session may carry it.
                    self.session = await self._open_session_for(args)
                    self.seq = 1
                    continue
                if maybe_applied:
                    # A refusal speaks for this attempt only (a session gone, "max number of
                    # clients" at the door): an earlier one may still have been applied.
                    raise OutcomeUnknown(f"{' '.join(_show(a) for a in args)}: {reply.text} "
                                         "(after an attempt that may have been applied)")
                raise CommandError(reply.text)
        what = " ".join(_show(a) for a in args)
        if maybe_applied or in_flight:
            raise OutcomeUnknown(f"{what}: no definite answer (last: {last})")
        raise Unavailable(f"{what}: not applied (last: {last})")


def _show(arg: bytes) -> str:
    text = arg[:32].decode("utf-8", "replace")
    return text + "…" if len(arg) > 32 else text


class ClientOptions(TypedDict, total=False):
    """The keyword options of ``KvClient`` that ``open_client`` passes on, each with its type."""

    request_timeout_seconds: float
    op_timeout_seconds: float
    attempts_max: int
    backoff_seconds: float
    backoff_max_seconds: float
    use_session: bool


@asynccontextmanager
async def open_client(
    addresses: Sequence[str], *, connector: Connector | None = None,
    **options: Unpack[ClientOptions],
) -> AsyncIterator[KvClient]:
    client = KvClient(addresses, connector=connector, **options)
    try:
        yield client
    finally:
        with trio.CancelScope(shield=True):
            await client.aclose()


__all__ = [
    "ClientError",
    "CommandError",
    "Connector",
    "InProcessConnector",
    "KvClient",
    "NotDelivered",
    "OutcomeUnknown",
    "TcpConnector",
    "Unavailable",
    "open_client",
]

