"""The checks of a live run, from the history and from what the nodes left on disk.

``read_logs`` opens each stopped node's data directory with ``WalStorage`` (the same recovery
the node itself runs at start) and returns its hard state and log. The rest are pure functions
of those logs, the history and what the harness observed; each returns a ``Check`` as the
simulator's checks do (``harness.checks``).
"""

from __future__ import annotations

import signal
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import lincheck

from harness.checks import Check, per_key, session_writes
from harness.live.clients import MODEL_INITIAL, Acked
from harness.workload_checks import judge_workload_history
from harness.workloads import WORKLOAD_CLASSES
from raftlib.core.types import Entry, HardState
from raftlib.invariants import election_safety, log_matching, state_machine_safety
from raftlib.kv.machine import KvStateMachine
from raftlib.snapshots import ReaderFile
from raftlib.storage.wal import WalStorage

# The lincheck model of each workload lincheck checks (counter and set have checkers of their
# own: harness.workload_checks).
MODELS = {"register": "cas-register", "kv": "kv", "append": "kv", "queue": "fifo-queue"}


@attrs.frozen
class NodeLog:
    hard_state: HardState
    entries: list[Entry]  # after the snapshot, if any
    snapshot_index: int = 0
    # session -> the highest sequence number the snapshot's state machine applied for it:
    # what compaction removed from the log is checked there (sessions apply each seq once).
    snapshot_sessions: dict[int, int] = attrs.Factory(dict)
    # The snapshot's replicated session clock (leader time, ms) and session TTL: a session may
    # have expired legitimately only once that clock passed its last activity by the TTL.
    snapshot_clock_ms: int = 0
    session_ttl_ms: int = 0

    @property
    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot_index


def read_logs(data_dirs: Mapping[int, Path]) -> tuple[dict[int, NodeLog], list[str]]:
    """Each node's recovered log, and one line per node whose log could not be recovered."""
    logs: dict[int, NodeLog] = {}
    errors: list[str] = []
    for node, directory in sorted(data_dirs.items()):
        try:
            with WalStorage(directory) as storage:
                recovered = storage.load()
        except Exception as exc:  # any failure to recover is a finding, named
            errors.append(f"node {node}: its log cannot be recovered from {directory}: "
                          f"{type(exc).__name__}: {exc}")
            continue
        try:
            sessions, clock_ms, ttl_ms = (_snapshot_sessions(directory)
                                          if recovered.snapshot is not None else ({}, 0, 0))
        except Exception as exc:  # any failure to read the snapshot is a finding, named
            errors.append(f"node {node}: its snapshot cannot be read from {directory}: "
                          f"{type(exc).__name__}: {exc}")
            continue
        snap = recovered.snapshot
        logs[node] = NodeLog(recovered.hard_state, recovered.entries,
                             snap.index if snap is not None else 0, sessions, clock_ms, ttl_ms)
    return logs, errors


def _snapshot_sessions(directory: Path) -> tuple[dict[int, int], int, int]:
    """The session table of the node's current snapshot (the KV state machine's), its
    replicated clock and the session TTL (the state machine's default, as ``raftlib serve``)."""
    machine = KvStateMachine()
    with WalStorage(directory) as storage:
        reader = storage.open_snapshot()
        if reader is None:
            return {}, 0, 0
        with ReaderFile(reader) as file:
            machine.restore(file)  # type: ignore[arg-type]
    table = machine.sessions
    return ({sid: last_seq for sid, last_seq, _reply, _active in table.dump()}, table.clock_ms,
            table.session_ttl_ms)


def snapshot_events(node_logs: Sequence[Path]) -> dict[str, int]:
    """Snapshots taken, sent and installed, counted from the nodes' own log lines."""
    counts = {"taken": 0, "sent": 0, "installed": 0}
    needles = {"taken": "snapshot at index", "sent": "sending the snapshot",
               "installed": "installed the leader's snapshot"}
    for path in node_logs:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            for name, needle in needles.items():
                if needle in line:
                    counts[name] += 1
    return counts


def model_for(workload: str) -> lincheck.Model:
    model = lincheck.get_model(MODELS[workload], MODEL_INITIAL[workload])
    return per_key(model) if WORKLOAD_CLASSES[workload].keyed else model


# The history's check, the history lincheck read and its result (both None without lincheck).
LinearizableCheck = tuple[Check, "lincheck.History | None", "lincheck.Result | None"]


def check_linearizable(
    events: list[lincheck.Event], workload: str, timeout: float,
) -> LinearizableCheck:
    """The history's check: lincheck, or the workload's own checker (history and result are
    then None: there is no lincheck report)."""
    checker = WORKLOAD_CLASSES[workload].checker
    model = model_for(workload) if checker == "lincheck" else None
    return judge_workload_history(events, checker, model, timeout)


def committed_bound(logs: Mapping[int, NodeLog], observed_commit: int) -> int:
    """The highest index known committed: the largest commit index a node persisted or was
    seen to report while running."""
    return max([observed_commit, *(log.hard_state.commit for log in logs.values())])


def node_bound(node: int, log: NodeLog, bound: int, members: Collection[int] | None) -> int:
    """How far ``node``'s log is known committed: the cluster's bound for a member of the
    final configuration (it caught up: liveness waited for that), its own persisted commit
    index for any other node. A node removed while it held entries nobody committed keeps them
    for good (no leader sends to it again): they are no applied history (a live run of seed 1
    with member, partition and kill blamed a removed learner's stale entry 125)."""
    return bound if members is None or node in members else log.hard_state.commit


def check_safety(
    logs: Mapping[int, NodeLog], errors: Sequence[str], leaders: Mapping[int, Iterable[int]],
    observed_commit: int = 0, members: Collection[int] | None = None,
) -> Check:
    violations = list(errors)
    violations += election_safety(leaders)
    violations += log_matching({n: log.entries for n, log in logs.items()})
    bound = committed_bound(logs, observed_commit)
    # Every node's log up to the committed bound (or its end) must be one and the same prefix.
    committed = {n: [e for e in log.entries if e.index <= node_bound(n, log, bound, members)]
                 for n, log in logs.items()}
    for node, log in sorted(logs.items()):
        if log.hard_state.commit > log.last_index:
            violations.append(f"node {node}: commit index {log.hard_state.commit} is past its "
                              f"last entry {log.last_index}")
    violations += state_machine_safety(committed)
    if violations:
        return Check("safety", False, f"{len(violations)} Raft safety violation(s)",
                     tuple(violations))
    return Check("safety", True, f"logs of {len(logs)} nodes match, committed prefixes agree "
                                 f"(commit index up to {bound}), at most one leader in each "
                                 f"of {len(leaders)} observed terms")


def check_durability(
    logs: Mapping[int, NodeLog], acked: Sequence[Acked], observed_commit: int = 0,
    run_start_ms: int | None = None, members: Collection[int] | None = None,
) -> Check:
    """Every acknowledged write is in every member's committed log or, once compacted, in its
    snapshot's session table (``members``: the final configuration's; None: every node whose
    log is given). ``run_start_ms`` (the harness's wall clock when the workload
    began) lets a write of a session that table no longer has count as unverifiable rather
    than missing, when and only when the snapshot's session clock passed the run's start by
    more than the TTL: then the session may have expired legitimately (a run longer than the
    TTL), and its compacted writes cannot be looked up. (The session clock starts at the
    first leader's wall clock and then runs on the leaders' monotonic clocks, so a wall-clock
    fault cannot make it pass: ``raftlib.kv.leader_clock``.)"""
    if members is not None:
        # A removed node or an unused spare is not held to the writes made after it left.
        logs = {node: log for node, log in logs.items() if node in members}
    if not logs:
        return Check("durability", False, "no node's log could be read")
    # Every node applied up to the commit index before the stop (liveness waits for that),
    # so each must hold every committed entry, whatever commit index its files persisted.
    writes = {node: session_writes(log.entries) for node, log in logs.items()}
    # An acknowledged write was applied, hence committed, wherever it first appears.
    acked_at = [index for a in acked for found in writes.values()
                if (index := found.get((a.session, a.seq, a.op))) is not None]
    commit = max([committed_bound(logs, observed_commit), *acked_at])
    violations = []
    unverifiable: set[tuple[int, int]] = set()
    for node in sorted(logs):
        have = {w for w, index in writes[node].items() if index <= commit}
        log = logs[node]
        sessions = log.snapshot_sessions
        may_expire = (run_start_ms is not None and log.session_ttl_ms > 0
                      and log.snapshot_clock_ms - log.session_ttl_ms > run_start_ms)
        missing = []
        for a in acked:
            if (a.session, a.seq, a.op) in have or sessions.get(a.session, 0) >= a.seq:
                continue
            if may_expire and a.session not in sessions:
                unverifiable.add((a.session, a.seq))
                continue
            missing.append(a)
        if missing:
            shown = ", ".join(f"p{a.process} {a.f} (session {a.session} seq {a.seq})"
                              for a in missing[:3])
            violations.append(f"node {node} lacks {len(missing)} acknowledged write(s) in its "
                              f"committed log (index <= {commit}), e.g. {shown}")
    if violations:
        return Check("durability", False, "acknowledged writes missing after recovery",
                     tuple(violations))
    if unverifiable:
        return Check("durability", True, f"{len(acked) - len(unverifiable)} of {len(acked)} "
                     "acknowledged writes are in the committed log or the snapshot of all "
                     f"{len(logs)} nodes; {len(unverifiable)} compacted ones of sessions that "
                     "may have expired (the session clock passed the run's start by more than "
                     "the session TTL) cannot be looked up")
    return Check("durability", True, f"all {len(acked)} acknowledged writes are in the committed "
                                     f"log or the snapshot of all {len(logs)} nodes")


def check_refusals(
    logs: Mapping[int, NodeLog], refused: Sequence[Acked], observed_commit: int = 0,
    members: Collection[int] | None = None,
) -> Check:
    """No write recorded ``fail`` as refused (``Unavailable``) is in a committed log: if one
    were, the client called "not applied" a write the cluster applied. A copy in a node's
    uncommitted tail is allowed: a proposal dropped by a leader change (``TRYAGAIN``) is
    refused once another entry committed at its index, and a stale node may still hold it."""
    if not logs:
        return Check("refusals", False, "no node's log could be read")
    commit = committed_bound(logs, observed_commit)
    writes = {node: session_writes(log.entries) for node, log in logs.items()}
    violations = []
    tails = 0
    for r in refused:
        found = {node: index for node, w in writes.items()
                 if (index := w.get((r.session, r.seq, r.op))) is not None}
        committed = {node: index for node, index in found.items()
                     if index <= node_bound(node, logs[node], commit, members)}
        if committed:
            node, index = min(committed.items())
            violations.append(f"p{r.process} {r.f} (session {r.session} seq {r.seq}) was "
                              f"recorded fail but is at index {index} of node {node}'s "
                              f"committed log (index <= {commit})")
        elif found:
            tails += 1
    if violations:
        return Check("refusals", False, "writes recorded fail were applied",
                     tuple(violations))
    return Check("refusals", True, f"none of {len(refused)} writes recorded fail is in a "
                                   f"committed log ({tails} in an uncommitted tail only)")


@attrs.define
class Liveness:
    recovery_time: float
    heal_at: float = 0.0
    leader_at: float | None = None
    probe_done_at: float | None = None
    caught_up_at: float | None = None
    catch_up_target: int = 0
    probe_attempts: int = 0
    lagging: dict[int, int] = attrs.field(factory=dict)
    # Nodes running but not yet answering when the recovery ended (a restart still starting):
    # a SIGTERM that ends one of them before it installed its handler is no node's fault.
    starting: list[int] = attrs.field(factory=list)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def check_liveness(live: Liveness) -> Check:
    def after(t: float) -> str:
        return f"+{t - live.heal_at:.3f} s"

    bound = f"{live.recovery_time:g} s"
    if live.probe_done_at is None:
        leader = ("no leader was seen" if live.leader_at is None
                  else f"a leader was seen at {after(live.leader_at)}")
        return Check("liveness", False, f"no progress after heal: the probe did not complete "
                                        f"within {bound} ({leader}; {live.probe_attempts} "
                                        "attempts)")
    if live.caught_up_at is None:
        lagging = ", ".join(f"node {n} at {a}" for n, a in sorted(live.lagging.items()))
        return Check("liveness", False, f"no progress after heal: nodes did not apply up to "
                                        f"index {live.catch_up_target} within {bound} "
                                        f"({lagging or 'no answer'})")
    return Check("liveness", True, f"probe completed at {after(live.probe_done_at)}, all nodes "
                                   f"applied index {live.catch_up_target} at "
                                   f"{after(live.caught_up_at)} (bound {bound})")


def check_processes(
    unexpected: Sequence[tuple[int, int, str]], forced: Sequence[int],
    statuses: Mapping[int, int | None], starting: Collection[int] = (),
) -> Check:
    """``starting``: nodes that had not answered since their last start when the run stopped
    them. SIGTERM's default action (status -15) ends such a node if it had not yet installed
    its handler: it was stopped while it started, which a process may be, not a fault."""
    violations = [f"node {node} exited on its own with status {status} while {doing}"
                  for node, status, doing in unexpected]
    violations += [f"node {node} did not stop on SIGTERM (killed)" for node in forced]
    ended_starting = sorted(node for node, status in statuses.items()
                            if node in starting and status == -signal.SIGTERM
                            and node not in forced)
    violations += [f"node {node} stopped with status {status} after SIGTERM"
                   for node, status in sorted(statuses.items())
                   if status not in (0, None) and node not in forced
                   and node not in ended_starting]
    if violations:
        return Check("processes", False, f"{len(violations)} node process problem(s)",
                     tuple(violations))
    if ended_starting:
        return Check("processes", True, f"no node crashed on its own; node(s) "
                                        f"{', '.join(map(str, ended_starting))} still starting "
                                        "(not yet answering) ended by SIGTERM, the other "
                                        f"{len(statuses) - len(ended_starting)} stopped cleanly "
                                        "on it")
    return Check("processes", True, f"no node crashed on its own; all {len(statuses)} stopped "
                                    "cleanly on SIGTERM")
