"""lincheck against Porcupine (Go) on the same histories, in one run.

Usage: python3 bench/lincheck_vs_porcupine.py --porcupine DIR [--manifest PATH] [--runs N]
           [--timeout SECONDS] [--generated] [--grid small|full] [--search-only] [--skip-corpus]
           [--lincheck-script PATH]

``DIR`` is a checkout of github.com/anishathalye/porcupine (kept outside this project). When
``go`` is on the PATH, the bench writes a small driver program of its own into a temporary
directory, builds it against that checkout, and times both checkers on the same files:

* check only, in process: lincheck's ``check()`` on a parsed history, Porcupine's
  ``CheckEventsTimeout`` on decoded events (median of ``--runs``), summed per corpus;
* per process: one ``lincheck check FILE`` process per file (``--lincheck-script``: the
  console script to run; an editable install pays for its import hook at each start) and one
  bare ``python -c pass`` of the same interpreter (the floor) against one driver process per
  file (the driver reads a JSON conversion of the same operations, written by lincheck's own
  reader so both see the same history), back to back per file, median of ``--runs``. lincheck's
  bytecode is compiled first (``PYTHONDONTWRITEBYTECODE`` would otherwise make every process
  compile its modules again, which no installed package does).

The corpus is the shared Porcupine data (``--manifest``, default
``../shared/data/porcupine/manifest.json``, read in place, never copied); ``--generated`` adds
seeded cas-register histories (20 and 50 processes, 5,000 and 20,000 operations, 1% and 5%
crashed, each valid and with one injected stale read; ``--grid small`` keeps 5,000 operations
only). Without Go or the checkout it says why it skipped Porcupine and times lincheck alone.
Prints one JSON object. Take figures on an idle machine; the JSON records the load average.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "checker"))

from lincheck import search as search_module  # noqa: E402
from lincheck.formats import history_from_events, read_history, write_jsonl  # noqa: E402
from lincheck.history import History  # noqa: E402
from lincheck.models import get_model  # noqa: E402
from lincheck.search import check  # noqa: E402

DEFAULT_MANIFEST = ROOT.parent / "shared" / "data" / "porcupine" / "manifest.json"
TIMEOUT_SECONDS = 60.0
# A process that outlives its checker's timeout by this much is killed and counted unknown.
PROCESS_GRACE_SECONDS = 30.0
GO_BUILD_TIMEOUT_SECONDS = 300.0
GENERATED_SEED = 20261206
# Stands for a nil read in a kv history (lincheck: nil is a value that no put or append of a
# string produces; this string is one no history holds either).
KV_NIL = "\u0000nil"

# The driver: reads the JSON this script writes, times Porcupine's check. Our own code.
DRIVER_GO = r'''
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/anishathalye/porcupine"
)

type call struct {
	F string `json:"f"`
	K string `json:"k"`
	V string `json:"v"`
	E string `json:"e"`
	N string `json:"n"`
}

type ret struct {
	K       string `json:"k"`
	V       string `json:"v"`
	Ok      bool   `json:"ok"`
	Unknown bool   `json:"unknown"`
}

type rawEvent struct {
	Client int   `json:"c"`
	Return bool  `json:"r"`
	Id     int   `json:"id"`
	Call   *call `json:"call"`
	Ret    *ret  `json:"ret"`
}

type history struct {
	Model   string     `json:"model"`
	Initial string     `json:"initial"`
	Events  []rawEvent `json:"events"`
}

func registerModel(initial string) porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return initial },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			s, in, out := state.(string), input.(call), output.(ret)
			switch in.F {
			case "read":
				return out.Unknown || out.V == s, s
			case "write":
				return true, in.V
			}
			if out.Unknown {
				if s == in.E {
					return true, in.N
				}
				return true, s
			}
			if out.Ok {
				return s == in.E, in.N
			}
			return s != in.E, s
		},
	}
}

func keyOf(e porcupine.Event) string {
	if e.Kind == porcupine.CallEvent {
		return e.Value.(call).K
	}
	return e.Value.(ret).K
}

func kvModel() porcupine.Model {
	return porcupine.Model{
		PartitionEvent: func(h []porcupine.Event) [][]porcupine.Event {
			index := map[string]int{}
			var parts [][]porcupine.Event
			for _, e := range h {
				i, seen := index[keyOf(e)]
				if !seen {
					i = len(parts)
					index[keyOf(e)] = i
					parts = append(parts, nil)
				}
				parts[i] = append(parts[i], e)
			}
			return parts
		},
		Init: func() interface{} { return "" },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			s, in, out := state.(string), input.(call), output.(ret)
			switch in.F {
			case "get":
				return out.Unknown || out.V == s, s
			case "put":
				return true, in.V
			}
			return true, s + in.V
		},
	}
}

func main() {
	runs, timeout := 1, 60.0
	args := os.Args[1:]
	for len(args) > 1 && (args[0] == "-runs" || args[0] == "-timeout") {
		n, err := strconv.ParseFloat(args[1], 64)
		if err != nil {
			panic(err)
		}
		if args[0] == "-runs" {
			runs = int(n)
		} else {
			timeout = n
		}
		args = args[2:]
	}
	for _, path := range args {
		started := time.Now()
		data, err := os.ReadFile(path)
		if err != nil {
			panic(err)
		}
		var h history
		if err := json.Unmarshal(data, &h); err != nil {
			panic(err)
		}
		events := make([]porcupine.Event, len(h.Events))
		for i, e := range h.Events {
			if e.Return {
				events[i] = porcupine.Event{ClientId: e.Client, Kind: porcupine.ReturnEvent,
					Value: *e.Ret, Id: e.Id}
			} else {
				events[i] = porcupine.Event{ClientId: e.Client, Kind: porcupine.CallEvent,
					Value: *e.Call, Id: e.Id}
			}
		}
		model := kvModel()
		if h.Model != "kv" {
			model = registerModel(h.Initial)
		}
		parse := time.Since(started).Seconds()
		var times []float64
		var res porcupine.CheckResult
		for r := 0; r < runs; r++ {
			t := time.Now()
			limit := time.Duration(timeout * float64(time.Second))
			res = porcupine.CheckEventsTimeout(model, events, limit)
			times = append(times, time.Since(t).Seconds())
		}
		sort.Float64s(times)
		verdict := "unknown"
		if res == porcupine.Ok {
			verdict = "ok"
		} else if res == porcupine.Illegal {
			verdict = "illegal"
		}
		out, _ := json.Marshal(map[string]interface{}{"file": path, "verdict": verdict,
			"check_seconds": times[len(times)/2], "parse_seconds": parse})
		fmt.Println(string(out))
	}
}
'''


# --- Porcupine: build, convert, run -------------------------------------------------------------


def build_driver(checkout: Path, work: Path) -> tuple[Path | None, str]:
    """The driver binary, or None and why not."""
    go = shutil.which("go")
    if go is None:
        return None, "go is not installed (Debian: apt-get install golang-go)"
    if not (checkout / "go.mod").is_file():
        return None, f"{checkout} is not a Porcupine checkout (no go.mod)"
    src = work / "driver"
    src.mkdir()
    (src / "main.go").write_text(DRIVER_GO, encoding="utf-8")
    (src / "go.mod").write_text(
        "module lincheckbench\n\ngo 1.16\n\n"
        "require github.com/anishathalye/porcupine v0.0.0\n\n"
        f"replace github.com/anishathalye/porcupine => {checkout.resolve()}\n",
        encoding="utf-8")
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    built = subprocess.run([go, "build", "-o", str(work / "porcupine-driver"), "."], cwd=src,
                           capture_output=True, text=True, timeout=GO_BUILD_TIMEOUT_SECONDS,
                           env=env, check=False)
    if built.returncode != 0:
        return None, "go build failed: " + " ".join(built.stderr.split())[:500]
    return work / "porcupine-driver", ""


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def to_driver_json(history: History, model: str, initial: Any) -> dict[str, Any]:
    """The history's operations as the driver reads them: call and return events in history
    order; an operation of unknown outcome returns after everything, with output unknown; a
    read of unknown outcome is left out (it constrains nothing, for both checkers)."""
    clients: dict[Any, int] = {}
    end = max((max(op.call, op.ret or 0) for op in history.operations), default=0) + 1
    rows: list[tuple[int, dict[str, Any]]] = []
    for op in history.operations:
        read = op.f in ("read", "get")
        if op.status == "info" and read:
            continue
        client = clients.setdefault(op.process, len(clients))
        key = "" if op.key is None else str(op.key)
        call: dict[str, Any] = {"f": op.f, "k": key}
        out: dict[str, Any] = {"k": key, "ok": True, "unknown": op.status != "ok"}
        if model == "kv":
            call["v"] = op.input if isinstance(op.input, str) else ""
            if read and op.status == "ok":
                out["v"] = op.output if isinstance(op.output, str) else KV_NIL
        else:
            if op.f == "write":
                call["v"] = _canonical(op.input)
            elif op.f == "cas":
                call["e"], call["n"] = _canonical(op.input[0]), _canonical(op.input[1])
                out["ok"] = op.output is not False
            if read:
                out["v"] = _canonical(op.output)
        rows.append((op.call, {"c": client, "r": False, "id": op.id, "call": call}))
        at = op.ret if op.status == "ok" and op.ret is not None else end + op.id
        rows.append((at, {"c": client, "r": True, "id": op.id, "ret": out}))
    rows.sort(key=lambda row: row[0])
    return {"model": model, "initial": _canonical(initial), "events": [r for _, r in rows]}


def run_driver(driver: Path, files: list[Path], runs: int, timeout: float
               ) -> dict[str, dict[str, Any]]:
    """Porcupine's in-process figures per converted file, from one driver process."""
    done = subprocess.run([str(driver), "-runs", str(runs), "-timeout", str(timeout),
                           *map(str, files)], capture_output=True, text=True, check=True,
                          timeout=(timeout + PROCESS_GRACE_SECONDS) * runs * max(len(files), 1))
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return {row["file"]: row for row in rows}


def time_process(argv: list[str], timeout: float) -> tuple[float, int]:
    started = time.perf_counter()
    try:
        status = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=timeout + PROCESS_GRACE_SECONDS, check=False).returncode
    except subprocess.TimeoutExpired:
        status = -1
    return time.perf_counter() - started, status


# The ``lincheck`` console script the per-process figures run (``--lincheck-script``; default:
# the one next to this interpreter, else ``python -m lincheck``).
LINCHECK_SCRIPT: list[Path] = []


def _script() -> Path:
    return LINCHECK_SCRIPT[0] if LINCHECK_SCRIPT else Path(sys.executable).with_name("lincheck")


def _script_python(script: Path) -> str:
    """The interpreter a console script runs (its #! line), for the bare start-up figure."""
    try:
        first = script.read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return sys.executable
    return first[2:].strip().split()[0] if first.startswith("#!") else sys.executable


def lincheck_argv(path: Path, model: str, fmt: str, initial: Any, timeout: float) -> list[str]:
    script = _script()
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "lincheck"]
    argv = [*head, "check", str(path), "--model", model, "--format", fmt, "--allow-empty",
            "--timeout", str(timeout)]
    return argv + (["--initial", json.dumps(initial)] if initial is not None else [])


# --- one set of files, both checkers -----------------------------------------------------------


def compare(entries: list[dict[str, Any]], driver: Path | None, work: Path, runs: int,
            timeout: float) -> dict[str, Any]:
    """Each entry: path, format, model, initial, expected (or None). Both checkers, check
    only and per process."""
    files = []
    for n, e in enumerate(entries):
        history = read_history(e["path"], e["format"])
        model = get_model(e["model"], e["initial"])
        times, result = [], None
        for _ in range(runs):
            started = time.perf_counter()
            result = check(history, model, timeout=timeout)
            times.append(time.perf_counter() - started)
        assert result is not None
        row: dict[str, Any] = {
            "file": str(e["name"]), "operations": len(history.operations),
            "expected": e.get("expected"),
            "lincheck": {"verdict": result.verdict, "check_seconds": statistics.median(times),
                         "decided_by": result.stats.get("decided_by")}}
        if driver is not None:
            converted = work / f"h{n}.json"
            converted.write_text(json.dumps(to_driver_json(history, e["model"], e["initial"])),
                                 encoding="utf-8")
            row["_converted"] = converted
        # One process each, back to back on the same file (interleaved: a burst of load on
        # the shared machine hits both alike); the median of ``runs``.
        lin_times, por_times, bare_times, lin_exit, por_exit = [], [], [], 0, 0
        bare = [_script_python(_script()), "-c", "pass"]
        for _ in range(runs):
            process_s, lin_exit = time_process(
                lincheck_argv(e["path"], e["model"], e["format"], e["initial"], timeout),
                timeout)
            lin_times.append(process_s)
            # The floor: the same interpreter starting and doing nothing.
            bare_times.append(time_process(bare, timeout)[0])
            if driver is not None:
                process_s, por_exit = time_process(
                    [str(driver), "-timeout", str(timeout), str(row["_converted"])], timeout)
                por_times.append(process_s)
        row["lincheck"]["process_seconds"] = statistics.median(lin_times)
        row["lincheck"]["bare_python_process_seconds"] = statistics.median(bare_times)
        row["lincheck"]["process_exit"] = lin_exit
        if por_times:
            row["_porcupine_process"] = (statistics.median(por_times), por_exit)
        files.append(row)
    if driver is not None:
        found = run_driver(driver, [row["_converted"] for row in files], runs, timeout)
        for row in files:
            converted = row.pop("_converted")
            p = found[str(converted)]
            process_s, status = row.pop("_porcupine_process")
            row["porcupine"] = {"verdict": p["verdict"], "check_seconds": p["check_seconds"],
                                "process_seconds": process_s, "process_exit": status}
    return {"files": files, **_totals(files)}


def _totals(files: list[dict[str, Any]]) -> dict[str, Any]:
    def total(who: str, what: str) -> float:
        return round(float(sum(f[who][what] for f in files if who in f)), 4)

    out: dict[str, Any] = {
        "lincheck_check_seconds": total("lincheck", "check_seconds"),
        "lincheck_process_seconds": total("lincheck", "process_seconds"),
        "bare_python_process_seconds": total("lincheck", "bare_python_process_seconds"),
        "lincheck_wrong": [f["file"] for f in files
                           if f["expected"] and f["lincheck"]["verdict"] != f["expected"]],
        "lincheck_unknown": [f["file"] for f in files if f["lincheck"]["verdict"] == "unknown"],
    }
    if files and all("porcupine" in f for f in files):
        out["porcupine_check_seconds"] = total("porcupine", "check_seconds")
        out["porcupine_process_seconds"] = total("porcupine", "process_seconds")
        out["porcupine_wrong"] = [f["file"] for f in files if f["expected"]
                                  and f["porcupine"]["verdict"] != f["expected"]]
        out["porcupine_unknown"] = [f["file"] for f in files
                                    if f["porcupine"]["verdict"] == "unknown"]
        # > 1: lincheck is faster.
        out["speedup_check"] = round(out["porcupine_check_seconds"]
                                     / max(out["lincheck_check_seconds"], 1e-9), 2)
        out["speedup_process"] = round(out["porcupine_process_seconds"]
                                       / max(out["lincheck_process_seconds"], 1e-9), 2)
    return out


# --- generated cas-register histories ---------------------------------------------------------


def generate_cas_history(processes: int, ops: int, crash_pct: float, stale: bool,
                         seed: int) -> list[dict[str, Any]]:
    """Events of a cas-register driven by ``processes`` concurrent clients, recorded from a
    real atomic register: each operation takes effect at one instant between its invocation
    and completion; every write and cas writes a new value; ``crash_pct`` percent of the
    operations crash (info: taken effect or not, at random; the client then continues as a
    new process). A cas whose comparison fails at its instant completes ``fail``. With
    ``stale``, one late read is made to return a value that an earlier read saw before
    another read, itself complete before this read began, saw a newer one: not linearizable
    in any order (values are never written twice)."""
    rng = random.Random(seed)
    value: Any = None
    fresh = 0
    proc = list(range(processes))
    next_proc = processes
    pending: dict[int, list[Any]] = {}  # thread -> its operation, see below
    events: list[dict[str, Any]] = []
    started = 0
    while started < ops or pending:
        idle = [t for t in range(processes) if t not in pending]
        if idle and started < ops and (not pending or rng.random() < 0.5):
            t = rng.choice(idle)
            fresh += 1
            f = rng.choices(("read", "write", "cas"), (4, 3, 3))[0]
            arg: Any = None
            if f == "write":
                arg = fresh
            elif f == "cas":
                arg = [value if rng.random() < 0.7 else rng.choice([None, fresh - 1]), fresh]
            # [f, input, effected, output, happened, crashes]: whether it will crash is drawn
            # once, so that crash_pct percent of the operations do.
            pending[t] = [f, arg, False, None, False, rng.random() * 100 < crash_pct]
            events.append({"process": proc[t], "type": "invoke", "f": f, "value": arg})
            started += 1
            continue
        t = rng.choice(sorted(pending))
        p = pending[t]
        crashed = p[5]
        if not p[2] and (not crashed or rng.random() < 0.5):
            # It takes effect now (a crashed one, or not at all: half the time each).
            p[2] = True
            f, arg = p[0], p[1]
            if f == "read":
                p[3], p[4] = value, True
            elif f == "write" or value == arg[0]:
                value = arg if f == "write" else arg[1]
                p[3], p[4] = arg, True
            if not crashed and rng.random() < 0.5:
                continue  # completes later
        del pending[t]
        if crashed:
            events.append({"process": proc[t], "type": "info", "f": p[0], "value": p[1]})
            proc[t] = next_proc
            next_proc += 1
            continue
        kind = "ok" if p[4] else "fail"
        events.append({"process": proc[t], "type": kind, "f": p[0],
                       "value": p[3] if p[0] == "read" else p[1]})
    if stale:
        _inject_stale_read(events, rng)
    return events


def _inject_stale_read(events: list[dict[str, Any]], rng: random.Random) -> None:
    """Make a late ok read return y, where an ok read of y returned before an ok read of z
    (z not y) was invoked, and that read returned before this one was invoked."""
    reads: list[tuple[int, int, Any]] = []  # (invoke index, return index, value)
    opened: dict[Any, int] = {}
    for i, e in enumerate(events):
        if e["f"] != "read":
            continue
        if e["type"] == "invoke":
            opened[e["process"]] = i
        elif e["type"] == "ok":
            reads.append((opened[e["process"]], i, e["value"]))
    for target in rng.sample(reads[len(reads) // 2:], min(len(reads) // 2, 200)):
        for z in reversed(reads):
            if z[1] >= target[0]:
                continue
            older = [y for y in reads if y[1] < z[0] and y[2] != z[2] and y[2] != target[2]]
            if older:
                events[target[1]] = {**events[target[1]], "value": older[-1][2]}
                return
    raise AssertionError("no read to make stale")


def generated(driver: Path | None, work: Path, grid: str, timeout: float,
              search_only: bool) -> list[dict[str, Any]]:
    rows = []
    sizes = (5_000,) if grid == "small" else (5_000, 20_000)
    n = 0
    for processes in (20, 50):
        for ops in sizes:
            for crash_pct in (1, 5):
                for stale in (False, True):
                    n += 1
                    seed = GENERATED_SEED + n
                    path = work / f"cas-{processes}p-{ops}-{crash_pct}pct-{n}.jsonl"
                    history = history_from_events(
                        generate_cas_history(processes, ops, crash_pct, stale, seed))
                    write_jsonl(history, path)
                    entry = {"path": path, "name": path.name, "format": "jsonl",
                             "model": "cas-register", "initial": None,
                             "expected": "illegal" if stale else "ok"}
                    row = compare([entry], driver, work, 1, timeout)["files"][0]
                    row.update(processes=processes, crash_pct=crash_pct, seed=seed)
                    if search_only:
                        saved = search_module.ZONES_ENABLED
                        search_module.ZONES_ENABLED = False
                        try:
                            started = time.perf_counter()
                            result = check(history, get_model("cas-register"), timeout=timeout)
                            row["lincheck_search_only"] = {
                                "verdict": result.verdict,
                                "check_seconds": time.perf_counter() - started}
                        finally:
                            search_module.ZONES_ENABLED = saved
                    rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--porcupine", type=Path, help="a checkout of Porcupine")
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS)
    parser.add_argument("--generated", action="store_true")
    parser.add_argument("--grid", choices=("small", "full"), default="full")
    parser.add_argument("--search-only", action="store_true",
                        help="also time lincheck's search alone on the generated histories")
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--lincheck-script", type=Path,
                        help="the lincheck console script to time per process (e.g. of a "
                        "non-editable install); default: the one next to this python")
    args = parser.parse_args()
    if args.lincheck_script is not None:
        LINCHECK_SCRIPT.append(args.lincheck_script)
    compileall.compile_dir(str(ROOT / "checker" / "lincheck"), quiet=1)
    out: dict[str, Any] = {"load_average": os.getloadavg(), "timeout_seconds": args.timeout}
    with tempfile.TemporaryDirectory(prefix="lincheck-vs-porcupine-") as tmp:
        work = Path(tmp)
        driver: Path | None = None
        if args.porcupine is None:
            out["porcupine_skipped"] = "no --porcupine checkout given"
        else:
            driver, why = build_driver(args.porcupine, work)
            if driver is None:
                out["porcupine_skipped"] = why
            else:
                out["porcupine_source"] = str(args.porcupine.resolve())
        if not args.skip_corpus:
            if args.manifest.is_file():
                manifest = json.loads(args.manifest.read_text(encoding="utf-8"))
                base = args.manifest.parent
                for corpus in ("jepsen", "kv"):
                    entries = [{**e, "path": base / e["file"], "name": e["file"]}
                               for e in manifest if str(e["file"]).startswith(corpus + "/")]
                    out[corpus] = compare(entries, driver, work, args.runs, args.timeout)
            else:
                out["corpus_skipped"] = f"no manifest at {args.manifest}"
        if args.generated:
            out["generated"] = generated(driver, work, args.grid, args.timeout,
                                         args.search_only)
    print(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
