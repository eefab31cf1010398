"""Certificates shared by the security tests: a cluster PKI and a rogue one (another CA)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raftlib.certs import ensure_certs


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The cluster's certificates: CA, nodes 1..3, client ``client``."""
    directory = tmp_path_factory.mktemp("pki") / "certs"
    ensure_certs(directory, nodes=3)
    return directory


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Certificates with the same names and node ids, issued by a different CA."""
    directory = tmp_path_factory.mktemp("rogue") / "certs"
    ensure_certs(directory, nodes=3)
    return directory
