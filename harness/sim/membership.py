"""The membership nemesis in the simulator: the cluster's configuration changes under load.

A ``member`` window (``harness.nemesis``) starts with one action, chosen when the schedule is
generated and resolved against the configuration in force when it starts:

- ``grow``: two nodes that are not members become voters in one joint change (3 -> 5);
- ``learner``: up to two non-members become learners (they get the log, never vote);
- ``replace``: one voter (perhaps the leader) is removed and one non-member added as a voter,
  in one joint change;
- ``remove``: one voter is removed (never below two voters);
- ``wipe-replace``: one voter is removed, its disk is lost for good (its id retired: a node
  that lost its disk may have voted in a term it forgot, so it must never return under the
  same id), and a brand-new node joins as a learner in its place.

The window's stop restores the cluster to its starting size: every voter beyond it is
removed, learners are promoted and non-members added until the size is back, other learners
are removed; one change (joint when it moves several voters). Every change is proposed at the
node that leads at that moment, through the production API (``Driver.propose_conf_change``),
and retried every ``RETRY_US`` while it is refused (no leader, a change still under way) until
the window's end; at the time limit pending attempts stop.

Non-members come from a pool of ``SPARE_NODES`` nodes that start empty in join mode (they
know no configuration), plus the new nodes ``wipe-replace`` creates.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from harness.nemesis import SPARE_NODES as SPARE_NODES
from harness.nemesis import restore_changes
from harness.sim.loop import EventLoop
from harness.sim.node import SimNode
from raftlib.core.membership import Change, ChangeOp
from raftlib.core.types import ConfState, NodeId

# A refused change (no leader, one still under way) is tried again after this long.
RETRY_US = 100_000
# Nodes a run may create for wipe-replace, in all (each retires one id for good).
NEW_NODES_MAX = 64

Plan = Callable[[ConfState], tuple[Change, ...] | None]


class MembershipNemesis:
    def __init__(
        self,
        *,
        loop: EventLoop,
        nodes: dict[NodeId, SimNode],
        size: int,
        make_node: Callable[[NodeId], SimNode],
        leader: Callable[[], NodeId | None],
        log: Callable[[str], None],
        rng: random.Random,
        time_limit_us: int,
    ) -> None:
        self._time_limit_us = time_limit_us
        self._loop = loop
        self._nodes = nodes
        self._size = size
        self._make_node = make_node
        self._leader = leader
        self._log = log
        self._rng = rng
        self._stop_us = 0  # attempts end here (the window's end, then the time limit)
        self._created = 0
        self.changes_done = 0
        self.changes_refused = 0

    def _conf(self) -> ConfState | None:
        leader = self._leader()
        if leader is None:
            return None
        core = self._nodes[leader].core
        return core.conf if core is not None else None

    def _pending_confs(self) -> list[ConfState]:
        """The configurations in the leader's log beyond what it applied (usually none)."""
        leader = self._leader()
        core = self._nodes[leader].core if leader is not None else None
        return core._log_confs() if core is not None else []

    def _outsiders(self, conf: ConfState) -> list[NodeId]:
        members = set(conf.voters) | set(conf.learners) | set(conf.voters_outgoing)
        return [n for n, node in sorted(self._nodes.items())
                if n not in members and not node.retired and node.diverged is None]

    # --- windows ----------------------------------------------------------------------------

    def start(self, action: str, until_us: int) -> dict[str, Any]:
        self._stop_us = min(until_us, self._time_limit_us)
        rng = self._rng
        detail: dict[str, Any] = {"action": action}
        if action == "grow":
            self._run([lambda conf: tuple(
                Change(ChangeOp.ADD_VOTER, n) for n in self._outsiders(conf)[:2]) or None])
        elif action == "learner":
            self._run([lambda conf: tuple(
                Change(ChangeOp.ADD_LEARNER, n) for n in self._outsiders(conf)[:2]) or None])
        elif action == "replace":
            pick = rng.random()

            def replace(conf: ConfState) -> tuple[Change, ...] | None:
                outsiders = self._outsiders(conf)
                if not outsiders or len(conf.voters) < 2:
                    return None
                gone = conf.voters[int(pick * len(conf.voters))]
                return (Change(ChangeOp.REMOVE, gone), Change(ChangeOp.ADD_VOTER, outsiders[0]))

            self._run([replace])
        elif action == "remove":
            pick = rng.random()
            self._run([lambda conf: (
                (Change(ChangeOp.REMOVE, conf.voters[int(pick * len(conf.voters))]),)
                if len(conf.voters) > 2 else None)])
        elif action == "wipe-replace":
            pick = rng.random()
            chosen: list[NodeId] = []

            def remove_one(conf: ConfState) -> tuple[Change, ...] | None:
                if len(conf.voters) <= 2 or self._created >= NEW_NODES_MAX:
                    return None
                chosen[:] = [conf.voters[int(pick * len(conf.voters))]]
                return (Change(ChangeOp.REMOVE, chosen[0]),)

            new: list[NodeId] = []

            def add_new(conf: ConfState) -> tuple[Change, ...] | None:
                if not new:
                    # Kept if another window added it back meanwhile, in the applied
                    # configuration or in one still pending in the leader's log: wiping a voter
                    # of a configuration the leader may decide by would be the harness losing
                    # acknowledged entries, which the commit-durability check would blame on
                    # Raft.
                    members = {n for c in (conf, *self._pending_confs())
                               for n in (*c.voters, *c.learners, *c.voters_outgoing)}
                    if not chosen or chosen[0] in members:
                        return None
                    self._nodes[chosen[0]].retire()
                    new_id = max(self._nodes) + 1
                    self._created += 1
                    self._nodes[new_id] = self._make_node(new_id)
                    self._log(f"membership: node {chosen[0]} lost its disk and is retired; "
                              f"new node {new_id} joins in its place")
                    new.append(new_id)
                if new[0] in conf.learners or new[0] in conf.voters:
                    return None
                return (Change(ChangeOp.ADD_LEARNER, new[0]),)

            self._run([remove_one, add_new])
        else:
            raise AssertionError(f"unknown membership action {action!r}")
        return detail

    def stop(self) -> None:
        """Back to the starting size, all voters (attempted until the time limit)."""
        self._stop_us = self._time_limit_us
        self._run([self._restore])

    def _restore(self, conf: ConfState) -> tuple[Change, ...] | None:
        return restore_changes(conf, self._outsiders(conf), self._size, self._rng) or None

    # --- attempts ---------------------------------------------------------------------------

    def _run(self, plans: list[Plan]) -> None:
        self._loop.after(0, self._attempt, (plans, self._stop_us))

    def _attempt(self, item: tuple[list[Plan], int]) -> None:
        plans, until_us = item
        if not plans or self._loop.now_us >= until_us:
            return
        conf = self._conf()
        leader = self._leader()
        if conf is None or leader is None or conf.voters_outgoing:
            self._loop.after(RETRY_US, self._attempt, item)
            return
        changes = plans[0](conf)
        if changes is None:
            # Nothing to do for this step (no outsider left, too few voters): go on.
            self._loop.after(0, self._attempt, (plans[1:], until_us))
            return

        def done(error: BaseException | None) -> None:
            if error is None:
                self.changes_done += 1
                self._log(f"membership: {_describe(changes)} took effect on node {leader}")
                self._loop.after(0, self._attempt, (plans[1:], until_us))
            else:
                self.changes_refused += 1
                self._log(f"membership: {_describe(changes)} at node {leader} not made: "
                          f"{type(error).__name__}: {error}")
                self._loop.after(RETRY_US, self._attempt, item)

        self._log(f"membership: proposing {_describe(changes)} at node {leader}")
        self._nodes[leader].propose_change(changes, done)


def _describe(changes: tuple[Change, ...]) -> str:
    words = {ChangeOp.ADD_VOTER: "add voter", ChangeOp.ADD_LEARNER: "add learner",
             ChangeOp.REMOVE: "remove"}
    return ", ".join(f"{words[c.op]} {c.node}" for c in changes)
