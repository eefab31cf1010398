"""Errors raftlib raises to its users. Each says what went wrong and what to do about it."""

from __future__ import annotations

from raftlib.core.types import NO_NODE, NodeId


class RaftError(Exception):
    """Base class of every error raftlib raises on purpose."""


class NotLeader(RaftError):
    """This node cannot accept the request because it is not the leader.

    ``leader_id`` is the leader this node knows of (``NO_NODE`` when unknown) and
    ``leader_address`` its address when the driver knows it, so a client can retry there.
    """

    def __init__(self, leader_id: NodeId = NO_NODE, leader_address: str | None = None) -> None:
        self.leader_id = leader_id
        self.leader_address = leader_address
        where = f"node {leader_id}" if leader_id != NO_NODE else "unknown"
        if leader_address:
            where += f" at {leader_address}"
        super().__init__(f"not the leader (leader: {where})")


class ProposalQueueFull(RaftError):
    """Backpressure: too many proposals are waiting to commit. Retry later."""


class ProposalDropped(RaftError):
    """The proposal will never be applied: another entry was committed at its log index (or
    the leader refused it outright, e.g. during a leadership transfer). Its outcome is known,
    so a retry cannot apply the command twice."""


class MembershipError(RaftError, ValueError):
    """A configuration change that cannot be made (removing a non-member, leaving no voter,
    a change while the configuration is joint); the message says which rule it breaks."""


class ChangeInProgress(RaftError):
    """The leader has a configuration change that has not taken effect yet (or, newly
    elected, has not committed an entry of its term): one change at a time. Retry shortly."""


class LeadershipTransferFailed(RaftError):
    """The chosen node did not take leadership in time; the old leader leads on."""


class ConfigError(RaftError, ValueError):
    """A configuration value is invalid; the message names the field."""


class StorageError(RaftError):
    """Durable state cannot be read or written. Never ignored: the node stops."""


class CorruptLog(StorageError):
    """A record before the tail of the log fails its checksum: refuse to start, never drop data."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        super().__init__(f"{path}: corrupt record at offset {offset}: {reason}")


class Stopped(RaftError):
    """The node has stopped; nothing more can be done with it."""


class CorruptSnapshot(StorageError):
    """A snapshot file is missing, truncated or fails its checksum: refuse it, never apply it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"{path}: bad snapshot: {reason}")


class MissingHardState(StorageError):
    """The log holds entries but the hard state (term, vote) is gone: starting anyway could
    vote twice in one term. Refused unless the operator says the loss is understood."""


class Diverged(RaftError):
    """This node's committed log contradicts the cluster's (Raft says this cannot happen: a
    disk lost acknowledged data, or a peer is not a correct Raft). The node stops rather than
    apply a history the others do not share; the message names the index and both terms."""


class ProposalOutcomeUnknown(RaftError):
    """The proposal may or may not have been applied, and this node can no longer tell (its
    state machine was replaced by a snapshot from the leader covering the proposal's index)."""
