"""Helpers shared by the storage tests: entry builders and byte-level file surgery."""

from __future__ import annotations

import os
from pathlib import Path

from raftlib.core.types import Entry, EntryKind, HardState
from raftlib.storage import _format as fmt
from raftlib.storage.base import Recovered


def entry_data(index: int, term: int, size: int = 20) -> bytes:
    """Self-describing payload: a reader can tell a damaged or misplaced entry from a good one."""
    stem = f"{index}:{term}:".encode()
    return (stem * (size // len(stem) + 1))[:size]


def make_entries(first: int, count: int, *, term: int = 1, size: int = 20) -> list[Entry]:
    return [
        Entry(term=term, index=i, data=entry_data(i, term, size))
        for i in range(first, first + count)
    ]


def segment_paths(directory: str | Path) -> list[Path]:
    return sorted(p for p in Path(directory).iterdir() if fmt.SEGMENT_NAME.fullmatch(p.name))


def record_offsets(path: str | Path) -> list[int]:
    """Byte offset of every entry record in a (valid) segment file."""
    buf = Path(path).read_bytes()
    first = int(fmt.SEGMENT_NAME.fullmatch(Path(path).name).group(1))  # type: ignore[union-attr]
    scan = fmt.scan_records(buf, first)
    assert scan.bad is None, scan.bad
    return list(scan.offsets)


def flip_bit(path: str | Path, offset: int, bit: int = 0) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ (1 << bit)]))


def cut_file(path: str | Path, size: int) -> None:
    os.truncate(path, size)


def noop_entry(index: int, term: int) -> Entry:
    return Entry(term=term, index=index, kind=EntryKind.NOOP)


def no_snapshot(hard_state: HardState, entries: list[Entry]) -> Recovered:
    """What ``load()`` returns for a log that was never compacted."""
    return Recovered(hard_state, None, entries)


def hard_state_and_log(recovered: Recovered) -> tuple[HardState, list[Entry]]:
    assert recovered.snapshot is None, recovered.snapshot
    return recovered.hard_state, recovered.entries
