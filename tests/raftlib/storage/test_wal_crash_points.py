"""A process crash after any single file operation of a truncating, rolling-over append and a
hard state update leaves a log that opens and is either the old log or a valid successor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from raftlib.core.types import HardState
from raftlib.storage import WalStorage
from raftlib.storage import wal as wal_module
from tests.raftlib.storage.storage_testing import make_entries

MUTATING = {"write", "ftruncate", "unlink", "replace", "fsync", "open"}
STEPS_MAX = 200


class SimulatedCrash(BaseException):
    """Not an OSError: the storage must not get a chance to handle it."""


class CrashingOs:
    """Forwards to ``os`` but dies just before the ``crash_at``-th mutating operation."""

    def __init__(self, crash_at: int) -> None:
        self.crash_at = crash_at
        self.operations = 0

    def tick(self) -> None:
        if self.operations == self.crash_at:
            raise SimulatedCrash
        self.operations += 1

    def __getattr__(self, name: str) -> Any:
        real = getattr(os, name)
        if name not in MUTATING:
            return real

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.tick()
            return real(*args, **kwargs)

        return wrapper


OLD = make_entries(1, 60, term=1)
NEW = make_entries(10, 40, term=2)


@pytest.fixture
def pristine(tmp_path: Path) -> Path:
    directory = tmp_path / "pristine"
    with WalStorage(directory, segment_bytes_max=512) as wal:
        wal.load()
        wal.append(OLD)
        wal.set_hard_state(HardState(term=1, vote=1, commit=5))
        wal.sync()
    return directory


def test_crash_after_every_file_operation_leaves_a_valid_log(
    pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    acceptable_logs = [OLD[:m] for m in range(9, 61)] + [OLD[:9] + NEW[:j] for j in range(41)]
    completed = False
    for crash_at in range(STEPS_MAX):
        directory = tmp_path / f"run{crash_at}"
        shutil.copytree(pristine, directory)
        crashing = CrashingOs(crash_at)
        wal = WalStorage(directory, segment_bytes_max=512)
        wal.load()
        try:
            with monkeypatch.context() as m:
                m.setattr(wal_module, "os", crashing)
                m.setattr(wal_module, "_flush_data", crashing.__getattr__("fsync"))
                wal.append(NEW)
                wal.set_hard_state(HardState(term=2, vote=3, commit=6))
                wal.sync()
                completed = True
        except SimulatedCrash:
            pass
        wal.abandon()  # the process is gone: its descriptors close, nothing more is written
        with WalStorage(directory, segment_bytes_max=512) as reopened:
            hard_state, log = reopened.load()
        assert log in acceptable_logs, f"crash before operation {crash_at}"
        assert hard_state in (HardState(1, 1, 5), HardState(2, 3, 6)), f"crash at {crash_at}"
        if completed:
            assert (hard_state, log) == (HardState(2, 3, 6), OLD[:9] + NEW)
            break
        shutil.rmtree(directory)
    assert completed and crash_at > 10, crash_at  # the operation went through many steps
