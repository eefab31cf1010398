"""The suite's process group (tests/conftest.py) names real modules and catches the tests
that start clusters, so a rename does not quietly let two clusters share the machine."""

from __future__ import annotations

import re

from tests.conftest import PROCESS_MODULES, ROOT

# What a module that starts node processes or a live run imports or writes.
_STARTS_CLUSTERS = re.compile(
    r"tests\.raftlib\.(cluster_cli|proc_node)|raftlib\.supervisor import"
    r"|tls_cluster import TcpKvCluster"
    r"|backend=\"live\", nodes=\d+, clients="
    r"|\"--backend\", \"live\", \"--nodes\", \"\d+\", \"--time-limit\"")


def test_every_process_module_pattern_names_an_existing_module() -> None:
    for pattern in PROCESS_MODULES:
        assert list(ROOT.glob(pattern)), f"{pattern} in PROCESS_MODULES matches no test module"


def test_every_module_that_starts_a_cluster_is_in_the_process_group() -> None:
    listed = {path for pattern in PROCESS_MODULES for path in ROOT.glob(pattern)}
    missing = [
        path.relative_to(ROOT).as_posix() for path in sorted(ROOT.glob("tests/**/test_*.py"))
        if path.name != "test_suite_groups.py" and path not in listed
        and _STARTS_CLUSTERS.search(path.read_text(encoding="utf-8"))
    ]
    assert not missing, f"start clusters but are not in PROCESS_MODULES: {missing}"
