"""``is_plausible`` (the core's first look at every message) answers exactly what its rule says:
the fast version, with the range tests written out, is held to a plain restatement of the rule
(one ``plain`` per field) on messages whose fields sit at and around every bound."""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from raftlib.core.types import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Message,
    NodeId,
)
from raftlib.core.validation import VALUE_MAX, is_plausible, plain

NODE = 3


def reference(msg: Message, node_id: NodeId) -> bool:
    """The rule for the two message types every heartbeat round carries, field by field."""
    src = msg.src
    if (msg.dst != node_id or type(src) is not int or src < 1 or src == node_id
            or not plain(msg.term)):
        return False
    if isinstance(msg, AppendEntriesResponse):
        return (type(msg.success) is bool and plain(msg.match_index)
                and plain(msg.conflict_index) and plain(msg.conflict_term)
                and msg.conflict_term <= msg.term and plain(msg.read_ctx) and plain(msg.stream))
    assert isinstance(msg, AppendEntries)
    prev, prev_term = msg.prev_log_index, msg.prev_log_term
    if not (plain(prev) and plain(prev_term) and prev_term <= msg.term
            and (prev == 0) == (prev_term == 0) and plain(msg.commit) and plain(msg.read_ctx)
            and plain(msg.stream) and type(msg.entries) is tuple
            and prev + len(msg.entries) <= VALUE_MAX):
        return False
    expected, last_term = prev + 1, prev_term
    for entry in msg.entries:
        if (type(entry) is not Entry or entry.index != expected or type(entry.term) is not int
                or not last_term <= entry.term <= msg.term or type(entry.data) is not bytes
                or entry.kind not in (EntryKind.NORMAL, EntryKind.NOOP, EntryKind.CONF)):
            return False
        expected += 1
        last_term = entry.term
    return last_term >= 1 or not msg.entries


# Values at and around every bound, and of the wrong type.
EDGES: list[Any] = [-1, 0, 1, 2, 3, 4, 5, VALUE_MAX - 1, VALUE_MAX, VALUE_MAX + 1, True, False,
                    None, 1.0, "1"]
edgy: st.SearchStrategy[Any] = st.one_of(st.sampled_from(EDGES),
                                         st.integers(min_value=-2, max_value=8))
ENTRY_EDGES: list[Any] = [*EDGES, b"", "x", EntryKind.NOOP, EntryKind.CONF, 9]
# Plausible messages of both kinds: heartbeats, appends from the log's start and from within
# it, acknowledgements and rejections.
BASES: list[Message] = [
    AppendEntries(2, 1, NODE, 0, 0),
    AppendEntries(2, 1, NODE, 0, 0, (Entry(1, 1, b"x"), Entry(2, 2, b"")), 1, 1, 1),
    AppendEntries(2, 1, NODE, 0, 0, (Entry(1, 1, b"x"),)),
    AppendEntries(2, 1, NODE, VALUE_MAX - 1, 1, (Entry(1, VALUE_MAX, b"x"),)),
    AppendEntries(4, 2, NODE, 5, 3, (Entry(3, 6, b"x", EntryKind.CONF),), 5, 2, 3),
    AppendEntries(4, 2, NODE, 5, 4, (), 5, 2, 3),
    AppendEntriesResponse(2, 1, NODE, True, 4, 0, 0, 1, 1),
    AppendEntriesResponse(3, 2, NODE, False, 4, 2, 3, 0, 2),
    AppendEntriesResponse(3, 2, NODE, False, 4, 2, 0, 5, 0),
]


@st.composite
def plausible_append(draw: st.DrawFn) -> AppendEntries:
    term = draw(st.integers(min_value=1, max_value=4))
    prev = draw(st.integers(min_value=0, max_value=6))
    prev_term = 0 if prev == 0 else draw(st.integers(min_value=1, max_value=term))
    count = draw(st.integers(min_value=0, max_value=3))
    run = tuple(Entry(term, prev + 1 + i, b"x") for i in range(count))
    return AppendEntries(term, draw(st.sampled_from([1, 2])), NODE, prev, prev_term, run,
                         draw(st.integers(0, 9)), draw(st.integers(0, 9)),
                         draw(st.integers(0, 9)))


@st.composite
def plausible_response(draw: st.DrawFn) -> AppendEntriesResponse:
    term = draw(st.integers(min_value=1, max_value=4))
    return AppendEntriesResponse(term, draw(st.sampled_from([1, 2])), NODE, draw(st.booleans()),
                                 draw(st.integers(0, 9)), draw(st.integers(0, 9)),
                                 draw(st.integers(0, term)), draw(st.integers(0, 9)),
                                 draw(st.integers(0, 9)))


@st.composite
def entry_like(draw: st.DrawFn, template: Entry) -> Any:
    """An entry with one field replaced, or something that is no entry at all."""
    if draw(st.booleans()):
        return draw(st.sampled_from([None, (template.term, template.index, b"x")]))
    field = draw(st.sampled_from(["term", "index", "data", "kind"]))
    value = draw(st.one_of(edgy, st.sampled_from([b"", "x", EntryKind.NOOP, EntryKind.CONF,
                                                  9])))
    return msgspec.structs.replace(template, **{field: value})


@st.composite
def nearly_plausible(draw: st.DrawFn) -> Message:
    """A plausible append or response with up to two fields (or one entry) made edgy: each
    bound is then tested on its own, not hidden behind another field that already fails."""
    msg: Message = draw(st.one_of(plausible_append(), plausible_response()))
    for _ in range(draw(st.integers(min_value=0, max_value=2))):
        names = list(msg.__struct_fields__)
        field = draw(st.sampled_from(names))
        if field == "entries":
            assert isinstance(msg, AppendEntries)
            run: list[Any] = list(msg.entries) if type(msg.entries) is tuple else []
            one_entry = draw(st.booleans())
            if run and one_entry:
                at = draw(st.integers(0, len(run) - 1))
                run[at] = draw(entry_like(run[at]))
                value: Any = tuple(run)
            else:
                value = draw(st.sampled_from([list(run), None, (1, 2)]))
        else:
            value = draw(edgy)
        msg = msgspec.structs.replace(msg, **{field: value})
    return msg


def test_is_plausible_answers_what_the_rule_says_for_each_field_at_each_edge() -> None:
    checked = 0
    for base in BASES:
        assert is_plausible(base, NODE) and reference(base, NODE), base
        for field in base.__struct_fields__:
            if field == "entries":
                assert isinstance(base, AppendEntries)
                variants: list[Any] = [list(base.entries), None, (1, 2)]
                for at, entry in enumerate(base.entries):
                    for name in entry.__struct_fields__:
                        for value in ENTRY_EDGES:
                            run = list(base.entries)
                            run[at] = msgspec.structs.replace(entry, **{name: value})
                            variants.append(tuple(run))
            else:
                variants = EDGES
            for value in variants:
                msg = msgspec.structs.replace(base, **{field: value})
                assert is_plausible(msg, NODE) == reference(msg, NODE), msg
                checked += 1
    assert checked > 1000


def test_an_append_reaching_past_the_largest_index_is_not_plausible() -> None:
    """(Two fields must change together for this one: the edges above change one.)"""
    msg = AppendEntries(2, 1, NODE, VALUE_MAX, 1, (Entry(1, VALUE_MAX + 1, b"x"),))
    assert not is_plausible(msg, NODE) and not reference(msg, NODE)


@settings(max_examples=500)
@given(nearly_plausible())
def test_is_plausible_answers_what_the_rule_says_for_fields_changed_together(
    msg: Message,
) -> None:
    assert is_plausible(msg, NODE) == reference(msg, NODE)


@given(st.integers(min_value=1, max_value=4), st.integers(min_value=0, max_value=3))
def test_a_contiguous_append_from_a_peer_is_plausible(term: int, count: int) -> None:
    """The strategies above must reach True too, or the comparison proves little."""
    run = tuple(Entry(term, 5 + i, b"x") for i in range(count))
    msg = AppendEntries(term, 1, NODE, 4, term, run, 4, 0, 0)
    assert is_plausible(msg, NODE) and reference(msg, NODE)
