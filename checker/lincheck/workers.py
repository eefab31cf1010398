"""Partitions checked in forked worker processes, when there is enough work to share out
(``lincheck.search`` decides when, and with how many workers).

Work reaches the workers through ``fork`` inheritance rather than pickling: models hold
functions, which do not pickle. Only results travel back (``PartitionResult`` pickles).

Invariants: the inherited work is set only while the pool runs, and cleared after it even on
error; results come back in the order of the indexes asked for.

Imported only for a parallel check: multiprocessing costs a per-file CLI run more than a small
check takes.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from lincheck.result import PartitionResult

__all__ = ["can_fork", "run_forked"]

# How many indexes one task carries, at most this many tasks per worker: fewer round trips
# for many small partitions, and still some balance between workers.
TASKS_PER_WORKER = 8

# The work of the pool being run: inherited by the forked workers, never pickled.
_FORK_WORK: Callable[[int], PartitionResult] | None = None


def can_fork() -> bool:
    """Whether this platform starts processes by ``fork`` (the only way work is shared)."""
    return "fork" in multiprocessing.get_all_start_methods()


def _fork_worker(index: int) -> PartitionResult:  # runs in a worker process
    if _FORK_WORK is None:
        raise AssertionError("worker started without work")
    return _FORK_WORK(index)


def run_forked(work: Callable[[int], PartitionResult], count: int,
               workers: int) -> list[PartitionResult]:
    """``[work(i) for i in range(count)]``, computed by ``workers`` forked processes."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    global _FORK_WORK
    _FORK_WORK = work
    try:
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            chunk = max(1, count // (workers * TASKS_PER_WORKER))
            return list(pool.map(_fork_worker, range(count), chunksize=chunk))
    finally:
        _FORK_WORK = None
