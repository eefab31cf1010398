"""The TCP transport refuses, both ways and loudly, a peer back on another data directory than
the one it knew for its node id (``raftlib.identity``), and takes nothing from it."""

from __future__ import annotations

import functools
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


async def test_a_peer_of_the_older_hello_version_is_named_as_such_not_timed_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A version-1 hello is 32 bytes: the head (magic, version) is checked before the rest is
    awaited, so the refusal names the version at once instead of a handshake timeout."""
    caplog.set_level(logging.INFO, logger="raftlib.transport")
    transport = cluster(2, handshake_timeout_seconds=TIMEOUT_SECONDS)
    async with transport.open(1) as e1:
        stream = await trio.open_tcp_stream(*transport.address(1))
        old_hello = b"RAFT\x01" + bytes(3) + (2).to_bytes(8, "big") + (1).to_bytes(8, "big") \
            + bytes(8)
        await stream.send_all(old_hello)
        with trio.fail_after(TIMEOUT_SECONDS / 2):
            assert await wait_closed_by_peer(stream) == b""
        await stream.aclose()
        await eventually(lambda: e1.statistics()["refused"] == 1, "the refusal is counted")
    assert any("unsupported protocol version 1 (expected 2" in r.getMessage()
               for r in caplog.records), caplog.text


async def test_a_refused_peer_is_logged_as_an_error_once_per_few_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """Each refused attempt is counted, but its error line is logged for the first and then
    every fifth (the refused node retries every backoff; its own side logs likewise)."""
    caplog.set_level(logging.DEBUG, logger="raftlib.transport")
    (id1,) = identities(tmp_path, "n1")
    id1.record(2, 0xAB)
    transport = cluster(2)
    transport.use_identity(1, id1)
    async with transport.open(1) as e1:
        for attempt in range(1, 7):
            stream = await trio.open_tcp_stream(*transport.address(1))
            await stream.send_all(encode_hello(Hello(2, 1, 0, data_id=0xCD)))
            await wait_closed_by_peer(stream)
            await stream.aclose()
            counted = functools.partial(lambda n: e1.statistics()["refused_identity"] == n,
                                        attempt)
            await eventually(counted, f"refusal {attempt} is counted")
    levels = [r.levelno for r in caplog.records if "refused connection from" in r.getMessage()]
    assert levels == [logging.ERROR, *[logging.DEBUG] * 3, logging.ERROR, logging.DEBUG]


async def test_a_peer_whose_directory_cannot_be_recorded_is_refused_and_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing is taken from a peer before its data directory is recorded: a disk error while
    recording refuses it (and says where) instead of letting it in unrecorded."""
    (id1,) = identities(tmp_path, "n1")

    def failing_record(node: int, data_id: int) -> str | None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(id1, "record", failing_record)
    transport = cluster(2)
    transport.use_identity(1, id1)
    async with transport.open(1) as e1:
        stream = await trio.open_tcp_stream(*transport.address(1))
        await stream.send_all(encode_hello(Hello(2, 1, 0, data_id=0xCD)))
        answer = await wait_closed_by_peer(stream)
        await stream.aclose()
        assert decode_hello(answer).refused
        assert e1.statistics()["refused_identity"] == 1 and e1.statistics()["accepted"] == 0
