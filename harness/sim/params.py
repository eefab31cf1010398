"""SimParams: the simulated machine (clock tick, disk and network latencies, queue bounds).

These mirror ``raftlib.node.NodeConfig``'s defaults where one exists, so the simulated cluster
times out, heartbeats and batches as the real one does. The Raft core's settings are not
copied here: every simulated node runs ``CoreConfig``'s own defaults, changed by ``core``
(overrides: field name -> value) and then by the run's ``RunOptions.core``. They are recorded
in ``results.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from raftlib.core.config import check_overrides


@attrs.frozen
class SimParams:
    tick_us: int = 25_000
    # Core settings of every simulated node (overrides of raftlib.core.CoreConfig; validated
    # by it, ConfigError naming the setting).
    core: Mapping[str, Any] = attrs.field(factory=dict, converter=check_overrides)
    # An fsync takes a uniform time in [min, max]: long enough that a crash can land between
    # a write and its fsync, which is what the disk faults need.
    # The nodes' disk: "wal" (the production WalStorage over the CrashFS persistence model:
    # the same files, records and recovery as a real node), "memory" (MemoryStorage: about
    # twice as fast), or "auto": "wal" whenever the schedule holds disk faults (power losses
    # then go through the real recovery), "memory" otherwise.
    disk: str = attrs.field(default="auto",
                            validator=attrs.validators.in_(("auto", "memory", "wal")))
    fsync_us_min: int = 500
    fsync_us_max: int = 5_000
    net_delay_us: int = 500
    net_jitter_us: int = 1_000
    client_delay_us: int = 200
    client_jitter_us: int = 300
    # Inputs waiting for a paused node; beyond this they are dropped, as a full socket
    # buffer would.
    inbox_items_max: int = 10_000
    inputs_per_iteration_max: int = 4096
    pending_requests_max: int = 65_536
    # Simulated events per simulated second beyond which a run is stopped as a message storm
    # or a livelock (raised with the load); healthy runs use about a tenth of it.
    events_per_second_max: int = 100_000
    # A client follows at most this many NotLeader answers per operation, waiting this long
    # before retrying when no leader is known.
    redirects_max: int = 20
    retry_backoff_us: int = 50_000
    # A write whose attempt got no answer is retried (same session seq) up to this many
    # attempts in all, each within the run's request timeout; then its outcome is info.
    write_attempts_max: int = 3
