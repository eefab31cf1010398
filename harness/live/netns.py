"""Network namespaces from Python alone: create, enter, list, empty and remove them.

Everything here talks to the kernel directly (netlink through pyroute2, ``setns(2)`` through
ctypes, ``/proc``), so a live run needs no ``ip``, ``nft`` or ``iptables`` binary: a machine with
Python and the project's own install is enough.

Entering a namespace is per thread (``setns(2)`` moves the calling thread only). A socket keeps
the namespace it was created in for its whole life, so the harness creates sockets inside a
node's namespace from a short excursion of a worker thread and then uses them from Trio as any
other socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

NETNS_DIR = "/var/run/netns"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)
# Excursions into namespaces are serialised: a thread's trip must not interleave with another
# trip of the same thread (Trio's worker threads are reused).
_excursion_lock = threading.Lock()


def path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter(name: str) -> None:
    """Move the calling thread into namespace ``name`` for good (``nsexec`` before ``exec``)."""
    fd = os.open(path(name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _inside(name: str) -> Iterator[None]:
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            # A thread that cannot come home would run later work in the wrong namespace:
            # that must stop the harness, never be ignored.
            _setns(home)
    finally:
        os.close(home)


def call_inside(name: str, fn: Callable[[], T]) -> T:
    """``fn()`` run by the calling thread while it is inside namespace ``name``."""
    with _excursion_lock, _inside(name):
        return fn()


def socket_inside(name: str, family: int = socket.AF_INET,
                  kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in namespace ``name`` (whichever thread uses it later)."""
    return call_inside(name, lambda: socket.socket(family, kind))


# pyroute2 is imported where it is used: a node started through ``nsexec`` only enters a
# namespace and should not pay for importing netlink machinery.


def create(name: str) -> None:
    from pyroute2 import netns as pyroute2_netns

    pyroute2_netns.create(name)


def remove(name: str) -> None:
    from pyroute2 import netns as pyroute2_netns

    pyroute2_netns.remove(name)


def names() -> list[str]:
    if not os.path.isdir(NETNS_DIR):
        return []
    return sorted(n for n in os.listdir(NETNS_DIR) if os.path.isfile(path(n)))


def pids_inside(name: str) -> list[int]:
    """Processes whose network namespace is ``name`` (by inode, as ``ip netns pids`` does)."""
    try:
        target = os.stat(path(name))
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry))
    return found


def kill_inside(name: str) -> list[int]:
    """SIGKILL every process in namespace ``name``; the pids it signalled."""
    killed = []
    for pid in pids_inside(name):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed
