"""``raftlib`` command line: run one node as its own process, a local cluster, or make certificates.

    raftlib certs init DIR --nodes 3
    raftlib serve --id 1 --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 --data DIR \
        --tls-dir CERTS [--client-port 6379 --client-peers 1=127.0.0.1:6379,...]
    raftlib cluster --nodes 3 --data DIR [--tls] [--base-port 7001] [--client-base-port 6379] \
        [--metrics-base-port 9101]
    raftlib member list|add|remove|promote ... --address HOST:PORT   (raftlib.operator_cli)
    raftlib transfer-leader [ID] --address HOST:PORT
    raftlib status --address HOST:PORT

Security. ``serve`` refuses to start without TLS material (``--tls-dir DIR`` in the layout
``certs init`` writes, or ``--ca/--cert/--key``) unless ``--insecure`` is given, which runs
plain TCP for peers and clients and prints a warning once the node is up. With TLS, peers use
mutual TLS 1.3 (see ``raftlib.transport.tls``) and the RESP port speaks TLS too
(``redis-cli --tls --cacert CERTS/ca.pem``); ``--client-auth`` also requires client
certificates (signed by the cluster CA, or by ``--client-ca``), ``--client-plaintext`` keeps
the RESP port in plain text while peers use TLS. ``cluster`` runs its nodes with ``--insecure``
unless ``--tls`` is given, which creates (or reuses) certificates in ``DATA/certs``.

Limits (all have safe defaults): ``--max-frame-bytes`` (one Raft frame), ``--max-value-bytes``
(one KV value), ``--max-clients`` (RESP connections), ``--client-idle-timeout`` and
``--peer-idle-timeout`` (seconds without a byte before a connection is closed; 0 disables),
``--handshake-timeout`` (TLS handshake plus hello, peers and clients), ``--peer-handshakes-max``
(unauthenticated peer connections at once).

``serve`` without ``--client-port`` runs a bare node (a counting state machine); with it, the
replicated KV service answers RESP2 (Redis protocol) on 127.0.0.1:PORT. ``--client-peers``
gives every node's client address so a follower can redirect writes to the leader
(``-MOVED 0 HOST:PORT``); without it a follower answers ``-TRYAGAIN``.

``serve --join`` starts a node that joins a running cluster (``--peers``: members to reach,
and itself): it knows no configuration, never campaigns, and waits for ``raftlib member add``.
``serve --metrics-port P`` serves Prometheus metrics on 127.0.0.1:P/metrics (``raftlib.metrics``).

Raft core settings: one flag each, generated from ``raftlib.core.CoreConfig``
(``--election-timeout-ticks-min N``, ``--pre-vote/--no-pre-vote``, ``--append-entries-max N``,
...; see ``--help``); ``cluster`` passes them to every node.

``cluster`` starts ``--nodes`` ``serve`` processes on loopback (data in DIR/node-N, logs in
DIR/node-N.log), prints how to reach them once every client port accepts connections, and stops
them all on Ctrl-C or SIGTERM.

Exit status: 0 after a clean stop (SIGTERM or Ctrl-C), 2 for bad arguments or an unusable data
directory (one line on stderr saying which), 1 when the node stopped on an error (or, for
``cluster``, when a node process died on its own).
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import math
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn

import trio

from raftlib.config_flags import add_core_flags, core_argv, core_overrides
from raftlib.config_flags import flag as core_flag
from raftlib.core.config import SettingError, check_overrides
from raftlib.errors import ConfigError, RaftError, StorageError
from raftlib.node import NodeConfig, open_node
from raftlib.operator_cli import add_operator_commands, operator_command, operator_main
from raftlib.snapshots import STATE_RATIO_MAX, SnapshotPolicy
from raftlib.suspend_clock import SuspendAwareClock

if TYPE_CHECKING:
    import ssl

    from raftlib.transport.tcp import StreamSecurity

EXIT_USAGE = 2
EXIT_ERROR = 1


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """``1=127.0.0.1:7001,2=127.0.0.1:7002`` -> {1: ("127.0.0.1", 7001), ...}."""
    peers: dict[int, tuple[str, int]] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        ident, sep, address = item.partition("=")
        host, colon, port = address.rpartition(":")
        if not sep or not colon or not host:
            raise UsageError(f"--peers: {item!r} is not ID=HOST:PORT")
        try:
            node_id, port_number = int(ident), int(port)
        except ValueError:
            raise UsageError(
                f"--peers: {item!r} is not ID=HOST:PORT with integer ID and PORT"
            ) from None
        if node_id < 1:
            raise UsageError(f"--peers: node id in {item!r} must be >= 1")
        if not 0 < port_number < 65536:
            raise UsageError(f"--peers: port in {item!r} must be 1..65535")
        if node_id in peers:
            raise UsageError(f"--peers: node id {node_id} appears twice")
        peers[node_id] = (host, port_number)
    if not peers:
        raise UsageError("--peers: no peers given")
    return peers


def _add_snapshot_options(serve: argparse.ArgumentParser) -> None:
    d = SnapshotPolicy()
    group = serve.add_argument_group("snapshots and log compaction")
    group.add_argument("--snapshot-entries", type=int, default=d.entries,
                       help="snapshot after this many applied entries (0: not by count)")
    group.add_argument("--snapshot-bytes", type=int, default=d.bytes,
                       help="snapshot after this many bytes of applied commands (0: not by size)")
    group.add_argument("--snapshot-state-ratio", type=float, default=d.state_ratio,
                       help="the entries trigger waits until the commands since the last snapshot "
                            "are this many times its size (0: by count alone)")
    group.add_argument("--snapshot-trailing", type=int, default=d.trailing_entries,
                       help="log entries kept behind a snapshot for followers slightly behind")
    group.add_argument("--snapshot-chunk-bytes", type=int, default=d.chunk_bytes,
                       help="bytes per chunk when a snapshot is sent to a follower")
    group.add_argument("--allow-missing-hard-state", action="store_true",
                       help="start although the log has entries and the hard state file is gone "
                            "(this node may then vote twice in one term: only after an operator "
                            "made sure it did not vote in the current term)")


def _snapshot_policy(args: argparse.Namespace) -> SnapshotPolicy:
    flags = {"entries": "--snapshot-entries", "bytes": "--snapshot-bytes",
             "trailing_entries": "--snapshot-trailing", "chunk_bytes": "--snapshot-chunk-bytes"}
    values = {"entries": args.snapshot_entries, "bytes": args.snapshot_bytes,
              "trailing_entries": args.snapshot_trailing, "chunk_bytes": args.snapshot_chunk_bytes}
    for field, value in values.items():
        minimum = 1 if field == "chunk_bytes" else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{flags[field]}: must be an int >= {minimum}, got {value!r}")
    ratio = args.snapshot_state_ratio
    if not 0 <= ratio <= STATE_RATIO_MAX:  # (also refuses nan)
        raise ConfigError(
            f"--snapshot-state-ratio: must be a number in 0..{STATE_RATIO_MAX:g}, got {ratio!r}")
    return SnapshotPolicy(**values, state_ratio=ratio)


def _parser() -> _Parser:
    parser = _Parser(prog="raftlib", description="Run raftlib nodes.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run one node as its own process")
    serve.add_argument("--id", type=int, required=True, help="this node's id (>= 1)")
    serve.add_argument(
        "--peers", required=True, help="every member: ID=HOST:PORT,... (this node included)"
    )
    serve.add_argument("--data", required=True, help="data directory (created if missing)")
    serve.add_argument("--tick-ms", type=float, default=25.0, help="tick length (ms)")
    serve.add_argument("--seed", type=int, default=None, help="seed of the election jitter")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument("--client-port", type=int, default=None,
                       help="serve the KV service (RESP2) on 127.0.0.1:PORT")
    serve.add_argument("--client-peers", default=None,
                       help="every member's client address ID=HOST:PORT,... (for redirects)")
    serve.add_argument("--join", action="store_true",
                       help="join a running cluster (--peers: members to reach, and this node): "
                            "start knowing no configuration and wait to be added with "
                            "`raftlib member add`; keep it on every restart of this node")
    serve.add_argument("--sync-on-loop", action="store_true", help=SYNC_ON_LOOP_HELP)
    serve.add_argument("--metrics-port", type=int, default=None,
                       help="serve Prometheus metrics on 127.0.0.1:PORT/metrics "
                            "(needs --client-port)")
    _add_security_options(serve)
    _add_limit_options(serve)
    _add_snapshot_options(serve)
    add_core_flags(serve)
    certs = sub.add_parser("certs", help="make certificates for a cluster")
    certs_sub = certs.add_subparsers(dest="certs_command", required=True, parser_class=_Parser)
    init = certs_sub.add_parser(
        "init", help="create a CA and certificates for nodes 1..N and a client (missing ones)")
    init.add_argument("dir", help="directory for the files (created 0700)")
    init.add_argument("--nodes", type=int, required=True, help="number of nodes")
    init.add_argument("--client", action="append", default=None, metavar="NAME",
                      help="client certificate name (repeatable; default: client)")
    init.add_argument("--san", action="append", default=[], metavar="NAME",
                      help="extra host name or IP for every node certificate (repeatable)")
    init.add_argument("--days", type=int, default=VALIDITY_DAYS,
                      help=f"validity in days (default {VALIDITY_DAYS})")
    native = sub.add_parser(
        "native-build", help="compile the core and the driver with mypyc (opt-in; needs mypy "
        "and a C compiler): run with RAFTLIB_NATIVE=DIR set (raftlib.native)")
    native.add_argument("directory", type=Path, help="where to put the build (created)")
    cluster = sub.add_parser("cluster", help="run a local cluster of KV nodes on loopback")
    cluster.add_argument("--nodes", type=int, default=3, help="number of nodes (1..9)")
    cluster.add_argument("--data", required=True, help="directory for every node's data")
    cluster.add_argument("--base-port", type=int, default=7001,
                         help="Raft port of node 1; node N uses BASE+N-1")
    cluster.add_argument("--client-base-port", type=int, default=6379,
                         help="RESP port of node 1; node N uses BASE+N-1")
    cluster.add_argument("--tick-ms", type=float, default=25.0, help="tick length (ms)")
    cluster.add_argument("--metrics-base-port", type=int, default=None,
                         help="Prometheus metrics of node 1 on this port; node N uses BASE+N-1")
    cluster.add_argument("--sync-on-loop", action="store_true",
                         help=SYNC_ON_LOOP_HELP + "; passed to every node")
    cluster.add_argument("--tls", action="store_true",
                         help="mutual TLS between nodes and TLS for clients; certificates are "
                              "created in DATA/certs (or --certs) when missing")
    cluster.add_argument("--certs", default=None, help="certificate directory (with --tls)")
    cluster.add_argument("--client-auth", action="store_true",
                         help="with --tls: clients must present a certificate")
    add_core_flags(cluster, note="; passed to every node")
    add_operator_commands(sub, _Parser)
    return parser


# Defaults of the limits ``serve`` exposes (the library defaults, except the idle timeouts,
# which the library leaves off and a network service should not).
VALIDITY_DAYS = 825
CLIENT_IDLE_TIMEOUT_SECONDS = 300.0
PEER_IDLE_TIMEOUT_SECONDS = 300.0
HANDSHAKE_TIMEOUT_SECONDS = 5.0
MAX_CLIENTS = 10_000
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_VALUE_BYTES = 1024 * 1024
PEER_HANDSHAKES_MAX = 64
# A frame carries a value plus its entry and message headers; keep this much room.
FRAME_OVERHEAD_BYTES = 4096

SYNC_ON_LOOP_HELP = (
    "run each storage sync (fsync) on the node's event loop instead of its sync thread, as "
    "Redis's appendfsync always does: less CPU and latency per write (no thread hand-offs), "
    "but the loop, heartbeats included, stalls for every fsync: only for a disk whose fsync "
    "stays far below the election timeout")

INSECURE_WARNING = (
    "raftlib: warning: --insecure: peer and client traffic is plain TCP, unauthenticated and "
    "unencrypted; anyone who can reach these ports can read it or join the cluster and rewrite "
    "its log; use only on a trusted network"
)


def _add_security_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("security (TLS is required unless --insecure)")
    group.add_argument("--tls-dir", default=None,
                       help="certificates in the `raftlib certs init` layout: ca.pem, "
                            "node-ID.pem, node-ID.key")
    group.add_argument("--ca", default=None, help="cluster CA certificate (instead of --tls-dir)")
    group.add_argument("--cert", default=None, help="this node's certificate")
    group.add_argument("--key", default=None, help="this node's private key (mode 0600)")
    group.add_argument("--insecure", action="store_true",
                       help="plain TCP for peers and clients (trusted networks only)")
    group.add_argument("--client-auth", action="store_true",
                       help="RESP clients must present a certificate")
    group.add_argument("--client-ca", default=None,
                       help="CA for client certificates (default: the cluster CA)")
    group.add_argument("--client-plaintext", action="store_true",
                       help="RESP port without TLS even though peers use TLS")


def _add_limit_options(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("limits")
    group.add_argument("--max-frame-bytes", type=int, default=MAX_FRAME_BYTES,
                       help=f"largest Raft frame accepted from a peer (default {MAX_FRAME_BYTES})")
    group.add_argument("--max-value-bytes", type=int, default=MAX_VALUE_BYTES,
                       help=f"largest KV value (default {MAX_VALUE_BYTES})")
    group.add_argument("--max-clients", type=int, default=MAX_CLIENTS,
                       help=f"RESP connections served at once (default {MAX_CLIENTS})")
    group.add_argument("--client-idle-timeout", type=float, default=CLIENT_IDLE_TIMEOUT_SECONDS,
                       help="seconds a RESP connection may stay silent; 0: forever "
                            f"(default {CLIENT_IDLE_TIMEOUT_SECONDS:g})")
    group.add_argument("--peer-idle-timeout", type=float, default=PEER_IDLE_TIMEOUT_SECONDS,
                       help="seconds an inbound peer connection may stay silent; 0: forever "
                            f"(default {PEER_IDLE_TIMEOUT_SECONDS:g})")
    group.add_argument("--handshake-timeout", type=float, default=HANDSHAKE_TIMEOUT_SECONDS,
                       help="seconds for a TLS handshake and hello, peers and clients "
                            f"(default {HANDSHAKE_TIMEOUT_SECONDS:g})")
    group.add_argument("--peer-handshakes-max", type=int, default=PEER_HANDSHAKES_MAX,
                       help="unauthenticated peer connections handled at once "
                            f"(default {PEER_HANDSHAKES_MAX})")


class CountingStateMachine:
    """The state machine ``serve`` runs until a service supplies its own: it counts commands
    and returns each command's position, which is enough to watch replication work."""

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> Any:
        self.applied += 1
        return self.applied

    def snapshot(self, file: BinaryIO) -> None:
        file.write(b"%d" % self.applied)

    def restore(self, file: BinaryIO) -> None:
        self.applied = int(file.read() or b"0")


def _security(args: argparse.Namespace) -> tuple[StreamSecurity, ssl.SSLContext | None]:
    """The peer transport's security and the RESP port's TLS context (``None``: plain)."""
    from raftlib.certs import NodeFiles
    from raftlib.transport.tls import Insecure, MutualTls, resp_server_context

    if args.insecure:
        return Insecure(idle_timeout_seconds=args.peer_idle_timeout), None
    if args.tls_dir is not None:
        files = NodeFiles.in_directory(Path(args.tls_dir), args.id)
    else:
        files = NodeFiles(Path(args.ca), Path(args.cert), Path(args.key))
    security = MutualTls(args.id, files, idle_timeout_seconds=args.peer_idle_timeout)
    if args.client_plaintext:
        return security, None
    client_ca = Path(args.client_ca) if args.client_ca else None
    return security, resp_server_context(files, client_ca=client_ca,
                                         require_client_cert=args.client_auth)


# Container allocations (net of frees) between two young-generation collections in a serving
# process; CPython's default is 700. Every tenth young collection also walks the middle
# generation, whose survivors (requests in flight) cost over a millisecond a walk at 50
# clients: at 700 that was about 2 us of a leader's 55 us per SET, at 10,000 a tenth of that.
# Garbage cycles are rare here (the records on the hot path are gc=False) and wait that much
# longer to be freed.
GC_YOUNG_THRESHOLD_ALLOCATIONS = 10_000


def _tune_gc_for_serving() -> None:
    """Once the node is up: what was built so far (modules, the state restored from disk)
    lives as long as the process, so the collector stops walking it (``gc.freeze``); and the
    young generation is collected less often. Measured on a leader under redis-benchmark SET
    -c 50: the collector's time went from 5.1 to 1.7 us per SET."""
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD_ALLOCATIONS, middle, old)


async def _serve(args: argparse.Namespace, peers: dict[int, tuple[str, int]]) -> None:
    from raftlib.storage.wal import WalStorage
    from raftlib.transport.tcp import TcpTransport

    config = NodeConfig(
        node_id=args.id,
        peers={nid: f"{host}:{port}" for nid, (host, port) in peers.items()},
        tick_seconds=args.tick_ms / 1000.0,
        seed=args.seed,
        join=args.join,
        snapshot=_snapshot_policy(args),
        storage_thread=not args.sync_on_loop,
    ).with_core(**core_overrides(args))
    security, client_tls = _security(args)
    storage = WalStorage(Path(args.data), allow_missing_hard_state=args.allow_missing_hard_state)
    transport = TcpTransport(
        peers,
        security=security,
        max_frame_bytes=args.max_frame_bytes,
        handshake_timeout_seconds=args.handshake_timeout,
        inbound_handshakes_max=args.peer_handshakes_max,
    )
    log = logging.getLogger("raftlib.serve")
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        if args.client_port is not None:
            await _serve_kv_until(args, config, storage, transport, client_tls, signals)
            return
        async with open_node(
            config, storage=storage, transport=transport, state_machine=CountingStateMachine()
        ) as node:
            log.info("node %d serving on %s:%d", args.id, *peers[args.id])
            _warn_if_insecure(args)
            _tune_gc_for_serving()
            async for signum in signals:
                log.info("node %d stopping on %s", node.node_id, signal.Signals(signum).name)
                break


async def _serve_kv_until(
    args: argparse.Namespace,
    config: NodeConfig,
    storage: Any,
    transport: Any,
    client_tls: ssl.SSLContext | None,
    signals: Any,
) -> None:
    from raftlib.resp.protocol import RespLimits
    from raftlib.resp.server import ServerLimits
    from raftlib.service import KvServiceConfig, serve_kv

    client_peers = args.client_peers_parsed
    addresses = {nid: f"{host}:{port}" for nid, (host, port) in client_peers.items()}
    addresses.setdefault(args.id, f"127.0.0.1:{args.client_port}")
    service = KvServiceConfig(value_bytes_max=args.max_value_bytes)
    # The parser's bulk limit stays above the value limit, so an oversized value gets the
    # service's one-line ERR instead of a protocol error that closes the connection.
    bulk = max(RespLimits().bulk_bytes_max, args.max_value_bytes)
    # A whole SET of the largest value (plus its key) must fit in one request.
    request = max(RespLimits().request_bytes_max, bulk + KvServiceConfig().key_bytes_max + 64)
    limits = ServerLimits(
        connections_max=args.max_clients,
        idle_timeout_seconds=args.client_idle_timeout,
        handshake_timeout_seconds=args.handshake_timeout,
        protocol=RespLimits(bulk_bytes_max=bulk, request_bytes_max=request),
    )
    log = logging.getLogger("raftlib.serve")
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(
            serve_kv, config, storage=storage, transport=transport,
            client_port=args.client_port, client_addresses=addresses,
            service_config=service, server_limits=limits, ssl_context=client_tls,
            metrics_port=args.metrics_port))
        _warn_if_insecure(args)
        _tune_gc_for_serving()
        async for signum in signals:
            log.info("node %d stopping on %s", config.node_id, signal.Signals(signum).name)
            break
        nursery.cancel_scope.cancel()


def _warn_if_insecure(args: argparse.Namespace) -> None:
    # Printed once the node is up (not before): errors at start-up stay one line.
    if args.insecure:
        print(INSECURE_WARNING, file=sys.stderr, flush=True)
    elif args.client_plaintext and args.client_port is not None:
        print("raftlib: warning: --client-plaintext: RESP clients talk in plain TCP, "
              "unauthenticated and unencrypted", file=sys.stderr, flush=True)


def _check_security_args(args: argparse.Namespace) -> None:
    explicit = [args.ca, args.cert, args.key]
    if args.insecure:
        given = [name for name, value in (("--tls-dir", args.tls_dir), ("--ca", args.ca),
                                          ("--cert", args.cert), ("--key", args.key),
                                          ("--client-ca", args.client_ca)) if value]
        given += [flag for flag, on in (("--client-auth", args.client_auth),
                                        ("--client-plaintext", args.client_plaintext)) if on]
        if given:
            raise UsageError(f"--insecure cannot be combined with {', '.join(given)}")
        return
    if args.tls_dir is None and not any(explicit):
        raise UsageError("no TLS material: pass --tls-dir DIR (see `raftlib certs init`) or "
                         "--ca/--cert/--key, or --insecure for plain TCP on a trusted network")
    if args.tls_dir is not None and any(explicit):
        raise UsageError("use either --tls-dir or --ca/--cert/--key, not both")
    if args.tls_dir is None and not all(explicit):
        raise UsageError("--ca, --cert and --key must be given together")
    if args.client_ca and not args.client_auth:
        raise UsageError("--client-ca needs --client-auth")
    if args.client_plaintext and args.client_auth:
        raise UsageError("--client-auth needs TLS on the client port (drop --client-plaintext)")


def _check_limit_args(args: argparse.Namespace) -> None:
    for flag, value in (("--max-clients", args.max_clients),
                        ("--peer-handshakes-max", args.peer_handshakes_max),
                        ("--max-value-bytes", args.max_value_bytes)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if not 2 <= args.max_frame_bytes <= 0xFFFF_FFFF:
        raise UsageError(f"--max-frame-bytes must be 2..4294967295, got {args.max_frame_bytes}")
    if args.max_value_bytes + FRAME_OVERHEAD_BYTES > args.max_frame_bytes:
        raise UsageError(
            f"--max-value-bytes {args.max_value_bytes} does not fit --max-frame-bytes "
            f"{args.max_frame_bytes} (leave {FRAME_OVERHEAD_BYTES} bytes for headers)"
        )
    for flag, seconds in (("--client-idle-timeout", args.client_idle_timeout),
                          ("--peer-idle-timeout", args.peer_idle_timeout)):
        if not math.isfinite(seconds) or seconds < 0:
            raise UsageError(f"{flag} must be >= 0 seconds (0 disables), got {seconds}")
    if not math.isfinite(args.handshake_timeout) or args.handshake_timeout <= 0:
        raise UsageError(f"--handshake-timeout must be > 0 seconds, got {args.handshake_timeout}")


def _check_core_args(args: argparse.Namespace) -> dict[str, Any]:
    """The core settings given as flags, validated by ``CoreConfig`` (one line naming the
    setting and the bad value otherwise)."""
    try:
        return check_overrides(core_overrides(args), "core settings")
    except SettingError as exc:
        raise UsageError(f"{core_flag(exc.name)}: {exc.problem}") from None


def _check_port(name: str, port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"{name} must be 1..65535, got {port}")


def parse_serve_args(argv: Sequence[str]) -> tuple[argparse.Namespace, dict[int, tuple[str, int]]]:
    """``serve``'s arguments, validated (``UsageError`` with one line otherwise)."""
    args = _parser().parse_args(["serve", *argv])
    return args, _check_serve_args(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
        if args.command == "cluster":
            return _cluster_main(args)
        if args.command == "certs":
            return _certs_main(args)
        if args.command == "native-build":
            return _native_build_main(args)
        try:
            command = operator_command(args)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if command is not None:
            return operator_main(args, command)
        peers = _check_serve_args(args)
    except UsageError as exc:
        print(f"raftlib: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        # Timers and leases must see the time a suspended machine slept (suspend_clock).
        trio.run(_serve, args, peers, clock=SuspendAwareClock())
    except (Exception, BaseExceptionGroup) as exc:
        leaf = _first_leaf(exc)
        print(f"raftlib: error: {leaf}", file=sys.stderr)
        if isinstance(leaf, ConfigError | StorageError | OSError):
            return EXIT_USAGE
        if isinstance(leaf, RaftError):
            return EXIT_ERROR
        raise
    return 0


def _native_build_main(args: argparse.Namespace) -> int:
    from raftlib import native

    try:
        out = native.build(args.directory)
    except native.NativeBuildError as exc:
        raise UsageError(str(exc)) from None
    print(f"built {len(native.NATIVE_MODULES)} modules; run with "
          f"{native.ENVIRONMENT_VARIABLE}={out}")
    return 0


def _check_serve_args(args: argparse.Namespace) -> dict[int, tuple[str, int]]:
    peers = parse_peers(args.peers)
    args.client_peers_parsed = {}
    if args.client_port is not None:
        _check_port("--client-port", args.client_port)
        if args.client_peers:
            try:
                args.client_peers_parsed = parse_peers(args.client_peers)
            except UsageError as exc:
                raise UsageError(str(exc).replace("--peers", "--client-peers")) from None
    if args.id not in peers:
        raise UsageError(f"--id {args.id} is not among --peers ({sorted(peers)})")
    if args.join and len(peers) < 2:
        raise UsageError("--join: --peers must list a member of the cluster to join besides "
                         "this node")
    if args.metrics_port is not None:
        if args.client_port is None:
            raise UsageError("--metrics-port needs --client-port (the KV service serves them)")
        _check_port("--metrics-port", args.metrics_port)
        if args.metrics_port == args.client_port:
            raise UsageError("--metrics-port and --client-port must differ")
    if not args.tick_ms > 0:
        raise UsageError("--tick-ms must be > 0")
    _check_core_args(args)
    _check_limit_args(args)
    _check_security_args(args)
    return peers


def _certs_main(args: argparse.Namespace) -> int:
    from raftlib.certs import CertificateError, ensure_certs

    directory = Path(args.dir)
    try:
        written = ensure_certs(directory, nodes=args.nodes, clients=args.client or ["client"],
                               extra_names=args.san, days=args.days)
    except CertificateError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        raise UsageError(f"cannot write certificates in {directory}: {exc.strerror}") from None
    for path in written:
        print(f"created {path}")
    if not written:
        print(f"nothing to do: {directory} already holds every file")
    print(f"use: raftlib serve --id N --tls-dir {directory} ...; "
          f"clients: redis-cli --tls --cacert {directory}/ca.pem", flush=True)
    return 0


def _cluster_main(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9:
        raise UsageError(f"--nodes must be 1..9, got {args.nodes}")
    last = args.nodes - 1
    _check_port("--base-port", args.base_port)
    _check_port("--base-port (last node)", args.base_port + last)
    _check_port("--client-base-port", args.client_base_port)
    _check_port("--client-base-port (last node)", args.client_base_port + last)
    raft_ports = set(range(args.base_port, args.base_port + args.nodes))
    client_ports = set(range(args.client_base_port, args.client_base_port + args.nodes))
    if raft_ports & client_ports:
        raise UsageError("--base-port and --client-base-port ranges overlap")
    if args.metrics_base_port is not None:
        _check_port("--metrics-base-port", args.metrics_base_port)
        _check_port("--metrics-base-port (last node)", args.metrics_base_port + last)
        metrics_ports = set(range(args.metrics_base_port, args.metrics_base_port + args.nodes))
        if metrics_ports & (raft_ports | client_ports):
            raise UsageError("--metrics-base-port range overlaps the raft or client ports")
    if not args.tick_ms > 0:
        raise UsageError("--tick-ms must be > 0")
    core = _check_core_args(args)
    data = Path(args.data)
    if data.exists() and not data.is_dir():
        raise UsageError(f"--data {data} exists and is not a directory")
    if not args.tls and (args.certs or args.client_auth):
        raise UsageError("--certs and --client-auth need --tls")
    certs: Path | None = None
    if args.tls:
        from raftlib.certs import CertificateError, ensure_certs

        certs = Path(args.certs) if args.certs else data / "certs"
        try:
            ensure_certs(certs, nodes=args.nodes)
        except CertificateError as exc:
            raise UsageError(str(exc)) from None
        except OSError as exc:
            raise UsageError(f"cannot write certificates in {certs}: {exc.strerror}") from None
    else:
        print(INSECURE_WARNING.replace("--insecure", "cluster without --tls"), file=sys.stderr,
              flush=True)
    return run_cluster(
        nodes=args.nodes,
        data=data,
        base_port=args.base_port,
        client_base_port=args.client_base_port,
        tick_ms=args.tick_ms,
        certs=certs,
        client_auth=args.client_auth,
        core=core,
        metrics_base_port=args.metrics_base_port,
        sync_on_loop=args.sync_on_loop,
    )


# How long ``cluster`` waits for every client port to accept connections, and for its
# children to exit after SIGTERM before it SIGKILLs them.
CLUSTER_READY_SECONDS_MAX = 20.0
CLUSTER_STOP_SECONDS_MAX = 10.0
# How often ``cluster`` looks whether a node died while it runs.
CLUSTER_WATCH_SECONDS = 0.1


def cluster_node_argv(
    node: int,
    *,
    nodes: int,
    data_dir: Path,
    base_port: int,
    client_base_port: int,
    tick_ms: float,
    security: Sequence[str] = ("--insecure",),
    core: Mapping[str, Any] | None = None,
    metrics_base_port: int | None = None,
    sync_on_loop: bool = False,
) -> list[str]:
    """The ``serve`` command ``cluster`` runs as node ``node`` (with its data in ``data_dir``)."""
    from raftlib.supervisor import serve_argv

    ids = range(1, nodes + 1)
    metrics = [] if metrics_base_port is None else [
        "--metrics-port", str(metrics_base_port + node - 1)]
    return serve_argv(node, peers={i: f"127.0.0.1:{base_port + i - 1}" for i in ids},
                      data=data_dir, client_port=client_base_port + node - 1,
                      client_peers={i: f"127.0.0.1:{client_base_port + i - 1}" for i in ids},
                      tick_ms=tick_ms, flags=[*security, *metrics, *core_argv(core or {}),
                                              *(["--sync-on-loop"] if sync_on_loop else [])])


def run_cluster(
    *,
    nodes: int,
    data: Path,
    base_port: int,
    client_base_port: int,
    tick_ms: float,
    certs: Path | None = None,
    client_auth: bool = False,
    core: Mapping[str, Any] | None = None,
    metrics_base_port: int | None = None,
    sync_on_loop: bool = False,
) -> int:
    """Run ``nodes`` ``serve`` processes until SIGINT/SIGTERM; see the module docstring.
    With ``certs`` (a ``certs init`` directory) the nodes run TLS, else ``--insecure``."""
    import time

    from raftlib.supervisor import Supervisor

    ids = range(1, nodes + 1)
    raft = {i: f"127.0.0.1:{base_port + i - 1}" for i in ids}
    clients = {i: f"127.0.0.1:{client_base_port + i - 1}" for i in ids}
    security = ["--insecure"] if certs is None else ["--tls-dir", str(certs)]
    if certs is not None and client_auth:
        security.append("--client-auth")
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        stopping.append(signum)

    def command(node: int) -> list[str]:
        return cluster_node_argv(node, nodes=nodes, data_dir=supervisor.data_dir(node),
                                 base_port=base_port,
                                 client_base_port=client_base_port, tick_ms=tick_ms,
                                 security=security, core=core,
                                 metrics_base_port=metrics_base_port,
                                 sync_on_loop=sync_on_loop)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 0
    supervisor = Supervisor(data, ids, command)
    try:
        with supervisor:
            for i in ids:
                supervisor.start(i)
            waiting = supervisor.wait_ready({i: client_base_port + i - 1 for i in ids},
                                            CLUSTER_READY_SECONDS_MAX,
                                            give_up=lambda: bool(stopping))
            if waiting and not stopping:
                print(f"raftlib: error: nodes {waiting} did not start; see "
                      f"{data}/node-N.log", file=sys.stderr)
                supervisor.stop_all(CLUSTER_STOP_SECONDS_MAX)
                return EXIT_ERROR
            for i in ids:
                metrics = ("" if metrics_base_port is None else
                           f"  metrics http://127.0.0.1:{metrics_base_port + i - 1}/metrics")
                print(f"node {i}: raft {raft[i]}  client {clients[i]}{metrics}  log "
                      f"{supervisor.log_path(i)}")
            tls = ""
            if certs is not None:
                tls = f"--tls --cacert {certs}/ca.pem "
                if client_auth:
                    tls += f"--cert {certs}/client.pem --key {certs}/client.key "
            print(f"ready: try `redis-cli {tls}-c -p {client_base_port} SET greeting hello` "
                  "(-c follows MOVED redirects to the leader); Ctrl-C stops the cluster",
                  flush=True)
            while not stopping:
                dead = supervisor.reap_unexpected()
                if dead:
                    node, code, _ = supervisor.unexpected_exits[0]
                    print(f"raftlib: error: node {node} exited with status {code}; stopping "
                          "the cluster", file=sys.stderr)
                    status = EXIT_ERROR
                    break
                time.sleep(CLUSTER_WATCH_SECONDS)
            supervisor.stop_all(CLUSTER_STOP_SECONDS_MAX)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("cluster stopped", flush=True)
    return status


def _first_leaf(exc: BaseException) -> BaseException:
    # Trio wraps task errors in exception groups; the person at the terminal wants the cause.
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


if __name__ == "__main__":
    sys.exit(main())
