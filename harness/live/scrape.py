"""Scrapes a live node's Prometheus ``/metrics`` the way an operator's Prometheus would.

Each node of a namespace run serves ``raftlib serve --metrics-port`` on 127.0.0.1 inside its
own namespace; the harness reaches it with a socket created in that namespace (no relay, no
route from outside). The monitor scrapes every node about once a second during the run and
appends what it read to ``metrics.jsonl`` in the run directory, so a person (or a test) can
see what an operator's dashboard would have shown while the nemesis worked: the term, the
leader each node knew, and the leader changes it counted.
"""

from __future__ import annotations

import socket

import trio

from harness.live import netns

# The port of every node's metrics server, inside its own namespace.
METRICS_PORT = 9100
# One scrape: at most this long, and this many bytes of response (a node's page is ~4 KiB).
SCRAPE_SECONDS_MAX = 1.0
SCRAPE_BYTES_MAX = 256 * 1024
# The samples kept in metrics.jsonl (all gauges and counters of one node, unlabelled).
KEPT = ("raftlib_term", "raftlib_leader_id", "raftlib_commit_index", "raftlib_applied_index",
        "raftlib_leader_changes_total", "raftlib_safety_anomalies_total",
        "raftlib_lease_reads_total")


class ScrapeError(Exception):
    """The page could not be fetched or read (the node is down, paused, or answered junk)."""


async def scrape(namespace: str, port: int = METRICS_PORT) -> dict[str, float]:
    """The unlabelled samples of ``KEPT`` from the node in ``namespace``."""
    with trio.move_on_after(SCRAPE_SECONDS_MAX) as scope:
        raw = await trio.to_thread.run_sync(netns.socket_inside, namespace)
        page = await _get(raw, port)
    if scope.cancelled_caught:
        raise ScrapeError(f"no answer from {namespace} within {SCRAPE_SECONDS_MAX} s")
    return parse(page)


async def _get(raw: socket.socket, port: int) -> bytes:
    sock = trio.socket.from_stdlib_socket(raw)
    try:
        await sock.connect(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ScrapeError(f"cannot connect: {exc}") from None
    chunks: list[bytes] = []
    size = 0
    try:
        async with trio.SocketStream(sock) as stream:
            await stream.send_all(b"GET /metrics HTTP/1.0\r\nHost: node\r\n\r\n")
            while data := await stream.receive_some(65536):
                size += len(data)
                if size > SCRAPE_BYTES_MAX:
                    raise ScrapeError(f"page over {SCRAPE_BYTES_MAX} bytes")
                chunks.append(data)
    except (OSError, trio.BrokenResourceError) as exc:
        # The node died (or was killed by the nemesis) while it answered: a missed scrape,
        # as for a node that is down, never a reason to stop the run.
        raise ScrapeError(f"connection broken: {exc}") from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/") or b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ScrapeError(f"not a 200 answer: {head[:60]!r}")
    return body


def parse(page: bytes) -> dict[str, float]:
    """Prometheus's text format, read by prometheus-client's own parser."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(page.decode()):
            for sample in family.samples:
                if sample.name in KEPT and not sample.labels:
                    values[sample.name] = float(sample.value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ScrapeError(f"not a metrics page: {exc}") from None
    return values
