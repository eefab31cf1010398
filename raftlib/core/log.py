"""The core's in-memory view of the log: the entries after a snapshot, and how much is durable.

The log starts right after a *base* (``base_index``, ``base_term``): 0/0 for a log that was
never compacted, else the last entry a snapshot covers (or an earlier one, when trailing
entries are kept for slow followers). Entry ``i`` sits at position ``i - base_index - 1``.
Three watermarks, all absolute indexes, split it::

    base ......... persisted ........ handed ............ last_index
    | durable (the driver advanced | given to the driver | not yet given to
    | a Ready holding them)        | in a Ready, not yet | the driver
    |                              | acknowledged        |

``base_index <= persisted <= handed <= last_index`` always. Replacing a conflicting suffix
moves both marks back below the first replaced index, so the replacement is handed out again
and the storage truncates there.

Terms never decrease along a log (each leader appends in its own, newer term), so looking up
"the first entry of term t" or "the last entry with term <= t" is a binary search.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from operator import attrgetter

from raftlib.core.types import Entry, EntryKind

_term_of = attrgetter("term")
_CONF = EntryKind.CONF


class RaftLog:
    __slots__ = ("_entries", "base_index", "base_term", "conf_indexes", "handed", "last_index",
                 "persisted")

    def __init__(
        self, entries: Sequence[Entry] = (), base_index: int = 0, base_term: int = 0
    ) -> None:
        self.base_index = base_index
        self.base_term = base_term
        self._entries: list[Entry] = list(entries)
        if self._entries and self._entries[0].index != base_index + 1:
            raise AssertionError(
                f"log starts at {self._entries[0].index}, not right after base {base_index}"
            )
        # Indexes of the CONF entries the log holds, in order (membership: every decision
        # counts the configurations they bring, raftlib.core.reconfigure).
        self.conf_indexes: list[int] = [e.index for e in self._entries if e.kind is _CONF]
        # ``base_index + len(_entries)``, kept by every mutation (read several times per
        # message: a plain attribute, not a property; ``check`` asserts it).
        self.last_index = base_index + len(self._entries)
        # Entries given by the constructor come from storage: they are durable.
        self.persisted = self.last_index
        self.handed = self.last_index

    # --- queries ---------------------------------------------------------------------------

    @property
    def first_index(self) -> int:
        """The first index held (``last_index + 1`` when empty)."""
        return self.base_index + 1

    @property
    def last_term(self) -> int:
        entries = self._entries
        return entries[-1].term if entries else self.base_term

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``: the base's at the base, 0 at 0; None when the entry
        is not held (past the end, or compacted away)."""
        base = self.base_index
        if index == base:
            return self.base_term
        if base < index <= self.last_index:
            return self._entries[index - base - 1].term
        if index == 0:
            return 0
        return None

    def entry(self, index: int) -> Entry:
        if index <= self.base_index:
            raise AssertionError(f"entry {index} is compacted (base {self.base_index})")
        return self._entries[index - self.base_index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Held entries with ``lo <= index <= hi`` (clamped to the log)."""
        base = self.base_index
        return self._entries[max(lo - base, 1) - 1 : max(hi - base, 0)]

    def entries_from(self, lo: int, count_max: int, bytes_max: int) -> list[Entry]:
        """Up to ``count_max`` entries from ``lo`` whose data totals at most ``bytes_max``
        bytes, but always at least one entry when ``lo`` exists (progress over precision)."""
        if lo <= self.base_index:
            raise AssertionError(f"entries from {lo}: compacted (base {self.base_index})")
        start = lo - self.base_index - 1
        batch = self._entries[start : start + count_max]
        if not batch:
            return batch
        total = 0
        for position, entry in enumerate(batch):
            total += len(entry.data)
            if total > bytes_max:
                return batch[: max(position, 1)]
        return batch

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a log ending at (last_term, last_index) is at least as up to date as ours."""
        our_term = self.last_term
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index)

    def first_index_of_term(self, term: int, lo: int, hi: int) -> int:
        """The smallest index in [lo, hi] whose term is >= ``term`` (hi + 1 when none).

        Used by a follower that rejects an append: with ``term`` the term at the rejected
        index, it names where that term starts in its log so the leader can skip it whole.
        """
        base = self.base_index
        lo = max(lo, base + 1)
        hi = min(hi, self.last_index)
        if lo > hi:
            return hi + 1
        position = bisect_left(self._entries, term, lo - base - 1, hi - base, key=_term_of)
        return position + base + 1

    def last_index_of_term_at_most(self, term: int, hi: int) -> int:
        """The largest index <= ``hi`` whose term is <= ``term`` (the base when no held entry
        qualifies but the base does; 0 when the base's term is newer too)."""
        base = self.base_index
        hi = min(hi, self.last_index)
        if hi <= base:
            return min(hi, base) if self.base_term <= term else 0
        found = bisect_right(self._entries, term, 0, hi - base, key=_term_of)
        if found == 0:
            return base if self.base_term <= term else 0
        return found + base

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Position in ``entries`` of the first one that is not already in our log (either
        past our end or with a different term at its index); ``len(entries)`` when all are.
        Entries at or below the base count as present (a snapshot covers them)."""
        ours = self._entries
        base = self.base_index
        have = base + len(ours)
        for position, entry in enumerate(entries):
            index = entry.index
            if index <= base:
                continue
            if index > have or ours[index - base - 1].term != entry.term:
                return position
        return len(entries)

    # --- mutations -------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the last one (the leader's own proposals)."""
        if entries and entries[0].index != self.last_index + 1:
            raise AssertionError(
                f"append at {entries[0].index} does not follow last index {self.last_index}"
            )
        self._entries.extend(entries)
        self.last_index += len(entries)
        for entry in entries:
            if entry.kind is _CONF:
                self.conf_indexes.append(entry.index)

    def replace_from(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` from ``entries[0].index``, first dropping every entry at or after
        it (a follower replacing a conflicting suffix, §5.3)."""
        if not entries:
            return
        first = entries[0].index
        last = self.last_index
        if not self.base_index < first <= last + 1:
            raise AssertionError(
                f"replace at {first} outside ({self.base_index}, {last + 1}]"
            )
        if first <= last:
            del self._entries[first - self.base_index - 1 :]
            self.conf_indexes = [i for i in self.conf_indexes if i < first]
            # The replaced suffix must be written again, and what storage held there is void.
            self.handed = min(self.handed, first - 1)
            self.persisted = min(self.persisted, first - 1)
        self._entries.extend(entries)
        self.last_index = first - 1 + len(entries)
        for entry in entries:
            if entry.kind is _CONF:
                self.conf_indexes.append(entry.index)

    def compact(self, index: int) -> None:
        """Drop every entry up to ``index`` (a durable snapshot covers them): it becomes the
        base. Only durable entries may go (the caller also keeps what is not yet applied)."""
        if index <= self.base_index:
            return
        if index > self.persisted:
            raise AssertionError(f"compact to {index} beyond persisted {self.persisted}")
        term = self.term(index)
        assert term is not None
        del self._entries[: index - self.base_index]
        self.conf_indexes = [i for i in self.conf_indexes if i > index]
        self.base_index = index
        self.base_term = term

    def restore(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's base: it now starts after ``index``; what
        storage holds is void (the driver resets it with the same Ready)."""
        self._entries = []
        self.conf_indexes = []
        self.base_index = index
        self.base_term = term
        self.last_index = index
        self.persisted = index
        self.handed = index

    def take_unhanded(self) -> tuple[Entry, ...]:
        """Entries not yet given to the driver; they count as handed from now on."""
        start = self.handed - self.base_index
        self.handed = self.last_index
        return tuple(self._entries[start:])

    def mark_persisted(self, last_index: int) -> None:
        """The driver made entries up to ``last_index`` durable (clamped to what is still
        handed: a suffix replaced meanwhile is not durable in its new form)."""
        upto = min(last_index, self.handed)
        if upto > self.persisted:
            self.persisted = upto

    def check(self) -> None:
        if self.last_index != self.base_index + len(self._entries):
            raise AssertionError(
                f"last index {self.last_index} is not base {self.base_index} + "
                f"{len(self._entries)} entries held"
            )
        if not self.base_index <= self.persisted <= self.handed <= self.last_index:
            raise AssertionError(
                f"log watermarks out of order: base={self.base_index} "
                f"persisted={self.persisted} handed={self.handed} last={self.last_index}"
            )
