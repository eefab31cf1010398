"""WalStorage on real files: segments, group commit, atomic hard state, recovery, locking."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftlib.core.types import HardState
from raftlib.errors import ConfigError, CorruptLog, CorruptSnapshot, StorageError
from raftlib.storage import WalStorage
from raftlib.storage import _format as fmt
from tests.raftlib.storage.storage_testing import (
    cut_file,
    flip_bit,
    make_entries,
    no_snapshot,
    record_offsets,
    segment_paths,
)

REPO = Path(__file__).resolve().parents[3]


def write_log(directory: Path, count: int, *, segment_bytes_max: int = 1 << 20) -> None:
    with WalStorage(directory, segment_bytes_max=segment_bytes_max) as wal:
        wal.load()
        wal.append(make_entries(1, count))
        wal.set_hard_state(HardState(term=1, vote=1, commit=0))
        wal.sync()


def load(directory: Path, segment_bytes_max: int = 1 << 20) -> list[int]:
    with WalStorage(directory, segment_bytes_max=segment_bytes_max) as wal:
        return [e.index for e in wal.load().entries]


# --- segments and group commit -----------------------------------------------------------


def test_rollover_starts_segments_named_after_their_first_index(tmp_path: Path) -> None:
    entries = make_entries(1, 100, size=40)
    with WalStorage(tmp_path, segment_bytes_max=1024) as wal:
        wal.load()
        wal.append(entries)
        wal.sync()
        assert wal.statistics().segments == len(segment_paths(tmp_path))
    paths = segment_paths(tmp_path)
    assert len(paths) > 3
    expected_first = 1
    for path in paths:
        assert path.name == fmt.segment_name(expected_first)
        assert path.stat().st_size <= 1024
        expected_first += len(record_offsets(path))
    assert expected_first == 101
    with WalStorage(tmp_path, segment_bytes_max=1024) as wal:
        assert wal.load().entries == entries


def test_entry_larger_than_a_segment_gets_a_segment_of_its_own(tmp_path: Path) -> None:
    entries = make_entries(1, 2, size=10) + make_entries(3, 1, size=5000) + make_entries(4, 1)
    with WalStorage(tmp_path, segment_bytes_max=1024) as wal:
        wal.load()
        wal.append(entries)
        wal.sync()
    assert [p.name for p in segment_paths(tmp_path)] == [fmt.segment_name(i) for i in (1, 3, 4)]
    with WalStorage(tmp_path, segment_bytes_max=1024) as wal:
        assert wal.load().entries == entries


def test_a_batch_costs_one_write_and_one_fsync(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=1, vote=1))
        wal.sync()
        before = wal.statistics()
        for first in range(1, 641, 64):
            # The node driver's order: entries, then the hard state, then one sync.
            wal.append(make_entries(first, 64, size=100))
            wal.set_hard_state(HardState(term=1, vote=1, commit=first))
            wal.sync()
        after = wal.statistics()
    assert after.writes - before.writes == 10
    assert after.fsyncs - before.fsyncs == 10
    assert after.directory_fsyncs == before.directory_fsyncs
    assert after.hard_state_writes == before.hard_state_writes  # commit went into the log


def test_several_appends_then_one_sync_is_one_write_and_one_fsync(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        before = wal.statistics().fsyncs
        writes_before = wal.statistics().writes
        for first in range(1, 50, 7):
            wal.append(make_entries(first, 7))
        wal.sync()
        wal.sync()  # nothing new: no flush
        assert wal.statistics().fsyncs - before == 1
        assert wal.statistics().writes - writes_before == 1


def test_term_or_vote_change_rewrites_the_hard_state_file(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        before = wal.statistics()
        wal.set_hard_state(HardState(term=3, vote=2))
        wal.sync()
        stats = wal.statistics()
    assert stats.hard_state_writes - before.hard_state_writes == 1
    assert stats.directory_fsyncs - before.directory_fsyncs == 1  # the rename
    assert fmt.decode_hard_state((tmp_path / "hardstate").read_bytes()) == HardState(3, 2, 0)
    assert not (tmp_path / "hardstate.tmp").exists()


def test_fsync_false_never_flushes_but_round_trips(tmp_path: Path) -> None:
    with WalStorage(tmp_path, fsync=False) as wal:
        wal.load()
        wal.append(make_entries(1, 10))
        wal.set_hard_state(HardState(term=2, vote=1, commit=3))
        wal.sync()
        stats = wal.statistics()
    assert stats.fsyncs == 0 and stats.directory_fsyncs == 0
    with WalStorage(tmp_path) as wal:
        assert wal.load() == no_snapshot(HardState(2, 1, 3), make_entries(1, 10))


def test_appends_are_written_early_once_the_buffer_limit_is_reached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with WalStorage(tmp_path, write_buffer_bytes_max=1000) as wal:
        wal.load()
        wal.append(make_entries(1, 5, size=100))  # < 1000 bytes: stays buffered
        assert wal.statistics().writes == 0
        wal.append(make_entries(6, 5, size=100))
        assert wal.statistics().writes == 1
        wal.abandon()  # a crash now keeps what was written, loses what was buffered
    # Records are 126 bytes: the 8th crossed the limit and went out with the 7 before it.
    with WalStorage(tmp_path) as wal:
        assert wal.load().entries == make_entries(1, 8, size=100)


def test_unsynced_appends_reach_the_files_on_close(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.append(make_entries(1, 3))
    assert load(tmp_path) == [1, 2, 3]


def test_truncation_across_segments_deletes_later_segments(tmp_path: Path) -> None:
    with WalStorage(tmp_path, segment_bytes_max=512) as wal:
        wal.load()
        wal.append(make_entries(1, 60))
        wal.sync()
        segments_before = len(segment_paths(tmp_path))
        wal.append(make_entries(10, 2, term=2))
        wal.sync()
        assert wal.statistics().truncations == 1
    assert len(segment_paths(tmp_path)) < segments_before
    with WalStorage(tmp_path, segment_bytes_max=512) as wal:
        assert wal.load().entries == make_entries(1, 9) + make_entries(10, 2, term=2)


def test_truncation_keeps_the_logged_commit_index(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=1, vote=1))
        wal.sync()
        wal.append(make_entries(1, 10))
        wal.set_hard_state(HardState(term=1, vote=1, commit=5))
        wal.sync()
        wal.append(make_entries(6, 1, term=1))  # cuts 6..10, and the COMMIT record after them
        wal.sync()
    with WalStorage(tmp_path) as wal:
        assert wal.load().hard_state == HardState(term=1, vote=1, commit=5)


def test_second_load_reads_the_files_again(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        assert wal.load() == no_snapshot(HardState(), [])
        wal.append(make_entries(1, 4))
        wal.sync()
        assert wal.load().entries == make_entries(1, 4)


# --- hard state atomicity ---------------------------------------------------------------


def test_crash_before_rename_leaves_the_old_hard_state(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=2, vote=1))
        wal.sync()
    # What a crash between "write and fsync hardstate.tmp" and "rename" leaves behind.
    (tmp_path / "hardstate.tmp").write_bytes(fmt.encode_hard_state(HardState(9, 9, 0))[:17])
    with WalStorage(tmp_path) as wal:
        assert wal.load().hard_state == HardState(term=2, vote=1)
    assert not (tmp_path / "hardstate.tmp").exists()


def test_complete_but_unrenamed_tmp_file_is_not_adopted(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=2, vote=1))
        wal.sync()
    (tmp_path / "hardstate.tmp").write_bytes(fmt.encode_hard_state(HardState(9, 9, 0)))
    with WalStorage(tmp_path) as wal:
        assert wal.load().hard_state == HardState(term=2, vote=1)


def test_damaged_hard_state_file_is_refused(tmp_path: Path) -> None:
    with WalStorage(tmp_path) as wal:
        wal.load()
        wal.set_hard_state(HardState(term=2, vote=1))
        wal.sync()
    flip_bit(tmp_path / "hardstate", 20)
    with pytest.raises(CorruptLog, match="hardstate: corrupt record at offset 0"):
        WalStorage(tmp_path)


# --- recovery: torn tails -----------------------------------------------------------------


def test_torn_last_record_is_truncated_at_every_cut_offset(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "source"
    write_log(source, 12)
    [segment] = segment_paths(source)
    pristine = segment.read_bytes()
    last_record = record_offsets(segment)[-1]
    for cut in range(last_record, len(pristine)):
        segment.write_bytes(pristine[:cut])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="raftlib.storage"), WalStorage(source) as wal:
            assert wal.load().entries == make_entries(1, 11), f"cut at {cut}"
            # The node starts and the log continues where the torn record was.
            wal.append(make_entries(12, 1, term=2))
            wal.sync()
        assert segment.stat().st_size == len(pristine)
        torn_warnings = [r for r in caplog.records if "torn" in r.getMessage()]
        assert len(torn_warnings) == (1 if cut > last_record else 0), f"cut at {cut}"
        assert load(source) == list(range(1, 13))


@pytest.mark.parametrize("tail", [b"\x00" * 3000, bytes(range(256)) * 3], ids=["zeros", "junk"])
def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path: Path, tail: bytes) -> None:
    write_log(tmp_path, 5)
    [segment] = segment_paths(tmp_path)
    size = segment.stat().st_size
    with open(segment, "ab") as f:
        f.write(tail)
    assert load(tmp_path) == [1, 2, 3, 4, 5]
    assert segment.stat().st_size == size


def test_damaged_final_record_counts_as_torn(tmp_path: Path) -> None:
    # Documented limit: a damaged LAST record cannot be told from a torn write (nothing
    # intact follows it), so it is dropped with a warning, as etcd and others do.
    write_log(tmp_path, 5)
    [segment] = segment_paths(tmp_path)
    flip_bit(segment, record_offsets(segment)[-1] + 20)
    assert load(tmp_path) == [1, 2, 3, 4]


def test_segment_whose_creation_was_cut_short_is_removed(tmp_path: Path) -> None:
    write_log(tmp_path, 5)
    (tmp_path / fmt.segment_name(6)).write_bytes(fmt.encode_segment_header(6)[:7])
    with WalStorage(tmp_path) as wal:
        assert [e.index for e in wal.load().entries] == [1, 2, 3, 4, 5]
        wal.append(make_entries(6, 2))
        wal.sync()
    assert load(tmp_path) == list(range(1, 8))


# --- recovery: corruption is refused ------------------------------------------------------


def test_bit_flip_in_the_middle_of_the_log_is_refused_naming_file_and_offset(
    tmp_path: Path,
) -> None:
    write_log(tmp_path, 20)
    [segment] = segment_paths(tmp_path)
    pristine = segment.read_bytes()
    offsets = record_offsets(segment)
    victim_start, victim_end = offsets[9], offsets[10]
    # Every byte of a middle record (checksum, length, type, term, index, data) is covered.
    for position in range(victim_start, victim_end):
        segment.write_bytes(pristine)
        flip_bit(segment, position, bit=position % 8)
        with pytest.raises(CorruptLog) as caught:
            WalStorage(tmp_path)
        error = caught.value
        assert (error.path, error.offset) == (str(segment), victim_start), f"byte {position}"
        assert str(error).startswith(f"{segment}: corrupt record at offset {victim_start}:")
        assert "\n" not in str(error)
    segment.write_bytes(pristine)
    assert load(tmp_path) == list(range(1, 21))  # the refusal changed nothing on disk


def test_bit_flip_in_a_non_last_segment_is_refused_even_in_its_last_record(
    tmp_path: Path,
) -> None:
    write_log(tmp_path, 60, segment_bytes_max=512)
    first_segment = segment_paths(tmp_path)[0]
    last_record = record_offsets(first_segment)[-1]
    flip_bit(first_segment, last_record + 12)
    with pytest.raises(CorruptLog, match="not the last") as caught:
        WalStorage(tmp_path, segment_bytes_max=512)
    assert (caught.value.path, caught.value.offset) == (str(first_segment), last_record)


def test_truncated_non_last_segment_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, 60, segment_bytes_max=512)
    first_segment = segment_paths(tmp_path)[0]
    cut_file(first_segment, first_segment.stat().st_size - 3)
    with pytest.raises(CorruptLog, match="not the last"):
        WalStorage(tmp_path, segment_bytes_max=512)


def test_missing_middle_segment_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, 60, segment_bytes_max=512)
    paths = segment_paths(tmp_path)
    paths[1].unlink()
    with pytest.raises(CorruptLog, match="a segment is missing") as caught:
        WalStorage(tmp_path, segment_bytes_max=512)
    assert caught.value.path == str(paths[2])


def test_index_gap_inside_a_segment_is_refused(tmp_path: Path) -> None:
    entries = make_entries(1, 2) + make_entries(4, 2)
    records = b"".join(fmt.encode_entry(e) for e in entries)
    path = tmp_path / fmt.segment_name(1)
    path.write_bytes(fmt.encode_segment_header(1) + records)
    third_record = fmt.SEGMENT_HEADER.size + len(fmt.encode_entry(entries[0])) * 2
    with pytest.raises(CorruptLog, match="entry index 4 where 3 was expected") as caught:
        WalStorage(tmp_path)
    assert caught.value.offset == third_record


def test_log_not_starting_at_index_one_without_a_snapshot_is_refused(tmp_path: Path) -> None:
    path = tmp_path / fmt.segment_name(5)
    path.write_bytes(fmt.encode_segment_header(5) + fmt.encode_entry(make_entries(5, 1)[0]))
    with pytest.raises(CorruptSnapshot, match="needs a snapshot at index >= 4") as caught:
        WalStorage(tmp_path)
    assert "\n" not in str(caught.value) and fmt.snapshot_name(4) in caught.value.path


@pytest.mark.parametrize("position", [0, 9, 13, 20], ids=["magic", "version", "first", "crc"])
def test_damaged_segment_header_is_refused(tmp_path: Path, position: int) -> None:
    write_log(tmp_path, 3)
    [segment] = segment_paths(tmp_path)
    flip_bit(segment, position)
    with pytest.raises(CorruptLog) as caught:
        WalStorage(tmp_path)
    assert (caught.value.path, caught.value.offset) == (str(segment), 0)


def test_header_first_index_must_match_the_file_name(tmp_path: Path) -> None:
    (tmp_path / fmt.segment_name(1)).write_bytes(fmt.encode_segment_header(2))
    with pytest.raises(CorruptLog, match="file name says 1"):
        WalStorage(tmp_path)


def test_commit_index_beyond_the_log_is_refused(tmp_path: Path) -> None:
    write_log(tmp_path, 5)
    (tmp_path / "hardstate").write_bytes(fmt.encode_hard_state(HardState(1, 1, 9)))
    with pytest.raises(StorageError, match="commit index 9 is beyond the last log index 5"):
        WalStorage(tmp_path)


# --- the directory ----------------------------------------------------------------------


def test_second_opener_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    with WalStorage(tmp_path):
        with pytest.raises(StorageError, match="already in use") as caught:
            WalStorage(tmp_path)
        assert str(caught.value).startswith(f"{tmp_path}: ")
        assert f"pid {os.getpid()}" in str(caught.value)
    WalStorage(tmp_path).close()  # released on close


def test_another_process_cannot_open_a_locked_directory(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from raftlib.storage import WalStorage\n"
        "from raftlib.errors import StorageError\n"
        "try:\n"
        "    WalStorage(sys.argv[1])\n"
        "except StorageError as e:\n"
        "    print(e); sys.exit(3)\n"
    )
    with WalStorage(tmp_path):
        child = subprocess.run(
            [sys.executable, "-c", script, str(tmp_path)],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert child.returncode == 3, child.stderr
    assert "already in use" in child.stdout


def test_data_directory_that_is_a_file_gets_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "data"
    path.write_text("not a directory")
    with pytest.raises(StorageError) as caught:
        WalStorage(path)
    assert str(caught.value) == f"{path}: data directory path exists and is not a directory"


def test_data_directory_below_a_file_gets_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    path = tmp_path / "file" / "data"
    with pytest.raises(StorageError, match="cannot create data directory") as caught:
        WalStorage(path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_data_directory_gets_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "ro"
    path.mkdir(mode=0o500)
    try:
        with pytest.raises(StorageError, match="not writable"):
            WalStorage(path)
    finally:
        path.chmod(0o700)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_data_directory_where_nothing_can_be_written_gets_a_one_line_error() -> None:
    # /proc/self refuses new files even to root, so this runs where chmod cannot help.
    with pytest.raises(StorageError) as caught:
        WalStorage("/proc/self")
    message = str(caught.value)
    assert message.startswith("/proc/self") and "\n" not in message
    assert "not writable" in message or "cannot create lock file" in message


def test_missing_data_directory_is_created(tmp_path: Path) -> None:
    with WalStorage(tmp_path / "a" / "b") as wal:
        assert wal.load() == no_snapshot(HardState(), [])
    assert (tmp_path / "a" / "b" / "LOCK").exists()


@pytest.mark.parametrize("value", [0, 255, True, 1.5])
def test_segment_size_limit_is_validated(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="segment_bytes_max"):
        WalStorage(tmp_path, segment_bytes_max=value)  # type: ignore[arg-type]


def test_failed_write_stops_the_storage_until_reopened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = WalStorage(tmp_path)
    wal.load()
    wal.append(make_entries(1, 3))
    wal.sync()

    def no_space(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    wal.append(make_entries(4, 1))
    with monkeypatch.context() as m:
        m.setattr(os, "write", no_space)
        with pytest.raises(StorageError, match="No space left on device"):
            wal.sync()
    with pytest.raises(StorageError, match="failed earlier"):
        wal.sync()
    wal.close()
    assert load(tmp_path) == [1, 2, 3]
