"""NodeConfig: everything a Trio node needs to know, validated up front (``ConfigError`` names
the field). The core's own settings live in ``raftlib.core.CoreConfig`` (``NodeConfig.core``);
this adds what only a running node has: its peers' addresses, its tick, queue bounds, where
storage calls run, snapshots, and whether it joins an existing cluster."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs

from raftlib.core.config import CoreConfig, setting_names
from raftlib.core.types import NodeId
from raftlib.errors import ConfigError
from raftlib.snapshots import SnapshotPolicy


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"NodeConfig.{name} must be an int >= {minimum}, got {value!r}")


def _at_least_1(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_int(attribute.name, value, 1)


def _seconds(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or value <= 0):
        raise ConfigError(f"NodeConfig.{attribute.name} must be a number of seconds > 0, "
                          f"got {value!r}")


def _boolean(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"NodeConfig.{attribute.name} must be a bool, got {value!r}")


def _policy(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, SnapshotPolicy):
        raise ConfigError(f"NodeConfig.snapshot must be a SnapshotPolicy, got {value!r}")


def _identity(config: NodeConfig, attribute: attrs.Attribute[Any], value: object) -> None:
    _check_identity(config)


def _core_of_this_node(config: NodeConfig, _: attrs.Attribute[Any], core: object) -> None:
    if not isinstance(core, CoreConfig):
        raise ConfigError(f"NodeConfig.core must be a CoreConfig, got {core!r}")
    if core.node_id != config.node_id:
        raise ConfigError(f"NodeConfig.core.node_id must be node_id {config.node_id}, "
                          f"got {core.node_id}")
    missing = sorted(set(core.voters) - set(config.peers))
    if missing:
        raise ConfigError(f"NodeConfig.peers has no address for voters {missing}")


def _default_core(config: NodeConfig) -> CoreConfig:
    _check_identity(config)
    voters = () if config.join else tuple(sorted(config.peers))
    return CoreConfig(node_id=config.node_id, voters=voters)


def _check_identity(config: NodeConfig) -> None:
    # Runs before the other validators (the core's default is built from these fields).
    _check_int("node_id", config.node_id, 1)
    if not isinstance(config.peers, Mapping) or not config.peers:
        raise ConfigError(f"NodeConfig.peers must be a non-empty mapping, got {config.peers!r}")
    for peer, address in config.peers.items():
        _check_int("peers (node id)", peer, 1)
        if not isinstance(address, str):
            raise ConfigError(f"NodeConfig.peers[{peer}] must be an address string")
    if config.node_id not in config.peers:
        raise ConfigError(f"NodeConfig.peers must include node_id {config.node_id}")


@attrs.frozen
class NodeConfig:
    """Everything a node needs to know, validated up front (``ConfigError`` names the field).

    The Raft core's settings are one ``CoreConfig`` (``core``; by default its defaults for
    ``node_id`` and every peer as a voter); change some with ``with_core``::

        NodeConfig(node_id=1, peers=peers).with_core(pre_vote=False, append_entries_max=64)
    """

    # Validators run in field order once every field is set (the core's default, built from
    # node_id and peers, checks them first itself).
    node_id: NodeId
    # Every voting member (this node included) and the address clients and peers reach it at;
    # the address is what ``NotLeader`` reports so a client can retry at the leader.
    peers: Mapping[NodeId, str] = attrs.field(validator=_identity)
    tick_seconds: float = attrs.field(default=0.025, validator=_seconds)
    # Join an existing cluster (``peers`` then lists where its members are reached): the node
    # starts knowing no configuration (the default core's voters are empty), never campaigns,
    # and waits for the leader to add it (as a learner first) and send it the log. False:
    # ``peers`` are the founding voters.
    join: bool = attrs.field(default=False, validator=_boolean)
    # The core's settings (elections, heartbeats, PreVote, CheckQuorum, flow control).
    core: CoreConfig = attrs.field(default=attrs.Factory(_default_core, takes_self=True),
                                   validator=_core_of_this_node)
    # Inputs (message batches, proposals, reads, ticks) waiting for the raft loop. A full queue
    # makes callers wait and the transport drop, rather than letting memory grow.
    input_queue_items_max: int = attrs.field(default=4096, validator=_at_least_1)
    # Inputs handled per loop iteration before the core's output is processed, so one flood of
    # messages cannot starve ticks or delay fsyncs without bound.
    inputs_per_iteration_max: int = attrs.field(default=4096, validator=_at_least_1)
    # Outstanding proposals and reads this node will track at once.
    pending_requests_max: int = attrs.field(default=65536, validator=_at_least_1)
    # How long a read waits for the leader to confirm it (a few heartbeat rounds).
    read_timeout_seconds: float = attrs.field(default=1.0, validator=_seconds)
    seed: int | None = None
    # Where a storage that may block (``blocking`` true, like WalStorage) is called. True: in
    # a worker thread of the node, so the Trio loop (and whatever else runs on it) never
    # waits for a disk. False: on the loop itself, which then stalls for each fsync but saves
    # the thread hand-offs (less CPU and latency per sync on a busy machine).
    storage_thread: bool = attrs.field(default=True, validator=_boolean)
    # When to snapshot the state machine and compact the log, and how snapshots travel.
    snapshot: SnapshotPolicy = attrs.field(factory=SnapshotPolicy, validator=_policy)

    def with_core(self, **settings: Any) -> NodeConfig:
        """This configuration with some core settings changed (``CoreConfig`` field names;
        ``ConfigError`` names a bad one)."""
        for name in settings:
            if name not in setting_names():
                raise ConfigError(f"NodeConfig.with_core: unknown core setting {name!r}")
        return attrs.evolve(self, core=attrs.evolve(self.core, **settings))
