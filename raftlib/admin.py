"""The operator's RESP commands of the KV service: membership, leadership transfer, status.

``KvCommandHandler`` (``raftlib.service``) hands every ``RAFT.*`` command to ``Admin.run``:

``RAFT.MEMBERS``           this node's configuration, one array per member:
                           ``[id, role, raft address, client address]``; role is ``voter``,
                           ``learner`` or ``outgoing`` (a voter of the old half of a joint
                           configuration only). Answered by any node (its applied view).
``RAFT.ADD id raft_addr [client_addr] [LEARNER]``  add a member: as a learner, then promoted
                           once its log caught up (``Node.add_voter``), or only as a learner.
``RAFT.PROMOTE id``        a learner becomes a voter once caught up.
``RAFT.REMOVE id``         remove a voter or learner (the leader itself too: it steps down).
``RAFT.TRANSFER [id]``     hand leadership to ``id`` (default: the most caught-up voter);
                           ``:id`` of the new leader once it leads.
``RAFT.STATUS``            ``key:value`` lines: role, term, leader, commit/applied index,
                           per-follower match, lag and last contact (leader), configuration.

Membership writes and transfers sent to a follower get ``-MOVED 0 HOST:PORT`` (the leader's
client address), as KV writes do; ``-TRYAGAIN`` while another change is under way or no leader
is known; ``-ERR`` for a change that makes no sense (the rule it breaks).

Member addresses. A member added later must be reachable by peers AND findable by clients, so
the address it is added with is ``RAFT_HOST:RAFT_PORT,client=HOST:PORT`` (the transport reads
only what precedes the comma; ``member_address`` writes it, ``split_member_address`` reads it).
A leader's client address comes from the configuration, else from ``--client-peers``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Final

from raftlib.core.membership import address_of, members_of
from raftlib.core.types import NO_NODE, NodeId
from raftlib.errors import (
    ChangeInProgress,
    ConfigError,
    LeadershipTransferFailed,
    MembershipError,
    NotLeader,
    RaftError,
    Stopped,
)
from raftlib.node import Node
from raftlib.resp.protocol import OK, ErrorReply, Reply
from raftlib.transport.tcp import parse_host_port

CLIENT_FIELD: Final = "client="

# name: (arguments min, max)
ADMIN_ARITY: Final[dict[bytes, tuple[int, int]]] = {
    b"RAFT.MEMBERS": (0, 0),
    b"RAFT.ADD": (2, 4),
    b"RAFT.PROMOTE": (1, 1),
    b"RAFT.REMOVE": (1, 1),
    b"RAFT.TRANSFER": (0, 1),
    b"RAFT.STATUS": (0, 0),
}


class AdminInputError(ValueError):
    """A RAFT.* command with bad arguments (one line naming which)."""


def member_address(raft: str, client: str | None = None) -> str:
    """The address a member is added with: ``raft`` for peers, ``client`` for redirects."""
    return raft if not client else f"{raft},{CLIENT_FIELD}{client}"


def split_member_address(address: str) -> tuple[str, str | None]:
    """``"h:1,client=h:2"`` -> ``("h:1", "h:2")``; ``"h:1"`` -> ``("h:1", None)``."""
    raft, _, rest = address.partition(",")
    for field in rest.split(","):
        if field.startswith(CLIENT_FIELD):
            return raft, field[len(CLIENT_FIELD):] or None
    return raft, None


def _node_id(raw: bytes) -> NodeId:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise AdminInputError(f"node id must be an integer >= 1, got {raw[:32]!r}")
    return value


def _host_port(raw: bytes, what: str) -> str:
    text = raw.decode("utf-8", "replace")
    if "," in text or parse_host_port(text) is None:
        raise AdminInputError(f"{what} must be HOST:PORT, got {text[:64]!r}")
    return text


class Admin:
    """Runs the RAFT.* commands against ``node``. ``client_addresses``: the client address of
    each member known at start (``--client-peers``); members added later carry theirs."""

    def __init__(self, node: Node, client_addresses: Mapping[NodeId, str]) -> None:
        self.node = node
        self.client_addresses = dict(client_addresses)
        self._commands: dict[bytes, Callable[[list[bytes]], Awaitable[Reply]]] = {
            b"RAFT.MEMBERS": self._members,
            b"RAFT.ADD": self._add,
            b"RAFT.PROMOTE": self._promote,
            b"RAFT.REMOVE": self._remove,
            b"RAFT.TRANSFER": self._transfer,
            b"RAFT.STATUS": self._status,
        }

    # --- addresses ------------------------------------------------------------------------

    def client_address(self, node_id: NodeId) -> str | None:
        """Where clients reach ``node_id``: its configuration entry, else ``--client-peers``."""
        address = address_of(self.node.configuration(), node_id)
        if address:
            client = split_member_address(address)[1]
            if client:
                return client
        return self.client_addresses.get(node_id)

    def raft_address(self, node_id: NodeId) -> str:
        address = self.node.address_of(node_id)
        return split_member_address(address)[0] if address else ""

    def redirect(self, exc: NotLeader) -> ErrorReply:
        """The reply to a write this node cannot take: MOVED to the leader, or TRYAGAIN."""
        leader = exc.leader_id
        if leader == NO_NODE or leader == self.node.node_id:
            return ErrorReply("TRYAGAIN no leader known (election in progress)")
        address = self.client_address(leader)
        if address is None:
            return ErrorReply(f"TRYAGAIN leader is node {leader}; its client address is unknown")
        return ErrorReply(f"MOVED 0 {address}")

    # --- commands -------------------------------------------------------------------------

    async def run(self, name: bytes, args: list[bytes]) -> Reply:
        """Answer one RAFT.* command (``name`` upper case, arity already checked)."""
        try:
            return await self._commands[name](args)
        except AdminInputError as exc:
            return ErrorReply(f"ERR {exc}")
        except NotLeader as exc:
            return self.redirect(exc)
        except ChangeInProgress as exc:
            return ErrorReply(f"TRYAGAIN {exc}")
        except Stopped as exc:
            return ErrorReply(f"UNKNOWN {exc}; the change may or may not take effect")
        except (MembershipError, ConfigError, LeadershipTransferFailed) as exc:
            return ErrorReply(f"ERR {exc}")
        except RaftError as exc:  # a learner that did not catch up in time
            return ErrorReply(f"ERR {exc}")

    async def _members(self, args: list[bytes]) -> Reply:
        conf = self.node.configuration()
        rows: list[Reply] = []
        for member in sorted(members_of(conf)):
            if member in conf.voters:
                role = b"voter"
            elif member in conf.learners:
                role = b"learner"
            else:
                role = b"outgoing"
            rows.append([member, role, self.raft_address(member).encode(),
                         (self.client_address(member) or "").encode()])
        return rows

    async def _add(self, args: list[bytes]) -> Reply:
        node_id = _node_id(args[0])
        raft = _host_port(args[1], "raft address")
        rest = list(args[2:])
        learner = bool(rest) and rest[-1].upper() == b"LEARNER"
        if learner:
            rest.pop()
        if len(rest) > 1:
            raise AdminInputError("syntax: RAFT.ADD id raft_addr [client_addr] [LEARNER]")
        client = _host_port(rest[0], "client address") if rest else None
        address = member_address(raft, client)
        if learner:
            await self.node.add_learner(node_id, address)
            return OK
        try:
            await self.node.add_voter(node_id, address)
        except (NotLeader, ChangeInProgress, MembershipError, ConfigError, Stopped):
            raise
        except RaftError as exc:  # it was added as a learner and did not catch up
            raise RaftError(f"{exc}; it stays a learner: start it, then RAFT.PROMOTE {node_id} "
                            f"(or RAFT.REMOVE {node_id})") from None
        return OK

    async def _promote(self, args: list[bytes]) -> Reply:
        await self.node.promote(_node_id(args[0]))
        return OK

    async def _remove(self, args: list[bytes]) -> Reply:
        await self.node.remove(_node_id(args[0]))
        return OK

    async def _transfer(self, args: list[bytes]) -> Reply:
        target = _node_id(args[0]) if args else None
        return await self.node.transfer_leadership(target)

    async def _status(self, args: list[bytes]) -> Reply:
        return status_text(self.node).encode()


def status_text(node: Node) -> str:
    """``RAFT.STATUS``: one ``key:value`` per line (followers: the leader's view of each)."""
    st = node.status()
    lines = [
        f"node_id:{st.node_id}",
        f"role:{st.role.name.lower()}",
        f"term:{st.term}",
        f"leader_id:{st.leader}",
        f"commit_index:{st.commit_index}",
        f"applied_index:{st.applied_index}",
        f"last_index:{st.last_index}",
    ]
    for peer, follower in sorted(st.followers.items()):
        contact = follower.last_contact_seconds
        lines.append(
            f"follower_{peer}:match={follower.match_index},next={follower.next_index},"
            f"state={follower.state},lag={max(0, st.commit_index - follower.match_index)},"
            f"last_contact_seconds={'never' if contact is None else f'{contact:.3f}'}"
        )
    conf = st.configuration
    if conf is not None:
        lines.append("voters:" + ",".join(map(str, conf.voters)))
        lines.append("learners:" + ",".join(map(str, conf.learners)))
        lines.append("voters_outgoing:" + ",".join(map(str, conf.voters_outgoing)))
    lines.append(f"safety_anomalies:{st.safety_anomalies}")
    lines.append(f"invalid_messages:{st.invalid_messages}")
    return "\r\n".join(lines) + "\r\n"
