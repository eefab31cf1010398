"""RunOptions: everything that determines a run, validated when built.

A run of the sim backend is a pure function of its options (the seed included) and, when given,
a saved nemesis schedule: ``to_argv`` rebuilds the exact command line that reproduces it and
``to_json``/``from_json`` carry it through ``results.json`` for ``raft-harness replay``. Every
time is in seconds (floats, as the CLI takes them); the simulator converts to integer
microseconds once, so virtual time has no rounding drift. Bad values raise ``OptionsError``
naming the option, as the CLI prints it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from raftlib.config_flags import core_argv
from raftlib.core.config import CoreConfig, SettingError, check_overrides, setting_names
from raftlib.errors import ConfigError

BACKENDS: tuple[str, ...] = ("sim", "live")
WORKLOADS: tuple[str, ...] = ("register", "kv", "append", "counter", "set", "queue")
# The systems a live run can test (harness.targets); raftlib is the simulator's too.
TARGETS: tuple[str, ...] = ("raftlib", "etcd", "redis-sentinel", "resp")
# Fault kinds a schedule can draw from; "all" selects every one, "none" none.
NEMESIS_KINDS: tuple[str, ...] = (
    "partition",
    "kill",
    "pause",
    "loss",
    "duplicate",
    "delay",
    "reorder",
    "clock",
    "disk",
    "crash-after-vote",
    "crash-after-commit",
    "crash-new-leader",
    "member",
)
NODES_MAX = 15
# The nodes' snapshot thresholds in harness runs: far smaller than raftlib's defaults (10,000
# entries, 1,024 trailing, 256 KiB chunks), so that a run of a few hundred operations takes
# several snapshots, compacts its logs and sends InstallSnapshot to nodes that fell behind.
SNAPSHOT_ENTRIES_DEFAULT = 64
SNAPSHOT_TRAILING_DEFAULT = 16
SNAPSHOT_CHUNK_BYTES_DEFAULT = 4096
CLIENTS_MAX = 1000


class OptionsError(ValueError):
    """A bad option; ``str()`` is one line naming it (the CLI prints it and exits 3)."""


def parse_nemesis(text: str) -> tuple[str, ...]:
    """``partition,kill`` / ``all`` / ``none`` -> a tuple of kinds in canonical order."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise OptionsError("--nemesis: empty list (use 'none' for no faults)")
    if names == ["all"]:
        return NEMESIS_KINDS
    if names == ["none"]:
        return ()
    for name in names:
        if name not in NEMESIS_KINDS:
            known = ", ".join((*NEMESIS_KINDS, "all", "none"))
            raise OptionsError(f"--nemesis: unknown fault kind {name!r} (known: {known})")
    return tuple(kind for kind in NEMESIS_KINDS if kind in names)


def nemesis_text(kinds: Sequence[str]) -> str:
    if not kinds:
        return "none"
    if tuple(kinds) == NEMESIS_KINDS:
        return "all"
    return ",".join(kinds)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _seconds_in(minimum: float, maximum: float) -> Callable[[Any, attrs.Attribute[Any], Any],
                                                             None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not minimum <= value <= maximum
        ):
            raise OptionsError(f"{_flag(attribute.name)}: must be a number of seconds in "
                               f"[{minimum:g}, {maximum:g}], got {value!r}")
    return check


def _integer_in(minimum: int, maximum: int) -> Callable[[Any, attrs.Attribute[Any], Any], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not (
                minimum <= value <= maximum):
            raise OptionsError(f"{_flag(attribute.name)}: must be an integer in "
                               f"[{minimum}, {maximum}], got {value!r}")
    return check


def _clock_rate_max(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not (value == 0 or 1 < value <= 100)):
        raise OptionsError(f"--clock-rate-max: must be 0 (as drawn) or a factor in (1, 100], "
                           f"got {value!r}")


def _backend(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in BACKENDS:
        raise OptionsError(f"--backend: {value!r} is not available (available: "
                           f"{', '.join(BACKENDS)})")


def _workload(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in WORKLOADS:
        raise OptionsError(f"--workload: unknown workload {value!r} (known: "
                           f"{', '.join(WORKLOADS)})")


def _target(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value not in TARGETS:
        raise OptionsError(f"--target: unknown target {value!r} (known: {', '.join(TARGETS)})")


def _text(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str):
        raise OptionsError(f"{_flag(attribute.name)}: must be text, got {value!r}")


def _kinds(value: Any) -> Any:
    # The CLI's text ("partition,kill", "all") or a sequence of kinds; validation names the
    # unknown ones.
    if isinstance(value, str):
        return parse_nemesis(value)
    return tuple(value) if isinstance(value, list | tuple) else value


def _rate(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= 100_000
    ):
        raise OptionsError(f"--rate: must be a number of operations per second in "
                           f"(0, 100000], got {value!r}")


def _nemesis(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple):
        raise OptionsError(f"--nemesis: must be a list of fault kinds, got {value!r}")
    for kind in value:
        if kind not in NEMESIS_KINDS:
            raise OptionsError(f"--nemesis: unknown fault kind {kind!r}")


def _as_float(value: Any) -> Any:
    # Ints become floats so equal options serialise identically; anything else is left for
    # validation to name.
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _core(value: Any) -> dict[str, Any]:
    """Core settings as canonical overrides: validated by ``CoreConfig`` itself, sorted, the
    values equal to its defaults left out."""
    try:
        return check_overrides(value, "options.core")
    except SettingError as exc:
        raise OptionsError(f"{_flag(exc.name)}: {exc.problem}") from None
    except ConfigError as exc:
        raise OptionsError(str(exc)) from None


# How ``to_argv`` writes a field: always, or only when it differs from its default (so the
# command lines of runs that leave it alone do not change when an option is added).
ALWAYS = "always"
IF_SET = "if-set"


def _legacy(name: str) -> Any:
    """A core setting's constructor name from before ``core`` existed (``RunOptions(pre_vote=
    False)``, ``attrs.evolve(options, append_entries_max=1)``), kept so such code still works:
    the value is folded into ``core`` when the options are built and never stored apart
    (``options.pre_vote`` reads ``core``). New core settings get no such name: use ``core``."""
    return attrs.field(default=None, alias=name, eq=False, repr=False,
                       metadata={"legacy": name})


def _flag_value(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise OptionsError(f"{_flag(attribute.name)}: must be true or false, got {value!r}")


_SSH_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
SSH_PORT = 22


def ssh_host_list(text: str) -> list[tuple[str, int]]:
    """``h1,h2:2222`` -> ``[("h1", 22), ("h2", 2222)]`` (``--ssh-hosts``; IPv4 or names)."""
    entries = [part.strip() for part in text.split(",")]
    hosts: list[tuple[str, int]] = []
    for entry in entries:
        host, colon, port_text = entry.partition(":")
        if not host or not set(host) <= _SSH_HOST_CHARS:
            raise OptionsError(f"--ssh-hosts: bad host {entry!r} in {text!r} (expected "
                               "HOST[:PORT],... with one host per node)")
        port = SSH_PORT
        if colon:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise OptionsError(f"--ssh-hosts: bad port in {entry!r} (expected 1..65535)")
            port = int(port_text)
        if (host, port) in hosts:
            raise OptionsError(f"--ssh-hosts: {entry!r} is listed twice (one node per host)")
        hosts.append((host, port))
    return hosts


def _check_ssh(options: RunOptions) -> None:
    """The --ssh-* options together: hosts for a live run, one per node, with a key file."""
    if not options.ssh_hosts:
        for name in ("ssh_user", "ssh_key", "ssh_known_hosts", "ssh_python"):
            if getattr(options, name):
                raise OptionsError(f"{_flag(name)}: needs --ssh-hosts")
        return
    if options.backend != "live":
        raise OptionsError("--ssh-hosts: nodes on other hosts need --backend live")
    hosts = ssh_host_list(options.ssh_hosts)
    if len(hosts) != options.nodes:
        raise OptionsError(f"--ssh-hosts: {len(hosts)} hosts for --nodes {options.nodes} "
                           "(one node per host)")
    if any(c.isspace() or c in "@:" for c in options.ssh_user):
        raise OptionsError(f"--ssh-user: bad user name {options.ssh_user!r}")
    if not options.ssh_key:
        raise OptionsError("--ssh-key: required with --ssh-hosts (the private key file to "
                           "log in with)")
    for name in ("ssh_key", "ssh_known_hosts"):
        path = getattr(options, name)
        if path and not (os.path.isfile(path) and os.access(path, os.R_OK)):
            raise OptionsError(f"{_flag(name)}: {path!r} is not a readable file")


def option(default: Any, help: str, *, validator: Any = None, converter: Any = None,
           argv: str = ALWAYS) -> Any:
    """One run option: its default, validator, help text (the CLI flag's) and argv rule."""
    return attrs.field(default=default, validator=validator, converter=converter,
                       metadata={"help": help, "argv": argv})


@attrs.frozen
class RunOptions:
    """Every field is one option, declared once: its CLI flag (``--name-with-dashes``), help,
    default and validator come from here, and ``to_argv``/``to_json``/``from_json`` and the
    CLI's parser are derived from these fields. The Raft core's settings are not copied here:
    ``core`` holds overrides of ``raftlib.core.CoreConfig`` (field name -> value), whose
    declaration gives their flags (``raftlib.config_flags``), defaults and validation."""

    backend: str = option("sim", f"where the cluster runs (available: {', '.join(BACKENDS)})",
                          validator=_backend)
    nodes: int = option(5, "cluster size", validator=_integer_in(1, NODES_MAX))
    clients: int = option(10, "concurrent client processes",
                          validator=_integer_in(1, CLIENTS_MAX))
    workload: str = option("register", f"one of {', '.join(WORKLOADS)}",
                           validator=_workload)
    nemesis: tuple[str, ...] = option(
        (), f"comma-separated fault kinds ({', '.join(NEMESIS_KINDS)}), 'all' or 'none'",
        validator=_nemesis, converter=_kinds)
    # Seconds of workload (and faults), simulated.
    time_limit: float = option(10.0, "seconds of workload and faults (simulated)",
                               validator=_seconds_in(0.1, 86400.0), converter=_as_float)
    seed: int = option(0, "the run's seed", validator=_integer_in(0, 2**63 - 1))
    # Client operations per second, all clients together (a target).
    rate: float = option(20.0, "target operations per second, all clients together",
                         validator=_rate, converter=_as_float)
    # A client gives up on a request after this; a write's outcome is then unknown.
    request_timeout: float = option(1.0, "seconds before a client gives up on a request",
                                    validator=_seconds_in(0.01, 3600.0), converter=_as_float)
    # Mean quiet time and mean fault duration of a generated schedule.
    nemesis_interval: float = option(2.0, "mean seconds between faults and of each fault",
                                     validator=_seconds_in(0.01, 86400.0), converter=_as_float)
    # Clock windows skew tick rates by at most this factor either way (0: as drawn, up to
    # 4.4): lease reads are safe only while clocks drift less than their bound covers.
    clock_rate_max: float = option(0.0, "clock faults: tick-rate factors within [1/x, x] "
                                   "(0: as drawn, up to 4.4)", validator=_clock_rate_max,
                                   converter=_as_float, argv=IF_SET)
    # After the final heal, the bound for the cluster to serve again.
    recovery_time: float = option(10.0, "seconds the healed cluster has to serve again",
                                  validator=_seconds_in(0.5, 86400.0), converter=_as_float)
    # Wall seconds lincheck may search before its verdict is "unknown".
    lincheck_timeout: float = option(60.0, "wall seconds for the linearizability search",
                                     validator=_seconds_in(0.1, 86400.0), converter=_as_float)
    # A bug of the zoo (harness.zoo) switched on for the run ("": none); live nodes run it
    # through harness.zoo.live.
    bug: str = option("", "switch on a bug of the zoo (see raft-harness bugs)", argv=IF_SET)
    # Client operations invoked in all, at most (0: no limit); the shrinker cuts runs with it.
    ops_limit: int = option(0, "client operations to invoke at most (0: no limit)",
                            validator=_integer_in(0, 2**31 - 1), argv=IF_SET)
    # Settings of the Raft core under test (overrides of raftlib.core.CoreConfig): the simulated
    # nodes', or the live raftlib nodes' (passed to ``raftlib serve``)
    # only: each is a configuration a user may legitimately choose, and some faults only show
    # under them (no PreVote/CheckQuorum: competing candidates in one term; one entry per
    # append: an old term's entries replicate without the new leader's noop).
    core: Mapping[str, Any] = attrs.field(factory=dict, converter=_core)
    # Snapshot thresholds of the nodes (raftlib.snapshots.SnapshotPolicy): a snapshot every
    # this many applied entries (0: never), entries kept behind it, bytes per chunk sent to a
    # follower. Tiny values make snapshots, compaction and InstallSnapshot happen all the time.
    snapshot_entries: int = option(SNAPSHOT_ENTRIES_DEFAULT,
                                   "snapshot every N applied entries (0: never)",
                                   validator=_integer_in(0, 2**31 - 1), argv=IF_SET)
    snapshot_trailing: int = option(SNAPSHOT_TRAILING_DEFAULT,
                                    "log entries kept behind a snapshot for slow followers",
                                    validator=_integer_in(0, 2**31 - 1), argv=IF_SET)
    snapshot_chunk_bytes: int = option(SNAPSHOT_CHUNK_BYTES_DEFAULT,
                                       "bytes per snapshot chunk sent to a follower",
                                       validator=_integer_in(1, 16 << 20), argv=IF_SET)
    # The values above were drawn from the seed by harness.swarm (a label: every drawn value is
    # in these options, so a run never depends on how they were drawn).
    swarm: bool = option(False, "each seed draws its own nodes, workload, clients, rate, "
                         "faults, core and snapshot settings (sim only); an option given "
                         "explicitly pins that setting", validator=_flag_value, argv=IF_SET)
    # Nodes on other hosts, reached over SSH (live only, harness.live.ssh): node N on the N-th
    # host; the key, user, host-key file and remote interpreter to use there.
    ssh_hosts: str = option("", "run the live nodes on these hosts over SSH, one per node: "
                            "HOST[:PORT],... ('': on this machine)", validator=_text,
                            argv=IF_SET)
    ssh_user: str = option("", "user to log in as on the --ssh-hosts ('': root)",
                           validator=_text, argv=IF_SET)
    ssh_key: str = option("", "private key file to log in to the --ssh-hosts with",
                          validator=_text, argv=IF_SET)
    ssh_known_hosts: str = option("", "known_hosts file the --ssh-hosts' keys must match "
                                  "('': host keys are not checked)", validator=_text,
                                  argv=IF_SET)
    ssh_python: str = option("", "python on the --ssh-hosts (default: this harness's own, "
                             "at the same path on every host)", validator=_text, argv=IF_SET)
    # Live raftlib nodes fsync on their event loop instead of their sync thread.
    sync_on_loop: bool = option(
        False, "live raftlib nodes run each fsync on their event loop (raftlib serve "
        "--sync-on-loop) instead of their sync thread", validator=_flag_value, argv=IF_SET)
    # The system under test (harness.targets): raftlib, or another one on the live backend.
    target: str = option("raftlib", f"system under test, live backend (one of "
                         f"{', '.join(TARGETS)})", validator=_target, argv=IF_SET)
    etcd_serializable_reads: bool = option(
        False, "etcd target: serializable reads (a member's local state) instead of "
        "linearizable ones", validator=_flag_value, argv=IF_SET)
    resp_command: str = option(
        "", "resp target: the command that starts one node, with {host} {port} {data_dir}",
        validator=_text, argv=IF_SET)
    resp_cas: str = option(
        "", "resp target: a compare-and-set command, with {key} {expected} {new} (replies 1 "
        "or OK when it set); without it a cas is recorded fail, never sent",
        validator=_text, argv=IF_SET)
    _pre_vote: bool | None = _legacy("pre_vote")
    _check_quorum: bool | None = _legacy("check_quorum")
    _append_entries_max: int | None = _legacy("append_entries_max")

    def __attrs_post_init__(self) -> None:
        legacy = {f.metadata["legacy"]: getattr(self, f.name) for f in _LEGACY_FIELDS
                  if getattr(self, f.name) is not None}
        if legacy:
            object.__setattr__(self, "core", _core({**self.core, **legacy}))
            for field in _LEGACY_FIELDS:
                object.__setattr__(self, field.name, None)
        _check_ssh(self)
        if self.backend != "sim" and self.core and self.target != "raftlib":
            raise OptionsError(f"{_flag(next(iter(self.core)))}: core settings are raftlib's; "
                               f"--target {self.target} runs another system")
        self._check_target()
        if self.sync_on_loop and (self.backend != "live" or self.target != "raftlib"):
            raise OptionsError("--sync-on-loop: live raftlib nodes only (--backend live; the "
                               "simulator has no sync thread)")
        if self.bug:
            from harness.zoo import UnknownBug, ZooUnavailable, get, refuse_if_native

            try:
                get(self.bug)
                refuse_if_native()
            except (UnknownBug, ZooUnavailable) as exc:
                raise OptionsError(str(exc)) from None
            if self.backend == "live":
                from harness.zoo.live import live_refusal

                refusal = live_refusal(self.bug)
                if refusal is not None:
                    raise OptionsError(f"--bug: {refusal}")

    def _check_target(self) -> None:
        if self.target != "raftlib" and self.backend != "live":
            raise OptionsError(f"--target {self.target}: needs --backend live (the simulator "
                               "runs raftlib)")
        for name, owner in (("etcd_serializable_reads", "etcd"), ("resp_command", "resp"),
                            ("resp_cas", "resp")):
            if getattr(self, name) and self.target != owner:
                raise OptionsError(f"{_flag(name)}: only with --target {owner}")
        if self.target == "resp" and not self.resp_command:
            raise OptionsError("--target resp: needs --resp-command (the command that starts "
                               "one node)")

    @property
    def pre_vote(self) -> bool:
        return bool(self.core_value("pre_vote"))

    @property
    def check_quorum(self) -> bool:
        return bool(self.core_value("check_quorum"))

    @property
    def append_entries_max(self) -> int:
        return int(self.core_value("append_entries_max"))

    def with_core(self, **settings: Any) -> RunOptions:
        """These options with some core settings changed (``CoreConfig`` field names)."""
        return attrs.evolve(self, core={**self.core, **settings})

    def core_settings(self) -> dict[str, Any]:
        """The core settings that differ from raftlib's defaults (empty: the defaults)."""
        return dict(self.core)

    def core_value(self, name: str) -> Any:
        """The value the nodes' ``CoreConfig.<name>`` has in this run."""
        return self.core.get(name, attrs.fields_dict(CoreConfig)[name].default)

    def snapshot_settings(self) -> dict[str, int]:
        """The nodes' ``SnapshotPolicy`` fields these options set (snapshots every
        ``snapshot_entries`` entries exactly: no ``state_ratio`` wait, so a run snapshots as
        often as it says)."""
        return {"entries": self.snapshot_entries, "trailing_entries": self.snapshot_trailing,
                "chunk_bytes": self.snapshot_chunk_bytes, "state_ratio": 0}

    def node_flags(self) -> list[str]:
        """The run's snapshot thresholds and core settings as ``raftlib serve`` flags (live
        nodes run the settings the run names, as the simulated ones do)."""
        return ["--snapshot-entries", str(self.snapshot_entries), "--snapshot-state-ratio", "0",
                "--snapshot-trailing", str(self.snapshot_trailing),
                "--snapshot-chunk-bytes", str(self.snapshot_chunk_bytes),
                *core_argv(self.core), *(["--sync-on-loop"] if self.sync_on_loop else [])]

    def core_text(self) -> str:
        """The non-default core settings for people ("" when every one is the default)."""
        words = {"pre_vote": "PreVote off", "check_quorum": "CheckQuorum off"}
        return ", ".join(words.get(name, f"{name.replace('_', '-')}={value}")
                         for name, value in self.core.items())

    def to_json(self) -> dict[str, Any]:
        """Every option, and the core settings this run changes (flat, by their names: the
        layout ``results.json`` always had). ``from_json`` rebuilds the options."""
        out = attrs.asdict(self, filter=lambda a, _: a.name != "core" and a not in _LEGACY_FIELDS)
        out["nemesis"] = list(self.nemesis)
        out.update(self.core)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> RunOptions:
        if not isinstance(data, Mapping):
            raise OptionsError(f"{where}: options must be a JSON object")
        values = dict(data)
        # Core settings are recorded flat (as to_json writes them); they become overrides.
        core = {name: values.pop(name) for name in setting_names() if name in values}
        names = {field.name for field in options_fields()}
        unknown = sorted(set(values) - names)
        if unknown:
            raise OptionsError(f"{where}: unknown option {unknown[0]!r}")
        if "nemesis" in values:
            nemesis = values["nemesis"]
            if not isinstance(nemesis, list) or not all(isinstance(k, str) for k in nemesis):
                raise OptionsError(f"{where}: options.nemesis must be a list of fault kinds")
        try:
            return cls(**values, core=core)
        except OptionsError as exc:
            raise OptionsError(f"{where}: {exc}") from None
        except TypeError as exc:
            raise OptionsError(f"{where}: bad options: {exc}") from None

    def to_argv(self) -> list[str]:
        """The ``raft-harness run`` arguments that rebuild exactly these options. A swarm run
        spells out every setting, default or not: next to ``--swarm`` an explicit option pins
        its setting, so the command pins every drawn value."""
        argv = ["run"]
        every = self.swarm
        for field in attrs.fields(RunOptions):
            value = getattr(self, field.name)
            if field.name == "core":
                # A swarm run pins every core setting (harness.swarm draws some of them).
                argv += core_argv({name: self.core_value(name) for name in setting_names()}
                                  if every else value)
            elif field.name == "swarm":
                argv += ["--swarm"] if value else []
            elif field in options_fields() and field.name != "seed" and (
                    field.metadata["argv"] == ALWAYS or value != field.default
                    # ... and every option but those whose default means "none" (--bug '').
                    or (every and field.default not in ("", 0))):
                argv += [_flag(field.name), _argv_text(value)]
        return [*argv, "--seed", str(self.seed)]


_LEGACY_FIELDS = tuple(f for f in attrs.fields(RunOptions) if "legacy" in f.metadata)


def options_fields() -> tuple[attrs.Attribute[Any], ...]:
    """The run options proper: each is one ``--flag`` (the core settings are ``core``)."""
    return tuple(f for f in attrs.fields(RunOptions)
                 if f.name != "core" and f not in _LEGACY_FIELDS)


assert not set(setting_names()) & {f.name for f in options_fields()}, (
    "a core setting is named like a run option: to_json writes both flat")


def _argv_text(value: Any) -> str:
    if isinstance(value, tuple):
        return nemesis_text(value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def command_line(argv: Sequence[str]) -> str:
    import shlex

    return "raft-harness " + " ".join(shlex.quote(arg) for arg in argv)
