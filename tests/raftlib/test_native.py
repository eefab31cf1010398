"""The optional native build (``raftlib.native``): the compiled core and driver must decide
every seed exactly as the interpreted ones do, a build that no longer matches its sources is
refused, and the bug zoo refuses to run where its patches would not take effect.

The equivalence test compiles the build once (about 40 s; it needs mypy, from the ``test``
extra, and a C compiler: it skips naming what is missing) and simulates the pinned seeds and a
spread of swarm seeds in a process running it, against the same runs interpreted here.
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import attrs
import pytest

from harness import swarm
from harness.options import OptionsError, RunOptions
from harness.runner import simulate
from raftlib import native

ROOT = Path(__file__).resolve().parents[2]
PINNED_TESTS = ROOT / "tests" / "harness" / "test_sim_pinned_histories.py"
SWARM_SEEDS = range(100, 124)
SIM_SECONDS = 12.0


def _configurations(swarm_seeds: range = SWARM_SEEDS) -> list[RunOptions]:
    """The pinned seeds' options (every fault kind, elections, snapshots), then swarm draws
    (lease reads, membership changes, PreVote and CheckQuorum off, the WAL on a faulty disk)."""
    sys.path.insert(0, str(PINNED_TESTS.parent))
    try:
        from test_sim_pinned_histories import PINS
    finally:
        sys.path.remove(str(PINNED_TESTS.parent))
    pinned = [RunOptions(workload=w, nemesis=n, nodes=nodes, clients=10, time_limit=SIM_SECONDS,
                         seed=seed) for w, n, nodes, seed, _ in PINS]
    drawn = [swarm.draw(seed, RunOptions(swarm=True)) for seed in swarm_seeds]
    return pinned + [attrs.evolve(o, time_limit=min(o.time_limit, SIM_SECONDS)) for o in drawn]


def _digests(swarm_seeds: range = SWARM_SEEDS) -> list[str]:
    sys.path.insert(0, str(PINNED_TESTS.parent))
    try:
        from test_sim_pinned_histories import outcome_digest
    finally:
        sys.path.remove(str(PINNED_TESTS.parent))
    return [outcome_digest(simulate(options)) for options in _configurations(swarm_seeds)]


def _in_subprocess(build: Path, swarm_seeds: range = SWARM_SEEDS,
                   ) -> subprocess.CompletedProcess[str]:
    script = (
        "import json, sys\n"
        "import raftlib.core.raft, raftlib.driver\n"
        "from raftlib import native\n"
        "assert native.active(), 'the native build is not active'\n"
        f"assert raftlib.core.raft.__file__.endswith({_suffix()!r}), raftlib.core.raft.__file__\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_native import _digests\n"
        f"print(json.dumps(_digests(range({swarm_seeds.start}, {swarm_seeds.stop}))))\n"
    )
    env = {**os.environ, native.ENVIRONMENT_VARIABLE: str(build)}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600, check=False)


def _suffix() -> str:
    return importlib.machinery.EXTENSION_SUFFIXES[0]


def _build(tmp_path_factory: pytest.TempPathFactory, opt_level: str) -> Path:
    try:
        import mypyc  # noqa: F401
    except ImportError:
        pytest.skip("mypy (mypyc) is not installed: pip install 'raft-toolkit[native]'")
    if shutil.which(sysconfig.get_config_var("CC").split()[0] or "cc") is None:
        pytest.skip("no C compiler for the native build")
    return native.build(tmp_path_factory.mktemp("native"), opt_level=opt_level)


@pytest.fixture(scope="module")
def native_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled without C optimisation (``native.OPT_LEVEL`` says why that is enough here)."""
    return _build(tmp_path_factory, "0")


@pytest.fixture(scope="module")
def optimised_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Compiled as ``raftlib native-build`` compiles."""
    return _build(tmp_path_factory, native.OPT_LEVEL)


def test_the_native_build_decides_every_seed_as_the_interpreted_code_does(
    native_build: Path,
) -> None:
    run = _in_subprocess(native_build)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    interpreted = _digests()
    assert len(compiled) == len(interpreted) == 6 + len(SWARM_SEEDS)
    differing = [i for i, (a, b) in enumerate(zip(compiled, interpreted, strict=True)) if a != b]
    assert not differing, f"configurations whose runs differ between the builds: {differing}"


@pytest.mark.slow
def test_the_native_build_decides_four_hundred_swarm_seeds_as_the_interpreted_code_does(
    optimised_build: Path,
) -> None:
    seeds = range(0, 400)
    run = _in_subprocess(optimised_build, seeds)
    assert run.returncode == 0, run.stderr[-3000:]
    compiled = json.loads(run.stdout.strip().splitlines()[-1])
    interpreted = _digests(seeds)
    differing = [i for i, (a, b) in enumerate(zip(compiled, interpreted, strict=True)) if a != b]
    assert not differing, f"configurations whose runs differ between the builds: {differing}"


# --- refusals: no compiler needed (a fake build is enough to be refused) ---------------------


def _import_with(build: Path) -> str:
    env = {**os.environ, native.ENVIRONMENT_VARIABLE: str(build)}
    run = subprocess.run([sys.executable, "-c", "import raftlib"], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60, check=False)
    assert run.returncode != 0, "the import should have been refused"
    return run.stderr.strip().splitlines()[-1]


def _fake_build(directory: Path, interpreter: str | None = None,
                sources: dict[str, str] | None = None) -> Path:
    entries = {}
    for module in native.NATIVE_MODULES:
        binary = Path(*module.split(".")).with_name(module.rsplit(".", 1)[1] + _suffix())
        (directory / binary).parent.mkdir(parents=True, exist_ok=True)
        (directory / binary).write_bytes(b"")
        entries[module] = str(binary)
    manifest = {"interpreter": interpreter or native._interpreter(), "modules": entries,
                "sources": {**native.sources_digest(), **(sources or {})}}
    (directory / native.MANIFEST).write_text(json.dumps(manifest))
    return directory


def test_a_directory_without_a_build_is_refused_naming_it(tmp_path: Path) -> None:
    line = _import_with(tmp_path)
    assert "NativeBuildError" in line and f"RAFTLIB_NATIVE={tmp_path}" in line, line
    assert "no readable native build" in line, line


# A compiled module, and one that stays interpreted but whose types the compiled core knows
# (its messages' fields).
@pytest.mark.parametrize("source", ["raftlib/core/leader.py", "raftlib/core/types.py"])
def test_a_build_whose_sources_changed_since_is_refused_naming_the_file(
    tmp_path: Path, source: str,
) -> None:
    build = _fake_build(tmp_path, sources={source: "0" * 64})
    line = _import_with(build)
    assert f"{source} changed since the build" in line, line


def test_a_build_for_another_interpreter_is_refused(tmp_path: Path) -> None:
    line = _import_with(_fake_build(tmp_path, interpreter="cpython-399 linux"))
    assert "built for cpython-399 linux" in line, line


def test_a_build_missing_a_compiled_module_is_refused(tmp_path: Path) -> None:
    build = _fake_build(tmp_path)
    (build / "raftlib" / "driver").with_name("driver" + _suffix()).unlink()
    line = _import_with(build)
    assert "driver" in line and "is missing" in line, line


def test_a_failed_build_says_what_failed_in_one_line(tmp_path: Path) -> None:
    pytest.importorskip("mypyc", reason="mypy (mypyc) is not installed")
    with pytest.raises(native.NativeBuildError) as failure:
        native.build(tmp_path, modules=("raftlib.no_such_module",))
    message = str(failure.value)
    assert "\n" not in message
    assert "raftlib/no_such_module.py" in message and str(tmp_path / native.BUILD_LOG) in message


def test_the_bug_zoo_refuses_to_plant_a_bug_the_native_build_would_ignore(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from harness import zoo

    monkeypatch.setattr(native, "_active", tmp_path)
    with pytest.raises(zoo.ZooUnavailable, match="native build"), zoo.active("figure8"):
        pass
    with pytest.raises(OptionsError, match="native build"):
        RunOptions(bug="figure8")
    monkeypatch.setattr(native, "_active", None)
    with zoo.active("figure8") as bug:
        assert bug is not None  # the interpreted build plants it
