"""An exclusive ``flock`` on a file, waited for at most a bound: what keeps two live runs of
one machine (namespaces, SSH hosts) from sharing names, ports and leftovers."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator

# How often a waiting run tries the lock again.
RETRY_SECONDS = 0.5


@contextlib.contextmanager
def held(path: str, mode: int, seconds_max: float, *, waiting: Callable[[], None],
         too_long: Callable[[], Exception]) -> Iterator[None]:
    """Hold the lock on ``path`` (created with ``mode``) for the block. ``waiting`` is called
    once if another process holds it; after ``seconds_max`` the error ``too_long`` returns is
    raised. Closing the descriptor releases the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        deadline = time.monotonic() + seconds_max
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() > deadline:
                raise too_long()
            if not told:
                waiting()
                told = True
            time.sleep(RETRY_SECONDS)
        yield
    finally:
        os.close(fd)
