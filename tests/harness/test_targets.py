"""The target interface with fakes: outcomes classified honestly (a write that may have been
sent is never ``fail``), the wire helpers' failure reporting, the etcd and RESP clients' requests,
the lost-writes check, and the ``--target`` options."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from lincheck import Event

from harness.history import HistoryRecorder
from harness.live.cluster import wait_pids_gone
from harness.options import OptionsError, RunOptions
from harness.targets import etcd, validate_target
from harness.targets.base import Client, Host, Nodes, NotApplied, Unknown, classify
from harness.targets.cluster import TargetCluster
from harness.targets.lost_writes import check_lost_writes
from harness.targets.recorder import RecordingClient
from harness.targets.resp import RespDB, resp_operation, template_cas
from harness.targets.run import annotate_expected, one_line
from harness.targets.wire import HttpError, RespConnection, post_json
from harness.workloads import OpSpec
from raftlib.resp import ErrorReply

WRITE = OpSpec("write", None, 7)
READ = OpSpec("read", None, None)


# --- classification --------------------------------------------------------------------------


def test_an_answer_is_ok() -> None:
    assert classify(WRITE, None) == "ok"
    assert classify(READ, None) == "ok"


def test_a_definite_refusal_is_fail() -> None:
    assert classify(WRITE, NotApplied("connection refused")) == "fail"


@pytest.mark.parametrize("error", [Unknown("closed after sending"), trio.TooSlowError(),
                                   ConnectionResetError(), RuntimeError("surprise")])
def test_a_write_that_may_have_been_sent_is_info_never_fail(error: BaseException) -> None:
    assert classify(WRITE, error) == "info"


def test_a_read_without_an_answer_is_fail_because_it_changed_nothing() -> None:
    assert classify(READ, Unknown("timeout")) == "fail"


class _Fake(Client):
    """Answers from a script: a value, an exception to raise, or ``"hang"``."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.closed = False

    async def invoke(self, spec: OpSpec) -> Any:
        step = self.script.pop(0)
        if step == "hang":
            await trio.sleep_forever()
        if isinstance(step, BaseException):
            raise step
        return step

    async def close(self) -> None:
        self.closed = True


def _recording(fake: Client) -> tuple[RecordingClient, HistoryRecorder]:
    history = HistoryRecorder(lambda: 0, keyed=False)
    counter = iter(range(100))
    return RecordingClient(fake, history=history, new_process=lambda: next(counter),
                           timeout=1.0), history


async def test_a_write_that_times_out_is_info_and_retires_the_process(
        autojump_clock: trio.testing.MockClock) -> None:
    client, history = _recording(_Fake("hang", 8))
    assert await client.execute(WRITE) == "info"
    assert [e.type for e in history.events] == ["invoke", "info"]
    assert history.events[0].process == 0 and client.process == 1
    assert await client.execute(OpSpec("write", None, 8)) == "ok"
    assert history.events[-1].process == 1


async def test_a_refused_write_is_fail_and_the_process_goes_on() -> None:
    client, history = _recording(_Fake(NotApplied("refused")))
    assert await client.execute(WRITE) == "fail"
    assert client.process == 0 and history.events[-1].value == 7
    assert client.errors == {"NotApplied": 1}


async def test_a_read_records_the_value_it_returned() -> None:
    client, history = _recording(_Fake(5))
    assert await client.execute(READ) == "ok"
    assert history.events[-1].type == "ok" and history.events[-1].value == 5


async def test_a_failed_read_records_no_value() -> None:
    client, history = _recording(_Fake(Unknown("cut")))
    assert await client.execute(READ) == "fail"
    assert history.events[-1].value is None


# --- wire -------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_refused_connection_is_not_applied() -> None:
    with pytest.raises(NotApplied):
        await RespConnection.open("127.0.0.1", _closed_port())
    with pytest.raises(NotApplied):
        await post_json("127.0.0.1", _closed_port(), "/v3/kv/put", {})


async def test_a_connection_closed_after_the_command_was_sent_is_unknown() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = RespConnection(ours, "fake")
    async with trio.open_nursery() as nursery:

        async def server() -> None:
            await theirs.receive_some(1024)
            await theirs.aclose()

        nursery.start_soon(server)
        with pytest.raises(Unknown):
            await conn.call(b"SET", b"k", b"1")
    assert conn.broken


async def test_an_error_reply_is_returned_as_an_answer() -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    conn = RespConnection(ours, "fake")
    async with trio.open_nursery() as nursery:

        async def server() -> None:
            await theirs.receive_some(1024)
            await theirs.send_all(b"-READONLY You can't write against a read only replica.\r\n")

        nursery.start_soon(server)
        reply = await conn.call(b"SET", b"k", b"1")
    assert isinstance(reply, ErrorReply) and reply.code == "READONLY" and not conn.broken


async def test_post_json_decodes_a_200_and_raises_on_another_status() -> None:
    answers = [b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"count": "1"}',
               b'HTTP/1.0 503 Service Unavailable\r\n\r\n{"error": "etcdserver: no leader"}',
               b""]
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, _serve_one(answers), 0)
        port = listeners[0].socket.getsockname()[1]
        assert await post_json("127.0.0.1", port, "/v3/kv/range", {}) == {"count": "1"}
        with pytest.raises(HttpError, match="no leader"):
            await post_json("127.0.0.1", port, "/v3/kv/range", {})
        with pytest.raises(Unknown):  # closed without an answer after the request was sent
            await post_json("127.0.0.1", port, "/v3/kv/put", {})
        nursery.cancel_scope.cancel()


def _serve_one(answers: list[bytes]) -> Callable[[trio.SocketStream], Any]:
    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(65536)
            await stream.send_all(answers.pop(0))

    return handle


# --- etcd client ---------------------------------------------------------------------------


def _hosts(n: int = 3) -> dict[int, Host]:
    addresses = {i: f"10.9.9.{i}" for i in range(1, n + 1)}
    return {i: Host(i, a, Path(f"/nonexistent/{i}"), addresses) for i, a in addresses.items()}


def _fake_gateway(monkeypatch: pytest.MonkeyPatch, answers: list[Any]) -> list[tuple[str, str,
                                                                                       Any]]:
    sent: list[tuple[str, str, Any]] = []

    async def fake(host: str, port: int, path: str, body: Any) -> Any:
        sent.append((host, path, body))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(etcd, "post_json", fake)
    return sent


async def test_etcd_reads_are_linearizable_unless_serializable_is_asked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _fake_gateway(monkeypatch, [{}, {"kvs": [{"value": "Nw=="}]}])
    linear = etcd.EtcdDB().client(_hosts(), home=2, timeout=1.0, workload="register")
    assert await linear.invoke(READ) is None  # absent: the register's nil
    serial = etcd.EtcdDB(serializable_reads=True).client(_hosts(), home=2, timeout=1.0,
                                                         workload="register")
    assert await serial.invoke(READ) == 7
    assert "serializable" not in sent[0][2] and sent[1][2]["serializable"] is True
    assert sent[0][0] == "10.9.9.2"


async def test_etcd_cas_compares_the_value_or_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _fake_gateway(monkeypatch, [{"succeeded": True}, {}])
    client = etcd.EtcdDB().client(_hosts(), home=1, timeout=1.0, workload="register")
    assert await client.invoke(OpSpec("cas", None, [None, 3])) is True
    assert await client.invoke(OpSpec("cas", None, [3, 4])) is False  # proto3 omits false
    assert sent[0][2]["compare"][0]["target"] == "CREATE"
    assert sent[1][2]["compare"][0]["target"] == "VALUE"


async def test_etcd_client_moves_to_another_member_after_an_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent = _fake_gateway(monkeypatch, [Unknown("timeout"), {}])
    client = etcd.EtcdDB().client(_hosts(), home=3, timeout=1.0, workload="register")
    with pytest.raises(Unknown):
        await client.invoke(WRITE)
    await client.invoke(WRITE)
    assert [host for host, _, _ in sent] == ["10.9.9.3", "10.9.9.1"]


# --- RESP operations ---------------------------------------------------------------------------


class _Conn:
    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls: list[tuple[Any, ...]] = []

    async def call(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.replies.pop(0)


async def test_an_error_reply_to_a_write_is_a_definite_refusal() -> None:
    conn: Any = _Conn(ErrorReply("READONLY You can't write against a read only replica."))
    with pytest.raises(NotApplied, match="READONLY"):
        await resp_operation(conn, WRITE, "register", None)


async def test_cas_from_nil_is_setnx_and_a_zero_reply_means_it_did_not_set() -> None:
    conn: Any = _Conn(0, 1)
    assert await resp_operation(conn, OpSpec("cas", None, [None, 2]), "register", None) is False
    assert await resp_operation(conn, OpSpec("cas", None, [None, 2]), "register", None) is True
    assert conn.calls[0] == (b"SETNX", b"register", "2")


async def test_cas_without_a_cas_command_is_refused_before_sending() -> None:
    conn: Any = _Conn()
    with pytest.raises(NotApplied):
        await resp_operation(conn, OpSpec("cas", None, [1, 2]), "register", None)
    assert conn.calls == []


async def test_the_cas_template_fills_in_key_expected_and_new() -> None:
    conn: Any = _Conn(0)
    cas = template_cas("CAS {key} {expected} {new}")
    assert await resp_operation(conn, OpSpec("cas", 3, [1, 2]), "kv", cas) is False
    assert conn.calls == [(b"CAS", b"k3", b"1", b"2")]


# --- lost writes ---------------------------------------------------------------------------


def _events(*ops: tuple[int, str, str, Any]) -> list[Event]:
    return [Event(index=i, process=p, type=t, f=f, value=v, key=None)  # type: ignore[arg-type]
            for i, (p, t, f, v) in enumerate(ops)]


def test_a_final_read_of_an_older_value_shows_the_acknowledged_write_lost() -> None:
    events = _events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (0, "invoke", "write", 2), (0, "ok", "write", 2),
                     (1, "invoke", "read", None), (1, "ok", "read", 1))
    check = check_lost_writes(events, final_from=4, initial=None)
    assert check.valid is False and "1 acknowledged writes lost" in check.summary
    assert "write of 2" in check.violations[0]


def test_a_final_read_of_the_initial_value_loses_every_acknowledged_write() -> None:
    events = _events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (1, "invoke", "read", None), (1, "ok", "read", None))
    assert check_lost_writes(events, final_from=2, initial=None).valid is False


def test_a_concurrent_write_may_legitimately_win() -> None:
    # 1 and 2 overlap: either may be last; a final read of 1 loses nothing.
    events = _events((0, "invoke", "write", 1), (1, "invoke", "write", 2),
                     (1, "ok", "write", 2), (0, "ok", "write", 1),
                     (2, "invoke", "read", None), (2, "ok", "read", 1))
    assert check_lost_writes(events, final_from=4, initial=None).valid is True


def test_unknown_and_unsuccessful_writes_are_never_lost() -> None:
    events = _events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (1, "invoke", "write", 2), (1, "info", "write", 2),
                     (2, "invoke", "cas", [1, 3]), (2, "ok", "cas", False),
                     (3, "invoke", "read", None), (3, "ok", "read", 1))
    assert check_lost_writes(events, final_from=6, initial=None).valid is True


def test_reads_before_the_final_reads_are_not_final() -> None:
    events = _events((0, "invoke", "write", 1), (0, "ok", "write", 1),
                     (0, "invoke", "write", 2), (0, "ok", "write", 2),
                     (1, "invoke", "read", None), (1, "ok", "read", 1))
    assert check_lost_writes(events, final_from=6, initial=None).valid is None


# --- options and refusals ------------------------------------------------------------------


def test_a_target_other_than_raftlib_needs_the_live_backend() -> None:
    with pytest.raises(OptionsError, match="--target etcd: needs --backend live"):
        RunOptions(target="etcd")


def test_a_target_option_needs_its_target() -> None:
    with pytest.raises(OptionsError, match="--etcd-serializable-reads: only with --target etcd"):
        RunOptions(backend="live", etcd_serializable_reads=True)
    with pytest.raises(OptionsError, match="--resp-command"):
        RunOptions(backend="live", target="resp")


def test_the_target_is_in_the_command_line_and_results_only_when_set() -> None:
    assert "--target" not in RunOptions(backend="live").to_argv()
    options = RunOptions(backend="live", target="etcd", etcd_serializable_reads=True)
    argv = options.to_argv()
    assert argv[argv.index("--target") + 1] == "etcd"
    assert RunOptions.from_json(json.loads(json.dumps(options.to_json())), "x") == options


def test_a_fault_kind_the_target_cannot_take_is_refused_in_one_line() -> None:
    options = RunOptions(backend="live", target="resp", resp_command="true")
    with pytest.raises(OptionsError, match="fault kind 'clock' is not supported"):
        validate_target(options, ["clock"])


def test_a_missing_program_is_refused_in_one_line() -> None:
    db = RespDB("/nonexistent/redis-server --port {port}")
    assert db.missing() is not None and "/nonexistent/redis-server" in str(db.missing())


def test_the_verdict_line_says_an_expected_failure_is_expected() -> None:
    from harness.checks import Check

    checks = annotate_expected([Check("set", False, "3 acknowledged element(s) lost"),
                                Check("liveness", False, "no progress after heal")],
                               "redis-sentinel", {"set": "acknowledged writes lost, as documented"})
    stats = {"operations": {"invoke": 4, "ok": 3, "fail": 0, "info": 1},
             "faults_started": {"partition": 1}, "run_seconds": 1.0}
    line = one_line(RunOptions(backend="live", workload="set", target="redis-sentinel"),
                    "redis 7.0.15", checks, "invalid", stats, 2.0, None)
    assert line.startswith("INVALID (set: 3 acknowledged element(s) lost [expected for "
                           "redis-sentinel: acknowledged writes lost, as documented]; "
                           "liveness: no progress after heal):")
    assert "target redis 7.0.15" in line


# --- the processes of a target --------------------------------------------------------------


class _Network:
    """The part of a live network a target cluster uses: no namespace, the command as is."""

    method = "fake"

    def command(self, node: int, argv: list[str]) -> list[str]:
        return list(argv)


class _SleeperDB(RespDB):
    """Nodes and companions that sleep; records each setup."""

    def __init__(self) -> None:
        super().__init__("sleep 30")
        self.setups: list[int] = []

    def setup(self, host: Host) -> None:
        (host.data_dir / "conf").write_text("x")
        self.setups.append(host.node)

    def command(self, host: Host) -> list[str]:
        return [sys.executable, "-c", "import time; time.sleep(30)"]

    def companion(self, host: Host) -> list[str] | None:
        return self.command(host)


def _wait_until(done: Callable[[], bool]) -> bool:
    """Whether ``done()`` holds within 2 s: a signal's effect on a process's state takes a
    moment, and no event tells it (polled)."""
    deadline = time.monotonic() + 2.0
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"


async def test_a_target_node_is_started_paused_killed_wiped_and_stopped(tmp_path: Path) -> None:
    db = _SleeperDB()
    network: Any = _Network()
    cluster = TargetCluster(db, 2, network, tmp_path, seed=0, log=lambda n, t: None)
    nodes: Nodes = cluster  # the per-node actions of the interface, for any process DB
    assert cluster.target_hosts[2].address == "10.77.0.2"
    try:
        cluster.start_all()
        pid = cluster.supervisor.process(1).pid
        assert db.setups == [1, 2] and (tmp_path / "nodes" / "node-1" / "conf").exists()
        assert not _stopped(pid)
        assert cluster.pause(1) and _wait_until(lambda: _stopped(pid))
        assert cluster.resume(1) and _wait_until(lambda: not _stopped(pid))
        assert nodes.kill(1) and not cluster.running(1)
        assert cluster.companions.running(1), "a fault of the node spares its companion"
        nodes.wipe(1)
        assert not (tmp_path / "nodes" / "node-1").exists()
        cluster.start(1)
        assert db.setups == [1, 2, 1], "a wiped node is set up again"
        cluster.start(2)  # running: nothing happens
        assert db.setups == [1, 2, 1]
        assert nodes.stop(2) == -signal.SIGTERM and not cluster.running(2)
        cluster.start(2)
        await cluster.stop_all()
        assert not cluster.running(1) and not cluster.companions.running(2)
        assert cluster.unexpected_exits == [] and cluster.companions.unexpected_exits == []
    finally:
        cluster.kill_all()
    assert wait_pids_gone(cluster.all_pids(), 5.0) == []


def test_a_target_without_namespaces_is_refused_in_one_line(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFT_HARNESS_PARTITIONS", "proxy")
    options = RunOptions(backend="live", target="resp", resp_command=sys.executable)
    with pytest.raises(OptionsError, match="--target resp: needs network namespaces"):
        validate_target(options, [])


def test_nemesis_all_on_a_target_means_the_faults_it_supports() -> None:
    from harness.live.runner import narrow_all
    from harness.options import NEMESIS_KINDS

    options = RunOptions(backend="live", target="etcd", nemesis=NEMESIS_KINDS)
    assert narrow_all(options).nemesis == ("partition", "kill", "pause")


# --- the Sentinel client ---------------------------------------------------------------------


class _FakeRedis:
    """A connection whose replies are scripted; records every command."""

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.calls: list[tuple[Any, ...]] = []

    async def call(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.replies.pop(0)

    async def aclose(self) -> None:
        return None


def _sentinel_client(monkeypatch: pytest.MonkeyPatch, *replies: Any) -> tuple[Client,
                                                                              _FakeRedis]:
    from harness.targets import redis_sentinel

    conn = _FakeRedis(list(replies))

    async def ask(address: str, port: int, *args: bytes) -> Any:
        return [b"10.9.9.2", b"6379"]

    class _Open:
        @staticmethod
        async def open(address: str, port: int) -> _FakeRedis:
            assert (address, port) == ("10.9.9.2", 6379)
            return conn

    monkeypatch.setattr(redis_sentinel, "_ask", ask)
    monkeypatch.setattr(redis_sentinel, "RespConnection", _Open)
    client = redis_sentinel.RedisSentinelDB().client(_hosts(), home=1, timeout=1.0,
                                                     workload="register")
    return client, conn


async def test_the_sentinel_client_writes_only_to_a_node_that_says_it_is_the_primary(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, conn = _sentinel_client(monkeypatch, [b"slave", b"10.9.9.3", 6379, b"connected", 9])
    with pytest.raises(NotApplied, match="is not one"):
        await client.invoke(WRITE)
    assert conn.calls == [(b"ROLE",)], "the write was sent to a replica"


async def test_the_sentinel_client_writes_to_the_primary(monkeypatch: pytest.MonkeyPatch) -> None:
    from raftlib.resp import SimpleString

    client, conn = _sentinel_client(monkeypatch, [b"master", 0, []], SimpleString("OK"))
    assert await client.invoke(WRITE) == 7
    assert conn.calls == [(b"ROLE",), (b"SET", b"register", "7")]


async def test_an_operation_gives_up_at_the_request_timeout(
        autojump_clock: trio.testing.MockClock) -> None:
    history = HistoryRecorder(lambda: int(trio.current_time() * 1_000_000), keyed=False)
    client = RecordingClient(_Fake("hang"), history=history, new_process=lambda: 0,
                             timeout=1.0)
    began = trio.current_time()
    assert await client.execute(WRITE) == "info"
    assert history.events[-1].time == pytest.approx(began + 1.0)
