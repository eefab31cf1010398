"""pytest plugin: run a short raft-harness campaign inside a test.

Enable it with ``-p harness.pytest_plugin`` (or the ``pytest11`` entry point). Two ways in:

The marker runs a campaign before the test body and fails the test with the one-line verdict
of the first run that is not valid, and the path of its run directory::

    @pytest.mark.raft_campaign(seeds="0..4", nemesis="partition,kill", time_limit=5)
    def test_cluster_survives_partitions_and_crashes() -> None:
        pass

The fixture is a function that does the same with any options and returns the outcomes::

    def test_all_nemeses(raft_campaign) -> None:
        outcomes = raft_campaign(seeds=range(3), nemesis="all", workload="append")
        assert all(o.operations > 10 for o in outcomes)

Options are ``RunOptions`` fields or core settings by name (``pre_vote=False``; ``nemesis``
as the CLI's text or a tuple; ``seeds`` as ``"A..B"``, a range or an int count) plus ``jobs``.
Sim campaigns are swarm campaigns unless ``swarm=False``: each seed draws its own cluster size,
workload, clients, rate, faults, core and snapshot settings (``harness.swarm``), and an option
given explicitly pins its setting.
``expect="invalid"`` inverts the verdict: the test passes only if some run is NOT valid (to
prove a check or a zoo bug is caught).
Run directories go under ``--raft-campaign-out DIR`` when given (kept), else a temporary
directory of the test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness import swarm
from harness.campaign import run_campaign
from harness.options import OptionsError, RunOptions, parse_nemesis
from harness.outcomes import SeedOutcome
from raftlib.core.config import setting_names

MARKER = "raft_campaign"
# A campaign inside a test suite is meant to be short: more seeds belong in a CLI campaign.
SEEDS_MAX = 1000

CampaignRunner = Callable[..., list[SeedOutcome]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("raft-harness")
    group.addoption("--raft-campaign-out", default=None,
                    help="keep raft_campaign run directories under this directory")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(seeds=..., nemesis=..., time_limit=..., **run_options): run a short "
        "raft-harness campaign before the test; fail with its one-line verdict",
    )


def _seeds(value: Any) -> range:
    if isinstance(value, range):
        seeds = value
    elif isinstance(value, int) and not isinstance(value, bool):
        seeds = range(value)
    elif isinstance(value, str):
        low, sep, high = value.partition("..")
        try:
            seeds = range(int(low), int(high if sep else low) + 1)
        except ValueError:
            raise OptionsError(
                f"raft_campaign: seeds must look like 'A..B', got {value!r}") from None
    else:
        raise OptionsError(f"raft_campaign: seeds must be 'A..B', a range or a count, "
                           f"got {value!r}")
    if not 1 <= len(seeds) <= SEEDS_MAX or seeds.start < 0:
        raise OptionsError(f"raft_campaign: between 1 and {SEEDS_MAX} seeds >= 0, got {value!r}")
    return seeds


def _options(overrides: dict[str, Any]) -> RunOptions:
    values = dict(overrides)
    nemesis = values.get("nemesis")
    if isinstance(nemesis, str):
        values["nemesis"] = parse_nemesis(nemesis)
    elif nemesis is not None:
        values["nemesis"] = tuple(nemesis)
    # Core settings by their own names (pre_vote=False) are overrides of CoreConfig.
    core = {name: values.pop(name) for name in setting_names() if name in values}
    if core:
        values["core"] = {**values.get("core", {}), **core}
    try:
        return RunOptions(**values)
    except TypeError as exc:
        raise OptionsError(f"raft_campaign: {exc}") from None


def _verdict_line(outcomes: list[SeedOutcome]) -> str:
    bad = [o for o in outcomes if o.verdict != "valid"]
    if not bad:
        return f"raft campaign: all {len(outcomes)} runs valid"
    first = bad[0]
    return (f"raft campaign: {len(bad)} of {len(outcomes)} runs not valid; first: {first.line} "
            f"(run dir {first.out_dir}; replay: raft-harness replay {first.out_dir})")


def campaign(out_root: Path, *, seeds: Any = 3, jobs: int = 1, expect: str = "valid",
             **options: Any) -> list[SeedOutcome]:
    """Run the campaign; ``pytest.fail`` with the one-line verdict unless it met ``expect``."""
    if expect not in ("valid", "invalid"):
        pytest.fail(f"raft_campaign: expect must be 'valid' or 'invalid', got {expect!r}",
                    pytrace=False)
    # Swarm by default on the sim backend: a short campaign of one fixed configuration would
    # test one corner of the space, the same one every time.
    options.setdefault("swarm", options.get("backend", "sim") == "sim")
    pinned = frozenset(options) & frozenset(swarm.DIMENSIONS)
    try:
        seed_range = _seeds(seeds)
        base = _options({**options, "seed": seed_range.start})
    except OptionsError as exc:
        problem = str(exc)
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    out_root.mkdir(parents=True, exist_ok=True)
    try:
        outcomes = run_campaign(base, seed_range, jobs, out_root, pinned=pinned)
    except OptionsError as exc:  # a swarm draw refused (another backend)
        pytest.fail(f"raft_campaign: {exc}", pytrace=False)
    line = _verdict_line(outcomes)
    all_valid = all(o.verdict == "valid" for o in outcomes)
    if expect == "valid" and not all_valid:
        pytest.fail(line, pytrace=False)
    if expect == "invalid" and all_valid:
        pytest.fail(f"{line}, but a failure was expected (campaign under {out_root})",
                    pytrace=False)
    return outcomes


def _out_root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    keep = request.config.getoption("--raft-campaign-out")
    name = str(request.node.name).replace("/", "_").replace("[", "-").replace("]", "")
    root: Path = Path(str(keep)) if keep else tmp_path_factory.mktemp("raft-campaign")
    return root / name


@pytest.fixture
def raft_campaign(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> CampaignRunner:
    """A function running a short campaign (see the module docstring); each call gets its own
    directory."""
    root = _out_root(request, tmp_path_factory)
    calls = [0]

    def runner(**kwargs: Any) -> list[SeedOutcome]:
        calls[0] += 1
        return campaign(root / f"campaign-{calls[0]}", **kwargs)

    return runner


_OUT_ROOT = pytest.StashKey[Path]()


@pytest.fixture(autouse=True)
def _raft_campaign_marker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Only picks the directory: the campaign runs in the call phase (pytest_runtest_call), so
    # a failing campaign is a failed test, not an error in setup.
    if request.node.get_closest_marker(MARKER) is not None:
        request.node.stash[_OUT_ROOT] = _out_root(request, tmp_path_factory)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return
    if marker.args:
        pytest.fail("raft_campaign: give the marker keyword arguments only", pytrace=False)
    campaign(item.stash[_OUT_ROOT], **marker.kwargs)
