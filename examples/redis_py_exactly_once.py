"""Exactly-once writes to the raftlib KV service from redis-py, with SESSION.CALL.

A write whose reply is lost (a broken connection, a timeout, a leader crash) may or may not
have been applied, and sending it again may apply it twice. redis-py does send it again: its
default client retries a command after a ConnectionError or TimeoutError (redis-py 8.2 up to
10 times), so one ``r.incr("n")`` can add 2. This class numbers each write inside a session and
retries it, on any node, with the same number: the service applies it at most once and answers
a retry from the session's cached reply.

    python examples/redis_py_exactly_once.py 127.0.0.1:6379 127.0.0.1:6380 127.0.0.1:6381

Reads (``GET``) change nothing and can be retried freely, with plain redis-py.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, MovedError, ResponseError, TimeoutError, TryAgainError
from redis.retry import Retry

# Attempts per write (redirects and retries together); after that its outcome stays unknown.
ATTEMPTS_MAX = 50
# Pause before retrying after an election, a node down or an unknown outcome.
RETRY_PAUSE_SECONDS = 0.1
SOCKET_TIMEOUT_SECONDS = 2.0


class OutcomeUnknown(Exception):
    """No definite answer: the write may or may not have been applied."""


class ExactlyOnce:
    """One session, one write at a time (open one per concurrent worker)."""

    def __init__(self, nodes: Sequence[tuple[str, int]]) -> None:
        self.nodes = list(nodes)
        self.next = 0
        self.r = self._connect(*self.nodes[0])
        self.seq = 0
        # A retried OPEN may leave an unused session behind; the service expires it.
        self.session = int(self._retry(
            lambda r: r.execute_command("SESSION.OPEN")))  # type: ignore[no-untyped-call]

    @staticmethod
    def _connect(host: str, port: int) -> redis.Redis:
        # redis-py's own retries would be harmless here (they resend the same seq), but slow
        # to give up on a dead node: this class is the one retry policy. protocol=2: the
        # service speaks RESP2.
        return redis.Redis(host=host, port=port, protocol=2, retry=Retry(NoBackoff(), 0),
                           socket_timeout=SOCKET_TIMEOUT_SECONDS)

    def write(self, *command: str | bytes | int) -> Any:
        """Apply one write command (``"INCR", "n"``) exactly once; its reply."""
        self.seq += 1  # a new number for each new write, never for a retry
        return self._retry(lambda r: r.execute_command(  # type: ignore[no-untyped-call]
            "SESSION.CALL", self.session, self.seq, *command))

    def _retry(self, call: Callable[[redis.Redis], Any]) -> Any:
        for _ in range(ATTEMPTS_MAX):
            try:
                return call(self.r)
            except MovedError as exc:  # a follower names the leader
                self.r = self._connect(exc.host, exc.port)
            except (TryAgainError, ConnectionError, TimeoutError):  # election, node down
                self.next = (self.next + 1) % len(self.nodes)
                self.r = self._connect(*self.nodes[self.next])
                time.sleep(RETRY_PAUSE_SECONDS)
            except ResponseError as exc:
                # -UNKNOWN: proposed but not seen committed yet; ask again with the same seq.
                # Anything else is final: -ERR (a bad command) or -SESSIONEXPIRED (unknown).
                if not str(exc).startswith("UNKNOWN"):
                    raise
                time.sleep(RETRY_PAUSE_SECONDS)
        raise OutcomeUnknown(f"session {self.session} seq {self.seq}: no definite answer")


def main(argv: list[str]) -> None:
    nodes = [(host, int(port)) for host, _, port in (a.rpartition(":") for a in argv)]
    kv = ExactlyOnce(nodes or [("127.0.0.1", 6379)])
    for _ in range(10):
        print("INCR counter ->", kv.write("INCR", "counter"))


if __name__ == "__main__":
    main(sys.argv[1:])
