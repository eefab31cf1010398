"""TcpConnector keeps one connection per address: two tasks connecting at once leave one, and
the other is closed, not leaked (a ResourceWarning seen once in the live tests)."""

from __future__ import annotations

import functools

import trio

from raftlib.client import TcpConnector


async def test_two_tasks_connecting_at_once_leave_one_connection_and_close_the_other() -> None:
    closed: list[int] = []
    accepted: list[int] = []

    async def handler(stream: trio.SocketStream) -> None:
        number = len(accepted)
        accepted.append(number)
        while await stream.receive_some(1024):
            pass
        closed.append(number)

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        connector = TcpConnector()
        address = f"127.0.0.1:{port}"
        async with trio.open_nursery() as both:
            both.start_soon(connector.connect, address)
            both.start_soon(connector.connect, address)
        with trio.fail_after(5):
            while len(accepted) < 2 or len(closed) < 1:
                await trio.sleep(0.01)
        assert len(connector._connections) == 1
        await connector.aclose()
        with trio.fail_after(5):
            while len(closed) < 2:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
