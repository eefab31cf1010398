"""Campaign seeds as Dask tasks on the workers of a running Dask cluster.

``raft-harness campaign --scheduler tcp://HOST:PORT`` hands each seed to whatever workers that
scheduler has (``dask scheduler`` and ``dask worker`` processes started by the user, or a
deployment they already run; the workers need this package installed, with the same version).
Everything else about the campaign is as with local processes: one ``SeedOutcome`` per seed, one
campaign index, the run directories under the campaign's ``OUT/seed-N``.

A task is idempotent, so Dask may run it more than once: a worker that dies mid-run has its
seed run again elsewhere (the scheduler reschedules the tasks of a lost worker, up to its
``allowed-failures``), and a rerun of a simulated seed produces the same run. The task writes
the run into a temporary directory on its worker, packs it into a gzipped tar, and returns the
archive with the outcome; this process unpacks each archive into ``OUT/seed-N``, replacing
whatever an earlier attempt left, only once the task has finished. The outcome and the
reproduction command name ``OUT/seed-N`` (never the worker's temporary directory), so the
failing seed's command works on any machine with the harness installed.

Zoo bugs are patched into the library for the length of a run, process-wide, so a worker
process runs one seed at a time (``_ONE_SEED_AT_A_TIME``): give workers one thread each and
start as many worker processes as there are cores (``dask worker --nworkers N --nthreads 1``).

``distributed`` is an optional dependency (the ``dask`` extra), imported only here and only when
a campaign uses a scheduler.
"""

from __future__ import annotations

import html
import io
import json
import re
import shutil
import tarfile
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.campaign import SeedExecutor, SeedJob, run_seed
from harness.outcomes import SeedOutcome

# Times a task that raised is retried (a worker's lost disk, a transient import error); a
# worker that died is a separate budget, the scheduler's ``allowed-failures``.
TASK_RETRIES_MAX = 2
# Seconds to wait for the scheduler to answer when the campaign starts.
CONNECT_TIMEOUT_SECONDS = 30.0
# Largest run directory archive a task may send back (bytes, gzipped).
ARCHIVE_BYTES_MAX = 256 << 20
ADDRESS_PATTERN = re.compile(r"(tcp|tls)://[^\s/:]+:\d{1,5}\Z")
EXTRA_HINT = "install the dask extra: pip install 'raft-toolkit[dask]'"

_ONE_SEED_AT_A_TIME = threading.Lock()


class DaskCampaignError(Exception):
    """The Dask cluster cannot run the campaign (one line naming what)."""


def check_address(address: str) -> str:
    if not ADDRESS_PATTERN.match(address):
        raise DaskCampaignError(f"--scheduler: expected tcp://HOST:PORT (or tls://), "
                                f"got {address!r}")
    return address


def run_seed_archived(job: SeedJob) -> tuple[SeedOutcome, bytes]:
    """The task: run one seed in a fresh temporary directory, return its outcome and the run
    directory as a gzipped tar (paths inside relative to the run directory)."""
    final = job.out_dir
    with _ONE_SEED_AT_A_TIME, tempfile.TemporaryDirectory(prefix="raft-harness-seed-") as tmp:
        run_dir = Path(tmp) / "run"
        outcome = run_seed(job, write_to=run_dir)
        _rename_paths(run_dir, str(run_dir), final)
        archive = _pack(run_dir)
    if len(archive) > ARCHIVE_BYTES_MAX:
        raise DaskCampaignError(f"seed {outcome.seed}: run directory archive of "
                                f"{len(archive)} bytes exceeds ARCHIVE_BYTES_MAX")
    return outcome, archive


def _rename_paths(run_dir: Path, written: str, final: str) -> None:
    """Name the campaign's run directory where the run named the temporary one: the replay
    line of results.json (a JSON string) and of the report page (escaped HTML text)."""
    results = run_dir / "results.json"
    if results.is_file():
        data = json.loads(results.read_text(encoding="utf-8"))
        if isinstance(data.get("replay"), str):
            data["replay"] = data["replay"].replace(written, final)
        results.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    report = run_dir / "report.html"
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        report.write_text(text.replace(html.escape(written), html.escape(final)),
                          encoding="utf-8")


def _pack(run_dir: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(run_dir.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(run_dir)), recursive=False)
    return buffer.getvalue()


def unpack(archive: bytes, run_dir: Path) -> None:
    """Put a task's run directory at ``run_dir``, replacing any earlier attempt's, atomically
    as far as the directory's name goes (a partial unpack never has the final name)."""
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = run_dir.with_name(f"{run_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        # "data": no absolute paths, no escaping the directory, no devices or links out.
        tar.extractall(partial, filter="data")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    partial.rename(run_dir)


def dask_executor(address: str) -> SeedExecutor:
    """Run the campaign's seeds on the Dask cluster whose scheduler is at ``address``."""
    check_address(address)
    try:
        import distributed  # noqa: F401  (imported here: an optional dependency)
    except ImportError:
        raise DaskCampaignError(f"--scheduler needs the distributed package: {EXTRA_HINT}") \
            from None

    def execute(work: list[SeedJob]) -> Iterator[SeedOutcome]:
        yield from _execute(address, work)

    return execute


def _execute(address: str, work: list[SeedJob]) -> Iterator[SeedOutcome]:
    import distributed

    dask: Any = distributed  # its Client and as_completed are untyped
    try:
        client = dask.Client(address, timeout=CONNECT_TIMEOUT_SECONDS, set_as_default=False)
    except OSError as exc:
        raise DaskCampaignError(f"--scheduler: cannot reach {address}: {exc}") from None
    # as_completed looks for "the current client"; this campaign's is not the default one.
    with client, client.as_current():
        token = uuid.uuid4().hex[:8]  # task keys unique to this campaign
        futures = [
            client.submit(run_seed_archived, job, key=f"raft-harness-{token}-seed-"
                          f"{job.options['seed']}", retries=TASK_RETRIES_MAX, pure=False)
            for job in work
        ]
        for future in dask.as_completed(futures):
            outcome, archive = future.result()
            unpack(archive, Path(outcome.out_dir))
            future.release()  # the archive's memory on the worker
            yield outcome
