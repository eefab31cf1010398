"""Cluster membership: configurations, the changes between them, and their log encoding.

A configuration (``ConfState``) says who votes and who only receives the log (learners). It
changes through log entries of kind ``EntryKind.CONF`` whose data is the WHOLE new
configuration (as hashicorp/raft logs it), not a delta: a node that receives the log from its
start, or from any snapshot, knows the configuration after every CONF entry without knowing
the one before it (a joining node starts with none).

The rules (etcd-io/raft's "apply-time" membership; Raft thesis §4.3 for joint consensus):

- A configuration takes effect on a node when its entry is committed and handed out to be
  applied, never earlier: every node's configuration is a function of its applied prefix,
  and a snapshot carries the configuration of its index.
- A leader has at most one change in flight: it proposes the next only once the previous one
  took effect on it, and a new leader proposes none until it has committed an entry of its own
  term (the bug of the original single-server algorithm: two overlapping majorities).
- A change of at most one voter takes effect directly (every majority of the old voters
  intersects every majority of the new). A change of more enters the JOINT configuration
  (``voters_outgoing`` = the old voters): elections and commits then need a majority of both
  sets. Once the joint entry took effect the leader appends the entry that leaves it
  (``leave_joint``) by itself, so no operator action is needed to finish a change.
- Learners never vote and never count towards a quorum; promoting one is adding it as a voter.
"""

from __future__ import annotations

import enum

import msgspec

from raftlib.core.types import ConfState, NodeId
from raftlib.errors import MembershipError

__all__ = [
    "Change",
    "ChangeOp",
    "MembershipError",
    "apply_changes",
    "check_conf",
    "decode_conf",
    "encode_conf",
    "leave_joint",
    "members_of",
    "voters_of",
]


class ChangeOp(enum.IntEnum):
    ADD_VOTER = 0  # also promotes a learner
    ADD_LEARNER = 1
    REMOVE = 2


class Change(msgspec.Struct, frozen=True, array_like=True):
    """One step of a configuration change. ``address`` (added members only) is an opaque
    string the drivers use to reach the node; the core carries it and never reads it."""

    op: ChangeOp
    node: NodeId
    address: str = ""


def voters_of(conf: ConfState) -> frozenset[NodeId]:
    """Every node whose vote counts now (both sets of a joint configuration)."""
    return frozenset(conf.voters) | frozenset(conf.voters_outgoing)


def members_of(conf: ConfState) -> frozenset[NodeId]:
    """Every node that receives the log: voters of either set and learners."""
    return voters_of(conf) | frozenset(conf.learners)


def is_joint(conf: ConfState) -> bool:
    return bool(conf.voters_outgoing)


def address_of(conf: ConfState, node: NodeId) -> str | None:
    for member, address in conf.addresses:
        if member == node:
            return address
    return None


def _valid_id(node: object) -> bool:
    return type(node) is int and node >= 1


def check_conf(conf: ConfState) -> None:
    """Raise MembershipError unless ``conf`` is a configuration a correct cluster can hold."""
    for name in ("voters", "learners", "voters_outgoing"):
        ids = getattr(conf, name)
        if not isinstance(ids, tuple) or not all(_valid_id(n) for n in ids):
            raise MembershipError(f"{name} must be a tuple of node ids >= 1, got {ids!r}")
        if len(set(ids)) != len(ids):
            raise MembershipError(f"{name} has duplicate ids: {ids!r}")
    overlap = frozenset(conf.learners) & voters_of(conf)
    if overlap:
        raise MembershipError(f"nodes {sorted(overlap)} are both voters and learners")
    if conf.voters_outgoing and not conf.voters:
        raise MembershipError("a joint configuration needs incoming voters")
    members = members_of(conf)
    for entry in conf.addresses:
        if not (isinstance(entry, tuple) and len(entry) == 2 and _valid_id(entry[0])
                and isinstance(entry[1], str)):
            raise MembershipError(f"addresses must be (node id, str) pairs, got {entry!r}")
        if entry[0] not in members:
            raise MembershipError(f"address given for node {entry[0]}, not a member")


def apply_changes(conf: ConfState, changes: tuple[Change, ...]) -> ConfState:
    """The configuration ``changes`` lead to from ``conf`` (which must not be joint): direct
    when at most one voter changes, joint otherwise. Raises MembershipError for a change that
    makes no sense (removing a non-member, demoting a voter, no voter left)."""
    if is_joint(conf):
        raise MembershipError(
            "the configuration is joint: wait until it is left before the next change"
        )
    if not changes:
        raise MembershipError("a configuration change needs at least one change")
    voters = list(conf.voters)
    learners = list(conf.learners)
    addresses = dict(conf.addresses)
    for change in changes:
        if not isinstance(change, Change) or not _valid_id(change.node):
            raise MembershipError(f"not a valid change: {change!r}")
        node = change.node
        if change.op is ChangeOp.ADD_VOTER:
            if node in voters:
                raise MembershipError(f"node {node} is already a voter")
            if node in learners:
                learners.remove(node)
            voters.append(node)
        elif change.op is ChangeOp.ADD_LEARNER:
            if node in voters:
                # etcd needs a joint step for this; nobody here needs it yet.
                raise MembershipError(
                    f"node {node} is a voter: demoting is not supported (remove it, then add "
                    "it as a learner)"
                )
            if node in learners:
                raise MembershipError(f"node {node} is already a learner")
            learners.append(node)
        else:
            if node in voters:
                voters.remove(node)
            elif node in learners:
                learners.remove(node)
            else:
                raise MembershipError(f"node {node} is not a member")
            addresses.pop(node, None)
        if change.op is not ChangeOp.REMOVE and change.address:
            addresses[node] = change.address
    if not voters:
        raise MembershipError("the change would leave no voter")
    old = frozenset(conf.voters)
    new = frozenset(voters)
    outgoing: tuple[NodeId, ...] = ()
    if len(old ^ new) > 1:
        outgoing = tuple(sorted(old))
        # Removed voters stay reachable while the joint configuration still counts them.
        for node in old - new:
            previous = address_of(conf, node)
            if previous is not None:
                addresses[node] = previous
    result = ConfState(
        tuple(sorted(voters)),
        tuple(sorted(learners)),
        outgoing,
        tuple(sorted(addresses.items())),
    )
    check_conf(result)
    return result


def leave_joint(conf: ConfState) -> ConfState:
    """The configuration after a joint one: the incoming voters alone."""
    if not is_joint(conf):
        raise MembershipError("the configuration is not joint: there is nothing to leave")
    members = frozenset(conf.voters) | frozenset(conf.learners)
    return ConfState(
        conf.voters,
        conf.learners,
        (),
        tuple((n, a) for n, a in conf.addresses if n in members),
    )


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(ConfState)


def encode_conf(conf: ConfState) -> bytes:
    return _ENCODER.encode(conf)


def decode_conf(data: bytes) -> ConfState:
    """The configuration a CONF entry holds; MembershipError when it holds none."""
    try:
        conf = _DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise MembershipError(f"not a configuration entry: {exc}") from None
    check_conf(conf)
    return conf
