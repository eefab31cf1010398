"""Every durability call in wal.py is necessary: removing any single fsync, fdatasync or
directory fsync (found by AST, not by line number) lets the crash-state explorer find a
violation, while the unmutated module passes every workload."""

from __future__ import annotations

import ast
import logging
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlib.storage import wal as wal_module
from raftlib.storage.crash_explorer import Workload, explore, standard_workloads
from raftlib.storage.fs import CrashFS

WAL_SOURCE = Path(wal_module.__file__).read_text()
# The calls that make something durable: the file-system primitives and wal.py's helpers.
DURABILITY_CALLS = frozenset({"fsync", "fdatasync", "_flush", "_flush_directory"})
DURABILITY_CALL_SITES_MIN = 16  # wal.py has this many today; fewer means the search broke


def durability_call_sites() -> list[tuple[int, str]]:
    """(line, source) of every statement that is a bare call of a durability function."""
    sites = []
    for node in ast.walk(ast.parse(WAL_SOURCE)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            called = [call.func]
            if _name(call.func) == "_os" and call.args:
                called.append(call.args[0])  # self._os(self._flush, fd): the call during open
            if any(_name(f) in DURABILITY_CALLS for f in called):
                sites.append((node.lineno, ast.unparse(node)))
    return sorted(sites)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


class _RemoveCall(ast.NodeTransformer):
    def __init__(self, line: int) -> None:
        self.line = line
        self.removed = 0

    def visit_Expr(self, node: ast.Expr) -> ast.stmt:
        if node.lineno == self.line and isinstance(node.value, ast.Call):
            self.removed += 1
            return ast.copy_location(ast.Pass(), node)
        return node


def mutant(line: int) -> types.ModuleType:
    """wal.py with the durability call at ``line`` replaced by ``pass``."""
    tree = ast.parse(WAL_SOURCE)
    remover = _RemoveCall(line)
    tree = ast.fix_missing_locations(remover.visit(tree))
    assert remover.removed == 1, f"line {line}: {remover.removed} calls removed"
    module = types.ModuleType(f"raftlib.storage.wal_without_line_{line}")
    module.__file__ = wal_module.__file__
    exec(compile(tree, f"<wal.py without line {line}>", "exec"), module.__dict__)
    return module


def factory_of(module: types.ModuleType):  # type: ignore[no-untyped-def]
    def open_wal(fs: CrashFS, workload: Workload) -> object:
        return module.WalStorage(
            "/data",
            fs=fs,
            segment_bytes_max=workload.segment_bytes_max,
            write_buffer_bytes_max=workload.write_buffer_bytes_max,
        )

    return open_wal


@pytest.fixture(autouse=True)
def quiet_recovery() -> Iterator[None]:
    # Thousands of recoveries each log their repairs: keep the test output readable.
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_the_call_site_search_finds_every_durability_call() -> None:
    sites = durability_call_sites()
    assert len(sites) >= DURABILITY_CALL_SITES_MIN, sites
    assert any("fdatasync" in source for _line, source in sites)
    assert any("_flush_directory" in source for _line, source in sites)


@pytest.mark.parametrize(
    "line", [line for line, _source in durability_call_sites()], ids=lambda line: f"line{line}"
)
def test_removing_a_durability_call_lets_the_explorer_find_a_violation(line: int) -> None:
    factory = factory_of(mutant(line))
    found = []
    for workload in standard_workloads():
        report = explore(workload, factory=factory, fail_fast=True)
        if report.violations:
            found.append(report.violations[0])
            break
    source = dict(durability_call_sites())[line]
    assert found, f"wal.py line {line} `{source}` can be removed with no violation found"


def test_the_unmutated_module_passes_every_workload() -> None:
    for workload in standard_workloads():
        report = explore(workload)
        assert not report.violations, report.violations
