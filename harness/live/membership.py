"""The membership nemesis on live node processes, through the operator's own commands.

The same actions as the simulator's (``harness.sim.membership``), made with the RESP commands
an operator would use (``RAFT.MEMBERS``, ``RAFT.ADD``, ``RAFT.REMOVE``; ``raftlib.admin``) at
the node that leads: ``grow`` adds two non-members as voters (each as a learner first, promoted
once caught up), ``learner`` adds up to two learners, ``replace`` adds a non-member as a voter
and then removes a voter, ``remove`` removes one (never below two voters). ``wipe-replace``
follows the operator's procedure for a node whose disk died (README, "Replacing a node"): the
voter's machine dies for good (killed and retired: never started again, since a node that lost
its disk must not come back under its id: what its old self voted for could count twice), a
spare is added as a voter under its own id (a learner first, promoted once caught up), and the
dead one is removed. A window's end restores
the starting number of voters (learners promoted or non-members added, extra voters and
leftover learners removed).

Non-members are ``spares`` node processes started with ``raftlib serve --join``: they know no
configuration and wait to be added. Changes run one after another in one task, each bounded by
the window (then by the time limit); a change cut short leaves at worst a learner, which the
next restore removes. Every change and refusal goes to the node log.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

import trio

from harness.nemesis import restore_changes
from raftlib.client import TcpConnector
from raftlib.core.membership import ChangeOp
from raftlib.core.types import ConfState
from raftlib.operator_cli import OperatorError, call_leader

# Changes waiting for the worker (one window's action or restore each): more are dropped.
QUEUE_ITEMS_MAX = 16
# One RAFT.* call at most this long (RAFT.ADD waits for the learner to catch up).
CALL_SECONDS_MAX = 10.0


class Disks(Protocol):
    """What ``wipe-replace`` does to node processes (``harness.live.cluster.LiveCluster``)."""

    retired: set[int]

    def retire(self, node: int) -> None: ...


class LiveMembership:
    def __init__(
        self,
        *,
        size: int,
        nodes: list[int],
        raft_address: Callable[[int], str],
        client_address: Callable[[int], str],
        leader: Callable[[], int | None],
        log: Callable[[str], None],
        rng: random.Random,
        disks: Disks | None = None,
    ) -> None:
        self._disks = disks
        self._size = size
        self._nodes = nodes
        self._raft_address = raft_address
        self._client_address = client_address
        self._leader = leader
        self._log = log
        self._rng = rng
        self._connector = TcpConnector()
        self._send, self._receive = trio.open_memory_channel[tuple[str, float]](QUEUE_ITEMS_MAX)
        self.changes_done = 0
        self.changes_refused = 0

    def request(self, action: str, until: float) -> None:
        """Do ``action`` (or ``restore``) before the run's clock reads ``until``."""
        try:
            self._send.send_nowait((action, until))
        except trio.WouldBlock:
            self._log(f"membership: {action} dropped (changes queue full)")

    async def worker(self, clock: Callable[[], float]) -> None:
        """Make the requested changes one after another until cancelled."""
        async for action, until in self._receive:
            left = until - clock()
            if left <= 0:
                continue
            with trio.move_on_after(left):
                await self._act(action)

    async def aclose(self) -> None:
        await self._connector.aclose()

    # --- one action ---------------------------------------------------------------------------

    async def members(self) -> dict[int, str] | None:
        """The leader's configuration: node -> role (voter, learner, outgoing)."""
        leader = self._leader()
        if leader is None:
            return None
        try:
            with trio.fail_after(CALL_SECONDS_MAX):
                reply = await self._connector.call(self._client_address(leader),
                                                   [b"RAFT.MEMBERS"])
        except (OSError, trio.TooSlowError, Exception):
            return None
        if not isinstance(reply, list):
            return None
        roles: dict[int, str] = {}
        for row in reply:
            if isinstance(row, list) and len(row) >= 2 and isinstance(row[0], int):
                role = row[1].decode() if isinstance(row[1], bytes) else str(row[1])
                roles[row[0]] = role
        return roles

    async def _call(self, command: list[bytes]) -> bool:
        leader = self._leader()
        if leader is None:
            return False
        words = " ".join(part.decode() for part in command)
        try:
            with trio.fail_after(CALL_SECONDS_MAX):
                await call_leader(self._connector, self._client_address(leader), command)
        except (OperatorError, trio.TooSlowError, OSError, trio.BrokenResourceError,
                trio.ClosedResourceError, ValueError) as exc:
            # Any failure of the call: the change may or may not have been made; the next
            # action or restore starts from the configuration the leader reports then.
            self.changes_refused += 1
            self._log(f"membership: {words} not made: {exc}")
            return False
        self.changes_done += 1
        self._log(f"membership: {words} done")
        return True

    def _add(self, node: int, learner: bool = False) -> list[bytes]:
        command = [b"RAFT.ADD", b"%d" % node, self._raft_address(node).encode(),
                   self._client_address(node).encode()]
        if learner:
            command.append(b"LEARNER")
        return command

    async def remove_dead(self) -> dict[int, str]:
        """Remove from the configuration every node whose machine died (retired), as an
        operator would (a removal cut short by a window leaves one behind); the leader's
        configuration after that (node -> role)."""
        roles = await self._roles()
        retired = self._disks.retired if self._disks is not None else set()
        dead = sorted(n for n in roles if n in retired)
        if not dead:
            return roles
        for node in dead:
            await self._call([b"RAFT.REMOVE", b"%d" % node])
        return await self._roles()

    async def _roles(self) -> dict[int, str]:
        roles = None
        while roles is None:
            roles = await self.members()
            if roles is None:
                await trio.sleep(0.2)
        return roles

    async def _act(self, action: str) -> None:
        roles = await self.remove_dead()
        retired = self._disks.retired if self._disks is not None else set()
        voters = sorted(n for n, r in roles.items() if r == "voter")
        learners = sorted(n for n, r in roles.items() if r == "learner")
        outsiders = [n for n in self._nodes if n not in roles and n not in retired]
        self._log(f"membership: {action} (voters {voters}, learners {learners})")
        if action == "grow":
            for node in outsiders[:2]:
                await self._call(self._add(node))
        elif action == "learner":
            for node in outsiders[:2]:
                await self._call(self._add(node, learner=True))
        elif action == "wipe-replace" and self._disks is not None and outsiders \
                and len(voters) >= 2:
            await self._wipe_replace(voters, outsiders[0])
        elif action in ("replace", "wipe-replace"):
            if outsiders and len(voters) >= 2:
                gone = voters[self._rng.randrange(len(voters))]
                if await self._call(self._add(outsiders[0])):
                    await self._call([b"RAFT.REMOVE", b"%d" % gone])
        elif action == "remove":
            if len(voters) > 2:
                gone = voters[self._rng.randrange(len(voters))]
                await self._call([b"RAFT.REMOVE", b"%d" % gone])
        elif action == "restore":
            await self._restore(voters, learners, outsiders)
        else:
            raise AssertionError(f"unknown membership action {action!r}")

    async def _wipe_replace(self, voters: list[int], spare: int) -> None:
        disks = self._disks
        assert disks is not None
        leader = self._leader()
        candidates = [n for n in voters if n != leader]
        if not candidates:
            return
        gone = candidates[self._rng.randrange(len(candidates))]
        disks.retire(gone)
        self._log(f"membership: node {gone} lost its disk for good; node {spare} replaces it")
        await self._call(self._add(spare))
        await self._call([b"RAFT.REMOVE", b"%d" % gone])

    async def _restore(self, voters: list[int], learners: list[int],
                       outsiders: list[int]) -> None:
        """The simulator's restore (``harness.nemesis.restore_changes``), one command each:
        a change that fails is left to the next restore."""
        conf = ConfState(tuple(voters), tuple(learners))
        for change in restore_changes(conf, outsiders, self._size, self._rng):
            node = b"%d" % change.node
            if change.op is ChangeOp.REMOVE:
                await self._call([b"RAFT.REMOVE", node])
            elif change.node in learners:
                await self._call([b"RAFT.PROMOTE", node])
            else:
                await self._call(self._add(change.node))

    def describe(self) -> dict[str, Any]:
        return {"changes_done": self.changes_done, "changes_refused": self.changes_refused}
