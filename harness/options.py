"""RunOptions: everything that determines a run, validated when built.

A run of the sim backend is a pure function of its options (the seed included) and, when given,
a saved nemesis schedule: ``to_argv`` rebuilds the exact command line that reproduces it and
``to_json``/``from_json`` carry it through ``results.json`` for ``raft-harness replay``. Every
time is in seconds (floats, as the CLI takes them); the simulator converts to integer
microseconds once, so virtual time has no rounding drift. Bad values raise ``OptionsError``
naming the option, as the CLI prints it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

BACKENDS: tuple[str, ...] = ("sim", "live")
WORKLOADS: tuple[str, ...] = ("register", "kv", "append")
# Fault kinds a schedule can draw from; "all" selects every one, "none" none.
NEMESIS_KINDS: tuple[str, ...] = (
    "partition",
    "kill",
    "pause",
    "loss",
    "duplicate",
    "delay",
    "reorder",
    "clock",
    "disk",
    "crash-after-vote",
    "crash-after-commit",
    "crash-new-leader",
)
NODES_MAX = 15
# raftlib.core.CoreConfig's defaults (not imported: options stay free of the library).
APPEND_ENTRIES_MAX_DEFAULT = 512
APPEND_ENTRIES_MAX = 1 << 20
# The nodes' snapshot thresholds in harness runs: far smaller than raftlib's defaults (10,000
# entries, 1,024 trailing, 256 KiB chunks), so that a run of a few hundred operations takes
# several snapshots, compacts its logs and sends InstallSnapshot to nodes that fell behind.
SNAPSHOT_ENTRIES_DEFAULT = 64
SNAPSHOT_TRAILING_DEFAULT = 16
SNAPSHOT_CHUNK_BYTES_DEFAULT = 4096
CLIENTS_MAX = 1000


class OptionsError(ValueError):
    """A bad option; ``str()`` is one line naming it (the CLI prints it and exits 3)."""


def parse_nemesis(text: str) -> tuple[str, ...]:
    """``partition,kill`` / ``all`` / ``none`` -> a tuple of kinds in canonical order."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise OptionsError("--nemesis: empty list (use 'none' for no faults)")
    if names == ["all"]:
        return NEMESIS_KINDS
    if names == ["none"]:
        return ()
    for name in names:
        if name not in NEMESIS_KINDS:
            known = ", ".join((*NEMESIS_KINDS, "all", "none"))
            raise OptionsError(f"--nemesis: unknown fault kind {name!r} (known: {known})")
    return tuple(kind for kind in NEMESIS_KINDS if kind in names)


def nemesis_text(kinds: Sequence[str]) -> str:
    if not kinds:
        return "none"
    if tuple(kinds) == NEMESIS_KINDS:
        return "all"
    return ",".join(kinds)


def _seconds(name: str, value: float, minimum: float, maximum: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not minimum <= value <= maximum
    ):
        raise OptionsError(f"--{name}: must be a number of seconds in [{minimum:g}, {maximum:g}], "
                           f"got {value!r}")


def _integer(name: str, value: int, minimum: int, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise OptionsError(f"--{name}: must be an integer in [{minimum}, {maximum}], got {value!r}")


def _as_float(value: Any) -> Any:
    # Ints become floats so equal options serialise identically; anything else is left for
    # validation to name.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


@attrs.frozen
class RunOptions:
    backend: str = "sim"
    nodes: int = 5
    clients: int = 10
    workload: str = "register"
    nemesis: tuple[str, ...] = ()
    # Seconds of workload (and faults), simulated.
    time_limit: float = attrs.field(default=10.0, converter=_as_float)
    seed: int = 0
    # Client operations per second, all clients together (a target).
    rate: float = attrs.field(default=20.0, converter=_as_float)
    # A client gives up on a request after this; a write's outcome is then unknown.
    request_timeout: float = attrs.field(default=1.0, converter=_as_float)
    # Mean quiet time and mean fault duration of a generated schedule.
    nemesis_interval: float = attrs.field(default=2.0, converter=_as_float)
    # After the final heal, the bound for the cluster to serve again.
    recovery_time: float = attrs.field(default=10.0, converter=_as_float)
    # Wall seconds lincheck may search before its verdict is "unknown".
    lincheck_timeout: float = attrs.field(default=60.0, converter=_as_float)
    # A bug of the zoo (harness.zoo) switched on for the run ("": none); sim backend only.
    bug: str = ""
    # Client operations invoked in all, at most (0: no limit); the shrinker cuts runs with it.
    ops_limit: int = 0
    # Settings of the Raft core under test (raftlib.core.CoreConfig), sim backend only: each is
    # a configuration a user may legitimately choose, and some faults only show under them
    # (no PreVote/CheckQuorum: competing candidates in one term; one entry per append: an old
    # term's entries replicate without the new leader's noop).
    pre_vote: bool = True
    check_quorum: bool = True
    append_entries_max: int = APPEND_ENTRIES_MAX_DEFAULT
    # Snapshot thresholds of the nodes (raftlib.snapshots.SnapshotPolicy): a snapshot every
    # this many applied entries (0: never), entries kept behind it, bytes per chunk sent to a
    # follower. Tiny values make snapshots, compaction and InstallSnapshot happen all the time.
    snapshot_entries: int = SNAPSHOT_ENTRIES_DEFAULT
    snapshot_trailing: int = SNAPSHOT_TRAILING_DEFAULT
    snapshot_chunk_bytes: int = SNAPSHOT_CHUNK_BYTES_DEFAULT
    # The values above were drawn from the seed by harness.swarm (a label: every drawn value is
    # in these options, so a run never depends on how they were drawn).
    swarm: bool = False

    def __attrs_post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise OptionsError(
                f"--backend: {self.backend!r} is not available (available: "
                f"{', '.join(BACKENDS)})"
            )
        if self.workload not in WORKLOADS:
            raise OptionsError(
                f"--workload: unknown workload {self.workload!r} (known: {', '.join(WORKLOADS)})"
            )
        _integer("nodes", self.nodes, 1, NODES_MAX)
        _integer("clients", self.clients, 1, CLIENTS_MAX)
        _integer("seed", self.seed, 0, 2**63 - 1)
        for kind in self.nemesis:
            if kind not in NEMESIS_KINDS:
                raise OptionsError(f"--nemesis: unknown fault kind {kind!r}")
        _seconds("time-limit", self.time_limit, 0.1, 86400.0)
        if (
            isinstance(self.rate, bool)
            or not isinstance(self.rate, int | float)
            or not math.isfinite(self.rate)
            or not 0 < self.rate <= 100_000
        ):
            raise OptionsError(f"--rate: must be a number of operations per second in "
                               f"(0, 100000], got {self.rate!r}")
        _seconds("request-timeout", self.request_timeout, 0.01, 3600.0)
        _seconds("nemesis-interval", self.nemesis_interval, 0.01, 86400.0)
        _seconds("recovery-time", self.recovery_time, 0.5, 86400.0)
        _seconds("lincheck-timeout", self.lincheck_timeout, 0.1, 86400.0)
        _integer("ops-limit", self.ops_limit, 0, 2**31 - 1)
        for name in ("pre_vote", "check_quorum", "swarm"):
            if not isinstance(getattr(self, name), bool):
                raise OptionsError(f"--{name.replace('_', '-')}: must be true or false, got "
                                   f"{getattr(self, name)!r}")
        _integer("append-entries-max", self.append_entries_max, 1, APPEND_ENTRIES_MAX)
        _integer("snapshot-entries", self.snapshot_entries, 0, 2**31 - 1)
        _integer("snapshot-trailing", self.snapshot_trailing, 0, 2**31 - 1)
        _integer("snapshot-chunk-bytes", self.snapshot_chunk_bytes, 1, 16 << 20)
        if self.backend != "sim" and self.core_settings():
            raise OptionsError(f"--{next(iter(self.core_settings())).replace('_', '-')}: core "
                               "settings apply to the simulated cluster; they need --backend sim")
        if self.bug:
            from harness.zoo import UnknownBug, get

            try:
                get(self.bug)
            except UnknownBug as exc:
                raise OptionsError(str(exc)) from None
            if self.backend != "sim":
                raise OptionsError("--bug: the bug zoo patches the simulated cluster; it needs "
                                   "--backend sim")

    def core_settings(self) -> dict[str, Any]:
        """The core settings that differ from raftlib's defaults (empty: the defaults)."""
        defaults = {"pre_vote": True, "check_quorum": True,
                    "append_entries_max": APPEND_ENTRIES_MAX_DEFAULT}
        return {name: getattr(self, name) for name, default in defaults.items()
                if getattr(self, name) != default}

    def snapshot_settings(self) -> dict[str, int]:
        """The nodes' ``SnapshotPolicy`` fields these options set."""
        return {"entries": self.snapshot_entries, "trailing_entries": self.snapshot_trailing,
                "chunk_bytes": self.snapshot_chunk_bytes}

    def snapshot_flags(self) -> list[str]:
        """The same thresholds as ``raftlib serve`` flags (live nodes)."""
        return ["--snapshot-entries", str(self.snapshot_entries),
                "--snapshot-trailing", str(self.snapshot_trailing),
                "--snapshot-chunk-bytes", str(self.snapshot_chunk_bytes)]

    def core_text(self) -> str:
        """The non-default core settings for people ("" when every one is the default)."""
        words = {"pre_vote": "PreVote off", "check_quorum": "CheckQuorum off"}
        return ", ".join(words.get(name, f"{name.replace('_', '-')}={value}")
                         for name, value in self.core_settings().items())

    def to_json(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["nemesis"] = list(self.nemesis)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> RunOptions:
        if not isinstance(data, Mapping):
            raise OptionsError(f"{where}: options must be a JSON object")
        names = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise OptionsError(f"{where}: unknown option {unknown[0]!r}")
        values = dict(data)
        if "nemesis" in values:
            nemesis = values["nemesis"]
            if not isinstance(nemesis, list) or not all(isinstance(k, str) for k in nemesis):
                raise OptionsError(f"{where}: options.nemesis must be a list of fault kinds")
            values["nemesis"] = tuple(nemesis)
        try:
            return cls(**values)
        except OptionsError as exc:
            raise OptionsError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise OptionsError(f"{where}: bad options: {exc}") from None

    def to_argv(self) -> list[str]:
        """The ``raft-harness run`` arguments that rebuild exactly these options. A swarm run
        spells out every setting, default or not: next to ``--swarm`` an explicit option pins
        its dimension, so the command pins every drawn value."""
        every = self.swarm
        return [
            "run",
            "--backend", self.backend,
            "--nodes", str(self.nodes),
            "--clients", str(self.clients),
            "--workload", self.workload,
            "--nemesis", nemesis_text(self.nemesis),
            "--time-limit", repr(float(self.time_limit)),
            "--rate", repr(float(self.rate)),
            "--request-timeout", repr(float(self.request_timeout)),
            "--nemesis-interval", repr(float(self.nemesis_interval)),
            "--recovery-time", repr(float(self.recovery_time)),
            "--lincheck-timeout", repr(float(self.lincheck_timeout)),
            *(["--bug", self.bug] if self.bug else []),
            *(["--ops-limit", str(self.ops_limit)] if self.ops_limit else []),
            *(["--pre-vote"] if every and self.pre_vote else []),
            *([] if self.pre_vote else ["--no-pre-vote"]),
            *(["--check-quorum"] if every and self.check_quorum else []),
            *([] if self.check_quorum else ["--no-check-quorum"]),
            *(["--append-entries-max", str(self.append_entries_max)]
              if every or self.append_entries_max != APPEND_ENTRIES_MAX_DEFAULT else []),
            *(["--snapshot-entries", str(self.snapshot_entries)]
              if every or self.snapshot_entries != SNAPSHOT_ENTRIES_DEFAULT else []),
            *(["--snapshot-trailing", str(self.snapshot_trailing)]
              if every or self.snapshot_trailing != SNAPSHOT_TRAILING_DEFAULT else []),
            *(["--snapshot-chunk-bytes", str(self.snapshot_chunk_bytes)]
              if every or self.snapshot_chunk_bytes != SNAPSHOT_CHUNK_BYTES_DEFAULT else []),
            *(["--swarm"] if self.swarm else []),
            "--seed", str(self.seed),
        ]


def command_line(argv: Sequence[str]) -> str:
    import shlex

    return "raft-harness " + " ".join(shlex.quote(arg) for arg in argv)
