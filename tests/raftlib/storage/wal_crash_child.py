"""Child process of test_wal_crash: appends and syncs batches forever, acknowledging each.

Usage: wal_crash_child.py DIRECTORY SEED SEGMENT_BYTES_MAX

After every sync() it prints "LAST_INDEX TERM_OF_LAST DIGEST" (DIGEST: sha256 over every entry
up to LAST_INDEX) and flushes: a printed line is an acknowledgement. Entries above the last
acknowledgement are sometimes overwritten before the next sync (a follower replacing an
unacknowledged suffix); acknowledged entries never change. Entry data is self-describing
(storage_testing.entry_data) so the parent can tell a damaged entry from an intact one.
"""

from __future__ import annotations

import hashlib
import random
import sys
import time

from storage_testing import entry_data

from raftlib.core.types import Entry, HardState
from raftlib.storage import WalStorage

ITERATIONS_MAX = 200_000
RUN_SECONDS_MAX = 30.0  # in case the parent never kills us


def digest_update(digest: hashlib._Hash, entries: list[Entry]) -> None:
    for e in entries:
        digest.update(f"{e.index}:{e.term}:{len(e.data)}:".encode() + e.data)


def main() -> None:
    directory, seed, segment_bytes_max = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    wal = WalStorage(directory, segment_bytes_max=segment_bytes_max)
    hard_state, log = (lambda r: (r.hard_state, r.entries))(wal.load())
    digest = hashlib.sha256()
    digest_update(digest, log)
    last = len(log)
    term = max(hard_state.term, log[-1].term if log else 0, 1)
    acked_term = log[-1].term if log else 0
    deadline = time.monotonic() + RUN_SECONDS_MAX
    for _ in range(ITERATIONS_MAX):
        if time.monotonic() > deadline:
            break
        tail: list[Entry] = []
        for _ in range(rng.choice([1, 1, 2])):
            # Overwrite part of the unacknowledged tail (never an acknowledged entry).
            first = last + 1 + (rng.randint(0, len(tail)) if tail else 0)
            if first <= last + len(tail):
                term += 1
            batch = [
                Entry(term=term, index=i, data=entry_data(i, term, rng.randint(0, 300)))
                for i in range(first, first + rng.randint(1, 64))
            ]
            wal.append(batch)
            tail = tail[: first - last - 1] + batch
        if rng.random() < 0.1:
            term += 1
        wal.set_hard_state(HardState(term=term, vote=1, commit=last))
        wal.sync()
        digest_update(digest, tail)
        last += len(tail)
        acked_term = tail[-1].term
        print(f"{last} {acked_term} {digest.hexdigest()}", flush=True)
    wal.close()


if __name__ == "__main__":
    main()
