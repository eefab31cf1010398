"""Immutable records a node hands out: its status, what observers see, and its hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import attrs

from raftlib.core.types import ConfState, Entry, NodeId, Role


@attrs.frozen
class FollowerStatus:
    match_index: int
    next_index: int
    # "probe", "replicate" or "snapshot" (raftlib.core.progress).
    state: str = "replicate"
    # Seconds since this node last heard from it (None: never).
    last_contact_seconds: float | None = None


@attrs.frozen
class NodeStatus:
    """An immutable snapshot of a node, safe to hand to other tasks."""

    node_id: NodeId
    role: Role
    term: int
    leader: NodeId
    commit_index: int
    applied_index: int
    last_index: int
    followers: Mapping[NodeId, FollowerStatus]  # empty unless leader
    # What Raft says cannot happen, seen by this node (each also logged at error level), and
    # messages no correct peer could have sent: both stay 0 in a healthy cluster.
    safety_anomalies: int = 0
    invalid_messages: int = 0
    # The configuration in force on this node (voters, learners, outgoing voters if joint).
    configuration: ConfState | None = None


@attrs.frozen
class Observation:
    """What an observer hook sees (hashicorp/raft's Observer): a role change (``kind``
    "role", with the term, the leader known and why it changed) or a configuration that took
    effect ("configuration")."""

    kind: str
    node_id: NodeId
    role: Role
    term: int
    leader: NodeId
    reason: str = ""
    configuration: ConfState | None = None


@attrs.frozen
class NodeHooks:
    """Observation points for tests and the harness; called on the raft loop, so keep them
    quick and never let them raise. ``on_apply`` sees every applied entry batch (noops too);
    ``on_role`` sees each role change with the term it happened in."""

    on_apply: Callable[[NodeId, Sequence[Entry]], None] | None = None
    on_role: Callable[[NodeId, Role, int], None] | None = None
    # The state machine was restored from a snapshot up to this index (on start, or one the
    # leader sent).
    on_restore: Callable[[NodeId, int], None] | None = None
    # Role, leader and configuration changes (also logged at INFO with their reason).
    on_observation: Callable[[Observation], None] | None = None
    # Seconds one storage sync job took (metrics); when None nothing is timed.
    on_sync: Callable[[float], None] | None = None
