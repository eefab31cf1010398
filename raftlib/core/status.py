"""Immutable views of a core for status pages, metrics and tests."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from raftlib.core.types import ConfState, NodeId, Role


@attrs.frozen
class ProgressStatus:
    match: int
    next: int
    state: str


@attrs.frozen
class CoreStatus:
    """An immutable snapshot of the core for status pages and tests."""

    node_id: NodeId
    role: Role
    term: int
    vote: NodeId
    leader: NodeId
    commit: int
    applied: int
    last_index: int
    persisted_index: int
    # Leader only (empty otherwise): follower id -> replication progress.
    progress: Mapping[NodeId, ProgressStatus]
    # Messages dropped because no correct peer could have sent them (wrong dst, unknown src,
    # impossible values) and messages that would break a safety rule if obeyed (a second
    # leader in one term, an append rewriting committed entries). Both stay 0 in a healthy
    # cluster; tests assert it.
    invalid_messages: int
    safety_anomalies: int
    # The first index the log holds, and the latest snapshot's (0: none yet).
    first_index: int = 1
    snapshot_index: int = 0
    # The configuration in force (voters, learners, and outgoing voters while joint).
    conf: ConfState | None = None
