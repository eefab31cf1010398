"""The --ssh-* options: bad values are refused with one line naming the option, and runs on
other hosts keep their options through the command line; the remote start and filter scripts.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

from harness.cli import build_parser, main
from harness.live.runner import narrow_all, validate
from harness.options import OptionsError, RunOptions, ssh_host_list


@pytest.fixture
def key(tmp_path: Path) -> str:
    path = tmp_path / "id_test"
    path.write_text("not read until a connection is made\n")
    return str(path)


def _ssh(key: str, **kw: object) -> RunOptions:
    values: dict[str, object] = {"backend": "live", "nodes": 3, "ssh_hosts": "h1,h2,h3",
                                 "ssh_key": key}
    values.update(kw)
    return RunOptions(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "needle"), [
    ("h1,,h3", "bad host ''"),
    ("h1,h2,", "bad host ''"),
    ("h1,h 2,h3", "bad host 'h 2'"),
    ("h1,h2:0,h3", "bad port in 'h2:0'"),
    ("h1,h2:99999,h3", "bad port in 'h2:99999'"),
    ("h1,h2:ssh,h3", "bad port in 'h2:ssh'"),
    ("h1,h2,h1", "'h1' is listed twice"),
])
def test_a_bad_host_list_is_refused_naming_the_option_and_the_entry(
    key: str, text: str, needle: str,
) -> None:
    with pytest.raises(OptionsError) as caught:
        _ssh(key, ssh_hosts=text)
    message = str(caught.value)
    assert message.startswith("--ssh-hosts: ") and needle in message
    assert "\n" not in message


def test_the_host_list_gives_one_host_per_node(key: str) -> None:
    with pytest.raises(OptionsError, match=r"^--ssh-hosts: 2 hosts for --nodes 3 "):
        _ssh(key, ssh_hosts="h1,h2")


def test_hosts_and_ports_are_parsed_in_order() -> None:
    assert ssh_host_list("10.0.0.1, h2:2222,h-3.example") == [
        ("10.0.0.1", 22), ("h2", 2222), ("h-3.example", 22)]


def test_nodes_on_other_hosts_need_the_live_backend(key: str) -> None:
    with pytest.raises(OptionsError, match=r"^--ssh-hosts: .*need --backend live$"):
        _ssh(key, backend="sim")


def test_a_key_is_required_with_ssh_hosts() -> None:
    with pytest.raises(OptionsError, match=r"^--ssh-key: required with --ssh-hosts"):
        RunOptions(backend="live", nodes=3, ssh_hosts="h1,h2,h3")


def test_a_missing_key_file_is_refused_naming_the_option(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(OptionsError, match=r"^--ssh-key: .*nope' is not a readable file$"):
        _ssh(str(missing))


def test_a_missing_known_hosts_file_is_refused_naming_the_option(key: str,
                                                                   tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match=r"^--ssh-known-hosts: .* not a readable file$"):
        _ssh(key, ssh_known_hosts=str(tmp_path / "known"))


@pytest.mark.parametrize("name", ["ssh_user", "ssh_key", "ssh_known_hosts", "ssh_python"])
def test_ssh_settings_without_hosts_are_refused(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    with pytest.raises(OptionsError, match=rf"^{flag}: needs --ssh-hosts$"):
        RunOptions(backend="live", **{name: "x"})  # type: ignore[arg-type]


def test_the_cli_says_what_is_wrong_with_the_host_list_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status = main(["run", "--backend", "live", "--nodes", "3", "--ssh-hosts", "a,b",
                   "--ssh-key", "/nonexistent"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.count("\n") == 1 and "--ssh-hosts: 2 hosts for --nodes 3" in err


def test_the_cli_names_a_missing_key(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--backend", "live", "--nodes", "3", "--ssh-hosts", "a,b,c"])
    err = capsys.readouterr().err
    assert status == 3 and err.count("\n") == 1 and "--ssh-key: required" in err


def test_ssh_options_survive_the_command_line_and_results_json(key: str) -> None:
    options = _ssh(key, ssh_hosts="h1,h2:2222,h3", ssh_user="admin", ssh_python="/opt/py")
    argv = options.to_argv()
    assert "--ssh-hosts" in argv and "--ssh-user" in argv
    args = build_parser().parse_args(argv)
    again = RunOptions(**{name: getattr(args, name) for name in
                          ("backend", "nodes", "ssh_hosts", "ssh_key", "ssh_user",
                           "ssh_python")})
    assert (again.ssh_hosts, again.ssh_user, again.ssh_python) == ("h1,h2:2222,h3", "admin",
                                                                   "/opt/py")
    assert RunOptions.from_json(options.to_json(), "results.json") == options
    # Runs on this machine do not grow --ssh-* flags.
    assert not [a for a in RunOptions().to_argv() if a.startswith("--ssh")]


def test_over_ssh_only_partition_kill_and_pause_are_injected(key: str) -> None:
    assert narrow_all(_ssh(key, nemesis="all")).nemesis == ("partition", "kill", "pause")
    with pytest.raises(OptionsError, match=r"^--nemesis: 'loss' .* over SSH"):
        validate(_ssh(key, nemesis=("partition", "loss")))
    validate(_ssh(key, nemesis=("partition", "kill", "pause")))


needs_asyncssh = pytest.mark.skipif(importlib.util.find_spec("asyncssh") is None,
                                    reason="needs asyncssh (pip install 'raft-toolkit[ssh]')")


@needs_asyncssh
def test_the_remote_start_prints_the_pid_of_the_node_itself_and_marks_the_log(
    tmp_path: Path,
) -> None:
    from harness.live.ssh import spawn_command

    log = tmp_path / "node-1.log"
    log.write_bytes(b"cut off mid-li")  # the previous process died while writing a line
    command = spawn_command(["sh", "-c", 'echo "running as $$ with $PYTHONPATH"'],
                            log=str(log), marker="--- supervisor: start #2 of node 1",
                            env={"PYTHONPATH": "/some/where", "HOME": "/not/forwarded"})
    done = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True,
                          env={"PATH": os.environ["PATH"]})
    pid = int(done.stdout.strip())
    assert log.read_text().splitlines() == [
        "cut off mid-li",
        "--- supervisor: start #2 of node 1 (the line above was cut off)",
        f"running as {pid} with /some/where",
    ]


@needs_asyncssh
def test_a_whole_last_line_gets_no_cut_note(tmp_path: Path) -> None:
    from harness.live.ssh import spawn_command

    log = tmp_path / "node-1.log"
    log.write_text("a whole line\n")
    command = spawn_command(["true"], log=str(log), marker="--- start #2", env={})
    subprocess.run(["sh", "-c", command], capture_output=True, check=True)
    assert log.read_text() == "a whole line\n--- start #2\n"


@needs_asyncssh
def test_the_filter_script_drops_exactly_the_blocked_sources_and_heals_to_no_table() -> None:
    from harness.live.ssh import NFT_TABLE, filter_script

    blocking = filter_script(["10.0.0.3", "10.0.0.2"])
    assert "ip saddr { 10.0.0.2, 10.0.0.3 } drop" in blocking
    assert blocking.index(f"delete table inet {NFT_TABLE}") < blocking.index("chain input")
    healed = filter_script([])
    assert healed.splitlines() == [f"add table inet {NFT_TABLE}",
                                   f"delete table inet {NFT_TABLE}"]
