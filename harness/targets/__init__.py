"""Targets: the systems a live run can test (``--target NAME``), each a DB and a client.

``raftlib`` (the default) is the live backend as it always ran (``harness.live``: raftlib's
own checks of its write-ahead logs come with it); the others run through
``harness.targets.run`` with the interface of ``harness.targets.base``:

- ``etcd``: three etcd members (Debian's ``etcd-server``), the v3 JSON gateway;
- ``redis-sentinel``: one Redis primary, replicas, a Sentinel beside each node (failover);
- ``resp``: any Redis-protocol service from its start command (``--resp-command``).

Adding one: a ``DB`` subclass (and its ``Client``) in a module here, and a line in ``_MAKERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from harness.options import TARGETS, OptionsError, RunOptions
from harness.targets.base import DB


def _etcd(options: RunOptions) -> DB:
    from harness.targets.etcd import EtcdDB

    return EtcdDB(serializable_reads=options.etcd_serializable_reads)


def _redis_sentinel(options: RunOptions) -> DB:
    from harness.targets.redis_sentinel import RedisSentinelDB

    return RedisSentinelDB()


def _resp(options: RunOptions) -> DB:
    from harness.targets.resp import RespDB

    return RespDB(options.resp_command, options.resp_cas)


_MAKERS: dict[str, Callable[[RunOptions], DB]] = {
    "etcd": _etcd,
    "redis-sentinel": _redis_sentinel,
    "resp": _resp,
}
assert set(_MAKERS) | {"raftlib"} == set(TARGETS), "every --target has its maker"


def make_db(options: RunOptions) -> DB:
    """The DB of ``options.target`` (not raftlib, whose nodes are harness.live's)."""
    return _MAKERS[options.target](options)


def validate_target(options: RunOptions, kinds: list[str]) -> None:
    """Refuse, with one line, a run the target cannot do (before anything starts)."""
    if options.target == "raftlib":
        return
    db = make_db(options)
    flag = f"--target {options.target}"
    missing = db.missing()
    if missing is not None:
        raise OptionsError(f"{flag}: {missing}")
    if options.workload not in db.workloads:
        raise OptionsError(f"{flag}: workload {options.workload!r} is not supported "
                           f"(supported: {', '.join(db.workloads)})")
    for kind in kinds:
        if kind not in db.nemeses:
            raise OptionsError(f"{flag}: fault kind {kind!r} is not supported (supported: "
                               f"{', '.join(db.nemeses)})")
    if options.bug:
        raise OptionsError(f"{flag}: --bug switches on a raftlib bug; only --target raftlib")
    from harness.live.net import planned_method

    method, why = planned_method()
    if method != "netns":
        raise OptionsError(f"{flag}: needs network namespaces, one host per node (root on "
                           f"Linux); unavailable here: {why}")
