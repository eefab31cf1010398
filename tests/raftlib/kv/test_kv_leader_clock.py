"""Session expiry's clock: the leader time stamped into writes follows the replicated clock and
the leader's monotonic clock, never a step of its wall clock (``raftlib.kv.leader_clock``)."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio
import trio.testing

from raftlib.kv import KvStateMachine
from raftlib.kv.commands import Request, Set, encode_command
from raftlib.kv.leader_clock import LeaderClock, LeaderClockNotReady
from raftlib.kv.sessions import SESSION_TTL_MS_DEFAULT
from raftlib.node import Node
from raftlib.resp.protocol import OK, ErrorReply
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import open_local_cluster
from tests.raftlib.kv.workload import machine, memory_address

TWO_HOURS_SECONDS = 7200.0


class _Clocks:
    """Hand-set inputs of a LeaderClock."""

    def __init__(self) -> None:
        self.term = 1
        self.replicated_ms = 0
        self.wall = 1_000.0
        self.monotonic = 50.0
        self.caught_up = True

    def clock(self) -> LeaderClock:
        return LeaderClock(lambda: self.term, lambda: self.replicated_ms, lambda: self.caught_up,
                           wall=lambda: self.wall, monotonic=lambda: self.monotonic)


def test_a_new_cluster_starts_its_time_from_the_wall_clock() -> None:
    clocks = _Clocks()
    clock = clocks.clock()
    assert clock.now_ms() == 1_000_000
    clocks.monotonic += 2.5
    assert clock.now_ms() == 1_002_500


def test_a_wall_clock_step_during_a_term_does_not_move_the_leader_time() -> None:
    clocks = _Clocks()
    clock = clocks.clock()
    start = clock.now_ms()
    clocks.wall += TWO_HOURS_SECONDS  # NTP steps the clock forward
    clocks.monotonic += 1.0
    assert clock.now_ms() == start + 1_000
    clocks.wall -= 2 * TWO_HOURS_SECONDS  # and back, past where it was
    clocks.monotonic += 1.0
    assert clock.now_ms() == start + 2_000


def test_a_new_term_anchors_at_the_replicated_clock_not_the_wall_clock() -> None:
    clocks = _Clocks()
    clock = clocks.clock()
    clock.now_ms()
    clocks.replicated_ms = 1_010_000  # this leader's own stamps, applied
    clocks.wall += TWO_HOURS_SECONDS
    clocks.monotonic += 30.0
    assert clock.now_ms() == 1_030_000  # the same term: its own anchor
    clocks.term = 2  # it lost the lead and won it back (or another node did)
    assert clock.now_ms() == 1_010_000  # a new term: where the replicated clock stands
    clocks.monotonic += 0.25
    assert clock.now_ms() == 1_010_250


def test_a_leader_that_applied_no_stamp_reads_the_wall_clock_only_once_caught_up() -> None:
    """A restarted node elected before it applied its log has applied no stamp: that is no
    new cluster, and its wall clock (two hours ahead here) must not become the cluster's
    time. It refuses to stamp until it applied the entries before its term, and then starts
    from the stamps it found there."""
    clocks = _Clocks()
    clocks.term = 7
    clocks.caught_up = False
    clocks.wall += TWO_HOURS_SECONDS
    clock = clocks.clock()
    with pytest.raises(LeaderClockNotReady):
        clock.now_ms()
    clocks.replicated_ms = 5_000_000  # its log applied: the predecessors' stamps
    clocks.caught_up = True
    assert clock.now_ms() == 5_000_000


def test_a_new_leader_catches_up_with_stamps_it_applies_after_its_term_began() -> None:
    """A node elected before it applied its predecessor's last stamps starts below them; once
    applied, its time goes on from them (the replicated clock, a maximum, would otherwise
    stand still for as long as the new leader had been behind)."""
    clocks = _Clocks()
    clocks.replicated_ms = 2_000_000
    clock = clocks.clock()
    assert clock.now_ms() == 2_000_000
    clocks.replicated_ms = 9_000_000  # the predecessor's stamps, applied now
    clocks.monotonic += 1.0
    assert clock.now_ms() == 9_000_000
    clocks.monotonic += 0.5
    assert clock.now_ms() == 9_000_500


async def test_sessions_survive_a_leader_wall_clock_jump_past_the_session_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A leader whose wall clock jumps two hours forward (past the one-hour TTL) keeps every
    session: were the jump stamped into its writes, the replicated clock would pass every
    session's TTL and the next write of each would answer SESSIONEXPIRED."""
    wall = [1_000_000.0]
    async with open_local_cluster(3, seed=3, state_machine_factory=KvStateMachine) as c:
        leader = await c.wait_leader()
        handler = KvCommandHandler(
            c.node(leader), machine(c, leader),
            client_addresses={n: memory_address(n) for n in c.ids},
            clock=lambda: wall[0],
            config=KvServiceConfig(request_timeout_seconds=2.0))
        session = await handler.handle([b"SESSION.OPEN"])
        assert isinstance(session, int)
        sid = str(session).encode()
        assert await handler.handle([b"SESSION.CALL", sid, b"1", b"SET", b"k", b"1"]) == OK
        wall[0] += TWO_HOURS_SECONDS
        await trio.sleep(1.0)
        reply = await handler.handle([b"SESSION.CALL", sid, b"2", b"SET", b"k", b"2"])
        assert reply == OK, reply
        sessions = machine(c, leader).sessions
        assert sessions.expired == 0
        assert sessions.clock_ms < wall[0] * 1000 - SESSION_TTL_MS_DEFAULT


class _BehindNode:
    """A real node that says its log holds commands it has not applied yet (a node restarted
    from a log it has not replayed)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def applied_every_command(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)


@pytest.mark.parametrize("on_leader", [True, False], ids=["leader", "follower"])
async def test_a_write_a_node_cannot_stamp_yet_is_retried_at_the_leader_or_redirected(
    on_leader: bool, autojump_clock: trio.testing.MockClock,
) -> None:
    """A node that has applied no stamp while its log holds commands it has not applied cannot
    know the cluster's time: a leader answers TRYAGAIN (nothing applied), a follower sends the
    write to the leader as any write to a follower (MOVED)."""
    async with open_local_cluster(3, seed=3, state_machine_factory=KvStateMachine) as c:
        leader = await c.wait_leader()
        node = leader if on_leader else next(n for n in c.ids if n != leader)
        handler = KvCommandHandler(
            cast(Node, _BehindNode(c.node(node))), machine(c, node),
            client_addresses={n: memory_address(n) for n in c.ids},
            config=KvServiceConfig(request_timeout_seconds=2.0))
        reply = await handler.handle([b"SET", b"k", b"1"])
        assert isinstance(reply, ErrorReply), reply
        assert reply.text.startswith("TRYAGAIN" if on_leader else "MOVED"), reply
        assert machine(c, leader).get(b"k") is None


async def test_a_node_whose_log_holds_no_command_has_applied_every_command(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A new cluster's nodes hold no command (only a leader's no-op), so the first write can
    be stamped at once, on a leader whose no-op is not committed yet too; once a command is
    in the log, a follower cannot vouch for what it has not applied, and a caught-up leader
    can."""
    async with open_local_cluster(3, seed=3, state_machine_factory=KvStateMachine) as c:
        leader = await c.wait_leader()
        follower = next(n for n in c.ids if n != leader)
        assert c.node(follower).applied_every_command
        await c.node(leader).propose(encode_command(Request(0, 0, 1_000, Set(b"k", b"v"))))
        await c.wait_converged()
        assert c.node(leader).applied_every_command
