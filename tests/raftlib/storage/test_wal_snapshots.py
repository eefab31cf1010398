"""WalStorage snapshot files and compaction on real files: the format, atomic replacement,
which segments are deleted and when, refusal of damaged or missing snapshots, a restart
that reads only the tail, and the refusal to start without a hard state."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest
from crc32c import crc32c

from raftlib.core.types import ConfState, HardState, SnapshotMeta
from raftlib.errors import CorruptSnapshot, MissingHardState
from raftlib.storage import WalStorage
from raftlib.storage import _format as fmt
from raftlib.storage.fs import OS_FS, OsFileSystem
from tests.raftlib.storage.storage_testing import flip_bit, make_entries, segment_paths

SEGMENT_BYTES = 512  # about ten 20-byte entries per segment


def meta(index: int, term: int = 1) -> SnapshotMeta:
    return SnapshotMeta(index=index, term=term, conf=ConfState(voters=(1, 2, 3)))


def snapshot_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.startswith("snapshot-"))


def write_snapshot(wal: WalStorage, m: SnapshotMeta, payload: bytes) -> None:
    writer = wal.create_snapshot(m)
    writer.write(payload)
    writer.commit()


def build(directory: Path, count: int = 100, commit: int = 90) -> WalStorage:
    wal = WalStorage(directory, segment_bytes_max=SEGMENT_BYTES)
    wal.load()
    wal.set_hard_state(HardState(term=1, vote=1))
    wal.append(make_entries(1, count))
    wal.set_hard_state(HardState(term=1, vote=1, commit=commit))
    wal.sync()
    return wal


def test_snapshot_file_is_header_meta_payload_and_crc(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(50), b"payload bytes")
    [path] = snapshot_paths(tmp_path)
    assert path.name == "snapshot-00000000000000000050.snap"
    data = path.read_bytes()
    magic, version, meta_length, payload_length = fmt.SNAPSHOT_FIXED.unpack_from(data, 0)
    assert (magic, version, payload_length) == (b"RAFTSNP\x00", 1, 13)
    end = fmt.SNAPSHOT_FIXED.size + meta_length
    decoded = msgspec.msgpack.decode(data[fmt.SNAPSHOT_FIXED.size : end], type=SnapshotMeta)
    assert decoded == meta(50)
    assert int.from_bytes(data[end : end + 4], "little") == crc32c(data[:end])
    assert data[end + 4 : end + 4 + 13] == b"payload bytes"
    assert int.from_bytes(data[-4:], "little") == crc32c(b"payload bytes")


def test_compaction_deletes_only_segments_wholly_at_or_below_the_index(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        before = [int(p.name[4:24]) for p in segment_paths(tmp_path)]
        write_snapshot(wal, meta(50), b"x")
        wal.compact(50)
        after = [int(p.name[4:24]) for p in segment_paths(tmp_path)]
    straddling = max(first for first in before if first <= 51)
    assert after == [first for first in before if first >= straddling]
    assert after[0] <= 51  # the segment holding entry 51 stays


def test_compaction_rolls_over_so_the_next_one_can_delete_the_active_segment(
    tmp_path: Path,
) -> None:
    with build(tmp_path, count=100, commit=100) as wal:
        write_snapshot(wal, meta(100), b"x")
        wal.compact(100)
        # The old active segment (entries up to 100) stays until a snapshot covers the new one.
        assert [p.name for p in segment_paths(tmp_path)][-1] == fmt.segment_name(101)
        wal.append(make_entries(101, 2))
        wal.set_hard_state(HardState(term=1, vote=1, commit=102))
        wal.sync()
        write_snapshot(wal, meta(101), b"y")
        wal.compact(101)
        assert next(p.name for p in segment_paths(tmp_path)) == fmt.segment_name(101)
    with WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as wal:
        recovered = wal.load()
    assert (recovered.snapshot, recovered.entries) == (meta(101), make_entries(102, 1))


def test_a_new_snapshot_replaces_the_old_file_and_a_leftover_temp_is_removed(
    tmp_path: Path,
) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(20), b"old")
        write_snapshot(wal, meta(40), b"new")
        unfinished = wal.create_snapshot(meta(60))
        unfinished.write(b"never committed")
        wal.abandon()  # the process dies mid-snapshot
    assert [p.name for p in snapshot_paths(tmp_path)] == [
        fmt.snapshot_name(40),
        fmt.snapshot_tmp_name(60, 3),
    ]
    with WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES) as wal:
        assert wal.load().snapshot == meta(40)
    assert [p.name for p in snapshot_paths(tmp_path)] == [fmt.snapshot_name(40)]


def test_open_reader_survives_replacement_by_a_newer_snapshot(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(20), b"twenty's state")
        reader = wal.open_snapshot()
        assert reader is not None
        write_snapshot(wal, meta(40), b"forty")
        assert reader.read(100) == b"twenty's state"
        reader.close()


@pytest.mark.parametrize("where", ["payload", "meta", "trailer"])
def test_damaged_snapshot_is_refused_in_one_line_naming_the_file(
    tmp_path: Path, where: str
) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(50), b"some payload")
        wal.compact(50)
    [path] = snapshot_paths(tmp_path)
    size = path.stat().st_size
    offset = {"payload": size - 8, "meta": fmt.SNAPSHOT_FIXED.size + 1, "trailer": size - 1}
    flip_bit(path, offset[where])
    with pytest.raises(CorruptSnapshot) as caught:
        WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    message = str(caught.value)
    assert message.startswith(f"{path}: bad snapshot: ") and "\n" not in message


def test_truncated_snapshot_is_refused(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(50), b"some payload")
    [path] = snapshot_paths(tmp_path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptSnapshot, match="header says"):
        WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)


def test_missing_snapshot_that_the_compacted_log_needs_is_refused(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(50), b"x")
        wal.compact(50)
    first = int(segment_paths(tmp_path)[0].name[4:24])
    [path] = snapshot_paths(tmp_path)
    path.unlink()
    with pytest.raises(CorruptSnapshot, match="missing") as caught:
        WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    assert caught.value.path == str(tmp_path / fmt.snapshot_name(first - 1))
    assert "\n" not in str(caught.value)


def test_reader_reports_a_payload_changed_under_it(tmp_path: Path) -> None:
    with build(tmp_path) as wal:
        write_snapshot(wal, meta(50), b"0123456789")
        reader = wal.open_snapshot()
        assert reader is not None
        [path] = snapshot_paths(tmp_path)
        flip_bit(path, path.stat().st_size - 6)
        assert reader.read(4) == b"0123"
        with pytest.raises(CorruptSnapshot, match="checksum"):
            reader.read(100)
        reader.close()


class CountingFS(OsFileSystem):
    """The real file system, counting which segment files are read whole."""

    def __init__(self) -> None:
        self.read_paths: list[str] = []

    def read_file(self, path: str) -> bytes:
        self.read_paths.append(Path(path).name)
        return super().read_file(path)


def test_restart_reads_only_the_segments_after_the_snapshot(tmp_path: Path) -> None:
    with build(tmp_path, count=200, commit=190) as wal:
        write_snapshot(wal, meta(180), b"x")
        doomed = segment_paths(tmp_path)
        keep = tmp_path.parent / "keep"
        keep.mkdir()
        for p in doomed:
            shutil.copy(p, keep / p.name)
        wal.compact(180)
        live = {p.name for p in segment_paths(tmp_path)}
    # A crash undid some deletions (no directory fsync on compaction): put them back.
    for p in keep.iterdir():
        if p.name not in live:
            shutil.copy(p, tmp_path / p.name)
    counting = CountingFS()
    with WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES, fs=counting) as wal:
        assert wal.load().entries == make_entries(181, 20)
    read_segments = {name for name in counting.read_paths if name.startswith("wal-")}
    assert read_segments == live  # the covered history was never read...
    assert {p.name for p in segment_paths(tmp_path)} == live  # ...and is deleted again


def test_deleted_hard_state_with_entries_is_refused_unless_allowed(tmp_path: Path) -> None:
    build(tmp_path).close()
    (tmp_path / "hardstate").unlink()
    with pytest.raises(MissingHardState) as caught:
        WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)
    assert str(caught.value).startswith(f"{tmp_path / 'hardstate'}: hard state file is missing")
    assert "\n" not in str(caught.value)
    with WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES, allow_missing_hard_state=True) as w:
        recovered = w.load()
    assert recovered.hard_state == HardState()  # term, vote and commit went with the file
    assert len(recovered.entries) == 100
    # Allowed once, recorded: the next open needs no flag.
    WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES).close()


def test_deleted_hard_state_with_only_a_snapshot_is_refused(tmp_path: Path) -> None:
    with build(tmp_path, count=10, commit=10) as wal:
        write_snapshot(wal, meta(10), b"x")
        wal.compact(10)
    (tmp_path / "hardstate").unlink()
    with pytest.raises(MissingHardState):
        WalStorage(tmp_path, segment_bytes_max=SEGMENT_BYTES)


def test_a_new_directory_has_its_hard_state_file_before_any_segment(tmp_path: Path) -> None:
    WalStorage(tmp_path / "fresh").close()
    assert fmt.decode_hard_state((tmp_path / "fresh" / "hardstate").read_bytes()) == HardState()
    WalStorage(tmp_path / "fresh").close()  # and reopening it is not a missing hard state


def test_os_fs_is_the_default(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        assert wal._fs is OS_FS
