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
assert set(DRAWS) <= {f.name for f in options_fields()}
assert set(CORE_DRAWS) <= set(setting_names())

# Lease reads (raftlib/core/lease.py, README "Lease reads") are a feature with assumptions: a
# seed that runs them must keep to them, or the correct build would be blamed for a
# configuration its documentation excludes. They need CheckQuorum (followers honour a lease
# only with it) and clock-rate skew the drift bound covers. Pauses are fine since a stalled
# node counts the ticks it missed (tests/harness/test_lease_reads.py), and so are kills and
# crash triggers (a restarted node refuses votes for an election timeout). So the lease is
# drawn only on seeds whose own draws already keep CheckQuorum on, and then caps the clock
# skew (its profile, below). Forcing CheckQuorum on instead would take seeds away from what
# needs it off: figure8 is caught with CheckQuorum off (swarm seed 946, which a forcing draw
# turned into a lease seed). The coin has its own stream, so every other dimension's draw of
# every seed is what it was; only the seeds that draw the lease change, and only in the
# settings named here.
LEASE_READS_SHARE = 0.6
# A lease is voided by most faults (a lost heartbeat round, a restart, a membership change):
# a seed that mixes many kinds seldom holds one across a leadership change, the moment its
# safety argument is about. So half the lease seeds concentrate on that hazard, as the fault
# families let other seeds concentrate on theirs: a leader cut off by partitions while clocks
# drift within the bound, and no other fault.
LEASE_FOCUS_SHARE = 0.5
LEASE_FOCUS_NEMESIS: tuple[str, ...] = ("partition", "clock")


@attrs.frozen
class LeaseProfile:
    """Settings drawn together with lease reads: the election timeout range (ticks), the drift
    bound (ticks the lease is shorter than the timeout's minimum), the clock nemesis's largest
    tick-rate factor either way (``--clock-rate-max``) and the clients' request timeout
    (seconds)."""

    election_timeout_ticks_min: int
    election_timeout_ticks_max: int
    lease_drift_ticks: int
    clock_rate_max: float
    request_timeout: float

    def covered_skew(self) -> float:
        """The largest ratio of a leader's tick to a follower's the lease is safe under:
        followers refuse votes for ``min`` of their ticks, the lease lasts ``min - drift`` of
        the leader's, and one tick goes to the phase between two nodes' tickers (lease.py)."""
        return ((self.election_timeout_ticks_min - 1)
                / (self.election_timeout_ticks_min - self.lease_drift_ticks))


# A leader slowed to 1/x next to a follower sped up to x: its tick lasts x**2 times the
# follower's. The clock nemesis rounds rates to 3 decimals (nemesis.squeeze_clock_rates), so
# 1/x may come out 0.1% slower still; every profile keeps this much margin below its bound.
LEASE_SKEW_MARGIN = 1.01
# From what users run to what would show a lease that ignores drift. Such a lease outlives the
# followers' vote lease by about min * (1 - 1/x**2) ticks: under 2 ticks with raftlib's
# defaults (10 ticks, 1.1x: the README's lease campaign), 12 to 16 with an election timeout of
# 40 ticks (the README's long-timeout example, one second at the simulator's 25 ms tick) and
# skew near its bound. The narrow range [40, 44) makes a cut-off leader's followers elect a
# successor right after their vote lease ends, while the old leader's lease still runs; a
# client sees the overlap only if it gives up on the old leader and reaches the new one within
# those few hundred milliseconds, hence request timeouts shorter than the overlap.
LEASE_PROFILES: tuple[LeaseProfile, ...] = (
    LeaseProfile(10, 20, 3, 1.1, 1.0),
    LeaseProfile(40, 44, 16, 1.2, 0.1),
    LeaseProfile(40, 44, 28, 1.6, 0.1),
    LeaseProfile(20, 22, 16, 2.0, 0.25),
)
for _profile in LEASE_PROFILES:
    assert _profile.clock_rate_max ** 2 * LEASE_SKEW_MARGIN <= _profile.covered_skew(), _profile
# The election timeout the drawn fault intervals are meant against (raftlib's default
# minimum): a profile with a longer one stretches the seed's interval by the same factor, so a
# partition still outlasts an election as often as the swarm's intervals make it (a window
# shorter than the election timeout never lets the followers elect a successor).
INTERVAL_TIMEOUT_TICKS = 10
# Lease seeds always run clock windows (within their bound): the drift the bound is there for
# is the lease's own hazard, and without skew a lease is tested only against a tick's phase.
LEASE_NEMESIS_ADDED: tuple[str, ...] = ("clock",)
# The dimensions the lease draw sets (the switch and the profile's fields; it also changes
# check_quorum, nemesis and nemesis_interval, drawn dimensions already).
LEASE_DIMENSIONS: tuple[str, ...] = ("lease_reads", *attrs.fields_dict(LeaseProfile))
CORE_NAMES: frozenset[str] = frozenset(setting_names())
DIMENSIONS: tuple[str, ...] = (*DRAWS, *CORE_DRAWS, *LEASE_DIMENSIONS)
assert set(LEASE_DIMENSIONS) <= CORE_NAMES | {f.name for f in options_fields()}


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

    # Lease reads come last (their constraints override other draws); until then they are off,
    # so that drawing CheckQuorum off is not refused for a pinned --lease-reads.
    unleased = {name: value for name, value in base.core.items() if name != "lease_reads"}
    options = attrs.evolve(base, core=unleased, seed=seed, swarm=True,
                           **drawn(DRAWS)).with_core(**drawn(CORE_DRAWS))
    return _lease(seed, options, pinned, bool(base.core_value("lease_reads")))


def _lease(seed: int, options: RunOptions, pinned: Collection[str],
           pinned_on: bool) -> RunOptions:
    """``options`` with lease reads drawn: on for ``LEASE_READS_SHARE`` of the seeds that
    meet their prerequisites, with a profile and the constraints its assumptions put on the
    other draws. Pinned dimensions keep their value; a drawn lease whose assumptions the
    pinned values break stays off. A pinned ``--lease-reads`` (``pinned_on``) is on in every
    seed, and overrides the draw it needs: CheckQuorum on."""
    if "lease_reads" in pinned:
        if not pinned_on:
            return options
    elif not (options.check_quorum
              and random.Random(f"{seed}:swarm:lease_reads").random() < LEASE_READS_SHARE):
        return options.with_core(lease_reads=False)
    profile = random.Random(f"{seed}:swarm:lease_profile").choice(LEASE_PROFILES)
    focus = random.Random(f"{seed}:swarm:lease_focus").random() < LEASE_FOCUS_SHARE
    kinds = set(LEASE_FOCUS_NEMESIS) if focus else {*options.nemesis, *LEASE_NEMESIS_ADDED}
    low = (options.core_value("election_timeout_ticks_min")
           if "election_timeout_ticks_min" in pinned else profile.election_timeout_ticks_min)
    stretch = low / INTERVAL_TIMEOUT_TICKS
    forced: dict[str, Any] = {
        **attrs.asdict(profile), "check_quorum": True,
        "nemesis": tuple(kind for kind in NEMESIS_KINDS if kind in kinds),
        "nemesis_interval": round(options.nemesis_interval * stretch, 3)}
    values = {name: options.core_value(name) if name in CORE_NAMES else getattr(options, name)
              for name in forced}
    values.update({name: value for name, value in forced.items() if name not in pinned})
    if "lease_reads" not in pinned and not _lease_assumptions_hold(
            values, options.core_value("heartbeat_interval_ticks")):
        return options.with_core(lease_reads=False)
    core = {name: value for name, value in values.items() if name in CORE_NAMES}
    rest = {name: value for name, value in values.items() if name not in CORE_NAMES}
    return attrs.evolve(options, **rest).with_core(**core, lease_reads=True)


def _lease_assumptions_hold(values: Mapping[str, Any], heartbeat_ticks: int) -> bool:
    """Whether a configuration (``values``: the profile's fields, ``check_quorum`` and
    ``nemesis``) keeps to what lease reads assume (README, "Lease reads")."""
    low, high = values["election_timeout_ticks_min"], values["election_timeout_ticks_max"]
    drift, rate_max = values["lease_drift_ticks"], float(values["clock_rate_max"])
    if not (values["check_quorum"] and heartbeat_ticks < low < high and 0 < drift < low):
        return False
    if "clock" not in values["nemesis"]:
        return True
    skew = LeaseProfile(low, high, drift, rate_max, values["request_timeout"]).covered_skew()
    return rate_max > 1 and rate_max ** 2 * LEASE_SKEW_MARGIN <= skew


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
            value = options.core_value(name) if name in CORE_NAMES else getattr(options, name)
            out[name] = f"{value:g}" if isinstance(value, float) else str(value).lower()
    return out


def describe(options: RunOptions) -> str:
    """The drawn configuration in one line, for people."""
    nemesis = (f"faults {','.join(options.nemesis)} (every ~{options.nemesis_interval:g} s)"
               if options.nemesis else "no faults")
    lease = ""
    if options.core_value("lease_reads"):
        low = options.core_value("election_timeout_ticks_min")
        high = options.core_value("election_timeout_ticks_max")
        lease = (f"lease reads (election timeout [{low}, {high}) ticks, drift bound "
                 f"{options.core_value('lease_drift_ticks')} ticks, requests time out after "
                 f"{options.request_timeout:g} s), ")
        rest = {name: value for name, value in options.core.items()
                if name not in LEASE_DIMENSIONS}
        options_text = attrs.evolve(options, core=rest)
    else:
        options_text = options
    core = options_text.core_text()
    if options.snapshot_entries:
        snapshots = (f"snapshots every {options.snapshot_entries} entries (trailing "
                     f"{options.snapshot_trailing}, chunks of {options.snapshot_chunk_bytes} B)")
    else:
        snapshots = "no snapshots"
    if options.clock_rate_max:
        nemesis += f", clock rates within {options.clock_rate_max:g}x either way"
    return (f"swarm seed {options.seed}: {options.nodes} nodes, {options.workload}, "
            f"{options.clients} clients at {options.rate:g} op/s, {nemesis}, {lease}"
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
