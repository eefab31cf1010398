"""raftlib as a target: the default ``--target``, run by ``harness.live`` as it always was.

raftlib's live run keeps checks no other target can have (its write-ahead logs read back for
Raft's safety invariants and the durability of every acknowledged write, by session and
sequence number), so its nodes, client (``harness.live.clients.LiveClient``, which has the
worker shape of ``harness.targets.recorder.RecordingClient``) and monitor stay where they
are; this module names its version for the report.
"""

from __future__ import annotations

import functools
from importlib import metadata

DISTRIBUTION = "raft-toolkit"


@functools.lru_cache(maxsize=1)
def raftlib_version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "(version unknown: not installed as a distribution)"
