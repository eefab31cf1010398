"""The core's in-memory view of the log: every entry, plus how much of it is durable.

Entries are kept in one list (index ``i`` at position ``i - 1``; raftlib has no snapshots yet).
Three watermarks split the log::

    1 ............ persisted ........ handed ............ last_index
    | durable (the driver advanced | given to the driver | not yet given to
    | a Ready holding them)        | in a Ready, not yet | the driver
    |                              | acknowledged        |

``persisted <= handed <= last_index`` always. Replacing a conflicting suffix moves both marks
back below the first replaced index, so the replacement is handed out again and the storage
truncates there.

Terms never decrease along a log (each leader appends in its own, newer term), so looking up
"the first entry of term t" or "the last entry with term <= t" is a binary search.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from operator import attrgetter

from raftlib.core.types import Entry

_term_of = attrgetter("term")


class RaftLog:
    __slots__ = ("_entries", "handed", "persisted")

    def __init__(self, entries: Sequence[Entry] = ()) -> None:
        self._entries: list[Entry] = list(entries)
        # Entries given by the constructor come from storage: they are durable.
        self.persisted = len(self._entries)
        self.handed = len(self._entries)

    # --- queries ---------------------------------------------------------------------------

    @property
    def last_index(self) -> int:
        return len(self._entries)

    @property
    def last_term(self) -> int:
        entries = self._entries
        return entries[-1].term if entries else 0

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; 0 for index 0; None when there is no such entry."""
        if index == 0:
            return 0
        if 0 < index <= len(self._entries):
            return self._entries[index - 1].term
        return None

    def entry(self, index: int) -> Entry:
        return self._entries[index - 1]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries with ``lo <= index <= hi`` (clamped to the log)."""
        return self._entries[max(lo, 1) - 1 : max(hi, 0)]

    def entries_from(self, lo: int, count_max: int, bytes_max: int) -> list[Entry]:
        """Up to ``count_max`` entries from ``lo`` whose data totals at most ``bytes_max``
        bytes, but always at least one entry when ``lo`` exists (progress over precision)."""
        batch = self._entries[lo - 1 : lo - 1 + count_max]
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
        lo = max(lo, 1)
        if lo > hi:
            return hi + 1
        position = bisect_left(self._entries, term, lo - 1, hi, key=_term_of)
        return position + 1

    def last_index_of_term_at_most(self, term: int, hi: int) -> int:
        """The largest index <= ``hi`` whose term is <= ``term`` (0 when none)."""
        hi = min(hi, len(self._entries))
        if hi <= 0:
            return 0
        return bisect_right(self._entries, term, 0, hi, key=_term_of)

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Position in ``entries`` of the first one that is not already in our log (either
        past our end or with a different term at its index); ``len(entries)`` when all are."""
        ours = self._entries
        have = len(ours)
        for position, entry in enumerate(entries):
            index = entry.index
            if index > have or ours[index - 1].term != entry.term:
                return position
        return len(entries)

    # --- mutations -------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries that directly follow the last one (the leader's own proposals)."""
        if entries and entries[0].index != len(self._entries) + 1:
            raise AssertionError(
                f"append at {entries[0].index} does not follow last index {len(self._entries)}"
            )
        self._entries.extend(entries)

    def replace_from(self, entries: Sequence[Entry]) -> None:
        """Write ``entries`` from ``entries[0].index``, first dropping every entry at or after
        it (a follower replacing a conflicting suffix, §5.3)."""
        if not entries:
            return
        first = entries[0].index
        if not 1 <= first <= len(self._entries) + 1:
            raise AssertionError(f"replace at {first} leaves a gap after {len(self._entries)}")
        if first <= len(self._entries):
            del self._entries[first - 1 :]
            # The replaced suffix must be written again, and what storage held there is void.
            self.handed = min(self.handed, first - 1)
            self.persisted = min(self.persisted, first - 1)
        self._entries.extend(entries)

    def take_unhanded(self) -> tuple[Entry, ...]:
        """Entries not yet given to the driver; they count as handed from now on."""
        start = self.handed
        self.handed = len(self._entries)
        return tuple(self._entries[start:])

    def mark_persisted(self, last_index: int) -> None:
        """The driver made entries up to ``last_index`` durable (clamped to what is still
        handed: a suffix replaced meanwhile is not durable in its new form)."""
        upto = min(last_index, self.handed)
        if upto > self.persisted:
            self.persisted = upto

    def check(self) -> None:
        if not 0 <= self.persisted <= self.handed <= len(self._entries):
            raise AssertionError(
                f"log watermarks out of order: persisted={self.persisted} "
                f"handed={self.handed} last={len(self._entries)}"
            )
