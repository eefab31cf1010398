"""`raftlib cluster --tls` runs a secure local cluster in one command: redis-cli --tls works
against it (with a client certificate when --client-auth), plain redis-cli does not."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.raftlib.cluster_cli import raftlib_cluster


@pytest.mark.parametrize("client_auth", [False, True], ids=["server-auth", "client-auth"])
def test_redis_cli_tls_works_against_raftlib_cluster_tls(
    tmp_path: Path, client_auth: bool
) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.skip("redis-cli is not installed")
    options = ["--tls", *(["--client-auth"] if client_auth else [])]
    with raftlib_cluster(tmp_path, *options) as cluster:
        client_base, data = cluster.client_base, cluster.data
        assert "--tls --cacert" in cluster.ready_line, cluster.ready_line
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
    assert cluster.returncode == 0, cluster.output
    logs = "".join((data / f"node-{n}.log").read_text() for n in (1, 2, 3))
    assert "TLS handshake failed" in logs
    assert "Traceback" not in logs
