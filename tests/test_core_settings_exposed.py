"""Every core setting is declared once (``CoreConfig``) and reaches every place that runs a
core: ``raftlib serve``'s flags, the simulator (``SimParams``) and the harness options
(``RunOptions``: flags, argv and JSON). A new ``CoreConfig`` field needs no other edit for this
test to pass; a place that copies settings by hand instead fails it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import pytest

from harness.cli import _options, build_parser
from harness.nemesis import generate
from harness.options import RunOptions
from harness.sim.params import SimParams
from harness.sim.world import SimWorld
from raftlib.cli import _parser, cluster_node_argv, parse_serve_args
from raftlib.config_flags import core_argv, core_overrides, flag
from raftlib.core.config import settings
from raftlib.node import NodeConfig

SERVE = ["--id", "1", "--peers", "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003",
         "--data", "d", "--insecure"]


def _other_value(field: attrs.Attribute[Any]) -> Any:
    """A valid value that is not the default."""
    default: Any = field.default
    if isinstance(default, bool):
        return not default
    return default + 1


SETTINGS = [pytest.param(f, id=f.name) for f in settings()]


def test_there_are_settings_to_check() -> None:
    assert len(SETTINGS) >= 9


@pytest.mark.parametrize("field", SETTINGS)
def test_raftlib_serve_and_cluster_have_a_flag_for_every_core_setting(
    field: attrs.Attribute[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    value = _other_value(field)
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--help"])
    assert flag(field.name) in capsys.readouterr().out
    args, peers = parse_serve_args([*SERVE, *core_argv({field.name: value})])
    config = NodeConfig(node_id=args.id, peers={i: "x" for i in peers}).with_core(
        **core_overrides(args))
    assert getattr(config.core, field.name) == value
    cluster = _parser().parse_args(["cluster", "--data", "d", *core_argv({field.name: value})])
    assert core_overrides(cluster) == {field.name: value}
    # ... and cluster hands them to every node's serve, which reads them back the same.
    argv = cluster_node_argv(2, nodes=3, data_dir=Path("d"), base_port=7001, client_base_port=6379,
                             tick_ms=25.0, core=core_overrides(cluster))
    node_args, _ = parse_serve_args(argv[argv.index("serve") + 1:])
    assert core_overrides(node_args) == {field.name: value}


@pytest.mark.parametrize("field", SETTINGS)
def test_the_simulator_runs_every_core_setting(field: attrs.Attribute[Any]) -> None:
    value = _other_value(field)
    schedule = generate(0, (), 3, 1.0, 1.0)
    options = RunOptions(nodes=3, time_limit=1.0)
    world = SimWorld(options, schedule, SimParams(core={field.name: value}))
    assert all(getattr(n.config, field.name) == value for n in world.nodes.values())


@pytest.mark.parametrize("field", SETTINGS)
def test_harness_options_carry_every_core_setting_through_flags_argv_and_json(
    field: attrs.Attribute[Any],
) -> None:
    value = _other_value(field)
    args = build_parser().parse_args(["run", *core_argv({field.name: value})])
    options = _options(args, 0)
    assert options.core == {field.name: value}
    again = build_parser().parse_args(options.to_argv())
    assert _options(again, 0) == options
    assert RunOptions.from_json(options.to_json(), "t") == options
    assert options.to_json()[field.name] == value  # recorded in results.json
    world = SimWorld(attrs.evolve(options, nodes=3), generate(0, (), 3, 1.0, 1.0))
    assert all(getattr(n.config, field.name) == value for n in world.nodes.values())
