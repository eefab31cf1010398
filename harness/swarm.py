"""Swarm testing: every seed draws its own run configuration from itself.

A campaign of one fixed configuration explores one corner of the space: a uniform mix of every
fault, the default core settings, one workload. Swarm testing (Groce et al., "Swarm Testing",
ISSTA 2012; TigerBeetle's VOPR does the same) lets each seed choose the cluster size, the
workload, the clients and their rate, which fault kinds are on and how often they strike, and
the core and snapshot settings a user may choose. Some seeds then run almost without faults,
others hammer a cluster with two fault kinds under one odd setting, and a bug that needs a
particular combination is reached without anyone knowing the combination in advance.

The draw is a pure function of the seed: each dimension has its own ``random.Random`` stream
(``"{seed}:swarm:{dimension}"``), never the global one, so pinning a dimension (an option
given explicitly next to ``--swarm``) leaves every other dimension's value unchanged. The
result is an ordinary ``RunOptions`` with ``swarm=True`` and every drawn value filled in: a
run's ``results.json`` holds the concrete configuration, so ``raft-harness replay`` does not
depend on this module, and ``RunOptions.to_argv`` spells every drawn value out, so the printed
command pins them all and reproduces the run even if this distribution changes later.

Dimensions not drawn (the time limit, request timeout, recovery time, lincheck budget, a zoo
bug, an ops limit) come from the options the caller gives, unchanged.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import attrs

from harness.options import NEMESIS_KINDS, OptionsError, RunOptions, options_fields
from raftlib.core.config import setting_names

# The fault kinds the swarm may switch on, each in its family. Adding a kind to the draw is
# adding its line here (a kind the sim backend supports, see options.NEMESIS_KINDS).
SWARM_NEMESES: Mapping[str, str] = {
    "partition": "network",
    "loss": "network",
    "duplicate": "network",
    "delay": "network",
    "reorder": "network",
    "kill": "process",
    "pause": "process",
    "clock": "process",
    "disk": "process",
    "member": "process",
    "crash-after-vote": "trigger",
    "crash-after-commit": "trigger",
    "crash-new-leader": "trigger",
}
assert set(SWARM_NEMESES) <= set(NEMESIS_KINDS), "the swarm draws only kinds the sim knows"
# Each seed draws, per family, the probability that each of its kinds is on: none, some, most
# or nearly all. Families let a seed concentrate on one sort of trouble (crash triggers with a
# quiet network, a lossy network with no crash) instead of always mixing all of them: a fault
# that masks another (a kill healing what a partition set up) is then absent from many seeds,
# which is the point of swarm testing. About 1 seed in 30 has no fault at all.
FAULT_FAMILIES: tuple[str, ...] = ("network", "process", "trigger")
FAULT_DENSITIES: tuple[float, ...] = (0.0, 0.3, 0.6, 0.9)
assert set(SWARM_NEMESES.values()) <= set(FAULT_FAMILIES)

# Values are drawn from short lists rather than ranges, so a campaign's runs fall into groups
# a person can compare ("every failing seed had append-entries-max=1").
NODES_CHOICES: tuple[int, ...] = (3, 5)
WORKLOAD_CHOICES: tuple[str, ...] = ("register", "kv", "append")
CLIENTS_CHOICES: tuple[int, ...] = (3, 5, 10, 20)
RATE_OPS_PER_SECOND_CHOICES: tuple[float, ...] = (10.0, 20.0, 50.0, 100.0, 200.0)
NEMESIS_INTERVAL_SECONDS_CHOICES: tuple[float, ...] = (0.2, 0.3, 0.5, 1.0, 2.0)
# Entries per AppendEntries at most: 1 lets an old term's entry reach a majority on its own,
# before the new leader's no-op (what Figure 8 of the Raft paper needs); 512 is raftlib's
# default.
APPEND_ENTRIES_MAX_CHOICES: tuple[int, ...] = (1, 1, 2, 8, 64, 512)
# Snapshot every N applied entries (0: never), entries kept behind a snapshot, bytes per
# InstallSnapshot chunk: from every few entries with nothing kept (a follower that fell behind
# must install a snapshot, in many chunks) to raftlib's defaults (no snapshot in a short run).
SNAPSHOT_ENTRIES_CHOICES: tuple[int, ...] = (4, 8, 16, 64, 10_000)
SNAPSHOT_TRAILING_CHOICES: tuple[int, ...] = (0, 0, 2, 16, 1024)
SNAPSHOT_CHUNK_BYTES_CHOICES: tuple[int, ...] = (16, 64, 4096, 256 << 10)


def _nemesis(rng: random.Random) -> tuple[str, ...]:
    density = {family: rng.choice(FAULT_DENSITIES) for family in FAULT_FAMILIES}
    # Each kind draws from its own stream, so adding a kind leaves every other kind's draw
    # of every seed unchanged.
    token = rng.getrandbits(64)
    chosen = {kind for kind, family in SWARM_NEMESES.items()
              if random.Random(f"{token}:{kind}").random() < density[family]}
    return tuple(kind for kind in NEMESIS_KINDS if kind in chosen)


def _choice(values: Sequence[Any]) -> Callable[[random.Random], Any]:
    return lambda rng: rng.choice(values)


def _coin(rng: random.Random) -> bool:
    return rng.random() < 0.5


# The drawn dimensions: RunOptions field name -> how a value is drawn from its own stream.
DRAWS: Mapping[str, Callable[[random.Random], Any]] = {
    "nodes": _choice(NODES_CHOICES),
    "workload": _choice(WORKLOAD_CHOICES),
    "clients": _choice(CLIENTS_CHOICES),
    "rate": _choice(RATE_OPS_PER_SECOND_CHOICES),
    "nemesis": _nemesis,
    "nemesis_interval": _choice(NEMESIS_INTERVAL_SECONDS_CHOICES),
    "snapshot_entries": _choice(SNAPSHOT_ENTRIES_CHOICES),
    "snapshot_trailing": _choice(SNAPSHOT_TRAILING_CHOICES),
    "snapshot_chunk_bytes": _choice(SNAPSHOT_CHUNK_BYTES_CHOICES),
}
# The drawn core settings (raftlib.core.CoreConfig field name -> draw), RunOptions.core.
CORE_DRAWS: Mapping[str, Callable[[random.Random], Any]] = {
    "pre_vote": _coin,
    "check_quorum": _coin,
    "append_entries_max": _choice(APPEND_ENTRIES_MAX_CHOICES),
}
DIMENSIONS: tuple[str, ...] = (*DRAWS, *CORE_DRAWS)
assert set(DRAWS) <= {f.name for f in options_fields()}
assert set(CORE_DRAWS) <= set(setting_names())


def draw(seed: int, base: RunOptions, pinned: Collection[str] = ()) -> RunOptions:
    """The options of swarm seed ``seed``: ``base`` with every dimension not in ``pinned``
    drawn from the seed, ``seed`` set and ``swarm`` on. Pinned dimensions keep ``base``'s
    value."""
    unknown = sorted(set(pinned) - set(DIMENSIONS))
    assert not unknown, f"pinned names that the swarm does not draw: {unknown}"
    if base.backend != "sim":
        raise OptionsError("--swarm: the swarm draws core settings and faults only the "
                           "simulated cluster has; it needs --backend sim")
    def drawn(draws: Mapping[str, Callable[[random.Random], Any]]) -> dict[str, Any]:
        return {name: pick(random.Random(f"{seed}:swarm:{name}"))
                for name, pick in draws.items() if name not in pinned}

    return attrs.evolve(base, seed=seed, swarm=True, **drawn(DRAWS)).with_core(
        **drawn(CORE_DRAWS))


def features(options: RunOptions) -> dict[str, str]:
    """The drawn configuration as features a campaign can group runs by: one per dimension,
    and one per fault kind (on/off), since swarm failures are explained by which features a
    failing seed had, not by its whole fault list."""
    out: dict[str, str] = {}
    for name in DIMENSIONS:
        if name == "nemesis":
            for kind in SWARM_NEMESES:
                out[kind] = "on" if kind in options.nemesis else "off"
        else:
            value = options.core_value(name) if name in CORE_DRAWS else getattr(options, name)
            out[name] = f"{value:g}" if isinstance(value, float) else str(value).lower()
    return out


def describe(options: RunOptions) -> str:
    """The drawn configuration in one line, for people."""
    nemesis = (f"faults {','.join(options.nemesis)} (every ~{options.nemesis_interval:g} s)"
               if options.nemesis else "no faults")
    core = options.core_text()
    if options.snapshot_entries:
        snapshots = (f"snapshots every {options.snapshot_entries} entries (trailing "
                     f"{options.snapshot_trailing}, chunks of {options.snapshot_chunk_bytes} B)")
    else:
        snapshots = "no snapshots"
    return (f"swarm seed {options.seed}: {options.nodes} nodes, {options.workload}, "
            f"{options.clients} clients at {options.rate:g} op/s, {nemesis}, "
            f"{core or 'core defaults'}, {snapshots}")


@attrs.frozen
class FeatureGroup:
    """Runs that drew one value of one feature, and how many of them were not valid."""

    feature: str
    value: str
    runs: int
    failed: int


def groups(runs: Sequence[tuple[Mapping[str, str], bool]]) -> list[FeatureGroup]:
    """Per feature value: how many runs drew it and how many of those failed (``runs`` holds
    each run's features and whether it failed). Only features whose value varied across the
    runs are listed (a pinned dimension explains nothing); those whose value every failing run
    shares come first, then by failure rate."""
    seen: dict[tuple[str, str], list[int]] = {}
    values: dict[str, set[str]] = {}
    for feats, failed in runs:
        for name, value in feats.items():
            counts = seen.setdefault((name, value), [0, 0])
            counts[0] += 1
            counts[1] += int(failed)
            values.setdefault(name, set()).add(value)
    total_failed = sum(1 for _, failed in runs if failed)
    out = [FeatureGroup(name, value, n, bad) for (name, value), (n, bad) in seen.items()
           if len(values[name]) > 1]

    def order(g: FeatureGroup) -> tuple[bool, float, str, str]:
        shared = total_failed > 0 and g.failed == total_failed
        return (not shared, -g.failed / g.runs, g.feature, g.value)

    return sorted(out, key=order)


def shared_by_failures(found: Sequence[FeatureGroup]) -> list[FeatureGroup]:
    """The feature values every failing run drew (and not every run did): what a person looks
    at first."""
    total_failed = max((g.failed for g in found), default=0)
    return [g for g in found if total_failed and g.failed == total_failed]


def group_text(runs: Sequence[tuple[Mapping[str, str], bool]], rows_max: int = 12) -> str:
    """The grouping as text lines: the values every failure shares, then the feature values
    with the highest failure rates (at most ``rows_max`` lines)."""
    found = groups(runs)
    if not found:
        return ""
    failing = sum(1 for _, failed in runs if failed)
    configurations = len({tuple(sorted(feats.items())) for feats, _ in runs})
    if not failing:
        return f"swarm: {len(runs)} runs drew {configurations} distinct configurations"
    lines = []
    if failing > 1:  # one failing run shares everything with itself: its drawn line says it
        shared = [f"{g.feature}={g.value}" for g in shared_by_failures(found)]
        words = ", ".join(shared[:rows_max]) + (f" and {len(shared) - rows_max} more"
                                                if len(shared) > rows_max else "")
        lines.append(f"swarm: the {failing} failing runs share: {words or 'no drawn setting'}")
    lines.append("swarm: failures by drawn setting (failed / runs):")
    for g in found[:rows_max]:
        lines.append(f"  {g.feature}={g.value}: {g.failed} / {g.runs}")
    return "\n".join(lines)
