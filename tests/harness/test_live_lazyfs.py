"""The live disk fault's file layer: unsynced writes stay in the node process until fsync, so a
kill loses them; what a kill leaves is a state of CrashFS's persistence model."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.live import lazyfs
from harness.live.lazyfs import LazyFS
from raftlib.storage.fs import CrashFS

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")

# (kind, offset or size, length) of one operation on one file
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.integers(0, 40), st.integers(1, 12)),
        st.tuples(st.just("truncate"), st.integers(0, 40), st.just(0)),
        st.tuples(st.just("fsync"), st.just(0), st.just(0)),
    ),
    max_size=12,
)


def _replay(fs: LazyFS | CrashFS, path: str, ops: list[tuple[str, int, int]]) -> int:
    fd = fs.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    for number, (kind, at, length) in enumerate(ops):
        if kind == "write":
            fs.pwrite(fd, bytes([65 + number % 26]) * length, at)
        elif kind == "truncate":
            fs.ftruncate(fd, at)
        else:
            fs.fsync(fd)
    return fd


@given(_OPS)
def test_reads_see_unsynced_writes_and_a_power_loss_leaves_a_state_crashfs_allows(
    ops: list[tuple[str, int, int]],
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(scratch, "f")
        lazy, model = LazyFS(), CrashFS()
        model.makedirs(scratch)
        fd, model_fd = _replay(lazy, path, ops), _replay(model, path, ops)
        seen = lazy.pread(fd, 1000, 0)
        assert seen == model.pread(model_fd, 1000, 0) == lazy.read_file(path)
        assert lazy.size(fd) == len(seen)
        # A power loss: the process and its unsynced operations are gone; the OS keeps the rest.
        on_disk = Path(path).read_bytes()
        allowed = {dict(state.image()).get(path) for state in model.crash_states()}
        assert on_disk in allowed
        if not lazy.pending()[1]:
            assert on_disk == seen  # nothing pending: the OS holds what the process reads
        lazy.crash_process()
        assert Path(path).read_bytes() == seen  # a process crash keeps everything
        os.close(fd)


def test_the_torn_variant_keeps_only_a_prefix_of_the_newest_unsynced_write(
    tmp_path: Path,
) -> None:
    lazy = LazyFS()
    path = str(tmp_path / "wal")
    fd = lazy.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    lazy.write(fd, b"synced.")
    lazy.fsync(fd)
    lazy.write(fd, b"lost.")
    lazy.write(fd, b"torn-write")

    class _Cut(random.Random):
        def randint(self, a: int, b: int) -> int:
            return 4

    assert "kept 4 of 10" in lazy.keep_torn_last(_Cut())
    # The earlier unsynced write is lost: the gap before the torn write reads as zeros.
    assert Path(path).read_bytes() == b"synced." + bytes(5) + b"torn"


def test_pending_data_past_the_bound_is_written_back_unsynced(tmp_path: Path) -> None:
    lazy = LazyFS(pending_bytes_max=10)
    fd = lazy.open(str(tmp_path / "f"), os.O_WRONLY | os.O_CREAT)
    lazy.write(fd, b"12345")
    assert (tmp_path / "f").read_bytes() == b""
    lazy.write(fd, b"678901")
    assert (tmp_path / "f").read_bytes() == b"12345678901"
    assert lazy.writebacks == 1 and lazy.pending() == (0, 0, 0)


def test_truncation_at_open_is_pending_until_fsync_too(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old contents")
    lazy = LazyFS()
    fd = lazy.open(str(tmp_path / "f"), os.O_WRONLY | os.O_TRUNC)
    lazy.write(fd, b"new")
    assert lazy.read_file(str(tmp_path / "f")) == b"new"
    assert (tmp_path / "f").read_bytes() == b"old contents"
    lazy.fsync(fd)
    assert (tmp_path / "f").read_bytes() == b"new"


def test_a_renamed_file_keeps_its_pending_data_and_an_unlinked_one_drops_it(
    tmp_path: Path,
) -> None:
    lazy = LazyFS()
    fd = lazy.open(str(tmp_path / "a.tmp"), os.O_WRONLY | os.O_CREAT)
    lazy.write(fd, b"state")
    lazy.close(fd)
    lazy.replace(str(tmp_path / "a.tmp"), str(tmp_path / "a"))
    assert lazy.read_file(str(tmp_path / "a")) == b"state"
    assert (tmp_path / "a").read_bytes() == b""  # never synced: a rename does not sync data
    lazy.unlink(str(tmp_path / "a"))
    assert lazy.pending() == (0, 0, 0)


_NODE = (
    "import os, sys, time\n"
    "from raftlib.storage.fs import default_file_system\n"
    "fs = default_file_system()\n"
    "fd = fs.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)\n"
    "fs.write(fd, b'synced;')\n"
    "fs.fsync(fd)\n"
    "fs.write(fd, b'unsynced')\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _node_killed_by(tmp_path: Path, signum: int) -> tuple[int, bytes, str]:
    (tmp_path / "node.py").write_text(_NODE)
    data = tmp_path / "data"
    with subprocess.Popen(
        [sys.executable, "-m", "harness.live.lazyfs", "node", str(data)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={"PYTHONPATH": f"{tmp_path}:{Path.cwd()}", "PATH": ""},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signum)
        try:
            _, stderr = proc.communicate(timeout=20)
        finally:
            proc.kill()
    return proc.returncode, data.read_bytes(), stderr.decode()


@pytest.mark.parametrize(("signum", "left", "said"), [
    (signal.SIGKILL, b"synced;", ""),
    (lazyfs.POWER_LOSS_SIGNAL, b"synced;", "power loss: 1 unsynced operations (8 bytes"),
    (lazyfs.PROCESS_CRASH_SIGNAL, b"synced;unsynced", "process crash: 1 unsynced"),
])
def test_a_killed_node_loses_its_unsynced_writes_unless_it_is_a_process_crash(
    tmp_path: Path, signum: int, left: bytes, said: str,
) -> None:
    started = time.monotonic()
    status, on_disk, stderr = _node_killed_by(tmp_path, signum)
    assert status == -signal.SIGKILL
    assert on_disk == left
    assert said in stderr
    assert time.monotonic() - started < 20


def test_the_wrapper_without_a_module_prints_its_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "harness.live.lazyfs"], capture_output=True,
                          text=True, timeout=30, check=False)
    assert done.returncode == 2 and done.stderr.strip() == lazyfs.USAGE
