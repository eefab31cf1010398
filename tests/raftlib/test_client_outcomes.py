"""raftlib.client says ``OutcomeUnknown`` for every write that may have reached a node and
``Unavailable`` only for a definite refusal, checked against a scripted RESP server whose every
received request is on record (so "may have reached" is a fact the test can see)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raftlib.client import (
    CommandError,
    KvClient,
    OutcomeUnknown,
    TcpConnector,
    Unavailable,
    open_client,
)
from raftlib.resp.protocol import OK, ErrorReply
from tests.raftlib.fake_resp import (
    Answer,
    Behaviour,
    Drop,
    Garble,
    Hold,
    Script,
    refusing_address,
    serve_fake_resp,
)

OP_TIMEOUT_SECONDS = 1.0
TRYAGAIN = ErrorReply("TRYAGAIN no leader known (election in progress)")


def session_script(*calls: Behaviour, then: Behaviour | None = None) -> Script:
    """``SESSION.OPEN`` gets session 1; the k-th ``SESSION.CALL`` gets ``calls[k]``, later ones
    ``then`` (default: the last of ``calls``)."""
    rest = then if then is not None else calls[-1]
    seen = [0]

    def script(n: int, args: list[bytes]) -> Behaviour:
        if args[0] == b"SESSION.OPEN":
            return Answer(1)
        k = seen[0]
        seen[0] += 1
        return calls[k] if k < len(calls) else rest

    return script


def moved_to(named: dict[str, str], other: str) -> Script:
    """``SESSION.OPEN`` gets session 1; every other request ``-MOVED`` to ``named[other]``
    (filled in once every server has its address)."""

    def script(n: int, args: list[bytes]) -> Behaviour:
        if args[0] == b"SESSION.OPEN":
            return Answer(1)
        return Answer(ErrorReply(f"MOVED 0 {named[other]}"))

    return script


def calls_of(requests: list[list[bytes]]) -> list[list[bytes]]:
    return [r for r in requests if r[0] != b"SESSION.OPEN"]


@pytest.mark.parametrize("slow", [Answer(OK, after_seconds=2 * OP_TIMEOUT_SECONDS), Hold()],
                         ids=["answers-after-the-deadline", "never-answers"])
async def test_a_write_the_operation_deadline_cuts_in_flight_is_unknown(
    slow: Behaviour, autojump_clock: trio.testing.MockClock
) -> None:
    # The per-request timeout is longer than the operation's: only the outer deadline fires,
    # while the request sits at the server (the case issue 12 found as `fail` in the WAL).
    async with serve_fake_resp(session_script(slow)) as server, open_client(
        [server.address], request_timeout_seconds=5.0, op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.set(b"k", b"v")
        assert calls_of(server.requests) == [[b"SESSION.CALL", b"1", b"1", b"SET", b"k", b"v"]]


async def test_a_write_sent_after_refusals_and_cut_by_the_deadline_is_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The live harness's shape: two definite refusals (each answered within the request
    # timeout), then a third attempt that the operation deadline cuts short.
    late_refusal = Answer(TRYAGAIN, after_seconds=0.4)
    async with serve_fake_resp(session_script(late_refusal, late_refusal, Hold())) as server, \
            open_client([server.address], request_timeout_seconds=0.5,
                        op_timeout_seconds=OP_TIMEOUT_SECONDS) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.incr(b"n")
        assert len(calls_of(server.requests)) == 3


@pytest.mark.parametrize("use_session", [True, False], ids=["session", "plain"])
async def test_a_write_whose_connection_drops_after_sending_is_unknown(
    use_session: bool, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve_fake_resp(session_script(Drop())) as server, open_client(
        [server.address], use_session=use_session, attempts_max=5,
        op_timeout_seconds=OP_TIMEOUT_SECONDS,
    ) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.incr(b"n")
        assert calls_of(server.requests)


async def test_a_garbled_reply_to_a_write_is_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_fake_resp(session_script(Garble())) as server, open_client(
        [server.address], attempts_max=3, op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(OutcomeUnknown):
            await kv.set(b"k", b"v")
        assert calls_of(server.requests)


async def test_moved_to_a_refusing_node_is_a_definite_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with refusing_address() as dead:
        moved = Answer(ErrorReply(f"MOVED 0 {dead}"))
        async with serve_fake_resp(session_script(moved)) as server, open_client(
            [server.address], attempts_max=6, op_timeout_seconds=OP_TIMEOUT_SECONDS
        ) as kv:
            with pytest.raises(Unavailable):
                await kv.set(b"k", b"v")
            assert len(calls_of(server.requests)) == 3  # every other attempt went to `dead`


async def test_two_nodes_that_redirect_to_each_other_are_retried_with_a_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """During an election two nodes may each name the other as leader: a redirect back to a
    node that redirected waits a growing backoff, so the client does not bounce between them
    as fast as the network goes until ``attempts_max`` runs out."""
    named: dict[str, str] = {}
    async with serve_fake_resp(moved_to(named, "b")) as a, \
            serve_fake_resp(moved_to(named, "a")) as b:
        named.update(a=a.address, b=b.address)
        async with open_client([a.address], attempts_max=1000,
                               op_timeout_seconds=OP_TIMEOUT_SECONDS) as kv:
            with pytest.raises(Unavailable, match="MOVED"):
                await kv.set(b"k", b"v")
        attempts = len(calls_of(a.requests)) + len(calls_of(b.requests))
        # Backoffs of 0.02, 0.04, ... 0.5 s fit about a dozen attempts into the 1 s deadline.
        assert 3 <= attempts <= 20, attempts


async def test_a_chain_of_redirects_to_the_leader_is_followed_without_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Just after a leader change a stale follower names the old leader, which names the new
    one: two redirects in a row that lead somewhere are no loop, and cost no backoff."""
    named: dict[str, str] = {}
    async with serve_fake_resp(moved_to(named, "old")) as stale, \
            serve_fake_resp(moved_to(named, "new")) as old, \
            serve_fake_resp(session_script(Answer(OK))) as new:
        named.update(old=old.address, new=new.address)
        async with open_client([stale.address], backoff_seconds=0.5,
                               op_timeout_seconds=OP_TIMEOUT_SECONDS) as kv:
            started = trio.current_time()
            await kv.set(b"k", b"v")
            assert trio.current_time() - started < 0.5
        assert [len(calls_of(s.requests)) for s in (stale, old, new)] == [1, 1, 1]


async def test_tryagain_until_the_deadline_is_a_definite_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with serve_fake_resp(session_script(Answer(TRYAGAIN))) as server, open_client(
        [server.address], op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(Unavailable):
            await kv.set(b"k", b"v")
        assert len(calls_of(server.requests)) > 1


async def test_a_refused_connection_is_a_definite_refusal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with refusing_address() as dead, open_client(
        [dead], op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(Unavailable):
            await kv.set(b"k", b"v")


async def test_an_error_about_the_command_is_a_command_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    too_large = Answer(ErrorReply("ERR value of 9 bytes exceeds value_bytes_max (8)"))
    async with serve_fake_resp(session_script(too_large)) as server, open_client(
        [server.address], op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(CommandError, match="value_bytes_max"):
            await kv.set(b"k", b"123456789")


async def test_a_refusal_after_an_attempt_that_may_have_been_applied_is_unknown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Attempt 1 reaches the node and its connection drops (it may have been applied); attempt 2
    # is turned away at the door. That error speaks for attempt 2 only.
    busy = Answer(ErrorReply("ERR max number of clients reached"))
    async with serve_fake_resp(session_script(Drop(), busy)) as server, open_client(
        [server.address], op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(OutcomeUnknown, match="max number of clients"):
            await kv.set(b"k", b"v")
        assert len(calls_of(server.requests)) == 2


async def test_a_write_whose_session_never_opened_was_not_sent_so_is_unavailable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The OPEN's own outcome is unknown, but the write itself never left the client.
    async with serve_fake_resp(lambda n, args: Hold()) as server, open_client(
        [server.address], request_timeout_seconds=0.3, op_timeout_seconds=OP_TIMEOUT_SECONDS
    ) as kv:
        with pytest.raises(Unavailable, match="session"):
            await kv.set(b"k", b"v")
        assert server.requests and calls_of(server.requests) == []


class HangingConnect(TcpConnector):
    """Connects to ``hang`` never complete (a partitioned node that drops SYNs)."""

    def __init__(self, hang: str) -> None:
        super().__init__(connect_timeout_seconds=60.0)
        self.hang = hang

    async def connect(self, address: str) -> None:
        if address == self.hang:
            await trio.sleep_forever()
        await super().connect(address)


@pytest.mark.parametrize("request_timeout", [5.0, 0.3],
                         ids=["by-the-operation-deadline", "by-the-request-timeout"])
async def test_a_write_cut_while_still_connecting_was_not_sent_so_is_unavailable(
    request_timeout: float, autojump_clock: trio.testing.MockClock
) -> None:
    async with serve_fake_resp(session_script(Answer(TRYAGAIN))) as server:
        kv = KvClient([server.address, "127.0.0.1:9"], connector=HangingConnect("127.0.0.1:9"),
                      request_timeout_seconds=request_timeout,
                      op_timeout_seconds=OP_TIMEOUT_SECONDS)
        try:
            with pytest.raises(Unavailable):
                await kv.set(b"k", b"v")
        finally:
            await kv.aclose()

