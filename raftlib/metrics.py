"""What a running node reports: the Prometheus endpoint (``raftlib serve --metrics-port``) and
the ``# Metrics`` section of ``INFO``, both from the same list of samples.

Gauges: term, role (one-hot by ``role``), leader id, commit/applied/last index, members by role,
per follower (the leader's view) match index, lag (leader commit - match) and seconds since last
contact. Counters: proposals (KV writes this node proposed), leader changes (seen through the
node's observations), snapshots taken/sent/installed (``Driver.counters``), safety anomalies
and invalid messages (the core's). Histograms (only when exported): fsync latency (one storage
sync job: entries, hard state, snapshot commit) and commit latency (a write's propose to its
apply, as the KV service sees it).

The node is read only on its Trio thread (``Node.status`` asks Trio's clock), so a task
(``serve_metrics``) refreshes the samples every ``REFRESH_SECONDS`` and the exporter's HTTP
thread (prometheus-client's own server) serves the latest: a scrape sees values at most that
old. Nothing here runs per proposal unless the histograms are on.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Final

import attrs
import trio

from raftlib.core.types import NO_NODE, NodeId, Role
from raftlib.node import Node, Observation

if TYPE_CHECKING:
    # Imported when metrics are exported only (about 60 ms at start otherwise).
    from prometheus_client import CollectorRegistry, Histogram
    from prometheus_client.core import Metric

# How often the exported samples are recomputed on the node's thread (a scrape sees values at
# most this old).
REFRESH_SECONDS: Final = 0.2
# Histogram buckets (seconds): fsyncs take 0.1 ms (cache) to 100 ms (a busy disk); a commit adds
# a network round trip and a follower's fsync.
FSYNC_BUCKETS_SECONDS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
COMMIT_BUCKETS_SECONDS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@attrs.frozen
class Sample:
    """One value: ``name`` without Prometheus's ``_total`` for counters."""

    name: str
    value: float
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[tuple[str, str], ...] = ()

    def info_key(self) -> str:
        """``INFO``'s field: the name, ``_total`` for counters, then each label value."""
        key = self.name + ("_total" if self.kind == "counter" else "")
        return "_".join([key, *(value for _, value in self.labels)])


class NodeMetrics:
    """What the service counts itself: plain integers always (cheap), histograms only when
    ``histograms`` (the Prometheus endpoint is on)."""

    def __init__(self, *, histograms: bool = False) -> None:
        self.proposals = 0
        self.leader_changes = 0
        self._leader: NodeId = NO_NODE
        self.registry: CollectorRegistry | None = None
        self.fsync_seconds: Histogram | None = None
        self.commit_seconds: Histogram | None = None
        if histograms:
            from prometheus_client import CollectorRegistry, Histogram

            self.registry = CollectorRegistry()
            self.fsync_seconds = Histogram(
                "raftlib_fsync_seconds", "duration of one storage sync job (group commit)",
                buckets=FSYNC_BUCKETS_SECONDS, registry=self.registry)
            self.commit_seconds = Histogram(
                "raftlib_commit_seconds", "a KV write from its proposal to its apply",
                buckets=COMMIT_BUCKETS_SECONDS, registry=self.registry)

    def observe(self, observation: Observation) -> None:
        """``NodeHooks.on_observation``: a leader change is a new known leader."""
        leader = observation.leader
        if leader != NO_NODE and leader != self._leader:
            # The first leader seen counts too: a node that starts in a running cluster
            # learns of its leader once.
            self.leader_changes += 1
            self._leader = leader

    def sync_took(self, seconds: float) -> None:
        """``NodeHooks.on_sync``."""
        if self.fsync_seconds is not None:
            self.fsync_seconds.observe(seconds)

    def proposed(self, count: int, applied: int, started: float | None) -> None:
        """``count`` writes proposed at ``started`` (``commit_timer``) came back, ``applied``
        of them applied: those count towards commit latency."""
        self.proposals += count
        histogram = self.commit_seconds
        if histogram is not None and started is not None:
            elapsed = time.perf_counter() - started
            for _ in range(applied):
                histogram.observe(elapsed)

    def commit_timer(self) -> float | None:
        """A start time for ``proposed`` when commit latency is measured, else None."""
        return time.perf_counter() if self.commit_seconds is not None else None

    def histogram_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for histogram in (self.fsync_seconds, self.commit_seconds):
            if histogram is None:
                continue
            for metric in histogram.collect():
                for s in metric.samples:
                    if s.name.endswith(("_count", "_sum")):
                        out.append(Sample(s.name, s.value, "gauge", metric.documentation))
        return out


# Counters of ``Node.statistics()`` exported as they are: (metric, statistics key, help).
_NODE_COUNTERS = (
    ("raftlib_snapshots_taken", "snapshots_taken", "snapshots of the state machine written"),
    ("raftlib_snapshots_sent", "snapshots_sent", "snapshots a follower acknowledged whole"),
    ("raftlib_snapshots_installed", "snapshots_installed",
     "snapshots received from a leader and installed"),
    # How well writes are grouped: entries per sync and per AppendEntries are what a write
    # costs the leader (each sync and each message is paid once for its batch).
    ("raftlib_readies", "readies", "Ready batches the driver took from the Raft core"),
    ("raftlib_storage_syncs", "syncs",
     "storage syncs (group commit: one per Ready with something to persist)"),
    ("raftlib_entries_persisted", "entries_persisted", "log entries handed to storage"),
    ("raftlib_append_messages_sent", "append_messages_sent",
     "AppendEntries with entries sent to followers (leader)"),
    ("raftlib_append_entries_sent", "append_entries_sent", "entries in those AppendEntries"),
    ("raftlib_append_messages_sent_early", "early_append_messages",
     "AppendEntries sent while the leader's own sync ran (pipelining)"),
)


def samples(node: Node, metrics: NodeMetrics) -> list[Sample]:
    """Every value this node reports, read now (call on the node's Trio thread)."""
    st = node.status()
    counters = node.statistics()
    out = [
        Sample("raftlib_term", st.term, "gauge", "current term"),
        Sample("raftlib_leader_id", st.leader, "gauge", "the leader this node knows (0: none)"),
        Sample("raftlib_commit_index", st.commit_index, "gauge", "highest committed index"),
        Sample("raftlib_applied_index", st.applied_index, "gauge", "highest applied index"),
        Sample("raftlib_last_index", st.last_index, "gauge", "last index in this node's log"),
    ]
    out += [Sample("raftlib_role", float(st.role is role), "gauge", "this node's role (1: it)",
                   (("role", role.name.lower()),)) for role in Role]
    conf = st.configuration
    if conf is not None:
        for role, ids in (("voter", conf.voters), ("learner", conf.learners),
                          ("outgoing", conf.voters_outgoing)):
            out.append(Sample("raftlib_members", len(ids), "gauge",
                              "members of the configuration in force, by role",
                              (("role", role),)))
    for peer, follower in sorted(st.followers.items()):
        label = (("follower", str(peer)),)
        out.append(Sample("raftlib_follower_match_index", follower.match_index, "gauge",
                          "a follower's match index (leader only)", label))
        out.append(Sample("raftlib_follower_lag_entries",
                          max(0, st.commit_index - follower.match_index), "gauge",
                          "leader commit index - the follower's match index", label))
        if follower.last_contact_seconds is not None:
            out.append(Sample("raftlib_follower_last_contact_seconds",
                              follower.last_contact_seconds, "gauge",
                              "seconds since the leader last heard from the follower", label))
    out += [
        Sample("raftlib_proposals", metrics.proposals, "counter", "KV writes proposed"),
        Sample("raftlib_lease_reads", node.lease_reads_served, "counter",
               "reads this node answered under its leader lease, with no heartbeat round"),
        Sample("raftlib_leader_changes", metrics.leader_changes, "counter",
               "times this node saw a new leader"),
    ]
    out += [Sample(name, counters.get(key, 0), "counter", what)
            for name, key, what in _NODE_COUNTERS]
    out += [
        Sample("raftlib_safety_anomalies", st.safety_anomalies, "counter",
               "what Raft says cannot happen, seen by this node"),
        Sample("raftlib_invalid_messages", st.invalid_messages, "counter",
               "messages no correct peer could have sent"),
        Sample("raftlib_peers_refused_identity",
               counters.get("transport_refused_identity", 0), "counter",
               "connections refused at the data directory check (the peer is not on the one "
               "known for its id, or it could not be recorded: see the log)"),
        Sample("raftlib_refused_by_peer_identity",
               counters.get("transport_refused_by_peer_identity", 0), "counter",
               "connections a peer refused: this node is not on the data directory it knew"),
    ]
    return out


def info_lines(values: Sequence[Sample]) -> list[str]:
    """``INFO``'s ``# Metrics`` section."""
    return ["# Metrics", *(f"{s.info_key()}:{s.value:g}" for s in values)]


class _Latest:
    """A prometheus-client collector of the samples ``serve_metrics`` last computed (called
    from prometheus-client's HTTP thread: it only reads ``values``, replaced whole)."""

    def __init__(self) -> None:
        self.values: Sequence[Sample] = ()

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {}
        for s in self.values:
            family = families.get(s.name)
            if family is None:
                names = [name for name, _ in s.labels]
                cls = CounterMetricFamily if s.kind == "counter" else GaugeMetricFamily
                family = families[s.name] = cls(s.name, s.help, labels=names)
            family.add_metric([value for _, value in s.labels], s.value)
        yield from families.values()


async def serve_metrics(
    node: Node,
    metrics: NodeMetrics,
    port: int,
    host: str = "127.0.0.1",
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` on ``host:port`` until cancelled; reports the port it bound.
    ``metrics`` must keep histograms (``NodeMetrics(histograms=True)``)."""
    from prometheus_client import start_http_server

    if metrics.registry is None:
        raise ValueError("serve_metrics needs NodeMetrics(histograms=True)")
    latest = _Latest()
    latest.values = samples(node, metrics)
    metrics.registry.register(latest)
    try:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise OSError(exc.errno, f"--metrics-port: cannot listen on {host}:{port}: "
                      f"{exc.strerror}") from exc
    try:
        task_status.started(server.server_address[1])
        while True:
            await trio.sleep(REFRESH_SECONDS)
            latest.values = samples(node, metrics)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.shutdown)
        server.server_close()
        thread.join()
