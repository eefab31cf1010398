"""File faults of a stopped live node: flip a bit in, or truncate, its newest WAL segment or
its snapshot, and find out what recovery makes of it before the node restarts.

A ``disk`` window (a power loss) may carry ``file``: ``{"target": "wal" | "snapshot", "how":
"flip" | "truncate", "at": fraction}`` (``harness.nemesis``). At the window's end, with the
node down, ``damage`` picks the file, reads what the node would recover from an intact copy,
damages the file at ``at`` x its size (one bit, or the size cut there), and opens a copy of
the damaged directory with the production ``WalStorage`` the node runs. The outcome is one of:

- ``refused``: recovery raised (``CorruptLog``, ``CorruptSnapshot`` ...): the node must refuse
  to start in one line; the nemesis starts it to see that, then puts the file back (the
  fault was transient: a bad cable, a misdirected write) and starts it again;
- ``intact``: recovery gives the same log, hard state and snapshot (the damage was in bytes
  recovery never needs, such as the zero-filled end of a segment);
- ``loss-reported``: entries or the snapshot are gone and recovery said so (a warning, as for
  a torn tail): what Raft makes of the loss is for the safety and durability checks;
- ``loss-silent``: entries or the snapshot are gone without a word. Never acceptable: the
  ``file-faults`` check fails.

Copies are probed, never the node's own directory: recovery repairs what it opens (it cuts a
torn tail), and the node must meet the damage itself.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import attrs

from harness.checks import Check
from raftlib.storage.wal import WalStorage

# A recovered node's state as recovery gives it: entries (index, term, data), hard state,
# snapshot index.
_State = tuple[tuple[tuple[int, int, bytes], ...], tuple[int, int, int], int]


@attrs.define
class FileFaultOutcome:
    node: int
    target: str
    how: str
    file: str  # the file's name ("" when the node had none of that kind)
    offset: int  # byte (flip) or new size (truncate)
    result: str  # refused | intact | loss-reported | loss-silent | no-file
    detail: str  # one line
    # the node's own answer when it was started on the damaged directory (refused only)
    node_said: str = ""  # its last line
    node_status: int | None = None
    node_lines: int = 0  # lines it printed besides log records (a refusal is one)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def _pick(directory: Path, target: str) -> Path | None:
    pattern = "wal-*.log" if target == "wal" else "snapshot-*.snap"
    files = sorted(directory.glob(pattern))
    return files[-1] if files else None


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def said(self, copy: Path, directory: Path) -> list[str]:
        return [line.replace(str(copy), str(directory)) for line in self.lines]


def _recover(directory: Path) -> tuple[_State | None, str, list[str]]:
    """What a node would recover from a copy of ``directory``: its state, or the one-line
    reason it refuses; and the warnings recovery logged."""
    handler = _Warnings()
    logger = logging.getLogger("raftlib.storage")
    logger.addHandler(handler)
    try:
        with tempfile.TemporaryDirectory(prefix="raft-harness-probe-") as scratch:
            copy = Path(scratch) / "node"
            shutil.copytree(directory, copy)
            (copy / "LOCK").unlink(missing_ok=True)
            try:
                with WalStorage(copy) as storage:
                    got = storage.load()
                warnings = handler.said(copy, directory)
            except Exception as exc:  # any refusal is an outcome, named in one line
                said = f"{type(exc).__name__}: {exc}".replace(str(copy), str(directory))
                return None, said.splitlines()[0], handler.lines
    finally:
        logger.removeHandler(handler)
    entries = tuple((e.index, e.term, bytes(e.data)) for e in got.entries)
    hard = (got.hard_state.term, got.hard_state.vote, got.hard_state.commit)
    snapshot = got.snapshot.index if got.snapshot is not None else 0
    return (entries, hard, snapshot), "", warnings


def _lost(before: _State, after: _State) -> list[str]:
    """What ``after`` lacks of ``before``, one phrase each (empty: nothing)."""
    lost = []
    entries_before, _, snap_before = before
    entries_after, hard_after, snap_after = after
    kept = set(entries_after)
    missing = [e for e in entries_before if e not in kept and e[0] > snap_after]
    if missing:
        lost.append(f"{len(missing)} log entries (from index {missing[0][0]})")
    if snap_after < snap_before:
        lost.append(f"the snapshot at index {snap_before} (now {snap_after})")
    if before[1][:2] != hard_after[:2]:
        lost.append(f"term/vote {before[1][:2]} (now {hard_after[:2]})")
    return lost


def damage(node: int, directory: Path, fault: dict[str, Any],
           rng_bit: int) -> tuple[FileFaultOutcome, tuple[Path, bytes] | None]:
    """Damage one file of a stopped node's ``directory`` as ``fault`` says and classify what
    recovery makes of it. Returns the outcome and (path, original bytes) to put back."""
    target, how, at = fault["target"], fault["how"], float(fault["at"])
    path = _pick(directory, target)
    if path is None or path.stat().st_size == 0:
        return FileFaultOutcome(node, target, how, "", 0, "no-file",
                                f"node {node} has no {target} file to damage"), None
    before, refusal, _ = _recover(directory)
    if before is None:
        return FileFaultOutcome(node, target, how, path.name, 0, "refused",
                                f"refused before any damage: {refusal}"), None
    original = path.read_bytes()
    offset = min(int(at * len(original)), len(original) - 1)
    if how == "flip":
        damaged = bytearray(original)
        damaged[offset] ^= 1 << (rng_bit % 8)
        path.write_bytes(bytes(damaged))
        what = f"bit {rng_bit % 8} of byte {offset} of {len(original)} flipped"
    else:
        path.write_bytes(original[:offset])
        what = f"cut from {len(original)} to {offset} bytes"
    after, refusal, warnings = _recover(directory)
    if after is None:
        result, detail = "refused", refusal
    else:
        lost = _lost(before, after)
        if not lost:
            result, detail = "intact", "recovered everything"
        elif warnings:
            result, detail = "loss-reported", f"lost {', '.join(lost)}; said: {warnings[0]}"
        else:
            result, detail = "loss-silent", f"lost {', '.join(lost)} without a word"
    outcome = FileFaultOutcome(node, target, how, path.name, offset, result,
                               f"{path.name}: {what}: {detail}")
    return outcome, (path, original)


def check_file_faults(outcomes: list[FileFaultOutcome]) -> Check:
    """``file-faults``: every damaged file was refused in one line by the node itself, or
    recovered from intact, or its loss was reported; never lost without a word."""
    violations = []
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.result] = counts.get(o.result, 0) + 1
        if o.result == "loss-silent":
            violations.append(f"node {o.node}: {o.detail}")
        elif o.result == "refused" and o.file and not _refused_in_one_line(o):
            violations.append(f"node {o.node}: started on {o.file} damaged ({o.detail}), it "
                              f"did not refuse in one line: status {o.node_status}, "
                              f"{o.node_lines} lines, last {o.node_said!r}")
    summary = ", ".join(f"{n} {result}" for result, n in sorted(counts.items()))
    if violations:
        return Check("file-faults", False, f"damaged files mishandled ({summary})",
                     tuple(violations))
    return Check("file-faults", True, f"{len(outcomes)} damaged files: {summary or 'none'}")


_LOG_RECORD = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def is_log_record(line: str) -> bool:
    """A line of the node's logging (``raftlib serve``'s format), not of its own output."""
    return _LOG_RECORD.match(line) is not None


def _refused_in_one_line(o: FileFaultOutcome) -> bool:
    return (o.node_status not in (None, 0) and o.node_said.startswith("raftlib: error:")
            and o.node_lines == 1)
