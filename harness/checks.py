"""The checks of a run and its verdict.

- ``linearizable``: lincheck on the client history with the workload's model (partitioned by
  key for the keyed workloads). Unknown when lincheck's time budget runs out. The counter and
  set workloads are checked by Jepsen's counter and set checkers instead (``counter``, ``set``:
  ``harness.workload_checks``).
- ``safety``: Raft's own invariants from what the nodes did (``raftlib.invariants``: election
  safety, state machine safety, committed entries applied unchanged, log matching on the final
  logs), plus the cores' counters of messages no correct peer sends and of refused unsafe acts.
- ``durability``: every write acknowledged to a client is in the applied log of every node
  after recovery.
- ``refusals``: no write a client recorded ``fail`` (every attempt refused before it could
  enter a log) is in the committed log: a client may say "not applied" only when it is true.
- ``liveness``: after the final heal, a leader is elected, the probe's write and final reads
  complete and every node catches up, within the recovery time; else "no progress after heal".

The verdict is ``invalid`` if any check failed, else ``unknown`` if any could not decide, else
``valid``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import attrs
import lincheck
from lincheck import History, Result

from harness.sim.world import SimOutcome
from raftlib.core.types import Entry, EntryKind
from raftlib.invariants import acknowledged_durable
from raftlib.kv.commands import CommandError, Op, Request, decode_command

Verdict = Literal["valid", "invalid", "unknown"]
# Violations listed in results.json per check; the count says how many there were in all.
VIOLATIONS_SHOWN_MAX = 20


@attrs.frozen
class Check:
    name: str
    valid: bool | None  # None: could not decide
    summary: str
    violations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "summary": self.summary,
            "violations": list(self.violations[:VIOLATIONS_SHOWN_MAX]),
            "violation_count": len(self.violations),
        }


def lincheck_history(outcome: SimOutcome) -> History:
    return lincheck.history_from_events(outcome.history.events, source="history.jsonl")


def model_of(outcome: SimOutcome) -> lincheck.Model:
    workload = outcome.workload
    model = lincheck.get_model(workload.model, workload.initial)
    return per_key(model) if workload.keyed else model


def _by_key(ops: Sequence[lincheck.Operation]) -> list[tuple[Any, list[lincheck.Operation]]]:
    parts: dict[Any, list[lincheck.Operation]] = {}
    for op in ops:
        parts.setdefault(op.key, []).append(op)
    return list(parts.items())


def _same_model(model: lincheck.Model, key: Any) -> lincheck.Model:
    return model


def per_key(model: lincheck.Model) -> lincheck.Model:
    """``model`` applied to each key separately (a FIFO queue per key): keys are independent
    objects, so each is its own partition (P-compositionality). ``kv`` already is."""
    if model.partition is not None:
        return model
    return model._replace(partition=_by_key, part_model=functools.partial(_same_model, model))


def check_linearizable(
    outcome: SimOutcome, timeout: float, parallel: bool | None = None
) -> tuple[Check, History, Result]:
    history = lincheck_history(outcome)
    check, result = judge_history(history, model_of(outcome), timeout, parallel)
    return check, history, result


def judge_history(
    history: History, model_: lincheck.Model, timeout: float, parallel: bool | None = None
) -> tuple[Check, Result]:
    """lincheck's verdict on a history as the harness's ``linearizable`` check (sim and live)."""
    result = lincheck.check(history, model_, timeout=timeout, parallel=parallel)
    ops = len(history.operations)
    model = model_.name
    if result.verdict == "ok":
        check = Check("linearizable", True, f"{ops} operations linearizable ({model} model, "
                                            f"{result.stats.get('partitions', 1)} partitions)")
    elif result.verdict == "illegal":
        check = Check("linearizable", False, f"not linearizable: {result.reason}",
                      tuple(lincheck.explain(history, result).splitlines()))
    else:
        check = Check("linearizable", None, f"lincheck could not decide: {result.reason}")
    return check, result


def check_safety(outcome: SimOutcome) -> Check:
    violations = outcome.observer.violations(outcome.logs)
    for node, (invalid, anomalies) in sorted(outcome.anomalies.items()):
        if invalid:
            violations.append(f"node {node} received {invalid} message(s) no correct peer sends")
        if anomalies:
            violations.append(f"node {node} refused {anomalies} unsafe message(s) (a second "
                              "leader in a term, or a rewrite of committed entries)")
    for node, reason in sorted(outcome.diverged.items()):
        violations.append(f"node {node} stopped on divergence: {reason}")
    terms = len(outcome.observer.leaders)
    if violations:
        return Check("safety", False, f"{len(violations)} Raft safety violation(s)",
                     tuple(violations))
    return Check("safety", True, f"election, log and state machine safety hold "
                                 f"({terms} terms with a leader)")


def check_durability(outcome: SimOutcome) -> Check:
    live = outcome.liveness
    members = outcome.members
    everyone = outcome.observer.applied
    # Only the final configuration's members must hold every acknowledged write (a removed
    # node need not); what any node applied tells what a member's snapshot stands for.
    holders = [node for node in everyone
               if node not in live.lagging and (members is None or node in members)]
    acknowledged = outcome.acknowledged
    violations = acknowledged_durable(acknowledged, everyone, outcome.observer.snapshots,
                                      nodes=holders)
    if violations:
        return Check("durability", False, "acknowledged writes missing after recovery",
                     tuple(violations))
    return Check("durability", True, f"all {len(acknowledged)} acknowledged writes are in the "
                                     f"applied log of {len(holders)} node(s)")


WriteId = tuple[int, int, Op]  # (session, seq, operation)


def session_writes(entries: Iterable[Entry]) -> dict[WriteId, int]:
    """Each session write in ``entries`` and the index it first appears at."""
    found: dict[WriteId, int] = {}
    for entry in entries:
        if entry.kind is not EntryKind.NORMAL:
            continue
        try:
            command = decode_command(entry.data)
        except CommandError:
            continue  # the safety check compares raw entries; nothing to find here
        if isinstance(command, Request):
            found.setdefault((command.session, command.seq, command.op), entry.index)
    return found


def check_refusals(outcome: SimOutcome) -> Check:
    committed = session_writes(outcome.observer.committed.values())
    violations = [f"session {session} seq {seq} ({op!r}) was recorded fail but was committed "
                  f"at index {index}"
                  for session, seq, op in outcome.refused
                  if (index := committed.get((session, seq, op))) is not None]
    if violations:
        return Check("refusals", False, "writes recorded fail were applied", tuple(violations))
    return Check("refusals", True, f"none of {len(outcome.refused)} writes recorded fail is "
                                   f"in the committed log")


# New terms allowed in the settling window after everything healed and caught up (harness.sim
# .world._settle): one stray election, no more.
SETTLE_TERMS_MAX = 1


def check_liveness(outcome: SimOutcome) -> Check:
    live = outcome.liveness

    def after_heal(us: int) -> str:
        return f"+{(us - live.heal_us) / 1_000_000:.3f} s"

    bound = f"{outcome.options.recovery_time:g} s"
    if live.probe_done_us is None:
        leader = ("no leader was elected" if live.leader_after_heal_us is None
                  else f"a leader was elected at {after_heal(live.leader_after_heal_us)}")
        return Check("liveness", False, f"no progress after heal: the probe did not complete "
                                        f"within {bound} ({leader}; "
                                        f"{live.probe_attempts} attempts)")
    if live.caught_up_us is None:
        lagging = ", ".join(f"node {n} at {a}" for n, a in sorted(live.lagging.items()))
        return Check("liveness", False, f"no progress after heal: nodes did not catch up to "
                                        f"index {live.catch_up_target} within {bound} "
                                        f"({lagging})")
    elections = live.settle_to_term - live.settle_from_term
    options = outcome.options
    if not (options.pre_vote or options.check_quorum):
        # Without PreVote and CheckQuorum nothing stops a node removed while it was down (it
        # never learns it) from deposing leaders with ever higher terms (thesis §4.2.3): that
        # is the configuration's known weakness, not a bug (README, Known limits).
        return Check("liveness", True, f"probe completed at {after_heal(live.probe_done_us)}, "
                                       f"all nodes caught up at {after_heal(live.caught_up_us)} "
                                       f"(bound {bound}); leadership after heal not judged "
                                       "(PreVote and CheckQuorum off)")
    if elections > SETTLE_TERMS_MAX:
        return Check("liveness", False, f"leadership did not settle after heal: {elections} "
                                        f"elections (terms {live.settle_from_term} to "
                                        f"{live.settle_to_term}) in the "
                                        f"{live.settle_us / 1_000_000:g} s after every node "
                                        "caught up, with no fault and no client (a node keeps "
                                        "deposing the leader)")
    return Check("liveness", True, f"probe completed at {after_heal(live.probe_done_us)}, all "
                                   f"nodes caught up at {after_heal(live.caught_up_us)} "
                                   f"(bound {bound}); leadership held")


def verdict_of(checks: list[Check]) -> Verdict:
    if any(check.valid is False for check in checks):
        return "invalid"
    if any(check.valid is None for check in checks):
        return "unknown"
    return "valid"
