"""Delay on live links without netem: a userspace delay line in the harness's per-link relays.

Every byte a node sends to a peer passes through a relay of the harness (``ProxyNetwork``'s
proxies, or ``NetnsNetwork``'s peer relays, whose outgoing socket lives in the sender's
namespace so partitions and loss still act on real packets). While a delay fault is active,
each chunk read from one side is written to the other ``delay_ms`` (plus a uniform jitter in
``[0, jitter_ms]``) after it arrived, in order: a TCP stream cannot reorder, so jitter only
stretches gaps. Weaker than netem's per-packet delay: the delay applies to chunks as the relay
reads them (at most ``PROXY_CHUNK_BYTES_MAX``), not to each packet, and TCP's own
acknowledgements on each hop are not delayed.
"""

from __future__ import annotations

import math
import random

import trio

# Bytes a relay moves per read, and chunks one direction may hold in its delay line before
# the reader waits (back-pressure to the sender, as a full network path gives).
PROXY_CHUNK_BYTES_MAX = 64 * 1024
DELAY_LINE_CHUNKS_MAX = 256


class Delay:
    """The delay every relayed chunk gets now; changed by the nemesis while relays run."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.delay_ms = 0.0
        self.jitter_ms = 0.0
        self.chunks_delayed = 0

    def set(self, delay_ms: float, jitter_ms: float) -> None:
        assert delay_ms >= 0 and jitter_ms >= 0 and math.isfinite(delay_ms + jitter_ms)
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms

    def clear(self) -> None:
        self.set(0.0, 0.0)

    def sample_seconds(self) -> float:
        if self.delay_ms == 0 and self.jitter_ms == 0:
            return 0.0
        self.chunks_delayed += 1
        return (self.delay_ms + self._rng.uniform(0.0, self.jitter_ms)) / 1000.0


async def pump_both(a: trio.abc.Stream, b: trio.abc.Stream, delay: Delay | None = None
                    ) -> None:
    """Copy bytes both ways (through the delay line when ``delay`` is given) until either
    side ends; then the pair is over."""
    async with trio.open_nursery() as nursery:

        async def direction(src: trio.abc.Stream, dst: trio.abc.Stream) -> None:
            send, receive = trio.open_memory_channel[tuple[float, bytes]](DELAY_LINE_CHUNKS_MAX)

            async def read() -> None:
                last = 0.0
                async with send:
                    while True:
                        data = await src.receive_some(PROXY_CHUNK_BYTES_MAX)
                        if not data:
                            return
                        wait = delay.sample_seconds() if delay is not None else 0.0
                        last = max(last, trio.current_time() + wait)  # never reorder
                        await send.send((last, bytes(data)))

            async def write() -> None:
                async with receive:
                    async for due, data in receive:
                        await trio.sleep_until(due)
                        await dst.send_all(data)

            try:
                async with trio.open_nursery() as inner:
                    inner.start_soon(read)
                    inner.start_soon(write)
            except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the connection broke: over, as when it ends
            nursery.cancel_scope.cancel()  # one direction ended: the connection is over

        nursery.start_soon(direction, a, b)
        nursery.start_soon(direction, b, a)
