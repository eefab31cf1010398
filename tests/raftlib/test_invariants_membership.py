"""The observer's membership rule: a node that applied a configuration in which it is no voter
(and whose log brings none in which it is) never campaigns. Judged from the committed log,
not from the configuration the node's core believes, so a core that ignores its removal is
caught."""

from __future__ import annotations

from raftlib.core import membership
from raftlib.core.types import ConfState, Entry, EntryKind
from raftlib.invariants import Observer


def _conf_entry(index: int, voters: tuple[int, ...]) -> Entry:
    return Entry(1, index, membership.encode_conf(ConfState(voters)), EntryKind.CONF)


def test_a_removed_node_that_campaigns_is_reported() -> None:
    observer = Observer()
    observer.saw_committed([Entry(1, 1, b"a"), _conf_entry(2, (1, 2))])
    observer.saw_campaign(3, 5, applied_index=2, initial_voters=(1, 2, 3), log_voters=[])
    assert len(observer.violations()) == 1
    assert "node 3 campaigned for term 5" in observer.violations()[0]


def test_a_node_may_campaign_before_it_applied_its_removal_or_when_its_log_readds_it() -> None:
    observer = Observer()
    observer.saw_committed([Entry(1, 1, b"a"), _conf_entry(2, (1, 2))])
    # Applied only index 1: its configuration is still the initial one.
    observer.saw_campaign(3, 5, applied_index=1, initial_voters=(1, 2, 3), log_voters=[])
    # Applied its removal, but its log brings a configuration that adds it back.
    observer.saw_campaign(3, 6, applied_index=2, initial_voters=(1, 2, 3),
                          log_voters=[frozenset({1, 2, 3})])
    observer.saw_campaign(1, 6, applied_index=2, initial_voters=(1, 2, 3), log_voters=[])
    assert observer.violations() == []
