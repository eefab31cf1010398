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
# Flushes wal.py hands to ``raftlib.storage.fs.replace_file`` (the hard state) by keyword.
HANDED_FLUSHES = frozenset({"flush", "flush_directory"})
DURABILITY_CALL_SITES_MIN = 16  # wal.py has this many today; fewer means the search broke

# A site: (line, keyword): the bare call at ``line`` is removed (keyword ""), or the flush
# handed by ``keyword`` in the call at ``line`` is replaced by one that does nothing.
Site = tuple[int, str]


def durability_call_sites() -> list[tuple[Site, str]]:
    """(site, source) of every statement that is a bare call of a durability function, and of
    every flush handed to another function by keyword."""
    sites = []
    for node in ast.walk(ast.parse(WAL_SOURCE)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            called = [call.func]
            if _name(call.func) == "_os" and call.args:
                called.append(call.args[0])  # self._os(self._flush, fd): the call during open
            if any(_name(f) in DURABILITY_CALLS for f in called):
                sites.append(((node.lineno, ""), ast.unparse(node)))
            for kw in call.keywords:
                if kw.arg in HANDED_FLUSHES and _name(kw.value) in DURABILITY_CALLS:
                    sites.append(((node.lineno, kw.arg), f"{kw.arg}={ast.unparse(kw.value)}"))
    return sorted(sites)


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


class _RemoveCall(ast.NodeTransformer):
    def __init__(self, site: Site) -> None:
        self.line, self.keyword = site
        self.removed = 0

    def visit_Expr(self, node: ast.Expr) -> ast.stmt:
        if node.lineno != self.line or not isinstance(node.value, ast.Call):
            return node
        if not self.keyword:
            self.removed += 1
            return ast.copy_location(ast.Pass(), node)
        for kw in node.value.keywords:
            if kw.arg == self.keyword:
                self.removed += 1
                kw.value = ast.parse("lambda *_: None", mode="eval").body
        return node


def mutant(site: Site) -> types.ModuleType:
    """wal.py with the durability call at ``site`` removed (or its handed flush a no-op)."""
    tree = ast.parse(WAL_SOURCE)
    remover = _RemoveCall(site)
    tree = ast.fix_missing_locations(remover.visit(tree))
    assert remover.removed == 1, f"{site}: {remover.removed} calls removed"
    module = types.ModuleType(f"raftlib.storage.wal_without_line_{site[0]}{site[1]}")
    module.__file__ = wal_module.__file__
    exec(compile(tree, f"<wal.py without {site}>", "exec"), module.__dict__)
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
    assert any("fdatasync" in source for _site, source in sites)
    assert any("_flush_directory" in source for _site, source in sites)
    # The hard state's flushes, handed to replace_file: both found.
    assert {site[1] for site, _source in sites} >= HANDED_FLUSHES, sites


@pytest.mark.parametrize(
    "site", [site for site, _source in durability_call_sites()],
    ids=lambda site: f"line{site[0]}{'-' + site[1] if site[1] else ''}",
)
def test_removing_a_durability_call_lets_the_explorer_find_a_violation(site: Site) -> None:
    factory = factory_of(mutant(site))
    found = []
    for workload in standard_workloads():
        report = explore(workload, factory=factory, fail_fast=True)
        if report.violations:
            found.append(report.violations[0])
            break
    source = dict(durability_call_sites())[site]
    assert found, f"wal.py line {site[0]} `{source}` can be removed with no violation found"


def test_the_unmutated_module_passes_every_workload() -> None:
    for workload in standard_workloads():
        report = explore(workload)
        assert not report.violations, report.violations
