"""HarnessKV: the object under test of the simulator until ``raftlib.kv`` lands.

A deliberately small, deterministic key-value state machine that speaks the harness's command
encoding (``harness.commands``): ``write``/``put`` set a key, ``cas`` compares and sets,
``append`` adds one element to a list. It has no client sessions, so the harness never retries
a write that may have entered the log (a retry could apply twice). The next session switches
the simulator to ``raftlib.kv``'s state machine; only ``harness.commands`` and this module
change then.
"""

from __future__ import annotations

from typing import Any

from harness.commands import decode


class HarnessKV:
    def __init__(self, initial: Any) -> None:
        # The value a key has before anything is written (the model's initial value).
        self._initial = initial
        self._data: dict[Any, Any] = {}
        self.applied_commands = 0

    def apply(self, command: bytes) -> Any:
        """Apply one committed command; the result goes back to the client that proposed it."""
        cmd = decode(command)
        self.applied_commands += 1
        key = _hashable(cmd.key)
        f = cmd.f
        if f in ("write", "put"):
            self._data[key] = cmd.value
            return None
        if f == "cas":
            expected, new = cmd.value
            if self._data.get(key, self._initial) != expected:
                return False
            self._data[key] = new
            return True
        # append: the value read back is the whole list, in commit order.
        current = self._data.get(key, self._initial)
        self._data[key] = [*current, cmd.value] if isinstance(current, list) else [cmd.value]
        return None

    def read(self, key: Any) -> Any:
        """The current value of ``key`` (served only at a linearizable point by the driver)."""
        value = self._data.get(_hashable(key), self._initial)
        return list(value) if isinstance(value, list) else value


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
