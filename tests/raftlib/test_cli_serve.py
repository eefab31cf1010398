"""`raftlib serve`: bad arguments and unusable data directories get one line; SIGTERM stops it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raftlib.supervisor import free_ports


def serve(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raftlib.cli", "serve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--id", "1", "--peers", "1=127.0.0.1", "--data", "d"], "not ID=HOST:PORT"),
        (["--id", "1", "--peers", "x=127.0.0.1:1", "--data", "d"], "integer ID"),
        (["--id", "1", "--peers", "1=127.0.0.1:70000", "--data", "d"], "1..65535"),
        (["--id", "1", "--peers", "1=h:1,1=h:2", "--data", "d"], "appears twice"),
        (["--id", "4", "--peers", "1=127.0.0.1:7001", "--data", "d"], "--id 4 is not among"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001"], "--data"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--tick-ms", "0"], "tick"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--bogus"], "--bogus"),
        # Core settings: the flag, what is wrong and the value (CoreConfig's own validator).
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--append-entries-max", "0"], "--append-entries-max: must be an integer >= 1, got 0"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--heartbeat-interval-ticks", "10"], "--heartbeat-interval-ticks: must be <"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--snapshot-state-ratio", "-1"], "--snapshot-state-ratio: must be a number in 0..100"),
        (["--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d", "--insecure",
          "--snapshot-state-ratio", "nan"], "--snapshot-state-ratio: must be a number"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args: list[str], needle: str) -> None:
    done = serve(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert needle in lines[0]


def test_data_directory_that_is_a_file_gets_one_line(tmp_path: Path) -> None:
    data = tmp_path / "not-a-dir"
    data.write_text("x")
    (port,) = free_ports(1)
    done = serve("--id", "1", "--peers", f"1=127.0.0.1:{port}", "--data", str(data),
                 "--insecure")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(data) in lines[0]


def test_sigterm_stops_the_node_cleanly(tmp_path: Path) -> None:
    ports = free_ports(3)
    peers = ",".join(f"{i + 1}=127.0.0.1:{p}" for i, p in enumerate(ports))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "raftlib.cli",
            "serve",
            "--id",
            "1",
            "--peers",
            peers,
            "--data",
            str(tmp_path / "d1"),
            "--insecure",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "d1").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping on SIGTERM" in err
    assert "Traceback" not in err


def _log_without_hard_state(data: Path) -> None:
    from raftlib.core.types import Entry, HardState
    from raftlib.storage.wal import WalStorage

    with WalStorage(data) as storage:
        storage.append([Entry(3, 1, b"a"), Entry(3, 2, b"b")])
        storage.set_hard_state(HardState(3, 2, 2))
        storage.sync()
    (data / "hardstate").unlink()


def test_a_log_without_its_hard_state_is_refused_in_one_line(tmp_path: Path) -> None:
    """A deleted hard state would restart the node at term 0 with no vote: it could vote a
    second time in term 3. The node refuses, naming the file, unless told otherwise."""
    data = tmp_path / "data"
    _log_without_hard_state(data)
    (port,) = free_ports(1)
    done = serve("--id", "1", "--peers", f"1=127.0.0.1:{port}", "--data", str(data),
                 "--insecure")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "hardstate" in lines[0] and "vote twice" in lines[0]


def test_the_operator_may_start_a_node_whose_hard_state_is_gone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _log_without_hard_state(data)
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftlib.cli", "serve", "--id", "1", "--peers",
         f"1=127.0.0.1:{port}", "--data", str(data), "--insecure",
         "--allow-missing-hard-state"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        assert proc.stderr is not None
        line = ""
        while time.monotonic() < deadline and "serving" not in line:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "the node exited"
        assert "serving" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_a_serving_process_freezes_its_start_up_objects_and_collects_young_ones_less_often(
) -> None:
    # In a child: the tuning is for the whole process, and this one is pytest's.
    code = (
        "import gc\n"
        "from raftlib.cli import GC_YOUNG_THRESHOLD_ALLOCATIONS, _tune_gc_for_serving\n"
        "before = gc.get_threshold()\n"
        "_tune_gc_for_serving()\n"
        "after = gc.get_threshold()\n"
        "assert gc.get_freeze_count() > 1000, gc.get_freeze_count()\n"
        "assert after == (GC_YOUNG_THRESHOLD_ALLOCATIONS, *before[1:]), (before, after)\n"
        "assert after[0] > before[0]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("flags", "threaded"), [([], True), (["--sync-on-loop"], False)])
def test_sync_on_loop_moves_the_storage_syncs_onto_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    flags: list[str], threaded: bool,
) -> None:
    """``--sync-on-loop`` reaches the node as ``NodeConfig.storage_thread=False`` (the syncs run
    on the loop, as Redis's appendfsync always does); without it the node keeps its sync
    thread. The node is not started: the configuration it would get is taken instead."""
    import contextlib

    from raftlib import cli
    from raftlib.errors import ConfigError
    from raftlib.node import NodeConfig

    seen: list[NodeConfig] = []

    @contextlib.asynccontextmanager
    async def taken(config: NodeConfig, **_: object):  # type: ignore[no-untyped-def]
        seen.append(config)
        raise ConfigError("configuration taken")
        yield

    monkeypatch.setattr(cli, "open_node", taken)
    status = cli.main(["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--insecure",
                       "--data", str(tmp_path / "d"), *flags])
    assert status == 2 and "configuration taken" in capsys.readouterr().err
    assert [config.storage_thread for config in seen] == [threaded]


def test_cluster_passes_sync_on_loop_to_every_node() -> None:
    from raftlib.cli import cluster_node_argv

    def argv(sync_on_loop: bool) -> list[str]:
        return cluster_node_argv(2, nodes=3, data_dir=Path("d"), base_port=7001,
                                 client_base_port=6379, tick_ms=25.0, sync_on_loop=sync_on_loop)

    assert "--sync-on-loop" in argv(True) and "--sync-on-loop" not in argv(False)
