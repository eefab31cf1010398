"""Run the coverage-guided fuzz targets (atheris / libFuzzer) and print one JSON summary.

    python fuzz/run.py --short            # CI: 20,000 inputs per target, a few seconds each
    python fuzz/run.py --long             # 1,000,000 inputs per target (minutes)
    python fuzz/run.py --runs N --target resp_target

Each target starts from a seed corpus generated here (valid frames and commands, so mutations
begin close to real traffic) in a temporary directory, so a run never writes into the source
tree; crashing inputs are kept in ``--artifacts`` (default ``fuzz/artifacts/``) and reproduce
with ``python fuzz/<target>.py <file>``. An input that runs longer than ``--timeout-seconds``
counts as a hang (libFuzzer ``-timeout``). Exit status is 0 only if every target finished its
runs without a crash, hang or error.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TARGETS = ("codec_target", "resp_target")
SHORT_RUNS = 20_000
LONG_RUNS = 1_000_000
INPUT_BYTES_MAX = 4096


def _seed_codec(directory: Path) -> None:
    from raftlib.core.types import (
        AppendEntries,
        AppendEntriesResponse,
        Entry,
        RequestVote,
        TimeoutNow,
    )
    from raftlib.transport.codec import Hello, encode_frame, encode_hello

    entries = tuple(Entry(term=2, index=i, data=b"x" * i) for i in range(4, 7))
    frames = [
        encode_frame([TimeoutNow(term=1, src=1, dst=2)]),
        encode_frame([RequestVote(term=3, src=2, dst=1, last_log_index=5, last_log_term=2)]),
        encode_frame([AppendEntries(term=2, src=1, dst=2, prev_log_index=3, prev_log_term=1,
                                    entries=entries, commit=3)]),
        encode_frame([AppendEntriesResponse(term=2, src=2, dst=1, success=True,
                                            match_index=6)] * 3),
    ]
    # The first byte picks the read size (see _common.chunks).
    for n, frame in enumerate(frames):
        (directory / f"frame-{n}").write_bytes(b"\x07" + frame)
    (directory / "two-frames").write_bytes(b"\xff" + frames[0] + frames[2])
    (directory / "hello").write_bytes(encode_hello(Hello(1, 2, 7)) + frames[0])


def _seed_resp(directory: Path) -> None:
    from raftlib.resp.protocol import ErrorReply, SimpleString, encode, encode_command

    samples = [
        encode_command([b"SET", b"key", b"value"]) + encode_command([b"GET", b"key"]),
        b"PING\r\nECHO hello\r\n",
        encode([SimpleString("OK"), ErrorReply("MOVED 0 127.0.0.1:6380"), 42, b"bulk", None,
                [b"a", [1, 2]]]),
        b"*-1\r\n$-1\r\n*0\r\n\r\n",
    ]
    for n, sample in enumerate(samples):
        (directory / f"resp-{n}").write_bytes(b"\x05" + sample)


SEEDERS = {"codec_target": _seed_codec, "resp_target": _seed_resp}


def run_target(
    target: str, runs: int, *, artifacts: Path, timeout_seconds: int, seed: int,
    log_dir: Path | None = None,
) -> dict[str, object]:
    artifacts.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="fuzz-logs-")) if log_dir is None else log_dir
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{target}.log"
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as corpus:
        SEEDERS[target](Path(corpus))
        command = [
            sys.executable, str(HERE / f"{target}.py"),
            f"-runs={runs}", f"-max_len={INPUT_BYTES_MAX}", f"-timeout={timeout_seconds}",
            f"-seed={seed}", f"-artifact_prefix={artifacts}/{target}-", "-print_final_stats=1",
            corpus,
        ]
        started = time.monotonic()
        # libFuzzer reports progress on stderr: to a file, so a long run can be watched.
        with log_path.open("w") as log_file:
            done = subprocess.run(command, stdout=log_file, stderr=subprocess.STDOUT,
                                  check=False)
        seconds = time.monotonic() - started
    log = log_path.read_text(errors="replace")
    finished = re.search(r"Done (\d+) runs in (\d+) second", log)
    coverage = re.findall(r"cov: (\d+)", log)
    result: dict[str, object] = {
        "target": target,
        "runs_requested": runs,
        "runs_done": int(finished.group(1)) if finished else None,
        "seconds": round(seconds, 1),
        "coverage_edges": int(coverage[-1]) if coverage else None,
        "exit_code": done.returncode,
        "ok": done.returncode == 0 and finished is not None,
    }
    if not result["ok"]:
        result["log_tail"] = log.splitlines()[-30:]
    if log_dir is None:
        shutil.rmtree(logs, ignore_errors=True)
    else:
        result["log"] = str(log_path)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--short", action="store_true", help=f"{SHORT_RUNS} inputs per target")
    size.add_argument("--long", action="store_true", help=f"{LONG_RUNS} inputs per target")
    size.add_argument("--runs", type=int, help="inputs per target")
    parser.add_argument("--target", choices=TARGETS, action="append",
                        help="run only this target (repeatable)")
    parser.add_argument("--artifacts", type=Path, default=HERE / "artifacts")
    parser.add_argument("--timeout-seconds", type=int, default=10,
                        help="an input running longer is a hang")
    parser.add_argument("--seed", type=int, default=1, help="libFuzzer seed (reproducible runs)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep each target's libFuzzer log here (watch a long run with "
                             "tail -f DIR/TARGET.log)")
    args = parser.parse_args(argv)
    runs = LONG_RUNS if args.long else args.runs if args.runs else SHORT_RUNS
    if runs < 1:
        parser.error("--runs must be >= 1")
    results = [
        run_target(t, runs, artifacts=args.artifacts, timeout_seconds=args.timeout_seconds,
                   seed=args.seed, log_dir=args.log_dir)
        for t in (args.target or TARGETS)
    ]
    print(json.dumps({"runs_per_target": runs, "targets": results}, indent=2))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
