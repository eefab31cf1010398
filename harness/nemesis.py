"""Nemesis schedules: fault windows as plain data, generated from the seed, saved and replayed.

A schedule is a list of ``Fault`` windows: a kind, a start and a stop time (seconds of the
run) and the kind's parameters, chosen when the schedule is generated. Within one kind windows
never overlap; different kinds do overlap (a partition during a crash). Every window stops by
the time limit, so each run ends with every fault healed, followed by the recovery window.
Only ``isolate-leader`` partitions and ``leader`` targets are resolved when they start (the
simulator is deterministic, so a replay resolves them the same way); the history records what
each fault actually did.

Kinds and their parameters:

- ``partition``  mode: ``halves`` | ``isolate`` | ``isolate-leader`` | ``majorities-ring`` |
  ``bridge``; ``blocked``: the directed links [src, dst] that drop messages (null for
  isolate-leader).
- ``kill``       crash and restart: ``nodes`` (or null and ``targets: leader``); a process crash
  (``lose_unsynced: false``: what reached the OS survives).
- ``disk``       a crash that is a power loss: ``lose_unsynced: true`` and sometimes ``torn``
  (the last unsynced write keeps only a prefix). ``file`` (optional; live backend only):
  ``{target: wal | snapshot, how: flip | truncate, at: fraction}`` damages that file of the
  stopped node before it restarts (``harness.live.filefaults``).
- ``pause``      SIGSTOP/SIGCONT: ``nodes`` (or leader) stop processing; inputs queue up.
- ``loss`` / ``duplicate`` (``probability``), ``delay`` (``delay_ms``, ``jitter_ms``),
  ``reorder`` (``probability``, ``delay_ms_max``): every link misbehaves meanwhile.
- ``clock``      ``rates``: [[node, factor], ...]; a node's ticks run ``factor`` times as fast.
  ``wall`` (optional; live backend only, the simulator's leader time is its virtual time):
  ``bumps`` [[node, seconds], ...] steps those nodes' wall clocks forward or back, ``strobes``
  [[node, delta_s, period_ms], ...] flips theirs between true and ``delta_s`` off.
- ``crash-after-vote``  a trigger, not a target: while the window is open, every node that
  grants a vote (not a pre-vote) is crashed right after the grant leaves it (a process crash)
  and restarted ``restart_ms`` later, the moment a vote that was not yet durable would be
  forgotten. The simulator is deterministic, so a trigger replays exactly.
- ``crash-after-commit``  a trigger too: while the window is open, a leader whose commit index
  advances (an AppendEntries it sends carries a higher commit than its earlier ones of the same
  term) is crashed right after that send and the apply that goes with it, and restarted
  ``restart_ms`` later: a leader lost within a round trip of a commit, before whatever it
  appended after that commit reaches a majority. With ``before_send: true`` the batch carrying
  the new commit never leaves (the leader applied the entry and died before telling anyone,
  so nobody else learns of the commit or of the entries sent with it). Generated windows
  mostly crash before the announcement and keep the node down while others elect a leader.
  With ``conf_only: true`` only a commit that covers a configuration entry fires it: a leader
  lost right after a membership change took effect, the moment a restart from an older
  snapshot or log must still count votes and commits by the latest configuration. Generated
  only in schedules with ``member`` windows (``COMMIT_CRASH_CONF_FRACTION`` of them).
- ``member``     a membership change: ``action`` ``grow`` (two non-members become voters, one
  joint change), ``learner`` (up to two), ``replace`` (a voter out, a non-member in), ``remove``,
  ``wipe-replace`` (a voter out, its disk lost and its id retired, a new node in as a
  learner); the window's end restores the starting number of voters (the simulator runs
  two spare nodes for it).
- ``crash-new-leader``  a trigger too: while the window is open, a node about to send the first
  AppendEntries of its new term (its no-op is already durable) crashes before that batch
  leaves, and restarts ``restart_ms`` later (longer: others elect a leader meanwhile). Its log
  now ends with an entry of a term nobody else has seen, the other half of Figure 8.

A shrinker (next issue) may delete windows, shorten them or drop nodes from them: any list of
valid windows is a valid schedule.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from harness.options import NEMESIS_KINDS
from raftlib.core.membership import Change, ChangeOp
from raftlib.core.types import ConfState

SCHEDULE_VERSION = 1
PARTITION_MODES = ("halves", "isolate", "isolate-leader", "majorities-ring", "bridge")
NODE_TARGETS = ("one", "minority", "majority", "all", "leader")
# A window shorter than this is not generated (it would end before anything noticed it).
WINDOW_SECONDS_MIN = 0.05
FAULTS_MAX = 100_000
# crash-after-vote restarts its node within this many ms: soon enough that a competing
# candidate's RequestVote of the same term still finds it.
RESTART_MS_MAX_GENERATED = 20
# The trigger kinds: crash a node on what it sends, restart it restart_ms later.
# What a membership window does (resolved against the configuration when it starts; see
# harness.sim.membership, whose rules these names stand for).
MEMBER_ACTIONS = ("grow", "learner", "replace", "remove", "wipe-replace")
# Empty nodes a run with the membership nemesis starts besides its members (sim and live).
SPARE_NODES = 2
TRIGGER_KINDS = ("crash-after-vote", "crash-after-commit", "crash-new-leader")
# crash-new-leader keeps its node down this long (ms): long enough for the others to elect a
# leader of a later term, short enough to come back within the run.
NEW_LEADER_RESTART_MS_GENERATED = (200, 1500)
RESTART_MS_MAX = 60_000
# Generated crash-after-commit windows: the fraction whose leader restarts at once (else it
# stays down while others elect), and the fraction whose commit announcement leaves first.
COMMIT_CRASH_SHORT_FRACTION = 0.25
COMMIT_CRASH_ANNOUNCED_FRACTION = 0.25
# In a schedule with membership changes, the fraction of crash-after-commit windows that wait
# for a configuration entry's commit (``conf_only``); drawn from a stream of its own, so the
# windows' other parameters, and every schedule without ``member``, stay as they were.
COMMIT_CRASH_CONF_FRACTION = 0.5


class ScheduleError(ValueError):
    """A malformed schedule; ``str()`` is one line naming the fault and field."""


@attrs.frozen
class Fault:
    id: int
    kind: str
    start: float
    stop: float
    params: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "start": self.start,
            "stop": self.stop,
            "params": dict(self.params),
        }


@attrs.frozen
class Schedule:
    nodes: int
    time_limit: float
    faults: tuple[Fault, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": SCHEDULE_VERSION,
            "nodes": self.nodes,
            "time_limit": self.time_limit,
            "faults": [fault.to_json() for fault in self.faults],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n"

    def kinds(self) -> list[str]:
        return sorted({fault.kind for fault in self.faults})

    def describe(self) -> str:
        """One line per fault, for people."""
        lines = []
        for fault in self.faults:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in sorted(fault.params.items()))
            lines.append(
                f"#{fault.id} {fault.kind:<9} {fault.start:8.3f}s .. {fault.stop:8.3f}s  {shown}"
            )
        return "\n".join(lines)


def _short(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- generation -------------------------------------------------------------------------------


def _ms(seconds: float) -> float:
    return round(seconds, 3)


def _nodes(n: int) -> list[int]:
    return list(range(1, n + 1))


def _pick_targets(rng: random.Random, n: int) -> dict[str, Any]:
    targets = rng.choice(NODE_TARGETS)
    nodes = _nodes(n)
    if targets == "leader":
        return {"targets": targets, "nodes": None}
    count = {"one": 1, "minority": max(1, (n - 1) // 2), "majority": n // 2 + 1, "all": n}[targets]
    return {"targets": targets, "nodes": sorted(rng.sample(nodes, count))}


def _cut_between(a: Sequence[int], b: Sequence[int]) -> list[list[int]]:
    links = []
    for x in a:
        for y in b:
            links.append([x, y])
            links.append([y, x])
    return sorted(links)


def partition_links(mode: str, order: Sequence[int]) -> list[list[int]]:
    """The directed links a partition of ``mode`` blocks, for nodes in ``order`` (shuffled by
    the caller): ``isolate`` cuts order[0] off, ``halves`` splits the order in two, ``bridge``
    makes order[0] the only node both halves reach, ``majorities-ring`` arranges a ring."""
    n = len(order)
    if mode in ("isolate", "isolate-leader"):
        return _cut_between(order[:1], order[1:])
    if mode == "halves":
        half = n // 2
        return _cut_between(order[:half], order[half:])
    if mode == "bridge":
        # Two halves that only the bridge node (order[0]) can talk across.
        rest = order[1:]
        return _cut_between(rest[: len(rest) // 2], rest[len(rest) // 2 :])
    if mode == "majorities-ring":
        # Each node hears from its nearest neighbours on the ring: a majority (itself
        # included), but no two nodes share the same majority, so there is no stable quorum.
        reach = (n // 2 + 1) // 2
        links = []
        for i, src in enumerate(order):
            for j, dst in enumerate(order):
                distance = min((i - j) % n, (j - i) % n)
                if i != j and distance > reach:
                    links.append([src, dst])
        return sorted(links)
    raise ScheduleError(f"unknown partition mode {mode!r}")


def _partition_params(rng: random.Random, n: int) -> dict[str, Any]:
    modes = [m for m in PARTITION_MODES if n >= 2]
    if n < 5:
        # With fewer than five nodes a majorities ring is a full mesh: no fault at all.
        modes = [m for m in modes if m != "majorities-ring"]
    if n < 3:
        modes = [m for m in modes if m != "bridge"]
    mode = rng.choice(modes)
    if mode == "isolate-leader":
        return {"mode": mode, "blocked": None}
    order = _nodes(n)
    rng.shuffle(order)
    return {"mode": mode, "blocked": partition_links(mode, order)}


def _params(kind: str, rng: random.Random, n: int) -> dict[str, Any]:
    if kind == "partition":
        return _partition_params(rng, n)
    if kind == "kill":
        return {**_pick_targets(rng, n), "lose_unsynced": False, "torn": False}
    if kind == "disk":
        return {**_pick_targets(rng, n), "lose_unsynced": True, "torn": rng.random() < 0.5}
    if kind == "pause":
        return _pick_targets(rng, n)
    if kind in ("loss", "duplicate"):
        return {"probability": round(rng.uniform(0.05, 0.4), 3)}
    if kind == "delay":
        return {"delay_ms": rng.randint(5, 200), "jitter_ms": rng.randint(0, 50)}
    if kind == "reorder":
        return {"probability": round(rng.uniform(0.1, 0.5), 3), "delay_ms_max": rng.randint(5, 100)}
    if kind == "crash-new-leader":
        return {"restart_ms": rng.randint(*NEW_LEADER_RESTART_MS_GENERATED)}
    if kind == "crash-after-commit":
        # Mostly down until the others elected a leader without it, the commit unannounced:
        # only the dead leader knows what it applied, the window Figure 8 needs (always so,
        # it was found in 7% of 3-node seeds, against 4% half so); sometimes back at once or
        # announced, the other windows.
        span = ((1, RESTART_MS_MAX_GENERATED) if rng.random() < COMMIT_CRASH_SHORT_FRACTION
                else NEW_LEADER_RESTART_MS_GENERATED)
        before_send = rng.random() >= COMMIT_CRASH_ANNOUNCED_FRACTION
        return {"restart_ms": rng.randint(*span), "before_send": before_send}
    if kind in TRIGGER_KINDS:
        return {"restart_ms": rng.randint(1, RESTART_MS_MAX_GENERATED)}
    if kind == "clock":
        rates = [[node, round(rng.choice(CLOCK_RATES) * rng.uniform(0.9, 1.1), 3)]
                 for node in _nodes(n)]
        return {"rates": rates}
    if kind == "member":
        return {"action": rng.choice(MEMBER_ACTIONS)}
    raise ScheduleError(f"unknown fault kind {kind!r}")


# The clock rates a clock window draws from (times a factor in [0.9, 1.1]): up to 4.4 times
# faster or slower, far beyond any drift a lease can cover (lease reads, raftlib/core/lease.py).
CLOCK_RATES = (0.25, 0.5, 1.0, 2.0, 4.0)
CLOCK_RATE_DRAWN_MAX = 4.0 * 1.1


def squeeze_clock_rates(rates: list[list[Any]], rate_max: float) -> list[list[Any]]:
    """The drawn rates mapped into [1 / rate_max, rate_max] on a log scale (4.4 -> rate_max,
    1 -> 1): the same windows and the same order of fast and slow nodes, with realistic skew."""
    scale = math.log(rate_max) / math.log(CLOCK_RATE_DRAWN_MAX)
    return [[node, round(min(rate_max, max(1 / rate_max, math.exp(math.log(rate) * scale))), 3)]
            for node, rate in rates]


# Wall-clock steps (seconds, either way) and strobes a clock window may give a node; 7200 s is
# past raftlib's default session TTL (one hour), so session expiry by leader time is exercised.
WALL_BUMPS_S = (0.05, 1.0, 30.0, 600.0, 7200.0)
STROBE_DELTAS_S = (0.05, 1.0, 30.0)
STROBE_PERIODS_MS = (1.0, 10.0, 100.0)
WALL_S_MAX = 86_400.0


def _wall_params(rng: random.Random, n: int) -> dict[str, Any]:
    bumps: list[list[Any]] = []
    strobes: list[list[Any]] = []
    for node in _nodes(n):
        draw = rng.random()
        if draw < 0.4:
            bumps.append([node, rng.choice((-1, 1)) * rng.choice(WALL_BUMPS_S)])
        elif draw < 0.6:
            strobes.append([node, rng.choice(STROBE_DELTAS_S), rng.choice(STROBE_PERIODS_MS)])
    return {"bumps": bumps, "strobes": strobes}


# The share of disk windows that also damage a file of the node before it restarts.
FILE_FAULT_SHARE = 0.35
FILE_TARGETS = ("wal", "snapshot")
FILE_DAMAGES = ("flip", "truncate")


def _file_params(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() >= FILE_FAULT_SHARE:
        return None
    return {"target": rng.choice(FILE_TARGETS), "how": rng.choice(FILE_DAMAGES),
            "at": round(rng.random(), 3)}


def generate(
    seed: int, kinds: Sequence[str], nodes: int, time_limit: float, interval: float,
    *, clock_rate_max: float = 0.0,
) -> Schedule:
    """A random schedule: for each kind, quiet gaps and fault windows of about ``interval``
    seconds each (uniform in [0.5, 1.5] x interval), all within [0, time_limit].
    ``clock_rate_max`` > 1 keeps clock windows' rates within [1 / it, it] (0: as drawn)."""
    faults: list[Fault] = []
    for kind in kinds:
        # One stream per kind: adding a kind leaves the other kinds' windows unchanged.
        rng = random.Random(f"{seed}:nemesis:{kind}")
        wall_rng = random.Random(f"{seed}:nemesis:{kind}:wall")
        file_rng = random.Random(f"{seed}:nemesis:{kind}:file")
        conf_rng = random.Random(f"{seed}:nemesis:{kind}:conf")
        t = 0.0
        while len(faults) < FAULTS_MAX:
            start = t + rng.uniform(0.5, 1.5) * interval
            stop = min(start + rng.uniform(0.5, 1.5) * interval, time_limit)
            if stop - start < WINDOW_SECONDS_MIN:
                break
            params = _params(kind, rng, nodes)
            if kind == "clock" and clock_rate_max:
                params["rates"] = squeeze_clock_rates(params["rates"], clock_rate_max)
            if kind == "clock":
                # Its own stream: the rates (and so the simulator's runs) stay as they were.
                params["wall"] = _wall_params(wall_rng, nodes)
            if kind == "disk":
                params["file"] = _file_params(file_rng)  # its own stream too
            if kind == "crash-after-commit" and "member" in kinds:
                # Its own stream too: schedules without membership changes stay as they were.
                params["conf_only"] = conf_rng.random() < COMMIT_CRASH_CONF_FRACTION
            faults.append(Fault(0, kind, _ms(start), _ms(stop), params))
            t = stop
    faults.sort(key=lambda f: (f.start, f.kind))
    numbered = tuple(attrs.evolve(fault, id=i + 1) for i, fault in enumerate(faults))
    return Schedule(nodes=nodes, time_limit=time_limit, faults=numbered)


# --- reading a saved schedule ----------------------------------------------------------------


def _number(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ScheduleError(f"{where}: {name} must be a number, got {value!r}")
    return float(value)


def _node_list(where: str, value: Any, n: int) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not value or not all(
        isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n for x in value
    ):
        raise ScheduleError(f"{where}: nodes must be a non-empty list of node ids in 1..{n}")


def _check_params(where: str, kind: str, params: Mapping[str, Any], n: int) -> None:
    if kind == "partition":
        if params.get("mode") not in PARTITION_MODES:
            raise ScheduleError(f"{where}: params.mode must be one of {', '.join(PARTITION_MODES)}")
        blocked = params.get("blocked")
        if blocked is None and params["mode"] != "isolate-leader":
            raise ScheduleError(f"{where}: params.blocked is required for mode {params['mode']}")
        if blocked is not None and not (
            isinstance(blocked, list)
            and all(
                isinstance(link, list) and len(link) == 2
                and all(isinstance(x, int) and 1 <= x <= n for x in link)
                for link in blocked
            )
        ):
            raise ScheduleError(f"{where}: params.blocked must be a list of [src, dst] node ids")
    elif kind in ("kill", "disk", "pause"):
        if params.get("targets") not in NODE_TARGETS:
            raise ScheduleError(
                f"{where}: params.targets must be one of {', '.join(NODE_TARGETS)}"
            )
        _node_list(where, params.get("nodes"), n)
        if params.get("nodes") is None and params["targets"] != "leader":
            raise ScheduleError(
                f"{where}: params.nodes is required for targets {params['targets']}"
            )
        if kind != "pause":
            for flag in ("lose_unsynced", "torn"):
                if not isinstance(params.get(flag), bool):
                    raise ScheduleError(f"{where}: params.{flag} must be true or false")
        damage = params.get("file")
        if kind == "disk" and damage is not None and not (
            isinstance(damage, dict) and damage.get("target") in FILE_TARGETS
            and damage.get("how") in FILE_DAMAGES
            and isinstance(damage.get("at"), int | float) and not isinstance(damage["at"], bool)
            and 0 <= damage["at"] < 1
        ):
            raise ScheduleError(f"{where}: params.file must be null or {{target: "
                                f"{'|'.join(FILE_TARGETS)}, how: {'|'.join(FILE_DAMAGES)}, "
                                "at: [0, 1)}}")
    elif kind in ("loss", "duplicate", "reorder"):
        p = _number(where, "params.probability", params.get("probability"))
        if not 0.0 <= p <= 1.0:
            raise ScheduleError(f"{where}: params.probability must be in [0, 1], got {p}")
        delay_max = params.get("delay_ms_max", 0)
        if kind == "reorder" and _number(where, "params.delay_ms_max", delay_max) < 0:
            raise ScheduleError(f"{where}: params.delay_ms_max must be >= 0")
    elif kind == "delay":
        for name in ("delay_ms", "jitter_ms"):
            if _number(where, f"params.{name}", params.get(name)) < 0:
                raise ScheduleError(f"{where}: params.{name} must be >= 0")
    elif kind in TRIGGER_KINDS:
        restart_ms = _number(where, "params.restart_ms", params.get("restart_ms"))
        if not 0 <= restart_ms <= RESTART_MS_MAX:
            raise ScheduleError(f"{where}: params.restart_ms must be in [0, {RESTART_MS_MAX}], "
                                f"got {restart_ms:g}")
        if not isinstance(params.get("before_send", False), bool):
            raise ScheduleError(f"{where}: params.before_send must be true or false")
        if not isinstance(params.get("conf_only", False), bool):
            raise ScheduleError(f"{where}: params.conf_only must be true or false")
    elif kind == "member":
        if params.get("action") not in MEMBER_ACTIONS:
            raise ScheduleError(
                f"{where}: params.action must be one of {', '.join(MEMBER_ACTIONS)}"
            )
    elif kind == "clock":
        rates = params.get("rates")
        if not isinstance(rates, list) or not all(
            isinstance(r, list) and len(r) == 2 and isinstance(r[0], int) and 1 <= r[0] <= n
            and isinstance(r[1], int | float) and not isinstance(r[1], bool) and 0.01 <= r[1] <= 100
            for r in rates
        ):
            raise ScheduleError(f"{where}: params.rates must be [[node, factor in 0.01..100], ...]")
        _check_wall(where, params.get("wall"), n)


def _check_wall(where: str, wall: Any, n: int) -> None:
    if wall is None:
        return

    def node(x: Any) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= n

    def seconds(x: Any) -> bool:
        return (isinstance(x, int | float) and not isinstance(x, bool)
                and abs(x) <= WALL_S_MAX)

    bumps, strobes = (wall.get("bumps"), wall.get("strobes")) if isinstance(wall, dict) else (
        None, None)
    if not isinstance(bumps, list) or not all(
        isinstance(b, list) and len(b) == 2 and node(b[0]) and seconds(b[1]) for b in bumps
    ):
        raise ScheduleError(f"{where}: params.wall.bumps must be [[node, seconds within "
                            f"+-{WALL_S_MAX:g}], ...]")
    if not isinstance(strobes, list) or not all(
        isinstance(b, list) and len(b) == 3 and node(b[0]) and seconds(b[1])
        and seconds(b[2]) and b[2] > 0 for b in strobes
    ):
        raise ScheduleError(f"{where}: params.wall.strobes must be [[node, delta_s, period_ms "
                            "> 0], ...]")


def schedule_from_json(data: Any, source: str) -> Schedule:
    """Validate a saved schedule (``nemesis.json``); errors name the fault and field."""
    if not isinstance(data, dict):
        raise ScheduleError(f"{source}: a schedule is a JSON object")
    if data.get("version") != SCHEDULE_VERSION:
        raise ScheduleError(f"{source}: unsupported schedule version {data.get('version')!r}")
    n = data.get("nodes")
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ScheduleError(f"{source}: nodes must be a positive integer")
    time_limit = _number(source, "time_limit", data.get("time_limit"))
    raw_faults = data.get("faults")
    if not isinstance(raw_faults, list) or len(raw_faults) > FAULTS_MAX:
        raise ScheduleError(f"{source}: faults must be a list of at most {FAULTS_MAX}")
    faults = []
    for position, raw in enumerate(raw_faults):
        where = f"{source}: faults[{position}]"
        if not isinstance(raw, dict):
            raise ScheduleError(f"{where}: a fault is a JSON object")
        kind = raw.get("kind")
        if kind not in NEMESIS_KINDS:
            raise ScheduleError(f"{where}: unknown kind {kind!r}")
        fid = raw.get("id")
        if not isinstance(fid, int) or isinstance(fid, bool):
            raise ScheduleError(f"{where}: id must be an integer")
        start = _number(where, "start", raw.get("start"))
        stop = _number(where, "stop", raw.get("stop"))
        if not 0 <= start <= stop <= time_limit:
            raise ScheduleError(f"{where}: need 0 <= start <= stop <= time_limit ({time_limit})")
        params = raw.get("params")
        if not isinstance(params, dict):
            raise ScheduleError(f"{where}: params must be a JSON object")
        _check_params(where, kind, params, n)
        faults.append(Fault(fid, kind, start, stop, params))
    by_kind: dict[str, list[Fault]] = {}
    for fault in faults:
        by_kind.setdefault(fault.kind, []).append(fault)
    for kind, windows in by_kind.items():
        windows.sort(key=lambda f: f.start)
        for before, after in itertools.pairwise(windows):
            if after.start < before.stop:
                raise ScheduleError(
                    f"{source}: {kind} faults #{before.id} and #{after.id} overlap"
                )
    faults.sort(key=lambda f: (f.start, f.kind))
    return Schedule(nodes=n, time_limit=time_limit, faults=tuple(faults))


def restore_changes(
    conf: ConfState, outsiders: Sequence[int], size: int, rng: random.Random
) -> tuple[Change, ...]:
    """What the end of a ``member`` window changes (sim and live alike): back to ``size``
    voters, extra ones removed at random, learners promoted and then ``outsiders`` added until
    the size is back, leftover learners removed. Empty when there is nothing to do."""
    voters = list(conf.voters)
    changes: list[Change] = []
    while len(voters) > size:
        gone = voters.pop(rng.randrange(len(voters)))
        changes.append(Change(ChangeOp.REMOVE, gone))
    for candidate in [*conf.learners, *outsiders]:
        if len(voters) >= size:
            break
        voters.append(candidate)
        changes.append(Change(ChangeOp.ADD_VOTER, candidate))
    for learner in conf.learners:
        if learner not in voters:
            changes.append(Change(ChangeOp.REMOVE, learner))
    return tuple(changes)
