"""The target interface: what the live harness needs to know of a system under test.

Jepsen's split. A *DB* knows one kind of node: whether it is installed here and its version,
the command that runs one node inside its network namespace host (and, optionally, one
companion process beside it, such as a Redis Sentinel), the files it needs before its first
start, when the cluster is ready to serve and which node leads (the primary, the Raft leader).
Starting, stopping, SIGKILL, SIGSTOP / SIGCONT and wiping a node's data (``Nodes``) are the
same for every DB that runs as processes: ``harness.targets.cluster.TargetCluster`` does them.
A *client* opens connections, turns one workload operation into requests and returns its
output, or raises to say how it ended:

- ``NotApplied``: the operation certainly did not take effect (refused before anything was
  sent, or the service said no);
- ``Unknown`` (or any other error, a timeout, a dropped connection): it may have taken effect.

``classify`` turns that into Jepsen's outcome: ``ok``, ``fail`` (did not happen) or ``info``
(unknown). A read that did not answer is ``fail``: it changed nothing, so it did not happen as
far as the history is concerned. A write that may have reached the service is never ``fail``.
Workloads, nemeses and checkers know nothing of the system.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import attrs

from harness.workloads import OpSpec

Outcome = Literal["ok", "fail", "info"]


class NotApplied(Exception):
    """The operation certainly did not take effect (``fail``)."""


class Unknown(Exception):
    """The operation may or may not have taken effect (``info`` for a write)."""


def classify(spec: OpSpec, error: BaseException | None) -> Outcome:
    """Jepsen's outcome of ``spec`` that ended with ``error`` (None: it answered)."""
    if error is None:
        return "ok"
    if isinstance(error, NotApplied) or not spec.is_write:
        return "fail"
    # Unknown, a timeout, a connection lost after sending, a surprise: it may have happened.
    return "info"


@attrs.frozen
class Host:
    """One node of a target cluster, as its DB sees it."""

    node: int
    address: str  # where the node listens in the test network (its namespace's address)
    data_dir: Path  # the node's own directory: configuration, data, what a wipe removes
    addresses: Mapping[int, str]  # every node's address, by node id (itself included)


class Client(abc.ABC):
    """One worker's connections to the cluster; one operation at a time."""

    async def open(self) -> None:  # noqa: B027 - most clients connect lazily
        """Connect (the runner calls it once, before the first ``invoke``)."""

    @abc.abstractmethod
    async def invoke(self, spec: OpSpec) -> Any:
        """Run ``spec``; its output (a read's value, a cas's success); raise to say it did not
        answer (``NotApplied``, ``Unknown``; anything else counts as ``Unknown``)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every connection; must not raise."""


class Nodes(Protocol):
    """What can be done to one node of a target, whatever the DB: Jepsen's start!, kill!,
    pause!, resume!, wipe!. ``harness.targets.cluster.TargetCluster`` does it for every DB
    that runs as processes (the DB says which command), so a DB implements none of it."""

    def start(self, node: int) -> None: ...

    def stop(self, node: int) -> int | None: ...

    def kill(self, node: int, how: Literal["process"] = "process") -> bool: ...

    def pause(self, node: int) -> bool: ...

    def resume(self, node: int) -> bool: ...

    def wipe(self, node: int) -> None: ...

    def data_dir(self, node: int) -> Path: ...


class DB(abc.ABC):
    """One kind of node. Subclasses set ``name`` (the ``--target``) and implement the methods
    marked abstract; the rest have defaults that suit most."""

    name: ClassVar[str]
    # What the report calls the system, before its version.
    description: ClassVar[str]
    # The workloads the client can run and the live fault kinds the target supports.
    workloads: ClassVar[tuple[str, ...]] = ("register", "kv")
    nemeses: ClassVar[tuple[str, ...]] = ("partition", "kill", "pause")
    # check name -> why that check failing is the documented behaviour of this target, not a
    # finding (the report says so next to the failure).
    expected_failures: ClassVar[Mapping[str, str]] = {}

    @abc.abstractmethod
    def missing(self) -> str | None:
        """Why this target cannot run here (a binary absent), or None."""

    @abc.abstractmethod
    def version(self) -> str:
        """The version of the software under test, for the report."""

    def setup(self, host: Host) -> None:  # noqa: B027 - optional hook
        """Write what the node needs before its first start (configuration files)."""

    @abc.abstractmethod
    def command(self, host: Host) -> list[str]:
        """The command that runs the node (in the foreground, inside its namespace)."""

    def companion(self, host: Host) -> list[str] | None:
        """A second process beside the node, in the same namespace, that faults do not kill
        or pause (a Sentinel); None for none."""
        return None

    @abc.abstractmethod
    async def ready(self, hosts: Mapping[int, Host]) -> str | None:
        """None when the cluster serves (all nodes up, a leader or primary, replicas linked);
        otherwise what it is still waiting for (one line, for the timeout's error)."""

    @abc.abstractmethod
    async def primary(self, hosts: Mapping[int, Host]) -> int | None:
        """The node that leads now (Raft leader, replication primary), or None if unknown."""

    @abc.abstractmethod
    def client(self, hosts: Mapping[int, Host], *, home: int, timeout: float,
               workload: str) -> Client:
        """A client for one worker; ``home`` is the node it talks to first."""
