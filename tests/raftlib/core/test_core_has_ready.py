"""``has_ready()`` is a query: asking changes nothing (no follower's flow control moves, no
message is built), and its answer is exactly whether ``ready()`` has anything to hand out."""

from __future__ import annotations

import pickle
import random

from raftlib.core import NodeId, RaftCore, Ready
from tests.raftlib.core.network import Network, ack_all, become_leader, make_core, sent


def _fingerprint(core: RaftCore) -> bytes:
    # Every field of the core, flow control and outgoing messages included.
    return pickle.dumps(core)


def _empty(ready: Ready) -> bool:
    return not (ready.hard_state or ready.entries or ready.messages or ready.committed
                or ready.read_states or ready.dropped_reads or ready.soft_state
                or ready.anomalies or ready.snapshot is not None)


def test_has_ready_changes_no_state_when_appends_are_owed() -> None:
    core = make_core(1, pre_vote=False)
    ack_all(core, become_leader(core))
    sent(core)
    core.propose(b"x")  # appends are owed to both followers, not yet built
    before = _fingerprint(core)
    assert core.has_ready()
    assert core.has_ready()
    assert _fingerprint(core) == before


class _AskingNetwork(Network):
    """Runs each node's Ready loop asking ``has_ready()`` first and then taking the Ready
    anyway, to hold the answer against what the Ready held."""

    asked = 0
    said_yes = 0

    def process(self, node_id: NodeId) -> None:
        if node_id in self.down:
            return
        node = self.nodes[node_id]
        while True:
            before = _fingerprint(node)
            answer = node.has_ready()
            assert _fingerprint(node) == before, "has_ready() changed the core"
            ready = node.ready()
            assert answer == (not _empty(ready)), f"has_ready() said {answer} for {ready}"
            self.asked += 1
            self.said_yes += answer
            self.durable[node_id].persist(ready)
            self.queue.extend(ready.messages)
            self.applied[node_id].extend(ready.committed)
            self.read_states[node_id].extend(ready.read_states)
            self.dropped_reads[node_id].extend(ready.dropped_reads)
            node.advance(ready)
            if not answer:
                break
        self.check_node(node_id)


def test_has_ready_answers_whether_ready_has_anything_under_random_traffic() -> None:
    asked = said_yes = 0
    for seed in range(12):
        net = _AskingNetwork(3, seed=seed, pre_vote=seed % 2 == 0)
        rng = random.Random(seed)
        for _ in range(200):
            action = rng.random()
            node_id = rng.choice(net.ids)
            if action < 0.5:
                net.deliver(rng.randint(1, 4))
            elif action < 0.75:
                net.tick(node_id, rng.randint(1, 12))
            elif action < 0.95 and net.leader() is not None:
                net.propose(net.leader() or 1, b"%d" % rng.randint(0, 9))
            elif node_id in net.down:
                net.restart(node_id)
            else:
                net.crash(node_id)
        net.check_safety()
        asked += net.asked
        said_yes += net.said_yes
    assert said_yes > 100 and asked - said_yes > 100  # both answers were held to account
