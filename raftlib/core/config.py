"""CoreConfig: every knob of the pure Raft core, declared once and validated when built.

This class is the one declaration of each core setting: its name, type, default, unit, help
text and validator. Everything else derives from it: ``NodeConfig.core`` holds one; the
command-line flags of ``raftlib serve``/``raftlib cluster`` and ``raft-harness run/campaign``
are generated from these fields (``raftlib.config_flags``); the simulator, the harness options
and the bug zoo carry *overrides* (field name -> value) that are applied to it. Adding a
setting = one field here (with ``help``) plus the code that uses it.

Time is counted in abstract ticks (the driver decides how long a tick is); every limit carries
its unit last in its name. Bad values raise ``ConfigError``, one line naming the field and the
value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import attrs

from raftlib.core.types import NodeId
from raftlib.errors import ConfigError


class Rng(Protocol):
    """The only source of randomness of the core (election jitter); seed it for replayability.

    ``random.Random(seed)`` satisfies it. ``randint(a, b)`` returns an int in ``[a, b]``.
    """

    def randint(self, a: int, b: int) -> int: ...


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class SettingError(ConfigError):
    """A bad value of one setting: ``name`` is the field, ``problem`` the rest of the line
    (so a command line can say ``--append-entries-max: must be ...`` instead)."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f"CoreConfig.{name} {problem}")


def _positive_int(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not _is_positive_int(value):
        raise SettingError(attribute.name, f"must be an integer >= 1, got {value!r}")


def _boolean(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise SettingError(attribute.name, f"must be true or false, got {value!r}")


def _node_id(_: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not _is_positive_int(value):
        raise ConfigError(f"CoreConfig.node_id must be an int >= 1, got {value!r}")


def _voters(config: CoreConfig, _: attrs.Attribute[Any], voters: object) -> None:
    if not isinstance(voters, tuple):
        raise ConfigError(f"CoreConfig.voters must be a tuple, got {voters!r}")
    for voter in voters:
        if not _is_positive_int(voter):
            raise ConfigError(f"CoreConfig.voters: node ids must be ints >= 1, got {voter!r}")
    if len(set(voters)) != len(voters):
        raise ConfigError(f"CoreConfig.voters has duplicate ids: {voters!r}")
    if voters and config.node_id not in voters:
        raise ConfigError(
            f"CoreConfig.voters must include node_id {config.node_id}, got {voters!r}"
        )


def _timeout_range(config: CoreConfig, attribute: attrs.Attribute[Any], value: object) -> None:
    _positive_int(config, attribute, value)
    if config.election_timeout_ticks_max <= config.election_timeout_ticks_min:
        raise SettingError(
            "election_timeout_ticks_max", "must be > election_timeout_ticks_min "
            f"(the range [min, max) must not be empty), got min="
            f"{config.election_timeout_ticks_min} max={config.election_timeout_ticks_max}"
        )


def _heartbeat(config: CoreConfig, attribute: attrs.Attribute[Any], value: object) -> None:
    _positive_int(config, attribute, value)
    if config.heartbeat_interval_ticks >= config.election_timeout_ticks_min:
        raise SettingError(
            "heartbeat_interval_ticks", "must be < election_timeout_ticks_min "
            f"(followers would time out between heartbeats), got "
            f"{config.heartbeat_interval_ticks} >= {config.election_timeout_ticks_min}"
        )


def _lease_reads(config: CoreConfig, attribute: attrs.Attribute[Any], value: object) -> None:
    _boolean(config, attribute, value)
    if not value:
        return
    # Followers refuse votes within the election timeout of hearing from their leader only
    # with CheckQuorum (election.py, _in_lease): without it a vote can depose a leader at
    # once, and no lease holds.
    if not config.check_quorum:
        raise SettingError("lease_reads", "requires check_quorum (followers honour a "
                                          "leader's lease only with CheckQuorum on)")
    lease = config.election_timeout_ticks_min - config.lease_drift_ticks
    if lease < 1:
        raise SettingError(
            "lease_drift_ticks", "must be < election_timeout_ticks_min when lease_reads is on "
            f"(the lease is min - drift ticks and must be > 0), got drift="
            f"{config.lease_drift_ticks} min={config.election_timeout_ticks_min}"
        )


def setting(default: Any, validator: Callable[..., None], help: str) -> Any:
    """One tunable setting: its default, its validator and the help the flags show."""
    return attrs.field(default=default, validator=validator, metadata={"help": help})


# Validators run in field order once every field is set, so a cross-field check placed on the
# later field sees its partner already validated.
@attrs.frozen
class CoreConfig:
    # Identity (not settings: the driver fills them in from the node's own configuration).
    node_id: NodeId = attrs.field(validator=_node_id)
    # The voters the cluster starts with, this node included (every founding member is
    # given the same). Empty for a node that joins an existing cluster: it learns the
    # configuration from the leader and never campaigns before it is made a voter.
    # Ignored once a snapshot carries the configuration.
    voters: tuple[NodeId, ...] = attrs.field(validator=_voters)
    # The election timeout is drawn from [min, max) at every reset (§5.2: randomized timeouts
    # make split votes rare). A follower that heard from a leader within min ticks ignores
    # (pre)votes (thesis §9.6), and a leader checks its quorum every min ticks.
    election_timeout_ticks_min: int = setting(
        10, _positive_int, "election timeout, lower bound (ticks; drawn from [min, max))")
    election_timeout_ticks_max: int = setting(
        20, _timeout_range, "election timeout, upper bound, exclusive (ticks)")
    heartbeat_interval_ticks: int = setting(
        2, _heartbeat, "ticks between a leader's heartbeats (< election timeout min)")
    pre_vote: bool = setting(
        True, _boolean, "PreVote: a candidate first asks whether it could win (thesis §9.6)")
    check_quorum: bool = setting(
        True, _boolean, "CheckQuorum: a leader that has not heard from a quorum steps down")
    # Flow control of one AppendEntries message: at least one entry is always sent, even when
    # that single entry is larger than append_bytes_max.
    append_entries_max: int = setting(
        512, _positive_int, "entries per AppendEntries message at most")
    append_bytes_max: int = setting(
        1 << 20, _positive_int, "bytes of entries per AppendEntries message at most")
    # Unacknowledged AppendEntries messages per follower in replicate (pipelined) state.
    inflight_appends_max: int = setting(
        256, _positive_int, "unacknowledged AppendEntries per follower at most")
    # Entries appended by this leader but not yet committed; beyond it propose() refuses with
    # ProposalQueueFull so memory stays bounded when followers cannot keep up.
    uncommitted_entries_max: int = setting(
        8192, _positive_int, "uncommitted entries a leader holds before proposals get "
                             "ProposalQueueFull")
    # Lease reads (thesis §6.4.1, lease.py): a leader that a quorum acknowledged within the
    # lease answers reads at its commit index with no heartbeat round. The lease is
    # election_timeout_ticks_min - lease_drift_ticks, counted from when the acknowledged round
    # was SENT; the drift ticks absorb clock-rate differences between leader and followers
    # and one tick of rounding. Safe only while a leader's tick lasts at most
    # (min - 1) / (min - drift) times a follower's (9/7 with the defaults: 28%), and every
    # node of the cluster runs the same election_timeout_ticks_min with CheckQuorum on.
    lease_drift_ticks: int = setting(
        3, _positive_int, "lease reads: ticks the lease is shorter than election timeout min "
                         "(clock-drift bound)")
    lease_reads: bool = setting(
        False, _lease_reads, "lease reads: a leader heard from by a quorum within the lease "
                             "serves reads without a heartbeat round (needs check_quorum; "
                             "assumes bounded clock drift)")


IDENTITY_FIELDS: tuple[str, ...] = ("node_id", "voters")


def settings() -> tuple[attrs.Attribute[Any], ...]:
    """The tunable fields of ``CoreConfig`` (everything but its identity), in order."""
    return tuple(f for f in attrs.fields(CoreConfig) if f.name not in IDENTITY_FIELDS)


def setting_names() -> tuple[str, ...]:
    return tuple(f.name for f in settings())


def check_overrides(overrides: Mapping[str, Any], where: str = "core") -> dict[str, Any]:
    """Validate a mapping of setting name -> value against ``CoreConfig`` (as if applied to a
    one-node configuration); return it as a plain dict without the values that equal the
    defaults, sorted by name, so equal overrides compare and serialise equally."""
    if not isinstance(overrides, Mapping):
        raise ConfigError(f"{where}: core settings must be a mapping of name -> value, "
                          f"got {overrides!r}")
    known = setting_names()
    for name in overrides:
        if name not in known:
            raise SettingError(str(name), f"is not a core setting ({where}; known: "
                                          f"{', '.join(known)})")
    CoreConfig(node_id=1, voters=(1,), **overrides)
    defaults = {f.name: f.default for f in settings()}
    return {name: overrides[name] for name in sorted(overrides)
            if overrides[name] != defaults[name]}
