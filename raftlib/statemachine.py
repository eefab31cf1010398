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

        def snapshot(self, file: BinaryIO) -> None:    # for a future log compaction
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
``restore(file)`` replaces the state with what a snapshot wrote. raftlib does not call them yet
(there is no log compaction); they are the hooks a snapshot feature will use, and the KV state
machine already implements and tests them. Reads never go through ``apply``: call
``node.read(fn, *args)`` so ``fn`` sees the state at a linearizable point (ReadIndex).
"""

from __future__ import annotations

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
