"""RaftLog keeps ``last_index`` (a plain attribute, for speed) equal to what its entries say
under every mutation: checked against a naive model of the log (a base and a list) after each
step of random append / replace / compact / restore sequences."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from raftlib.core.log import RaftLog
from raftlib.core.types import Entry

# One step: (operation, a number steering where it acts).
steps = st.lists(
    st.tuples(st.sampled_from(["append", "replace", "compact", "restore", "hand", "persist"]),
              st.integers(min_value=0, max_value=6)),
    max_size=40,
)


@given(steps)
def test_last_index_follows_every_mutation(ops: list[tuple[str, int]]) -> None:
    log = RaftLog()
    base = 0  # the model: what the log must hold
    entries: list[Entry] = []
    term = 1
    for op, n in ops:
        last = base + len(entries)
        if op == "append":
            new = [Entry(term, last + 1 + i, b"x") for i in range(n)]
            log.append(new)
            entries += new
        elif op == "replace" and n:
            # A follower replacing a suffix from some index in (base, last + 1].
            first = max(base + 1, last + 1 - n)
            term += 1
            new = [Entry(term, first + i, b"y") for i in range(n)]
            log.replace_from(new)
            entries = entries[: first - base - 1] + new
        elif op == "compact":
            log.mark_persisted(log.handed)
            upto = min(base + n, log.persisted)
            if upto > base:
                log.compact(upto)
                entries = entries[upto - base:]
                base = upto
        elif op == "restore":
            base, entries = last + n, []
            log.restore(base, term)
        elif op == "hand":
            log.take_unhanded()
        else:
            log.mark_persisted(log.handed)
        assert log.last_index == base + len(entries)
        assert log.base_index == base
        assert log.slice(base + 1, log.last_index) == entries
        log.check()
