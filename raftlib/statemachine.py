"""The state machine API: what a program embedding raftlib implements.

A state machine is the replicated part of a service. raftlib hands it every committed command,
in log order, on every node; because each replica starts from the same state and applies the
same commands in the same order, every replica computes the same state and the same results::

    class Counter(raftlib.statemachine.SnapshotStateMachine):
        def __init__(self) -> None:
            self.value = 0

        def apply(self, command: bytes) -> int:        # runs on every node, once per entry
            self.value += int(command)
            return self.value                          # goes back to the proposer only

        def snapshot(self, file: BinaryIO) -> None:    # for log compaction
            file.write(str(self.value).encode())

        def restore(self, file: BinaryIO) -> None:
            self.value = int(file.read())

    result = await node.propose(b"5")                  # the leader's apply(b"5") result
    value = await node.read(lambda: counter.value)     # a linearizable read, no log entry

Rules ``apply`` must follow (they are what makes replication correct):

- **Deterministic.** The result and the new state depend only on the current state and the
  command: no clock, no randomness, no I/O, no iteration over unordered sets whose order can
  differ between processes. Anything a command needs that is not deterministic (the time, a
  random id) is chosen by the proposer and carried inside the command.
- **Total.** Return an error *value* for a command that cannot be carried out (``INCR`` of a
  non-number); do not raise. The node logs an exception and keeps going, but a value is what
  the proposer (and a session's reply cache) can use.
- **Quick.** It runs on the node's raft loop; a slow ``apply`` delays heartbeats.

``snapshot(file)`` writes the whole state (including session tables: they are state too) and
``restore(file)`` replaces the state with what a snapshot wrote. The node calls ``snapshot``
when its ``SnapshotPolicy`` thresholds are reached (then compacts the log behind it) and
``restore`` on restart and when a leader sends a snapshot. A large state should also offer
``prepare_snapshot()``: called on the raft loop at the snapshot's index, it captures a
consistent copy cheaply and returns a function ``write(file)`` that the node runs on a worker
thread while ``apply`` goes on (``raftlib.kv.KvStateMachine`` does). Reads never go through
``apply``: call ``node.read(fn, *args)`` so ``fn`` sees the state at a linearizable point
(ReadIndex).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, BinaryIO, Protocol, runtime_checkable


@runtime_checkable
class StateMachine(Protocol):
    """The minimum a node needs (the same shape as ``raftlib.node.StateMachine``)."""

    def apply(self, command: bytes) -> Any: ...


@runtime_checkable
class SnapshotStateMachine(StateMachine, Protocol):
    """A state machine that can also save and reload its whole state."""

    def snapshot(self, file: BinaryIO) -> None:
        """Write the complete state to ``file`` (a binary file-like object)."""
        ...

    def restore(self, file: BinaryIO) -> None:
        """Replace the state with one ``snapshot`` wrote; ``file`` is positioned at its start."""
        ...


@runtime_checkable
class PreparedSnapshotStateMachine(SnapshotStateMachine, Protocol):
    """A state machine whose snapshot is written off the event loop."""

    def prepare_snapshot(self) -> Callable[[BinaryIO], None]:
        """Capture the current state (quickly: it runs on the raft loop) and return a function
        that writes it to a file; that function may run on another thread."""
        ...
