"""The architecture stays visible: the Raft core does no I/O, lincheck stands alone, and the
harness depends on raftlib and lincheck, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Top-level module names each file of ``folder`` imports (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        # The pure core: no event loop, sockets, files, clocks or global randomness.
        ("raftlib/core", {"trio", "socket", "asyncio", "time", "os", "random", "threading",
                          "harness", "lincheck"}),
        # lincheck: standard library only at run time, and independent of the rest.
        ("checker/lincheck", {"raftlib", "harness", "trio", "attrs", "msgspec", "matplotlib",
                              "rich"}),
        # The library never reaches into the harness or the checker.
        ("raftlib", {"harness", "lincheck"}),
    ],
)
def test_layer_imports_nothing_it_must_not(folder: str, forbidden: set[str]) -> None:
    offenders = {
        path: sorted(names & forbidden)
        for path, names in imported_modules(ROOT / folder).items()
        if names & forbidden
    }
    assert not offenders, f"{folder} imports what its layer forbids: {offenders}"


def test_the_layering_check_sees_imports() -> None:
    """The scan itself works: the harness does import raftlib and lincheck."""
    names = set().union(*imported_modules(ROOT / "harness").values())
    assert {"raftlib", "lincheck", "trio"} <= names
