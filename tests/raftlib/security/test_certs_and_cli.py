"""`raftlib certs init` makes a private CA and node/client certificates with private keys;
`raftlib serve` requires TLS or an explicit --insecure (which warns) and checks its limits."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from raftlib.certs import CertificateError, certificate_node_id, ensure_certs, node_id_from_uris
from raftlib.cli import main
from raftlib.supervisor import free_ports


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "raftlib.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_certs_init_writes_private_keys_and_node_identities(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "certs"
    assert main(["certs", "init", str(directory), "--nodes", "2"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["ca.key", "ca.pem", "client.key", "client.pem", "node-1.key",
                     "node-1.pem", "node-2.key", "node-2.pem"]
    assert f"created {directory / 'node-2.key'}" in out
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in directory.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o600 if path.suffix == ".key" else 0o644), (path, oct(mode))
    for node_id in (1, 2):
        pem = (directory / f"node-{node_id}.pem").read_bytes()
        assert certificate_node_id(pem, where="test") == node_id
        san = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert certificate_node_id((directory / "client.pem").read_bytes(), where="test") is None


def test_certs_init_again_reuses_the_ca_and_adds_only_missing_nodes(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    ensure_certs(directory, nodes=1)
    ca = (directory / "ca.pem").read_bytes()
    node1 = (directory / "node-1.pem").read_bytes()
    written = ensure_certs(directory, nodes=2)
    assert written == [directory / "node-2.pem", directory / "node-2.key"]
    assert (directory / "ca.pem").read_bytes() == ca
    assert (directory / "node-1.pem").read_bytes() == node1
    ca_cert = x509.load_pem_x509_certificate(ca)
    new = x509.load_pem_x509_certificate((directory / "node-2.pem").read_bytes())
    new.verify_directly_issued_by(ca_cert)


def test_certs_init_refuses_a_ca_key_readable_by_others(tmp_path: Path) -> None:
    directory = tmp_path / "certs"
    ensure_certs(directory, nodes=1)
    os.chmod(directory / "ca.key", 0o644)
    done = cli("certs", "init", str(directory), "--nodes", "2")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "ca.key is accessible by group or others" in done.stderr


@pytest.mark.parametrize(
    ("uris", "expected"),
    [([], None), (["raft://client/x"], None), (["raft://node/3"], 3),
     (["raft://node/3", "raft://node/3"], 3)],
)
def test_node_ids_come_only_from_well_formed_node_uris(
    uris: list[str], expected: int | None
) -> None:
    assert node_id_from_uris(uris) == expected


@pytest.mark.parametrize("uris", [["raft://node/03"], ["raft://node/+3"], ["raft://node/0"],
                                  ["raft://node/x"], ["raft://node/1", "raft://node/2"]])
def test_ambiguous_or_malformed_node_uris_are_refused(uris: list[str]) -> None:
    with pytest.raises(CertificateError):
        node_id_from_uris(uris)


SERVE = ["serve", "--id", "1", "--peers", "1=127.0.0.1:7001", "--data", "d"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ([], "no TLS material"),
        (["--insecure", "--tls-dir", "x"], "--insecure cannot be combined with --tls-dir"),
        (["--tls-dir", "x", "--ca", "y"], "either --tls-dir or --ca/--cert/--key"),
        (["--ca", "y"], "must be given together"),
        (["--tls-dir", "x", "--client-ca", "c"], "--client-ca needs --client-auth"),
        (["--insecure", "--max-clients", "0"], "--max-clients must be >= 1"),
        (["--insecure", "--client-idle-timeout", "-1"], "--client-idle-timeout must be >= 0"),
        (["--insecure", "--peer-idle-timeout", "inf"], "--peer-idle-timeout must be >= 0"),
        (["--insecure", "--handshake-timeout", "0"], "--handshake-timeout must be > 0"),
        (["--insecure", "--max-value-bytes", "2000000", "--max-frame-bytes", "1000000"],
         "does not fit --max-frame-bytes"),
        (["--tls-dir", "/nonexistent-dir"], "does not exist"),
    ],
)
def test_serve_security_and_limit_errors_are_one_line_and_exit_2(
    extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*SERVE, *extra]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], lines


def test_insecure_serve_prints_its_warning_once_up_and_stops_on_sigterm(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftlib.cli", "serve", "--id", "1", "--peers",
         f"1=127.0.0.1:{port}", "--data", str(tmp_path / "d"), "--insecure"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and "warning" not in line:
            line = proc.stderr.readline()
        assert line.startswith("raftlib: warning: --insecure"), line
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
