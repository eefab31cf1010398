"""CoreConfig and restart-state validation, the Ready/advance contract, and core layering."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest

from raftlib.core import CoreConfig, Entry, HardState, RaftCore, Role
from raftlib.errors import ConfigError
from tests.raftlib.core.network import drain, entries_of_terms, make_core

CORE_DIR = Path(__file__).resolve().parents[3] / "raftlib" / "core"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"node_id": 0}, "node_id"),
        ({"node_id": True}, "node_id"),
        ({"voters": (1, 2, 2)}, "voters"),
        ({"voters": (2, 3)}, "voters"),
        ({"voters": [1, 2, 3]}, "voters"),
        ({"voters": (1, -2)}, "voters"),
        ({"election_timeout_ticks_min": 0}, "election_timeout_ticks_min"),
        ({"election_timeout_ticks_max": 10}, "election_timeout_ticks_max"),
        ({"heartbeat_interval_ticks": 10}, "heartbeat_interval_ticks"),
        ({"append_entries_max": 0}, "append_entries_max"),
        ({"append_bytes_max": -1}, "append_bytes_max"),
        ({"inflight_appends_max": 0}, "inflight_appends_max"),
        ({"uncommitted_entries_max": 0}, "uncommitted_entries_max"),
        ({"pre_vote": 1}, "pre_vote"),
        ({"check_quorum": "yes"}, "check_quorum"),
    ],
)
def test_bad_config_is_refused_naming_the_field(overrides: dict[str, Any], field: str) -> None:
    """Every CoreConfig field is validated up front; the one-line error names the field."""
    kwargs: dict[str, Any] = {"node_id": 1, "voters": (1, 2, 3), **overrides}
    with pytest.raises(ConfigError, match=re.escape(field)) as info:
        CoreConfig(**kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("hard", "terms", "applied", "field"),
    [
        (HardState(1, 0, 3), [1, 1], 0, "hard_state.commit"),
        (HardState(2, 0, 0), [2, 1], 0, "entries[1].term"),
        (HardState(-1, 0, 0), [], 0, "hard_state.term"),
        (HardState(1, 0, 1), [1], 2, "applied"),
    ],
)
def test_impossible_restart_state_is_refused(
    hard: HardState, terms: list[int], applied: int, field: str
) -> None:
    """A restart from storage that no correct run could produce is refused, naming what."""
    cfg = CoreConfig(node_id=1, voters=(1, 2, 3))
    with pytest.raises(ConfigError, match=re.escape(field)):
        RaftCore(cfg, random.Random(0), hard, entries_of_terms(terms), applied)


def test_restart_with_an_entry_newer_than_the_durable_term_adopts_it_without_a_vote() -> None:
    """A crash between the entries' fsync and the hard state's leaves a log entry of a term
    the hard state never recorded (the harness found it: kv workload, seed 77). The vote of that
    term was never sent, so the node restarts in the entry's term with no vote, and persists it
    before anything else."""
    cfg = CoreConfig(node_id=1, voters=(1, 2, 3))
    core = RaftCore(cfg, random.Random(0), HardState(5, 2, 1), entries_of_terms([5, 6]))
    assert (core.term, core.vote) == (6, 0)
    ready = core.ready()
    assert ready.hard_state == HardState(6, 0, 1)


def test_restart_refuses_non_contiguous_entries() -> None:
    cfg = CoreConfig(node_id=1, voters=(1, 2, 3))
    with pytest.raises(ConfigError, match=re.escape("entries[1]")):
        RaftCore(cfg, random.Random(0), HardState(1), [Entry(1, 1), Entry(1, 3)])


def test_ready_must_be_advanced_before_the_next() -> None:
    """The Ready contract: one Ready at a time; advance() takes the Ready just returned."""
    core = make_core(voters=(1,))
    core.campaign()
    ready = core.ready()
    assert not core.has_ready()
    with pytest.raises(AssertionError):
        core.ready()
    core.advance(ready)
    with pytest.raises(AssertionError):
        core.advance(ready)


def test_hard_state_emitted_only_when_changed() -> None:
    """Hard state appears in a Ready only when term, vote or commit changed."""
    core = make_core(term=1)
    assert drain(core) == []
    core.tick()
    assert drain(core) == []
    core.campaign()
    readies = drain(core)
    assert [r.hard_state for r in readies if r.hard_state] == []  # PreVote changes no state
    assert core.role is Role.PRE_CANDIDATE


def test_core_has_no_io_imports() -> None:
    """Layering: the pure core imports no trio, socket, asyncio, time, os or random."""
    forbidden = re.compile(r"^(from|import) (trio|socket|asyncio|time|os|random)\b", re.M)
    offenders = [path.name for path in CORE_DIR.glob("*.py") if forbidden.search(path.read_text())]
    assert offenders == []
