"""Linearizable reads without log writes: ReadIndex (thesis §6.4). A leader notes its commit
index, confirms it still leads with a heartbeat round that carries the read's sequence number,
and answers once a quorum echoed it; a follower forwards the request to its leader. With
``lease_reads`` on, a leader within its lease answers at once instead (lease.py)."""

from __future__ import annotations

from mypy_extensions import trait

from raftlib.core.lease import LeaseMixin
from raftlib.core.state import PendingRead
from raftlib.core.types import (
    NO_NODE,
    NodeId,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    Role,
)


@trait
class ReadsMixin(LeaseMixin):
    def read_index(self, request_id: int) -> None:
        """Ask for a linearizable read (thesis §6.4). The answer arrives in a later Ready as
        ``ReadState(request_id, index)`` (serve the read once applied >= index) or as
        ``request_id`` in ``dropped_reads`` (no leader, or leadership lost: retry)."""
        if self._role is Role.LEADER:
            if not self._lease_read(request_id, self._id):
                self._register_read(request_id, self._id)
        elif self._leader != NO_NODE:
            self._forwarded_reads[request_id] = self._leader
            self._send(ReadIndexRequest(self._term, self._id, self._leader, request_id))
        else:
            self._dropped_reads.append(request_id)

    def _register_read(self, request_id: int, origin: NodeId) -> None:
        self._read_seq += 1
        own_term_committed = self._log.term(self._commit) == self._term
        self._pending_reads.append(
            PendingRead(
                self._read_seq, request_id, origin, self._commit if own_term_committed else None
            )
        )
        # Confirm leadership with a round of heartbeats carrying the new read_ctx.
        self._read_bcast_pending = True
        self._check_reads()

    def _check_reads(self) -> None:
        pending = self._pending_reads
        if not pending:
            return
        confirmed = self._read_confirmed()
        while pending and pending[0].seq <= confirmed and pending[0].index is not None:
            read = pending.popleft()
            index = read.index
            assert index is not None
            if read.origin == self._id:
                self._read_states.append(ReadState(read.request_id, index))
            else:
                self._send(
                    ReadIndexResponse(self._term, self._id, read.origin, read.request_id, index)
                )

    def _on_read_request(self, msg: ReadIndexRequest) -> None:
        if self._role is Role.LEADER:
            if not self._lease_read(msg.request_id, msg.src):
                self._register_read(msg.request_id, msg.src)
        else:
            self._send(ReadIndexResponse(self._term, self._id, msg.src, msg.request_id, 0))

    def _on_read_response(self, msg: ReadIndexResponse) -> None:
        if self._forwarded_reads.get(msg.request_id) != msg.src:
            return
        del self._forwarded_reads[msg.request_id]
        if msg.index > 0:
            self._read_states.append(ReadState(msg.request_id, msg.index))
        else:
            self._dropped_reads.append(msg.request_id)

    def _drop_leader_reads(self) -> None:
        for read in self._pending_reads:
            if read.origin == self._id:
                self._dropped_reads.append(read.request_id)
            else:
                self._send(ReadIndexResponse(self._term, self._id, read.origin, read.request_id, 0))
        self._pending_reads.clear()
