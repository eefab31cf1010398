"""The optional native build: the Raft core and the driver compiled with mypyc.

The same source, compiled: mypyc turns the type-annotated modules of ``NATIVE_MODULES`` into C
extensions, which run the deterministic simulator about 1.6x as fast (``bench/sim_speed.py
--compare-native``). Nothing else changes: the modules are the ones the tests check, and a test
(``tests/raftlib/test_native.py``) runs simulations under both builds and requires the same
history, event for event.

It is opt-in and kept apart from the checkout, so an edited source can never run as stale
machine code:

    raftlib native-build DIR      # needs mypy (the ``native`` extra) and a C compiler
    RAFTLIB_NATIVE=DIR raft-harness run --backend sim ...

``RAFTLIB_NATIVE`` is read once, when ``raftlib`` is imported. The build's manifest records the
SHA-256 of every source file of raftlib and the interpreter it was built for; a file that
changed since, or another interpreter, refuses the import in one line naming it (rebuild). With the
variable unset (the default) nothing here runs and raftlib is plain Python.

What the native build cannot do: compiled classes cannot be patched at run time, so the bug
zoo (``harness.zoo``, which swaps methods of the core and the driver) refuses to run under it;
and a wrong type passed into the core is refused by the compiled code's own checks
(``TypeError``) before the core's validation could name the field.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

ENVIRONMENT_VARIABLE = "RAFTLIB_NATIVE"
MANIFEST = "manifest.json"
BUILD_LOG = "build.log"  # what mypyc and the C compiler printed
# The C compiler's optimisation level of a build (mypyc's own default): what
# ``raftlib native-build`` makes. The default test suite compiles at "0", in about 60% of the
# time: it compares what mypyc makes of the sources, which the C optimiser leaves as it is
# (a slow test compares a build at this level).
OPT_LEVEL = "3"
_ROOT = Path(__file__).resolve().parent.parent

# The compiled modules. Left out, and why: ``core/types.py`` and ``core/membership.py`` define
# msgspec Structs (mypyc drops the class keywords: tags, array_like); ``core/config.py`` and
# ``core/status.py`` are attrs classes with validators and are not on any hot path; the
# packages' ``__init__`` files stay interpreted so that activation can run first.
NATIVE_MODULES: tuple[str, ...] = (
    "raftlib.core.election",
    "raftlib.core.follower",
    "raftlib.core.leader",
    "raftlib.core.lease",
    "raftlib.core.log",
    "raftlib.core.progress",
    "raftlib.core.quorum",
    "raftlib.core.raft",
    "raftlib.core.reads",
    "raftlib.core.ready",
    "raftlib.core.reconfigure",
    "raftlib.core.restart",
    "raftlib.core.state",
    "raftlib.core.validation",
    "raftlib.driver",
)

_active: Path | None = None


class NativeBuildError(ImportError):
    """The native build named by RAFTLIB_NATIVE cannot be used (one line: what and where)."""


def source_of(module: str) -> Path:
    return _ROOT.joinpath(*module.split(".")).with_suffix(".py")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sources_digest() -> dict[str, str]:
    """The SHA-256 of every source file of raftlib, by path. All of them, not only the
    compiled ones: compiled code relies on what it learnt of the modules it imports (the
    fields of a message type, say), so any change to raftlib asks for a new build."""
    package = _ROOT / "raftlib"
    return {str(path.relative_to(_ROOT)): _digest(path)
            for path in sorted(package.rglob("*.py"))}


def _interpreter() -> str:
    return f"{sys.implementation.cache_tag} {sys.platform}"


def active() -> bool:
    """Whether this process runs the native build."""
    return _active is not None


def build(out: Path, modules: Sequence[str] = NATIVE_MODULES, *,
          opt_level: str = OPT_LEVEL) -> Path:
    """Compile ``modules`` into ``out`` (created) with its manifest, the C code at
    ``opt_level`` ("0" to "3"); returns ``out``."""
    try:
        from mypyc.build import mypycify
        from setuptools import Distribution  # type: ignore[import-untyped]
    except ImportError as exc:
        raise NativeBuildError(
            f"the native build needs mypy and setuptools ({exc}); "
            "pip install 'raft-toolkit[native]'") from exc
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    sources = [str(source_of(m).relative_to(_ROOT)) for m in modules]
    log = out / BUILD_LOG
    here = Path.cwd()
    os.chdir(_ROOT)  # mypyc names the modules after their paths from the project's root
    try:
        with _output_to(log):  # mypyc's and the compiler's chatter: the log, not our stdout
            extensions = mypycify(sources, opt_level=opt_level, target_dir=str(out / "c"))
            dist = Distribution({"name": "raftlib-native", "ext_modules": extensions})
            command = dist.get_command_obj("build_ext")
            command.build_lib = str(out)
            command.build_temp = str(out / "tmp")
            dist.run_command("build_ext")
    except (Exception, SystemExit) as exc:  # mypyc exits on a type error
        raise NativeBuildError(f"native build failed: {_first_error(log) or exc!r}; "
                               f"see {log}") from None
    finally:
        os.chdir(here)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    entries = {}
    for module in modules:
        binary = out.joinpath(*module.split(".")).with_name(module.rsplit(".", 1)[1] + suffix)
        if not binary.is_file():
            raise NativeBuildError(f"native build: mypyc left no {binary} for {module}")
        entries[module] = str(binary.relative_to(out))
    manifest = {"interpreter": _interpreter(), "modules": entries, "sources": sources_digest()}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out


def _first_error(log: Path) -> str | None:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    # "error:" as mypy and the C compiler write it (the compiler's command lines hold -Werror).
    return next((line.strip() for line in lines if "error:" in line), None)


@contextlib.contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Send this process's stdout and stderr, its children's included, to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    log.write_bytes(b"")
    # Appending, so that what Python prints (through the streams, which a test runner may have
    # replaced) and what the compiler writes to the descriptors interleave without overwriting.
    with log.open("a", buffering=1) as sink:
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules in the build, and only those."""

    def __init__(self, binaries: dict[str, Path]) -> None:
        self._binaries = binaries

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        binary = self._binaries.get(fullname)
        if binary is None:
            return None
        return importlib.util.spec_from_file_location(fullname, binary)


def activate(directory: Path) -> None:
    """Run the compiled modules of the build in ``directory`` from now on (before any of them
    is imported); refuses a missing, stale or foreign build."""
    global _active
    where = f"{ENVIRONMENT_VARIABLE}={directory}"
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        interpreter = manifest["interpreter"]
        entries = manifest["modules"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NativeBuildError(
            f"{where}: no readable native build there ({exc}); "
            "build one with raftlib native-build DIR") from None
    if interpreter != _interpreter():
        raise NativeBuildError(f"{where}: built for {interpreter}, this is {_interpreter()}; "
                               "rebuild with raftlib native-build DIR")
    built_from = manifest.get("sources")
    now = sources_digest()
    if built_from != now:
        changed = sorted(set(now.items()) ^ set(
            built_from.items() if isinstance(built_from, dict) else ()))
        path = changed[0][0] if changed else "raftlib"
        raise NativeBuildError(f"{where}: {path} changed since the build; "
                               "rebuild with raftlib native-build DIR")
    binaries: dict[str, Path] = {}
    for module in NATIVE_MODULES:
        entry = entries.get(module) if isinstance(entries, dict) else None
        if not isinstance(entry, str):
            raise NativeBuildError(f"{where}: the build has no {module}; rebuild it")
        if module in sys.modules:
            raise NativeBuildError(f"{where}: {module} was imported before the native build "
                                   "was activated")
        binary = directory / entry
        if not binary.is_file():
            raise NativeBuildError(f"{where}: {binary} is missing; rebuild")
        binaries[module] = binary
    # mypyc puts the code of all the modules in one shared library, which each module's
    # small extension imports by a top-level name.
    sys.path.insert(0, str(directory))
    sys.meta_path.insert(0, _Finder(binaries))
    _active = directory


def activate_from_environment() -> None:
    """``activate`` the build named by RAFTLIB_NATIVE, if it is set (raftlib's import)."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value and _active is None:
        activate(Path(value).resolve())
