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
- state machine safety: no two nodes apply different entries at the same index, and no node
  applies two different entries at one index across its restarts;
- durability of acknowledgements: every command a client was told succeeded is in every node's
  applied prefix once the cluster has recovered and caught up (a prefix a node took from a
  snapshot counts as the entries applied there elsewhere);
- membership: a node whose applied configuration does not count it as a voter, and whose log
  brings none that does, never campaigns (it was removed, or is a learner; thesis §4.2.2);
- commit durability: when a leader commits an entry, a majority of the voters of the
  configuration it decides by (each majority of a joint one; thesis §4.3) holds it on disk
  (§5.4.2: else the voters that lack it can elect a leader without it). The observer is told
  who holds it; it does not ask the leader.

Logs and applied entries are keyed by index, since a log may start after a snapshot.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from raftlib.core import membership
from raftlib.core.types import ConfState, Entry, EntryKind, NodeId

# Violations of one kind kept at most (a broken run would otherwise list thousands).
VIOLATIONS_KEPT_MAX = 100


@attrs.define
class Observer:
    """Accumulates observations over a run; ``violations()`` checks them all."""

    # term -> set of nodes seen as leader in that term
    leaders: dict[int, set[NodeId]] = attrs.field(factory=dict)
    # (index, term) of every entry seen committed, with the term it was first seen committed in
    committed: dict[int, Entry] = attrs.field(factory=dict)
    # node -> index -> the entry it applied there (kept across restarts: a restarted node
    # applies the same entries again, or a snapshot of them)
    applied: dict[NodeId, dict[int, Entry]] = attrs.field(factory=dict)
    # node -> the highest index its state machine was restored to from a snapshot
    snapshots: dict[NodeId, int] = attrs.field(factory=dict)
    # a node applying a different entry at an index it applied before
    conflicts: list[str] = attrs.field(factory=list)
    # indexes of the committed configuration entries, ascending
    conf_indexes: list[int] = attrs.field(factory=list)
    # nodes that campaigned although no configuration they knew counted them as voters
    campaigns: list[str] = attrs.field(factory=list)
    # commits made while no majority of the deciding voters held the entry on disk
    unsafe_commits: list[str] = attrs.field(factory=list)

    def saw_leader(self, node: NodeId, term: int) -> None:
        self.leaders.setdefault(term, set()).add(node)

    def saw_committed(self, entries: Iterable[Entry]) -> None:
        committed = self.committed
        for entry in entries:
            if entry.index not in committed:
                committed[entry.index] = entry
                if entry.kind is EntryKind.CONF:
                    bisect.insort(self.conf_indexes, entry.index)

    def saw_campaign(self, node: NodeId, term: int, applied_index: int,
                     initial_voters: Iterable[NodeId],
                     log_voters: Iterable[frozenset[NodeId]]) -> None:
        """``node`` started an election for ``term``, having applied up to ``applied_index``;
        ``log_voters``: the voters of each configuration its log holds beyond it. What the
        node applied is judged from the committed log, not from what its core believes."""
        at = bisect.bisect_right(self.conf_indexes, applied_index)
        if at:
            index = self.conf_indexes[at - 1]
            try:
                voters = membership.voters_of(
                    membership.decode_conf(self.committed[index].data))
            except ValueError:
                return  # a corrupt committed configuration is reported where it is applied
            where = f"the configuration committed at index {index}"
        else:
            voters = frozenset(initial_voters)
            where = "its initial configuration"
        if node in voters or any(node in pending for pending in log_voters):
            return
        if len(self.campaigns) < VIOLATIONS_KEPT_MAX:
            self.campaigns.append(
                f"membership: node {node} campaigned for term {term} after applying {where} "
                f"(voters {sorted(voters)}), with no configuration in its log counting it")

    def saw_commit(self, leader: NodeId, term: int, index: int, conf: ConfState,
                   holders: Collection[NodeId]) -> None:
        """``leader``, leading ``term``, advanced its commit index to ``index``, deciding by
        ``conf`` (the latest configuration of its log); ``holders``: the nodes whose disk held
        that entry at that moment."""
        held = frozenset(holders)
        for voters in (conf.voters, conf.voters_outgoing):
            if not voters:
                continue  # no outgoing half: not a joint configuration
            have = held.intersection(voters)
            if 2 * len(have) > len(voters):
                continue
            if len(self.unsafe_commits) < VIOLATIONS_KEPT_MAX:
                self.unsafe_commits.append(
                    f"commit durability: leader {leader} of term {term} committed index "
                    f"{index} while only {sorted(have)} of the voters {sorted(voters)} held it "
                    "on disk")
            return

    def saw_applied(self, node: NodeId, entries: Iterable[Entry]) -> None:
        table = self.applied.setdefault(node, {})
        for entry in entries:
            before = table.get(entry.index)
            if before is not None and before != entry and len(self.conflicts) < VIOLATIONS_KEPT_MAX:
                self.conflicts.append(
                    f"state machine safety: node {node} applied {_describe(before)} and later "
                    f"{_describe(entry)} at index {entry.index}"
                )
            table[entry.index] = entry

    def saw_snapshot(self, node: NodeId, index: int) -> None:
        """``node``'s state machine was restored from a snapshot up to ``index``."""
        self.snapshots[node] = max(index, self.snapshots.get(node, 0))

    def saw_restart(self, node: NodeId) -> None:
        """A restarted node applies its entries again (after its snapshot, if any): checked
        against what it applied before, not forgotten."""

    def violations(self, logs: Mapping[NodeId, Sequence[Entry]] | None = None) -> list[str]:
        out = election_safety(self.leaders)
        out += self.conflicts
        out += self.campaigns
        out += self.unsafe_commits
        out += state_machine_safety(self.applied)
        for index, entry in self.committed.items():
            for node, table in self.applied.items():
                mine = table.get(index)
                if mine is not None and mine != entry:
                    out.append(
                        f"node {node} applied {_describe(mine)} at index {index}, "
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
    """Same index and term => same entry and identical prefixes (§5.3). A log may start after
    a snapshot: only the indexes both logs hold are compared."""
    out = []
    nodes = sorted(logs)
    for node in nodes:
        log = logs[node]
        for pos, entry in enumerate(log):
            if entry.index != log[0].index + pos:
                out.append(f"log of node {node}: position {pos + 1} holds index {entry.index}, "
                           f"not {log[0].index + pos}")
                break
    tables = {node: _by_index(logs[node]) for node in nodes}
    for i, a in enumerate(nodes):
        for b in nodes[i + 1 :]:
            ta, tb = tables[a], tables[b]
            common = sorted(set(ta) & set(tb))
            # The last index where both logs have the same term; everything held by both up
            # to it must be identical.
            last_match = next((x for x in reversed(common) if ta[x].term == tb[x].term), 0)
            for x in common:
                if x > last_match:
                    break
                if ta[x] != tb[x]:
                    out.append(
                        f"log matching: nodes {a} and {b} agree at index {last_match} "
                        f"(term {ta[last_match].term}) but differ at index {x}: "
                        f"{_describe(ta[x])} vs {_describe(tb[x])}"
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


def _by_index(entries: Sequence[Entry] | Mapping[int, Entry]) -> Mapping[int, Entry]:
    if isinstance(entries, Mapping):
        return entries
    return {entry.index: entry for entry in entries}


def state_machine_safety(
    applied: Mapping[NodeId, Sequence[Entry] | Mapping[int, Entry]],
) -> list[str]:
    """No two nodes apply different entries at the same index (§5.4.3)."""
    out = []
    first: dict[int, tuple[NodeId, Entry]] = {}
    reported: set[NodeId] = set()
    for node in sorted(applied):
        for index, entry in sorted(_by_index(applied[node]).items()):
            seen = first.setdefault(index, (node, entry))
            if seen[1] != entry and node not in reported:
                reported.add(node)
                out.append(
                    f"state machine safety: at index {index} node {node} applied "
                    f"{_describe(entry)} but node {seen[0]} applied {_describe(seen[1])}"
                )
    return out


def acknowledged_durable(
    acknowledged: Iterable[bytes],
    applied: Mapping[NodeId, Sequence[Entry] | Mapping[int, Entry]],
    snapshots: Mapping[NodeId, int] | None = None,
    nodes: Iterable[NodeId] | None = None,
) -> list[str]:
    """Every acknowledged command is in the applied log of each of ``nodes`` (default: every
    node of ``applied``) after recovery. A node's prefix up to a snapshot it restored counts
    as the entries any node applied there (with membership changes, perhaps only nodes that
    have since been removed did)."""
    out = []
    wanted = list(acknowledged)
    tables = {node: _by_index(entries) for node, entries in applied.items()}
    everywhere: dict[int, Entry] = {}
    for table in tables.values():
        for index, entry in table.items():
            everywhere.setdefault(index, entry)
    checked = sorted(tables) if nodes is None else sorted(n for n in nodes if n in tables)
    for node in checked:
        floor = (snapshots or {}).get(node, 0)
        have = {e.data for e in tables[node].values() if e.kind is EntryKind.NORMAL}
        have.update(e.data for i, e in everywhere.items()
                    if i <= floor and e.kind is EntryKind.NORMAL)
        missing = [cmd for cmd in wanted if cmd not in have]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:3])
            out.append(
                f"node {node} lacks {len(missing)} acknowledged command(s), e.g. {shown}"
            )
    return out
