"""Elections: PreVote, votes and leadership transfer's TimeoutNow (§5.2, §5.4.1, thesis §9.6,
§3.10). A vote is granted once per term, first come first served, only to a log at least as
up to date as ours; a candidate wins with a majority of the voters (of both sets of a joint
configuration); a follower that heard from its leader within the minimum election timeout
refuses to help depose it (the "lease" that keeps a removed or partitioned node from
disrupting the cluster)."""

from __future__ import annotations

from mypy_extensions import trait

from raftlib.core import quorum
from raftlib.core.lease import LeaseMixin
from raftlib.core.types import (
    NO_NODE,
    RequestVote,
    RequestVoteResponse,
    Role,
    TimeoutNow,
)


@trait
class ElectionMixin(LeaseMixin):
    def _in_lease(self, msg: RequestVote) -> bool:
        """Whether a (pre)vote request must be refused because a leader is known and was heard
        from within the minimum election timeout (thesis §9.6, §4.2.3)."""
        if msg.transfer:
            return False
        if self._leader == NO_NODE:
            return self._lease_fresh_start()
        if not (self.config.check_quorum or msg.pre_vote):
            return False
        return self._election_elapsed < self.config.election_timeout_ticks_min

    # --- handlers: elections ---------------------------------------------------------------

    def _on_request_vote(self, msg: RequestVote) -> None:
        # Granted whether or not our own configuration counts us yet (etcd does the same): a
        # voter that has not applied its own promotion may be the vote a quorum needs, and no
        # leader can tell it of the commit before one is elected. (So a node's id must never
        # be reused after its disk is lost: it could vote twice in a term it forgot. Replace
        # such a node under a new id: README, "Replacing a node".)
        log_ok = self._log.is_up_to_date(msg.last_log_index, msg.last_log_term)
        if msg.pre_vote:
            # A pre-vote changes nothing here; grant when a real vote in that term could be.
            granted = msg.term > self._term and log_ok
            reply_term = msg.term if granted else self._term
            self._send(RequestVoteResponse(reply_term, self._id, msg.src, granted, True))
            return
        # Same term now (a newer one made us a follower in step). §5.2: one vote per term,
        # first come first served; §5.4.1: only for a log at least as up to date as ours.
        can_vote = self._vote == msg.src or (self._vote == NO_NODE and self._leader == NO_NODE)
        granted = can_vote and log_ok
        if granted:
            self._vote = msg.src
            # Granting a vote resets the election timer (Figure 2, Followers).
            self._election_elapsed = 0
        self._send(RequestVoteResponse(self._term, self._id, msg.src, granted, False))

    def _on_vote_response(self, msg: RequestVoteResponse) -> None:
        if msg.pre_vote:
            if self._role is not Role.PRE_CANDIDATE:
                return
            expected_term = self._term + 1 if msg.granted else self._term
            if msg.term != expected_term:
                return
            self._votes[msg.src] = msg.granted
            result = self._vote_result(self._votes)
            if result is quorum.VoteResult.WON:
                self._become_candidate(transfer=False, reason="pre-vote won")
            elif result is quorum.VoteResult.LOST:
                self._become_follower(self._term, NO_NODE, "pre-vote lost")
            return
        if self._role is not Role.CANDIDATE or msg.term != self._term:
            return
        self._votes[msg.src] = msg.granted
        result = self._vote_result(self._votes)
        if result is quorum.VoteResult.WON:
            self._become_leader()
        elif result is quorum.VoteResult.LOST:
            self._become_follower(self._term, NO_NODE, "election lost")

    def _on_timeout_now(self, msg: TimeoutNow) -> None:
        if self._role is not Role.FOLLOWER or msg.src != self._leader:
            return
        self._become_candidate(transfer=True, reason=f"leadership transfer from node {msg.src}")

    def _won(self) -> bool:
        return (
            self._vote_result(self._votes)
            is quorum.VoteResult.WON
        )

    def _become_pre_candidate(self, reason: str) -> None:
        # PreVote (thesis §9.6): ask whether we could win before disturbing anyone's term.
        self._role = Role.PRE_CANDIDATE
        self._role_reason = reason
        self._set_leader(NO_NODE)
        self._votes = {self._id: True}
        self._reset_election_timer()
        if self._won():
            self._become_candidate(transfer=False, reason=reason)
            return
        log = self._log
        for peer in sorted(self._all_voters() - {self._id}):
            self._send(
                RequestVote(
                    self._term + 1, self._id, peer, log.last_index, log.last_term, pre_vote=True
                )
            )

    def _become_candidate(self, transfer: bool, reason: str) -> None:
        # §5.2: increment the term, vote for self, ask everyone else.
        self._term += 1
        self._vote = self._id
        self._role = Role.CANDIDATE
        self._role_reason = reason
        self._set_leader(NO_NODE)
        self._votes = {self._id: True}
        self._reset_election_timer()
        if self._won():
            self._become_leader()
            return
        log = self._log
        for peer in sorted(self._all_voters() - {self._id}):
            self._send(
                RequestVote(
                    self._term,
                    self._id,
                    peer,
                    log.last_index,
                    log.last_term,
                    transfer=transfer,
                )
            )
