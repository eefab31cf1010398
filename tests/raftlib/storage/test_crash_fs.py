"""CrashFS keeps exactly what its persistence model promises: flushed data, names whose
directory was flushed; unflushed writes may be lost, torn or survive out of order."""

from __future__ import annotations

import copy
import os
import random

import pytest

from raftlib.storage.fs import CrashFS

W = os.O_WRONLY | os.O_CREAT | os.O_APPEND


def images(fs: CrashFS) -> set[tuple[tuple[str, bytes | None], ...]]:
    return {state.image() for state in fs.crash_states()}


def file_contents(fs: CrashFS, path: str) -> set[bytes | None]:
    return {dict(image).get(path) for image in images(fs)}


def new_fs_with_durable_dir() -> tuple[CrashFS, int]:
    fs = CrashFS()
    fs.makedirs("/d")
    root = fs.open("/", os.O_RDONLY | os.O_DIRECTORY)
    fs.fsync(root)
    return fs, fs.open("/d", os.O_RDONLY | os.O_DIRECTORY)


def test_unflushed_write_may_be_lost_torn_or_kept_and_a_process_crash_keeps_it() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.fsync(dir_fd)
    fs.write(fd, b"abcdef")
    assert file_contents(fs, "/d/f") == {b"", b"a", b"abc", b"abcde", b"abcdef"}
    fs.crash(random.Random(0), "process")
    assert fs.read_file("/d/f") == b"abcdef"


def test_flushed_data_survives_every_power_loss() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.fsync(dir_fd)
    fs.write(fd, b"abc")
    fs.fdatasync(fd)
    assert file_contents(fs, "/d/f") == {b"abc"}


def test_a_flushed_file_whose_name_was_not_flushed_may_vanish() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.write(fd, b"abc")
    fs.fsync(fd)
    assert file_contents(fs, "/d/f") == {None, b"abc"}
    fs.fsync(dir_fd)
    assert file_contents(fs, "/d/f") == {b"abc"}


def test_a_later_write_may_survive_an_earlier_lost_one_as_a_hole() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.fsync(dir_fd)
    fs.write(fd, b"AA")
    fs.write(fd, b"BB")
    assert b"\x00\x00BB" in file_contents(fs, "/d/f")


def test_rename_is_atomic_and_ordered_with_other_directory_operations() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    old = fs.open("/d/x", W)
    fs.write(old, b"old")
    fs.fsync(old)
    fs.fsync(dir_fd)
    new = fs.open("/d/x.tmp", W)
    fs.write(new, b"new")
    fs.fsync(new)
    fs.replace("/d/x.tmp", "/d/x")
    seen = {(dict(i).get("/d/x"), dict(i).get("/d/x.tmp")) for i in images(fs)}
    # before the create, after the create, after the rename: never a mix, never no x.
    assert seen == {(b"old", None), (b"old", b"new"), (b"new", None)}


def test_unlink_is_lost_unless_the_directory_is_flushed() -> None:
    fs, dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.fsync(dir_fd)
    fs.close(fd)
    fs.unlink("/d/f")
    assert file_contents(fs, "/d/f") == {None, b""}
    fs.fsync(dir_fd)
    assert file_contents(fs, "/d/f") == {None}


def test_a_new_directory_needs_its_parent_flushed() -> None:
    fs = CrashFS()
    fs.makedirs("/a/b")
    assert any(dict(i).get("/a/b", "absent") == "absent" for i in images(fs))


def test_power_loss_draw_is_deterministic_given_the_rng() -> None:
    def run(seed: int) -> tuple[tuple[str, bytes | None], ...]:
        fs, _dir_fd = new_fs_with_durable_dir()
        for n in range(5):
            fd = fs.open(f"/d/f{n}", W)
            fs.write(fd, bytes([n]) * 10)
            fs.write(fd, b"more")
        fs.crash(random.Random(seed), "power")
        return fs.image()

    assert run(7) == run(7)
    assert len({run(seed) for seed in range(20)}) > 1


def test_injected_failure_raises_eio_without_effect() -> None:
    fs, _dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.fail_next("fdatasync")
    with pytest.raises(OSError) as caught:
        fs.fdatasync(fd)
    assert caught.value.errno == 5
    fs.fdatasync(fd)


def test_closed_descriptors_and_crashes_invalidate_descriptors() -> None:
    fs, _dir_fd = new_fs_with_durable_dir()
    fd = fs.open("/d/f", W)
    fs.crash(random.Random(0), "power")
    with pytest.raises(OSError):
        fs.write(fd, b"x")


def test_wal_storage_over_crashfs_does_not_block_and_survives_a_drawn_power_loss() -> None:
    from raftlib.core.types import HardState
    from raftlib.storage import WalStorage
    from tests.raftlib.storage.storage_testing import make_entries

    fs = CrashFS()
    wal = WalStorage("/node1", fs=fs, segment_bytes_max=512)
    assert wal.blocking is False
    wal.load()
    wal.set_hard_state(HardState(term=1, vote=1))
    wal.append(make_entries(1, 30))
    wal.sync()
    wal.append(make_entries(31, 5))  # unsynced: may go
    for seed in range(20):
        crashed = copy.deepcopy(fs)
        crashed.crash(random.Random(seed), "power")
        recovered = WalStorage("/node1", fs=crashed, segment_bytes_max=512).load()
        assert recovered.entries[:30] == make_entries(1, 30), f"seed={seed}"
        assert recovered.hard_state.term == 1
