"""`raftlib cluster --tls` runs a secure local cluster in one command: redis-cli --tls works
against it (with a client certificate when --client-auth), plain redis-cli does not."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.raftlib.kv.test_kv_processes import _consecutive_free


@pytest.mark.parametrize("client_auth", [False, True], ids=["server-auth", "client-auth"])
def test_redis_cli_tls_works_against_raftlib_cluster_tls(
    tmp_path: Path, client_auth: bool
) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    raft_base = _consecutive_free(3)
    client_base = _consecutive_free(3, avoid=raft_base)
    data = tmp_path / "cluster"
    proc = subprocess.Popen(
        [sys.executable, "-m", "raftlib.cli", "cluster", "--nodes", "3", "--tls",
         *(["--client-auth"] if client_auth else []), "--data", str(data),
         "--base-port", str(raft_base), "--client-base-port", str(client_base)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            lines.append(line)
            if line.startswith("ready") or not line:
                break
        assert lines[-1].startswith("ready") and "--tls --cacert" in lines[-1], "".join(lines)
        certs = data / "certs"
        tls = ["--tls", "--cacert", str(certs / "ca.pem")]
        if client_auth:
            tls += ["--cert", str(certs / "client.pem"), "--key", str(certs / "client.key")]

        def redis(*args: str, options: list[str] = tls) -> subprocess.CompletedProcess[str]:
            return subprocess.run([cli, *options, "-c", "-p", str(client_base), *args],
                                  capture_output=True, text=True, timeout=20)

        deadline = time.monotonic() + 20
        while redis("SET", "greeting", "hello").stdout.strip() != "OK":
            assert time.monotonic() < deadline, redis("SET", "greeting", "hello")
            time.sleep(0.2)
        assert redis("GET", "greeting").stdout.strip() == "hello"
        assert redis("INCR", "visits").stdout.strip() == "1"
        plain = redis("GET", "greeting", options=[])
        assert "hello" not in plain.stdout
        if client_auth:
            no_cert = redis("GET", "greeting", options=tls[:3])
            assert "hello" not in no_cert.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    logs = "".join((data / f"node-{n}.log").read_text() for n in (1, 2, 3))
    assert "TLS handshake failed" in logs
    assert "Traceback" not in logs
