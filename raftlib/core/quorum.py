"""Majority math: quorum sizes, the index a majority has replicated, and vote tallies.

Pure functions over plain values; property-tested against brute-force versions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat

from raftlib.core.types import NodeId


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_size(voters_count: int) -> int:
    """Smallest number of voters that intersects every other such set (a strict majority)."""
    if voters_count < 1:
        raise ValueError(f"voters_count must be >= 1, got {voters_count}")
    return voters_count // 2 + 1


def committed_index(match_indexes: Sequence[int]) -> int:
    """The largest index that at least a quorum of the voters have (one match index each).

    Sorted descending, the quorum-th value is held by exactly that many voters or more.
    """
    count = len(match_indexes)
    if count == 1:
        return match_indexes[0]
    ordered = sorted(match_indexes, reverse=True)
    return ordered[quorum_size(count) - 1]


def vote_result(voters: Iterable[NodeId], votes: Mapping[NodeId, bool]) -> VoteResult:
    """WON once a quorum granted, LOST once a quorum can no longer grant, else PENDING.

    Votes from ids that are not voters are ignored.
    """
    members = tuple(voters)
    granted = rejected = 0
    for voter in members:
        vote = votes.get(voter)
        if vote is True:
            granted += 1
        elif vote is False:
            rejected += 1
    need = quorum_size(len(members))
    if granted >= need:
        return VoteResult.WON
    if len(members) - rejected < need:
        return VoteResult.LOST
    return VoteResult.PENDING


def has_quorum(voters: Iterable[NodeId], members: Iterable[NodeId]) -> bool:
    """Whether ``members`` (any ids) contain a quorum of ``voters``."""
    voter_tuple = tuple(voters)
    present = frozenset(members)
    return sum(1 for v in voter_tuple if v in present) >= quorum_size(len(voter_tuple))


# --- joint configurations (thesis §4.3) --------------------------------------------------------
# A decision of a joint configuration needs a majority of the incoming voters AND of the
# outgoing ones; an empty outgoing set (no change under way) agrees with anything. Learners
# are never passed in: they do not count.


def joint_committed_index(
    voters: Sequence[NodeId], outgoing: Sequence[NodeId], match: Mapping[NodeId, int]
) -> int:
    """The largest index a majority of ``voters`` and of ``outgoing`` (when not empty) hold;
    ``match`` maps a node to its match index (absent: 0)."""
    # (``committed_index`` of each set, written out for this, its caller on every
    # acknowledgement that may commit: the quorum-th highest match is at ``count // 2`` in
    # descending order, and ``map`` builds the list without a comprehension's frame.)
    get = match.get
    if not voters:
        return committed_index(())  # (which says that no quorum exists)
    index = sorted(map(get, voters, repeat(0)), reverse=True)[len(voters) // 2]
    if outgoing:
        other = sorted(map(get, outgoing, repeat(0)), reverse=True)[len(outgoing) // 2]
        index = min(index, other)
    return index


def joint_vote_result(
    voters: Sequence[NodeId], outgoing: Sequence[NodeId], votes: Mapping[NodeId, bool]
) -> VoteResult:
    """WON once both sets granted, LOST once either lost, else PENDING."""
    incoming = vote_result(voters, votes)
    if not outgoing:
        return incoming
    other = vote_result(outgoing, votes)
    if incoming is other:
        return incoming
    if VoteResult.LOST in (incoming, other):
        return VoteResult.LOST
    return VoteResult.PENDING


def joint_has_quorum(
    voters: Sequence[NodeId], outgoing: Sequence[NodeId], members: Iterable[NodeId]
) -> bool:
    present = frozenset(members)
    return has_quorum(voters, present) and (not outgoing or has_quorum(outgoing, present))
