"""The TCP transport refuses, both ways and loudly, a peer back on another data directory than
the one it knew for its node id (``raftlib.identity``), and takes nothing from it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from raftlib.identity import DataIdentity
from raftlib.transport.codec import HELLO_BYTES, Hello, decode_hello, encode_hello
from raftlib.transport.tcp import TcpTransport
from tests.raftlib.transport.test_tcp_transport import (
    TIMEOUT_SECONDS,
    cluster,
    eventually,
    msg,
    receive_count,
    seqs,
    wait_closed_by_peer,
)


def identities(tmp_path: Path, *names: str) -> list[DataIdentity]:
    made = []
    for name in names:
        (tmp_path / name).mkdir()
        made.append(DataIdentity(tmp_path / name))
    return made


def two_nodes(tmp_path: Path, *more: str) -> tuple[TcpTransport, list[DataIdentity]]:
    """Nodes 1 and 2, each showing its own data directory's identity (``n1``, ``n2``); the
    identities of ``more`` directories follow those two in the list."""
    made = identities(tmp_path, "n1", "n2", *more)
    transport = cluster(2)
    transport.use_identity(1, made[0])
    transport.use_identity(2, made[1])
    return transport, made


async def test_a_peer_back_on_another_data_directory_is_refused_both_ways_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="raftlib.transport")

    def errors_with(*parts: str) -> bool:
        return any(r.levelno == logging.ERROR and all(p in r.getMessage() for p in parts)
                   for r in caplog.records)

    transport, (_, id2, wiped) = two_nodes(tmp_path, "n2-wiped")
    async with transport.open(1) as e1:
        async with transport.open(2) as e2:
            e1.send_nowait([msg(1, 2, 0)])
            e2.send_nowait([msg(2, 1, 0)])
            assert seqs(await receive_count(e2, 1)) == [0]
            assert seqs(await receive_count(e1, 1)) == [0]
        assert DataIdentity(tmp_path / "n1").known(2) == id2.own  # durable
        transport.use_identity(2, wiped)  # node 2 comes back on an empty disk
        async with transport.open(2) as e2_wiped:
            e1.send_nowait([msg(1, 2, 1)])
            e2_wiped.send_nowait([msg(2, 1, 1)])
            await eventually(
                lambda: e2_wiped.statistics()["refused_by_peer_identity"] >= 1
                and errors_with("node 1: refused connection from", "node 2 shows data directory")
                and errors_with("node 1: cannot connect to node 2", "node 2 shows data directory"),
                "node 1 refuses node 2's new data directory, in and out")
            assert e1.statistics()["refused_identity"] >= 2
            assert e1.statistics()["received"] == 1  # only the message of its first life
            assert e2_wiped.statistics()["received"] == 0
            assert e1.statistics()["connected_peers"] == 0
    assert errors_with("it has lost the votes and entries it promised")
    assert errors_with("node 2: cannot connect to node 1", "node 1 refuses this node")


async def test_a_peer_restarted_on_its_own_data_directory_is_accepted(tmp_path: Path) -> None:
    transport, _ = two_nodes(tmp_path)
    async with transport.open(1) as e1:
        async with transport.open(2) as e2:
            e1.send_nowait([msg(1, 2, 0)])
            assert seqs(await receive_count(e2, 1)) == [0]
        transport.use_identity(2, DataIdentity(tmp_path / "n2"))  # read again from its disk
        async with transport.open(2) as e2_again:
            e1.send_nowait([msg(1, 2, 1)])
            e2_again.send_nowait([msg(2, 1, 1)])
            assert seqs(await receive_count(e2_again, 1)) == [1]
            assert seqs(await receive_count(e1, 1)) == [1]
        assert e1.statistics()["refused_identity"] == 0


async def test_a_refused_node_is_told_which_data_directory_was_known_for_it(
    tmp_path: Path,
) -> None:
    """The refusal answer names the id on record (so the refused node's log can say it), and
    the connection is closed without reading a frame."""
    (id1,) = identities(tmp_path, "n1")
    id1.record(2, 0xAB)
    transport = cluster(2)
    transport.use_identity(1, id1)
    async with transport.open(1) as e1:
        stream = await trio.open_tcp_stream(*transport.address(1))
        await stream.send_all(encode_hello(Hello(2, 1, 0, data_id=0xCD)))
        with trio.fail_after(TIMEOUT_SECONDS):
            answer = await wait_closed_by_peer(stream)
        await stream.aclose()
        assert len(answer) == HELLO_BYTES
        assert decode_hello(answer) == Hello(1, 2, 0, data_id=0xAB, refused=True)
        assert e1.statistics()["refused_identity"] == 1


async def test_a_refusal_naming_no_known_directory_says_to_read_the_refusers_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer may refuse for another reason than a known other directory (its records are
    full): the refused node's error then claims no lost state."""
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    monkeypatch.setattr("raftlib.identity.PEER_IDENTITIES_MAX", 0)
    transport, _ = two_nodes(tmp_path)
    async with transport.open(1), transport.open(2) as e2:
        await eventually(lambda: e2.statistics()["refused_by_peer_identity"] >= 1,
                         "node 1 refuses node 2: it may record no more peers")
    refused = [r.getMessage() for r in caplog.records
               if "node 2: cannot connect to node 1" in r.getMessage()]
    assert refused and "(its log says why)" in refused[0], refused
    assert "lost the votes" not in refused[0]
