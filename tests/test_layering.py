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


def module_graph(package_roots: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth, function bodies included)."""
    modules: dict[str, Path] = {}
    for _top, folder in package_roots.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder.parent).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    edges.add(target)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


@pytest.mark.parametrize("package", ["raftlib", "lincheck", "harness"])
def test_no_module_imports_itself_through_a_circle(package: str) -> None:
    folder = ROOT / "checker" / "lincheck" if package == "lincheck" else ROOT / package
    cycle = find_cycle(module_graph({package: folder}))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


MODULE_LINES_MAX = 500  # a module a person can read at once: one concept, its invariants on top


def long_modules(folder: Path) -> dict[str, int]:
    """The modules of ``folder`` over ``MODULE_LINES_MAX`` lines, with their line counts."""
    return {p.name: n for p in folder.glob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MODULE_LINES_MAX}


@pytest.mark.parametrize("folder", ["raftlib/core", "checker/lincheck"])
def test_no_module_of_the_raft_core_or_the_checker_is_over_500_lines(folder: str) -> None:
    assert (ROOT / folder).is_dir()
    long = long_modules(ROOT / folder)
    assert not long, f"split these (each concept in one file): {long}"


def test_the_line_count_sees_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "short.py").write_text("x = 1\n" * MODULE_LINES_MAX, encoding="utf-8")
    (tmp_path / "long.py").write_text("x = 1\n" * (MODULE_LINES_MAX + 1), encoding="utf-8")
    assert long_modules(tmp_path) == {"long.py": MODULE_LINES_MAX + 1}
