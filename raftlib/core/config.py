"""CoreConfig: every knob of the pure Raft core, validated when built.

Time is counted in abstract ticks (the driver decides how long a tick is); every limit carries
its unit last in its name. Bad values raise ``ConfigError`` naming the field.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from raftlib.core.types import NodeId
from raftlib.errors import ConfigError


class Rng(Protocol):
    """The only source of randomness of the core (election jitter); seed it for replayability.

    ``random.Random(seed)`` satisfies it. ``randint(a, b)`` returns an int in ``[a, b]``.
    """

    def randint(self, a: int, b: int) -> int: ...


def _positive(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"CoreConfig.{name} must be an int >= 1, got {value!r}")
    return value


@attrs.frozen
class CoreConfig:
    node_id: NodeId
    # The voters the cluster starts with, this node included (every founding member is
    # given the same). Empty for a node that joins an existing cluster: it learns the
    # configuration from the leader and never campaigns before it is made a voter.
    # Ignored once a snapshot carries the configuration.
    voters: tuple[NodeId, ...]
    # The election timeout is drawn from [min, max) at every reset (§5.2: randomized timeouts
    # make split votes rare). A follower that heard from a leader within min ticks ignores
    # (pre)votes (thesis §9.6), and a leader checks its quorum every min ticks.
    election_timeout_ticks_min: int = 10
    election_timeout_ticks_max: int = 20
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    # Flow control of one AppendEntries message: at least one entry is always sent, even when
    # that single entry is larger than append_bytes_max.
    append_entries_max: int = 512
    append_bytes_max: int = 1 << 20
    # Unacknowledged AppendEntries messages per follower in replicate (pipelined) state.
    inflight_appends_max: int = 256
    # Entries appended by this leader but not yet committed; beyond it propose() refuses with
    # ProposalQueueFull so memory stays bounded when followers cannot keep up.
    uncommitted_entries_max: int = 8192

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.node_id, int) or isinstance(self.node_id, bool) or self.node_id < 1:
            raise ConfigError(f"CoreConfig.node_id must be an int >= 1, got {self.node_id!r}")
        if not isinstance(self.voters, tuple):
            raise ConfigError(f"CoreConfig.voters must be a tuple, got {self.voters!r}")
        for voter in self.voters:
            if not isinstance(voter, int) or isinstance(voter, bool) or voter < 1:
                raise ConfigError(f"CoreConfig.voters: node ids must be ints >= 1, got {voter!r}")
        if len(set(self.voters)) != len(self.voters):
            raise ConfigError(f"CoreConfig.voters has duplicate ids: {self.voters!r}")
        if self.voters and self.node_id not in self.voters:
            raise ConfigError(
                f"CoreConfig.voters must include node_id {self.node_id}, got {self.voters!r}"
            )
        for name in (
            "election_timeout_ticks_min",
            "election_timeout_ticks_max",
            "heartbeat_interval_ticks",
            "append_entries_max",
            "append_bytes_max",
            "inflight_appends_max",
            "uncommitted_entries_max",
        ):
            _positive(name, getattr(self, name))
        if self.election_timeout_ticks_max <= self.election_timeout_ticks_min:
            raise ConfigError(
                "CoreConfig.election_timeout_ticks_max must be > election_timeout_ticks_min "
                f"(the range [min, max) must not be empty), got min="
                f"{self.election_timeout_ticks_min} max={self.election_timeout_ticks_max}"
            )
        if self.heartbeat_interval_ticks >= self.election_timeout_ticks_min:
            raise ConfigError(
                "CoreConfig.heartbeat_interval_ticks must be < election_timeout_ticks_min "
                f"(followers would time out between heartbeats), got "
                f"{self.heartbeat_interval_ticks} >= {self.election_timeout_ticks_min}"
            )
        for name in ("pre_vote", "check_quorum"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"CoreConfig.{name} must be a bool, got {getattr(self, name)!r}")
