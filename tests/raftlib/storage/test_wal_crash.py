"""No acknowledged entry is lost when a real process writing the WAL is SIGKILLed."""

from __future__ import annotations

import hashlib
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from raftlib.core.types import Entry
from raftlib.storage import WalStorage
from tests.raftlib.storage.storage_testing import entry_data, hard_state_and_log

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
SEED = int(os.environ.get("WAL_CRASH_SEED", "1729"))
KILLS = 4
ACKS_BEFORE_KILL_MAX = 25
STARTUP_SECONDS_MAX = 20.0


def spawn_child(directory: Path, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "wal_crash_child.py"), str(directory), str(seed), "32768"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def read_acks_then_kill(child: subprocess.Popen[bytes], rng: random.Random) -> list[str]:
    """Read acknowledgements until a random count (or a random short delay after the first),
    then SIGKILL the child mid-write; return every complete line it printed."""
    assert child.stdout is not None
    wanted = rng.randint(1, ACKS_BEFORE_KILL_MAX)
    buffer = b""
    deadline = time.monotonic() + STARTUP_SECONDS_MAX
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while buffer.count(b"\n") < wanted and time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                chunk = os.read(child.stdout.fileno(), 65536)
                if not chunk:
                    break
                buffer += chunk
    time.sleep(rng.uniform(0, 0.005))  # land the kill at an arbitrary point of the next batch
    child.send_signal(signal.SIGKILL)
    rest, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, f"child ended on its own: {stderr.decode()}"
    buffer += rest
    return [line for line in buffer.decode().split("\n")[:-1]]


def verify(directory: Path, acks: list[str], context: str) -> int:
    last, term, digest_hex = acks[-1].split()
    with WalStorage(directory) as wal:
        _hard_state, log = hard_state_and_log(wal.load())
    assert len(log) >= int(last), f"{context}: acknowledged {last}, recovered {len(log)}"
    acked: list[Entry] = log[: int(last)]
    assert acked[-1].term == int(term), context
    digest = hashlib.sha256()
    for e in log:
        assert e.data == entry_data(e.index, e.term, len(e.data)), f"{context}: entry {e.index}"
    for e in acked:
        digest.update(f"{e.index}:{e.term}:{len(e.data)}:".encode() + e.data)
    assert digest.hexdigest() == digest_hex, f"{context}: acknowledged entries changed"
    return len(log)


def test_sigkill_never_loses_an_acknowledged_entry(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "data"
    all_acks: list[str] = []
    for kill in range(KILLS):
        context = f"kill {kill}; reproduce with WAL_CRASH_SEED={SEED}"
        child = spawn_child(directory, rng.randrange(2**32))
        acks = read_acks_then_kill(child, rng)
        all_acks.extend(acks)
        assert all_acks, f"{context}: the child never acknowledged anything"
        verify(directory, all_acks, context)
    segments = [p for p in directory.iterdir() if p.name.startswith("wal-")]
    assert len(segments) > 1  # the kills landed across segment rollovers too
