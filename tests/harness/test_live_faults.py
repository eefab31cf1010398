"""Loss and delay on live links, and what ``--nemesis all`` means for the live backend."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from harness.live import loss, net
from harness.live.cluster import wait_pids_gone
from harness.live.runner import narrow_all, supported_nemeses, validate
from harness.live.shaper import Delay, pump_both
from harness.nemesis import generate
from harness.options import NEMESIS_KINDS, OptionsError, RunOptions
from harness.runner import run

ROOT_NETNS = net.netns_unavailable_reason() is None
needs_netns = pytest.mark.skipif(not ROOT_NETNS, reason="needs root on Linux and pyroute2")
DATAGRAMS = 400

_COUNT = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('10.77.0.1', 9))\n"
    # Room for every datagram even if this process is not scheduled while they arrive (a
    # loaded machine: the default buffer holds about 256 and the rest would be dropped here,
    # not by the fault). SO_RCVBUFFORCE: root may exceed rmem_max.
    "s.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)\n"
    "s.settimeout(1.0); print('ready', flush=True); n = 0\n"
    "try:\n"
    "    while True:\n"
    "        s.recv(16); n += 1\n"
    "except TimeoutError:\n"
    "    print(n, flush=True)\n"
)
_SEND = (
    "import socket\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    f"for _ in range({DATAGRAMS}):\n"
    "    s.sendto(b'x', ('10.77.0.1', 9))\n"
)


def _in(node: int, code: str) -> list[str]:
    return [sys.executable, "-m", "harness.live.nsexec", f"rh-n{node}", sys.executable, "-c",
            code]


def _received_by_1_from_2() -> int:
    counter = subprocess.Popen(_in(1, _COUNT), stdout=subprocess.PIPE, text=True)
    try:
        assert counter.stdout is not None and counter.stdout.readline() == "ready\n"
        subprocess.run(_in(2, _SEND), check=True, timeout=30)
        return int(counter.stdout.readline())
    finally:
        counter.kill()
        counter.wait()
        if counter.stdout is not None:
            counter.stdout.close()


@needs_netns
@pytest.mark.skipif(loss.unavailable_reason() is not None, reason="no bpf(2) number here")
def test_loss_drops_about_the_given_share_of_packets_between_nodes_and_heals() -> None:
    with net.open_network(2) as network:
        assert isinstance(network, net.NetnsNetwork)
        assert _received_by_1_from_2() == DATAGRAMS
        network.set_loss(0.5)
        lossy = _received_by_1_from_2()
        # Binomial(400, 0.5): sd 10; the bounds are 8 sd away.
        assert 120 <= lossy <= 280, lossy
        network.set_loss(None)
        assert _received_by_1_from_2() == DATAGRAMS
    assert net.leftovers_when_idle() == []


def test_the_loss_program_drops_only_ipv4_and_is_eight_instructions() -> None:
    code = loss.program(0.25)
    assert len(code) == 8 * 8
    # The comparison against the threshold uses p * 2**32 as an unsigned 32-bit number.
    assert int.from_bytes(code[3 * 8 + 4:3 * 8 + 8], "little", signed=False) == 2**30
    with pytest.raises(AssertionError):
        loss.program(0.0)


async def test_the_delay_line_delays_each_chunk_by_the_set_delay_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delay = Delay(random.Random(1))
    left, relay_in = trio.testing.memory_stream_pair()
    relay_out, right = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(pump_both, relay_in, relay_out, delay)
        await left.send_all(b"now")
        with trio.fail_after(0.001):
            assert await right.receive_some(16) == b"now"  # no delay set: at once
        delay.set(100.0, 50.0)
        sent_at = trio.current_time()
        await left.send_all(b"one")
        await trio.sleep(0.001)
        await left.send_all(b"two")
        got = b""
        while len(got) < 6:
            got += await right.receive_some(16)
            waited = trio.current_time() - sent_at
            assert 0.1 <= waited <= 0.151, waited
        assert got == b"onetwo"  # jitter never reorders a stream
        delay.clear()
        nursery.cancel_scope.cancel()
    assert delay.chunks_delayed == 2


def test_nemesis_all_on_the_live_backend_means_every_kind_it_can_inject_here() -> None:
    options = narrow_all(RunOptions(backend="live", nemesis=NEMESIS_KINDS))
    assert options.nemesis == supported_nemeses()
    assert {"partition", "kill", "pause", "delay", "clock"} <= set(options.nemesis)
    assert ("loss" in options.nemesis) == (ROOT_NETNS and loss.unavailable_reason() is None)
    validate(options)
    schedule = generate(0, options.nemesis, 3, 60.0, 5.0)
    assert set(schedule.kinds()) <= set(supported_nemeses())


def test_loss_without_namespaces_is_refused_in_one_line_with_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(net.PARTITIONS_ENV, "proxy")
    with pytest.raises(OptionsError, match="needs network namespaces") as refused:
        validate(RunOptions(backend="live", nemesis=("loss",)))
    assert "\n" not in str(refused.value)
    assert "loss" not in narrow_all(RunOptions(backend="live", nemesis=NEMESIS_KINDS)).nemesis


def test_live_run_under_every_fault_it_can_inject_is_valid_and_leaves_nothing_behind(
    tmp_path: Path,
) -> None:
    options = RunOptions(backend="live", nodes=3, time_limit=8.0, nemesis=NEMESIS_KINDS,
                         seed=5, nemesis_interval=1.5, recovery_time=15.0)
    report = run(options, tmp_path / "run")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert report.verdict == "valid", f"reproduce with seed=5: {report.line}"
    kinds = supported_nemeses()
    assert results["options"]["nemesis"] == list(kinds)
    assert set(results["stats"]["faults_started"]) == set(kinds), results["stats"]
    assert "delay: relay" in report.line and "clock: timer rate" in report.line
    assert ("loss: ebpf" in report.line) == ("loss" in kinds)
    pids = [pid for node in results["stats"]["nodes"].values() for pid in node["pids"]]
    assert wait_pids_gone(pids, 5.0) == []
    if ROOT_NETNS:
        assert net.leftovers_when_idle() == []
