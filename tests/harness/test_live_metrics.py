"""An operator's view of a live run: every node's Prometheus /metrics, scraped during the run
into metrics.jsonl, shows the leader changes the nemesis caused."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from harness.live import net, scrape
from harness.options import RunOptions, parse_nemesis
from harness.runner import run

needs_netns = pytest.mark.skipif(net.netns_unavailable_reason() is not None,
                                 reason="needs root on Linux and pyroute2")

PAGE = b"""# HELP raftlib_term current term
# TYPE raftlib_term gauge
raftlib_term 7.0
# HELP raftlib_leader_id the leader this node knows (0: none)
# TYPE raftlib_leader_id gauge
raftlib_leader_id 2.0
# HELP raftlib_role this node's role (1: it)
# TYPE raftlib_role gauge
raftlib_role{role="leader"} 0.0
# HELP raftlib_leader_changes times this node saw a new leader
# TYPE raftlib_leader_changes counter
raftlib_leader_changes_total 3.0
"""


def test_a_metrics_page_is_read_with_prometheus_clients_parser() -> None:
    assert scrape.parse(PAGE) == {"raftlib_term": 7.0, "raftlib_leader_id": 2.0,
                                  "raftlib_leader_changes_total": 3.0}


def test_a_page_that_is_no_metrics_page_is_refused_in_one_line() -> None:
    with pytest.raises(scrape.ScrapeError, match="not a metrics page"):
        scrape.parse(b"raftlib_term seven\n")


async def test_a_node_that_dies_while_it_answers_is_a_missed_scrape_not_a_crash() -> None:
    """A node killed by the nemesis while the monitor reads its page resets the connection:
    that is a ``ScrapeError`` (the monitor skips the node this round), never an exception that
    stops the run (a five-node live run once ended so)."""
    import socket
    import struct

    import trio

    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    async def reset_after_the_request() -> None:
        conn, _ = await listener.accept()
        with conn:
            await conn.recv(1024)
            # SO_LINGER with a zero timeout: close() sends a RST, as a killed process's does.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reset_after_the_request)
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        with pytest.raises(scrape.ScrapeError, match="connection broken"):
            await scrape._get(raw, port)
    listener.close()


@needs_netns
def test_the_scraped_metrics_show_the_leader_change_a_kill_caused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    options = RunOptions(backend="live", nodes=3, clients=3, workload="register",
                         nemesis=parse_nemesis("kill"), nemesis_interval=2.0, time_limit=12.0,
                         seed=1, recovery_time=10.0)
    report = run(options, out)
    assert report.verdict == "valid", f"reproduce with seed=1: {report.line}"
    killed = {int(n) for n in re.findall(r"start-kill \{'id': \d+, 'nodes': \[(\d+)\]",
                                         (out / "nodes.log").read_text())}
    assert killed, "the nemesis killed no node"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {row["node"] for row in rows} == {1, 2, 3}
    changes = []
    last: dict[int, dict[str, float]] = {}
    for row in rows:
        before = last.get(row["node"])
        if (before is not None and before["raftlib_leader_id"] in killed
                and row["raftlib_leader_id"] not in (0, before["raftlib_leader_id"])):
            # A node the nemesis restarted meanwhile counts from 0 again (Prometheus counters).
            counted = (row["raftlib_leader_changes_total"]
                       > before["raftlib_leader_changes_total"])
            changes.append((row["node"], before["raftlib_leader_id"], row["raftlib_leader_id"],
                            counted))
        if row["raftlib_leader_id"]:
            last[row["node"]] = row
    assert any(counted for *_, counted in changes), (
        f"no node's metrics moved from a killed leader to another one, counting it: {rows}")
