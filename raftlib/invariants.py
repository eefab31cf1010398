"""Raft's safety properties (paper Figure 3), checkable on observations of a set of nodes.

Tests and the harness record what they see (who led which term, each node's log, what each node
applied, which commands clients were told succeeded) and call these functions; each returns a
list of human-readable violations, empty when the property holds. They never raise on bad
data, so a checker can report every violation of a run at once.

- election safety: at most one leader per term;
- log matching: if two logs hold an entry with the same index and term, the logs are identical
  up to that index;
- leader completeness: an entry committed in some term is in the log of every leader of a later
  term;
- state machine safety: no two nodes apply different entries at the same index (every applied
  sequence is a prefix of the longest one);
- durability of acknowledgements: every command a client was told succeeded is in every node's
  applied prefix once the cluster has recovered and caught up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import attrs

from raftlib.core.types import Entry, EntryKind, NodeId


@attrs.define
class Observer:
    """Accumulates observations over a run; ``violations()`` checks them all."""

    # term -> set of nodes seen as leader in that term
    leaders: dict[int, set[NodeId]] = attrs.field(factory=dict)
    # (index, term) of every entry seen committed, with the term it was first seen committed in
    committed: dict[int, Entry] = attrs.field(factory=dict)
    # node -> applied entries (index order, contiguous from 1)
    applied: dict[NodeId, list[Entry]] = attrs.field(factory=dict)

    def saw_leader(self, node: NodeId, term: int) -> None:
        self.leaders.setdefault(term, set()).add(node)

    def saw_committed(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            self.committed.setdefault(entry.index, entry)

    def saw_applied(self, node: NodeId, entries: Iterable[Entry]) -> None:
        self.applied.setdefault(node, []).extend(entries)

    def saw_restart(self, node: NodeId) -> None:
        # A restarted node re-applies its log from the start (no snapshots yet).
        self.applied[node] = []

    def violations(self, logs: Mapping[NodeId, Sequence[Entry]] | None = None) -> list[str]:
        out = election_safety(self.leaders)
        out += state_machine_safety(self.applied)
        for index, entry in self.committed.items():
            for node, entries in self.applied.items():
                if len(entries) >= index and entries[index - 1] != entry:
                    out.append(
                        f"node {node} applied {_describe(entries[index - 1])} at index {index}, "
                        f"but {_describe(entry)} was committed there"
                    )
        if logs is not None:
            out += log_matching(logs)
        return out


def _describe(entry: Entry) -> str:
    kind = "noop" if entry.kind is EntryKind.NOOP else f"{len(entry.data)} bytes"
    return f"entry(index={entry.index}, term={entry.term}, {kind})"


def election_safety(leaders: Mapping[int, Iterable[NodeId]]) -> list[str]:
    """At most one leader per term (§5.2)."""
    out = []
    for term in sorted(leaders):
        nodes = sorted(set(leaders[term]))
        if len(nodes) > 1:
            out.append(f"election safety: term {term} had leaders {nodes}")
    return out


def log_matching(logs: Mapping[NodeId, Sequence[Entry]]) -> list[str]:
    """Same index and term => same entry and identical prefixes (§5.3)."""
    out = []
    nodes = sorted(logs)
    for node in nodes:
        for pos, entry in enumerate(logs[node]):
            if entry.index != pos + 1:
                out.append(f"log of node {node}: position {pos + 1} holds index {entry.index}")
                break
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            la, lb = logs[a], logs[b]
            # Find the last index where both logs have the same term; everything up to it must
            # be identical.
            last_match = 0
            for pos in range(min(len(la), len(lb)) - 1, -1, -1):
                if la[pos].term == lb[pos].term:
                    last_match = pos + 1
                    break
            for pos in range(last_match):
                if la[pos] != lb[pos]:
                    out.append(
                        f"log matching: nodes {a} and {b} agree at index {last_match} "
                        f"(term {la[last_match - 1].term}) but differ at index {pos + 1}: "
                        f"{_describe(la[pos])} vs {_describe(lb[pos])}"
                    )
                    break
    return out


def leader_completeness(
    committed: Mapping[int, Entry], leader_logs: Mapping[int, Sequence[Entry]]
) -> list[str]:
    """Every entry committed before term T is in the log of the leader of term T (§5.4).

    ``committed`` maps index -> entry with the term it was committed in being at most the
    entry's term; ``leader_logs`` maps a term to its leader's log as it was when it won."""
    out = []
    for term in sorted(leader_logs):
        log = leader_logs[term]
        for index, entry in committed.items():
            if entry.term < term and (len(log) < index or log[index - 1] != entry):
                out.append(
                    f"leader completeness: leader of term {term} lacks committed "
                    f"{_describe(entry)}"
                )
    return out


def state_machine_safety(applied: Mapping[NodeId, Sequence[Entry]]) -> list[str]:
    """No two nodes apply different entries at the same index (§5.4.3)."""
    out = []
    nodes = sorted(applied)
    longest: Sequence[Entry] = ()
    owner: NodeId = 0
    for node in nodes:
        if len(applied[node]) > len(longest):
            longest, owner = applied[node], node
    for node in nodes:
        for pos, entry in enumerate(applied[node]):
            if entry != longest[pos]:
                out.append(
                    f"state machine safety: at index {pos + 1} node {node} applied "
                    f"{_describe(entry)} but node {owner} applied {_describe(longest[pos])}"
                )
                break
    return out


def acknowledged_durable(
    acknowledged: Iterable[bytes], applied: Mapping[NodeId, Sequence[Entry]]
) -> list[str]:
    """Every acknowledged command is in every node's applied log (after recovery)."""
    out = []
    wanted = list(acknowledged)
    for node in sorted(applied):
        have = {e.data for e in applied[node] if e.kind is EntryKind.NORMAL}
        missing = [cmd for cmd in wanted if cmd not in have]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            out.append(
                f"node {node} lacks {len(missing)} acknowledged command(s), e.g. {shown}"
            )
    return out
