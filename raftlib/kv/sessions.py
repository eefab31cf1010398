"""Exactly-once client sessions (Raft thesis §6.3), as deterministic replicated state.

A client opens a session (a log entry; every replica assigns the same id, the next value of a
replicated counter) and numbers its writes 1, 2, 3, ... with at most one outstanding at a time.
For each session the table keeps the highest sequence number applied and that write's reply:

- ``seq`` above the last one: a new write; apply it and remember its reply;
- ``seq`` equal to the last one: a retry of a write already applied; answer from the cache and
  do NOT apply it again (the client retried after a timeout, a crash or a lost reply);
- ``seq`` below the last one: the client already got a later answer, so this is a stale
  duplicate still floating in some old leader's log; refuse it (``STALESEQ``), never apply it.

Keeping one reply per session is enough because a client only sends ``seq`` n+1 after it has
the answer to n; a client wanting concurrency opens several sessions.

Expiry must be the same on every replica, so it never reads a node's clock: each command carries
the proposing leader's time (``now_ms``) and the table's clock is the maximum seen so far
(monotonic even when leaders' clocks disagree). A session idle for more than
``session_ttl_ms`` of that clock is dropped, and when ``sessions_max`` sessions exist, opening one
more drops the least recently used. A request naming a dropped (or never issued) session is
refused with ``SESSIONEXPIRED``: the table cannot tell whether it was applied before, so
re-applying it could apply it twice; the client must report its outcome as unknown.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final

import attrs

from raftlib.kv.commands import KvError, Result

SESSIONS_MAX_DEFAULT: Final = 100_000
SESSION_TTL_MS_DEFAULT: Final = 3_600_000  # one hour of leader time without a request


@attrs.define
class Session:
    last_seq: int
    reply: Result
    last_active_ms: int


class SessionTable:
    """The replicated session table of one state machine."""

    def __init__(
        self,
        *,
        sessions_max: int = SESSIONS_MAX_DEFAULT,
        session_ttl_ms: int = SESSION_TTL_MS_DEFAULT,
    ) -> None:
        if sessions_max < 1 or session_ttl_ms < 1:
            raise ValueError("sessions_max and session_ttl_ms must be >= 1")
        self.sessions_max = sessions_max
        self.session_ttl_ms = session_ttl_ms
        # Ordered by last activity (oldest first): expiry and eviction pop from the front.
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self.next_id = 1
        self.clock_ms = 0
        self.expired = 0
        self.evicted = 0
        self.duplicates = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def advance_clock(self, now_ms: int) -> None:
        """Move the replicated clock to ``now_ms`` (never backwards) and expire idle sessions."""
        if now_ms > self.clock_ms:
            self.clock_ms = now_ms
        horizon = self.clock_ms - self.session_ttl_ms
        while self._sessions:
            sid, session = next(iter(self._sessions.items()))
            if session.last_active_ms >= horizon:
                break
            del self._sessions[sid]
            self.expired += 1

    def open(self) -> int:
        while len(self._sessions) >= self.sessions_max:
            self._sessions.popitem(last=False)
            self.evicted += 1
        sid = self.next_id
        self.next_id += 1
        self._sessions[sid] = Session(last_seq=0, reply=None, last_active_ms=self.clock_ms)
        return sid

    def check(self, sid: int, seq: int) -> KvError | tuple[Result] | None:
        """``None`` when (sid, seq) is new and must be applied; ``(reply,)`` when it is a retry
        to answer from the cache; a ``KvError`` when it must be refused."""
        session = self._sessions.get(sid)
        if session is None:
            return KvError("SESSIONEXPIRED", f"session {sid} is unknown or expired")
        session.last_active_ms = self.clock_ms
        self._sessions.move_to_end(sid)
        if seq == session.last_seq:
            self.duplicates += 1
            return (session.reply,)
        if seq < session.last_seq:
            return KvError(
                "STALESEQ", f"session {sid}: seq {seq} is older than {session.last_seq}"
            )
        return None

    def record(self, sid: int, seq: int, reply: Result) -> None:
        session = self._sessions[sid]
        if not seq > session.last_seq:
            raise AssertionError(f"session {sid}: recording seq {seq} <= {session.last_seq}")
        session.last_seq = seq
        session.reply = reply

    def dump(self) -> list[tuple[int, int, Result, int]]:
        """Every session, oldest activity first (for snapshots)."""
        return [(sid, s.last_seq, s.reply, s.last_active_ms) for sid, s in self._sessions.items()]

    def load(
        self, rows: list[tuple[int, int, Result, int]], next_id: int, clock_ms: int
    ) -> None:
        self._sessions = OrderedDict(
            (sid, Session(last_seq=seq, reply=reply, last_active_ms=active))
            for sid, seq, reply, active in rows
        )
        self.next_id = next_id
        self.clock_ms = clock_ms
