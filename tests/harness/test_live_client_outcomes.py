"""The live harness records a write ``info`` whenever its request may have reached a node and
``fail`` only on a definite refusal; and its refusals check catches a ``fail`` write that is in
a committed log. The "node" is a scripted RESP server on 127.0.0.1 (see tests/raftlib)."""

from __future__ import annotations

import itertools
import random

import pytest
import trio
import trio.testing

from harness.history import HistoryRecorder
from harness.live.checks import NodeLog, check_refusals
from harness.live.clients import Acked, LiveClient
from harness.workloads import OpSpec
from raftlib.core.types import Entry, HardState
from raftlib.kv.commands import Request, Set, encode_command
from raftlib.resp.protocol import OK, ErrorReply
from tests.raftlib.fake_resp import (
    Answer,
    Behaviour,
    Drop,
    Hold,
    Script,
    refusing_address,
    serve_fake_resp,
)

REQUEST_TIMEOUT_SECONDS = 1.0
TRYAGAIN = ErrorReply("TRYAGAIN no leader known (election in progress)")
PUT = OpSpec("put", 3, 7)
GET = OpSpec("get", 3, None)


def session_script(*calls: Behaviour) -> Script:
    """Session 1 for ``SESSION.OPEN``; the k-th other request gets ``calls[k]`` (the last one
    repeats)."""
    seen = itertools.count()

    def script(n: int, args: list[bytes]) -> Behaviour:
        if args[0] == b"SESSION.OPEN":
            return Answer(1)
        return calls[min(next(seen), len(calls) - 1)]

    return script


async def run_one(address: str, spec: OpSpec) -> tuple[str, LiveClient, HistoryRecorder]:
    """One operation through a LiveClient talking to ``address``: its recorded outcome."""
    history = HistoryRecorder(lambda: int(trio.current_time() * 1e6), keyed=True)
    processes = itertools.count()
    client = LiveClient(addresses=[address], workload="kv", history=history,
                        new_process=lambda: next(processes),
                        request_timeout=REQUEST_TIMEOUT_SECONDS, rng=random.Random(0))
    try:
        outcome = await client.execute(spec)
    finally:
        await client.aclose()
    assert [e.type for e in history.events] == ["invoke", outcome]
    return outcome, client, history


async def test_a_put_the_deadline_cuts_after_two_refusals_is_recorded_info(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Issue 12's case: two quick TRYAGAINs, then an attempt in flight when the operation's
    # deadline (not the request's) ends it. It reached the node, so it is not a `fail`.
    refusal = Answer(TRYAGAIN, after_seconds=0.4 * REQUEST_TIMEOUT_SECONDS)
    async with serve_fake_resp(session_script(refusal, refusal, Hold())) as server:
        outcome, client, _ = await run_one(server.address, PUT)
        assert outcome == "info"
        assert client.process == 1, "the process of an info op is retired"
        assert client.refused == []
        assert len(server.requests) == 4  # OPEN and three attempts


@pytest.mark.parametrize("slow", [Answer(OK, after_seconds=5.0), Drop()],
                         ids=["answers-after-the-deadline", "drops-the-connection"])
async def test_a_put_that_reached_the_node_without_an_answer_is_recorded_info(
    slow: Behaviour, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve_fake_resp(session_script(slow)) as server:
        outcome, _, _ = await run_one(server.address, PUT)
        assert outcome == "info"


async def test_a_put_moved_to_a_refusing_node_is_recorded_fail_and_kept_as_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with refusing_address() as dead:
        moved = Answer(ErrorReply(f"MOVED 0 {dead}"))
        async with serve_fake_resp(session_script(moved)) as server:
            outcome, client, _ = await run_one(server.address, PUT)
    assert outcome == "fail"
    assert [(r.session, r.seq, r.f) for r in client.refused] == [(1, 1, "put")]


async def test_a_put_to_a_refusing_node_is_recorded_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with refusing_address() as dead:
        outcome, client, _ = await run_one(dead, PUT)
    assert outcome == "fail"
    assert client.refused == [], "no session, so no (session, seq) was ever sent"


async def test_a_read_without_an_answer_is_recorded_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_fake_resp(session_script(Hold())) as server:
        outcome, _, _ = await run_one(server.address, GET)
    assert outcome == "fail"


def _entry(index: int, session: int, seq: int, value: bytes) -> Entry:
    return Entry(term=1, index=index, data=encode_command(Request(session, seq, 0, Set(b"k3",
                                                                                        value))))


def test_refusals_check_finds_a_write_recorded_fail_in_a_committed_log() -> None:
    log = [_entry(1, 1, 1, b"7"), _entry(2, 1, 2, b"8")]
    refused = [Acked(1, 2, Set(b"k3", b"8"), 0, "put")]
    committed = {1: NodeLog(HardState(1, 1, 2), log), 2: NodeLog(HardState(1, 1, 2), log)}
    check = check_refusals(committed, refused)
    assert check.valid is False
    assert "session 1 seq 2" in check.violations[0] and "index 2" in check.violations[0]
    # Only in an uncommitted tail: the proposal may have been dropped, which is a refusal.
    tail = {1: NodeLog(HardState(1, 1, 1), log), 2: NodeLog(HardState(1, 1, 1), log[:1])}
    assert check_refusals(tail, refused).valid is True
    # Another (session, seq) with the same bytes is another write.
    assert check_refusals(committed, [Acked(2, 2, Set(b"k3", b"8"), 0, "put")]).valid is True
