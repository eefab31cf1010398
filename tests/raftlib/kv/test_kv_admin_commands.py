"""The RAFT.* operator commands of the KV service (raftlib.admin) on an in-process cluster on
virtual time: membership changes through RESP, redirects of membership writes, a leader added
later found through its configuration address, status and INFO metrics."""

from __future__ import annotations

import trio
import trio.testing

from raftlib.admin import member_address, split_member_address
from raftlib.kv import KvStateMachine
from raftlib.metrics import NodeMetrics
from raftlib.node import Observation
from raftlib.resp.protocol import OK, ErrorReply
from raftlib.service import KvCommandHandler, KvServiceConfig
from raftlib.testing import LocalCluster, open_local_cluster
from tests.raftlib.kv.workload import handler_for, machine, memory_address


def test_a_member_address_carries_the_client_address_after_a_comma() -> None:
    assert member_address("h:1", "h:2") == "h:1,client=h:2"
    assert split_member_address("h:1,client=h:2") == ("h:1", "h:2")
    assert member_address("h:1") == "h:1"
    assert split_member_address("h:1") == ("h:1", None)
    assert split_member_address("h:1,zone=a,client=h:9") == ("h:1", "h:9")


async def _leader_and_follower(cluster: LocalCluster) -> tuple[int, int]:
    leader = await cluster.wait_leader()
    return leader, next(n for n in cluster.ids if n != leader)


async def test_members_lists_every_member_with_role_and_addresses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=31, state_machine_factory=KvStateMachine) as c:
        _, follower = await _leader_and_follower(c)
        rows = await handler_for(c, follower).handle([b"RAFT.MEMBERS"])
        assert rows == [[n, b"voter", memory_address(n).encode(), memory_address(n).encode()]
                        for n in (1, 2, 3)]


async def test_membership_writes_on_a_follower_are_redirected_to_the_leader(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=32, state_machine_factory=KvStateMachine) as c:
        leader, follower = await _leader_and_follower(c)
        handler = handler_for(c, follower)
        for command in ([b"RAFT.ADD", b"7", b"h:7"], [b"RAFT.REMOVE", b"2"],
                        [b"RAFT.PROMOTE", b"7"], [b"RAFT.TRANSFER"]):
            reply = await handler.handle(command)
            assert reply == ErrorReply(f"MOVED 0 {memory_address(leader)}"), command
        assert c.node(leader).configuration().voters == (1, 2, 3)


async def test_bad_admin_arguments_get_one_err_line_naming_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=33, state_machine_factory=KvStateMachine) as c:
        leader, _ = await _leader_and_follower(c)
        handler = handler_for(c, leader)
        cases = {
            (b"RAFT.ADD", b"zero", b"h:1"): "node id must be an integer >= 1",
            (b"RAFT.ADD", b"0", b"h:1"): "node id must be an integer >= 1",
            (b"RAFT.ADD", b"5", b"nowhere"): "raft address must be HOST:PORT",
            (b"RAFT.ADD", b"5", b"h:1", b"h:2,x"): "client address must be HOST:PORT",
            (b"RAFT.ADD", b"5", b"h:1", b"h:2", b"EXTRA"): "syntax: RAFT.ADD",
            (b"RAFT.REMOVE", b"42"): "node 42 is not a member",
            (b"RAFT.PROMOTE", b"42"): "not a learner",
            (b"RAFT.MEMBERS", b"x"): "wrong number of arguments",
        }
        for command, needle in cases.items():
            reply = await handler.handle(list(command))
            assert isinstance(reply, ErrorReply) and reply.text.startswith("ERR"), command
            assert needle in reply.text, (command, reply)
            assert "\n" not in reply.text
        assert c.node(leader).configuration().voters == (1, 2, 3)


async def test_add_promotes_a_caught_up_learner_and_clients_find_it_once_it_leads(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A member added later is redirected to by its configuration address: the founders'
    --client-peers do not know it."""
    async with open_local_cluster(3, seed=34, state_machine_factory=KvStateMachine) as c:
        leader, follower = await _leader_and_follower(c)
        c.add_member(4)
        await c.start(4)
        handler = handler_for(c, leader)
        reply = await handler.handle([b"RAFT.ADD", b"4", b"memory:4", b"client4:6379"])
        assert reply == OK
        assert c.node(leader).configuration().voters == (1, 2, 3, 4)
        assert await handler.handle([b"RAFT.TRANSFER", b"4"]) == 4
        await c.wait_converged()
        on_follower = handler_for(c, follower)
        assert await on_follower.handle([b"SET", b"k", b"v"]) == ErrorReply(
            "MOVED 0 client4:6379")
        rows = await on_follower.handle([b"RAFT.MEMBERS"])
        assert isinstance(rows, list)
        assert rows[-1] == [4, b"voter", b"memory:4", b"client4:6379"]
        info = await on_follower.handle([b"INFO"])
        assert isinstance(info, bytes) and b"leader_client_address:client4:6379" in info


async def test_add_learner_then_promote_then_remove(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=35, state_machine_factory=KvStateMachine) as c:
        leader, _ = await _leader_and_follower(c)
        c.add_member(5)
        await c.start(5)
        handler = handler_for(c, leader)
        assert await handler.handle([b"RAFT.ADD", b"5", b"memory:5", b"LEARNER"]) == OK
        rows = await handler.handle([b"RAFT.MEMBERS"])
        assert isinstance(rows, list) and isinstance(rows[-1], list)
        assert rows[-1][:2] == [5, b"learner"]
        assert await handler.handle([b"RAFT.PROMOTE", b"5"]) == OK
        assert c.node(leader).configuration().voters == (1, 2, 3, 5)
        assert await handler.handle([b"RAFT.REMOVE", b"5"]) == OK
        assert c.node(leader).configuration().voters == (1, 2, 3)


async def test_status_and_info_report_follower_lag_and_leader_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    metrics = NodeMetrics()
    async with open_local_cluster(3, seed=36, state_machine_factory=KvStateMachine) as c:
        leader, follower = await _leader_and_follower(c)
        c.on_observation = lambda o: metrics.observe(o) if o.node_id == follower else None
        handler = KvCommandHandler(
            c.node(leader), machine(c, leader), metrics=NodeMetrics(),
            client_addresses={n: memory_address(n) for n in c.ids}, clock=trio.current_time,
            config=KvServiceConfig(request_timeout_seconds=2.0))
        for i in range(5):
            assert await handler.handle([b"SET", b"k%d" % i, b"v"]) == OK
        status = await handler.handle([b"RAFT.STATUS"])
        assert isinstance(status, bytes)
        text = status.decode()
        assert f"leader_id:{leader}" in text and "role:leader" in text
        assert f"follower_{follower}:match=" in text and ",lag=" in text
        info = await handler.handle([b"INFO"])
        assert isinstance(info, bytes)
        assert b"raftlib_proposals_total:5" in info
        assert b"raftlib_role_leader:1" in info
        assert b"raftlib_follower_lag_entries_" in info
        counts = dict(line.split(":", 1) for line in info.decode().splitlines()
                      if line.startswith("raftlib_"))
        stats = c.node(leader).statistics()
        for metric, counter in (("readies", "readies"), ("storage_syncs", "syncs"),
                                ("entries_persisted", "entries_persisted"),
                                ("append_messages_sent", "append_messages_sent"),
                                ("append_entries_sent", "append_entries_sent"),
                                ("append_messages_sent_early", "early_append_messages")):
            assert float(counts[f"raftlib_{metric}_total"]) == stats[counter], metric
        # Five SETs, each a write of its own, and the leader's no-op: each persisted and sent.
        assert float(counts["raftlib_entries_persisted_total"]) >= 6
        assert float(counts["raftlib_append_entries_sent_total"]) >= 2 * 5
        before = metrics.leader_changes
        await c.node(leader).transfer_leadership(follower)
        await trio.sleep(0.5)
        assert metrics.leader_changes == before + 1


def test_leader_changes_count_each_new_known_leader_once() -> None:
    from raftlib import Role

    metrics = NodeMetrics()
    for leader in (0, 1, 1, 0, 1, 2, 2, 3):
        metrics.observe(Observation("role", 9, Role.FOLLOWER, 1, leader))
    assert metrics.leader_changes == 3


async def test_a_member_that_never_catches_up_stays_a_learner_and_the_error_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_local_cluster(3, seed=37, state_machine_factory=KvStateMachine) as c:
        leader, _ = await _leader_and_follower(c)
        c.add_member(6)  # never started
        reply = await handler_for(c, leader).handle([b"RAFT.ADD", b"6", b"memory:6"])
        assert isinstance(reply, ErrorReply), reply
        assert "did not catch up" in reply.text and "stays a learner" in reply.text
        assert c.node(leader).configuration().learners == (6,)
