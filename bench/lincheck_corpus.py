"""Benchmark of lincheck: the Porcupine corpus, and a generated 100,000-operation kv history.

Usage: python3 bench/lincheck_corpus.py [MANIFEST] [--runs N] [--skip-big]

Prints one JSON object: per corpus file its verdict and the median seconds of checking
(reading and parsing included, process start and imports excluded: everything is imported and
warmed up on a tiny history first), ``total_seconds`` (sum of the per-file medians),
``jepsen_seconds`` and ``jepsen_max_seconds`` for the ``jepsen/`` files, whether every verdict
matched the manifest, the same jepsen files through a plain Wing-Gong-Lowe search in the same
run (``bench/wgl_baseline.py``: the peer, with the ratio), and for the generated kv history its
seconds (median) and peak memory
(``tracemalloc`` peak of Python allocations during the check, plus the process's
``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "checker"))
sys.path.insert(0, str(ROOT / "bench"))

from lincheck.formats import history_from_events, parse_history, read_history  # noqa: E402
from lincheck.models import get_model  # noqa: E402
from lincheck.search import check  # noqa: E402
from wgl_baseline import plain_wgl  # noqa: E402

DEFAULT_MANIFEST = ROOT.parent / "shared" / "data" / "porcupine" / "manifest.json"
BIG_OPERATIONS = 100_000
BIG_KEYS = 1_000
BIG_PROCESSES = 20
BIG_INFO_PERCENT = 1
BIG_SEED = 20240601


def _warm_up() -> None:
    """Pay import and first-call costs before anything is timed."""
    text = ('{"process": 0, "type": "invoke", "f": "write", "value": 1}\n'
            '{"process": 0, "type": "ok", "f": "write", "value": 1}\n')
    check(parse_history(text, "jsonl"), get_model("cas-register"))
    etcd = "INFO  jepsen.util - 0\t:invoke\t:read\tnil\nINFO  jepsen.util - 0\t:ok\t:read\tnil\n"
    check(parse_history(etcd, "porcupine-etcd"), get_model("cas-register"))
    kv = ('{:process 0, :type :invoke, :f :get, :key "0", :value nil}\n'
          '{:process 0, :type :ok, :f :get, :key "0", :value ""}\n')
    check(parse_history(kv, "porcupine-kv"), get_model("kv"))


def _corpus(manifest: Path, runs: int) -> dict[str, Any]:
    base = manifest.parent
    entries = json.loads(manifest.read_text(encoding="utf-8"))
    times: dict[str, list[float]] = {e["file"]: [] for e in entries}
    verdicts: dict[str, str] = {}
    for _ in range(runs):
        for e in entries:
            started = time.perf_counter()
            history = read_history(base / e["file"], e["format"])
            result = check(history, get_model(e["model"], e["initial"]))
            times[e["file"]].append(time.perf_counter() - started)
            verdicts[e["file"]] = result.verdict
    baseline = _baseline(base, [e for e in entries if str(e["file"]).startswith("jepsen/")],
                         runs)
    files = [{"file": e["file"], "verdict": verdicts[e["file"]],
              "expected": e["expected"], "seconds": round(statistics.median(times[e["file"]]), 6)}
             for e in entries]
    jepsen = [f for f in files if str(f["file"]).startswith("jepsen/")]
    return {
        "files": files,
        "total_seconds": round(sum(float(f["seconds"]) for f in files), 4),
        "jepsen_files": len(jepsen),
        "jepsen_seconds": round(sum(float(f["seconds"]) for f in jepsen), 4),
        "jepsen_max_seconds": round(max((float(f["seconds"]) for f in jepsen), default=0.0), 4),
        "all_verdicts_expected": all(f["verdict"] == f["expected"] for f in files),
        "runs": runs,
        **baseline,
        "jepsen_speedup_vs_plain_wgl": round(
            baseline["plain_wgl_jepsen_seconds"]
            / max(sum(float(f["seconds"]) for f in jepsen), 1e-9), 2),
        # Porcupine (Go) is not run here: its figure is the manifest's, measured on a machine of
        # this kind, so this ratio is indicative, unlike the plain-WGL one from this very run.
        "porcupine_jepsen_seconds_from_manifest": round(sum(
            float(e.get("porcupine_seconds", 0.0)) for e in entries
            if str(e["file"]).startswith("jepsen/")), 4),
    }


def _baseline(base: Path, entries: list[dict[str, Any]], runs: int) -> dict[str, Any]:
    """The same jepsen files through a plain Wing-Gong-Lowe search, parsing included."""
    times: dict[str, list[float]] = {e["file"]: [] for e in entries}
    wrong = []
    for _ in range(runs):
        for e in entries:
            started = time.perf_counter()
            history = read_history(base / e["file"], e["format"])
            ok = plain_wgl(history.operations, get_model(e["model"], e["initial"]))
            times[e["file"]].append(time.perf_counter() - started)
            if ("ok" if ok else "illegal") != e["expected"]:
                wrong.append(e["file"])
    medians = [statistics.median(t) for t in times.values()]
    return {
        "plain_wgl_jepsen_seconds": round(sum(medians), 4),
        "plain_wgl_jepsen_max_seconds": round(max(medians, default=0.0), 4),
        "plain_wgl_wrong_verdicts": sorted(set(wrong)),
    }


def generate_kv_history(ops: int = BIG_OPERATIONS, keys: int = BIG_KEYS,
                        processes: int = BIG_PROCESSES, seed: int = BIG_SEED,
                        ) -> list[dict[str, Any]]:
    """Events of a linearizable kv history, recorded from a real dict driven by concurrent
    clients: each operation takes effect at a random instant between its invocation and its
    completion; at each of its two steps an op crashes (info) with BIG_INFO_PERCENT % chance (about
    2 % end as info), having taken effect or not, and the
    crashed client continues under a new process id."""
    rng = random.Random(seed)
    store: dict[str, str] = {}
    proc = list(range(processes))
    next_proc = processes
    # client -> [f, key, value, took effect?, output]
    pending: dict[int, list[Any]] = {}
    events: list[dict[str, Any]] = []
    started = 0
    counter = 0
    while started < ops or pending:
        idle = [c for c in range(processes) if c not in pending]
        if idle and started < ops and (not pending or rng.random() < 0.5):
            c = rng.choice(idle)
            key = str(rng.randrange(keys))
            f = rng.choice(("get", "get", "put", "append"))
            counter += 1
            value = None if f == "get" else f"{counter % 97}."
            pending[c] = [f, key, value, False, None]
            events.append({"process": proc[c], "type": "invoke", "f": f, "key": key,
                           "value": value})
            started += 1
            continue
        c = rng.choice(list(pending))
        p = pending[c]
        crash = rng.randrange(100) < BIG_INFO_PERCENT
        if not p[3] and not crash:
            f, key, value = p[0], p[1], p[2]
            if f == "get":
                p[4] = store.get(key, "")
            else:
                store[key] = value if f == "put" else store.get(key, "") + value
                p[4] = value
            p[3] = True
            continue
        del pending[c]
        if crash:  # it took effect, or (crashing before that) never will
            events.append({"process": proc[c], "type": "info", "f": p[0], "key": p[1],
                           "value": p[2]})
            proc[c] = next_proc
            next_proc += 1
        else:
            events.append({"process": proc[c], "type": "ok", "f": p[0], "key": p[1],
                           "value": p[4]})
    return events


def _big(runs: int) -> dict[str, Any]:
    events = generate_kv_history()
    seconds: list[float] = []
    verdict = ""
    workers = 0
    for _ in range(runs):
        started = time.perf_counter()
        history = history_from_events(events, "<generated kv>")
        result = check(history, get_model("kv"))
        seconds.append(time.perf_counter() - started)
        verdict, workers = result.verdict, result.stats["workers"]
    # Memory: one more run in this process alone, so tracemalloc sees every allocation.
    tracemalloc.start()
    started = time.perf_counter()
    serial = check(history_from_events(events, "<generated kv>"), get_model("kv"),
                   parallel=False)
    serial_seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    if serial.verdict != verdict:
        raise AssertionError(f"serial verdict {serial.verdict} differs from {verdict}")
    return {
        "operations": BIG_OPERATIONS, "keys": BIG_KEYS, "processes": BIG_PROCESSES,
        "info_percent": BIG_INFO_PERCENT, "seed": BIG_SEED, "verdict": verdict,
        "workers": workers, "runs": runs,
        "seconds": round(statistics.median(seconds), 3),
        "serial_seconds_under_tracemalloc": round(serial_seconds, 3),
        "peak_tracemalloc_bytes": peak,
        "ru_maxrss_self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "ru_maxrss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        "memory_note": "peak_tracemalloc_bytes: Python allocations of one serial run (reading "
                       "the events into a History and checking it; the event list itself "
                       "exists before); ru_maxrss: peak resident set of this process (whole "
                       "benchmark) and of the largest worker process",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default=str(DEFAULT_MANIFEST))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--big-runs", type=int, default=3)
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    _warm_up()
    out: dict[str, Any] = {}
    manifest = Path(args.manifest)
    if manifest.is_file():
        out.update(_corpus(manifest, args.runs))
    else:
        out["corpus"] = f"manifest not found: {manifest}"
    if not args.skip_big:
        out["kv_100k"] = _big(args.big_runs)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
