"""Command-line flags for the Raft core's settings, derived from ``CoreConfig``'s declaration.

Each tunable ``CoreConfig`` field becomes one flag named after it (``append_entries_max`` ->
``--append-entries-max``; a bool gets ``--pre-vote``/``--no-pre-vote``), with the field's type,
its help text and its default in the help. A flag that is not given sets nothing: the parsed
result is a mapping of *overrides* (only what the user set), which ``CoreConfig`` validates
when it is built. ``raftlib serve``, ``raftlib cluster`` and ``raft-harness run/campaign`` all
use this, so a new core setting gets its flags without touching any command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from raftlib.core.config import settings

GROUP_TITLE = "Raft core settings (raftlib.core.CoreConfig)"


def flag(name: str) -> str:
    """The flag of a setting: ``append_entries_max`` -> ``--append-entries-max``."""
    return "--" + name.replace("_", "-")


def add_core_flags(parser: argparse.ArgumentParser, *, note: str = "") -> None:
    """Add one flag per core setting to ``parser`` (in a group of its own)."""
    group = parser.add_argument_group(GROUP_TITLE)
    for field in settings():
        text = f"{field.metadata['help']} (default {_show(field.default)}){note}"
        if field.type in (bool, "bool"):
            group.add_argument(flag(field.name), dest=field.name, default=argparse.SUPPRESS,
                               action=argparse.BooleanOptionalAction, help=text)
        else:
            assert field.type in (int, "int"), f"CoreConfig.{field.name}: no flag for its type"
            group.add_argument(flag(field.name), dest=field.name, default=argparse.SUPPRESS,
                               type=int, metavar="N", help=text)


def core_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The core settings given on the command line (unvalidated: ``CoreConfig`` checks them)."""
    return {f.name: getattr(args, f.name) for f in settings() if hasattr(args, f.name)}


def core_argv(overrides: Mapping[str, Any]) -> list[str]:
    """The flags that give exactly ``overrides`` (the inverse of ``core_overrides``)."""
    argv: list[str] = []
    for name, value in overrides.items():
        if isinstance(value, bool):
            argv.append(flag(name) if value else "--no-" + name.replace("_", "-"))
        else:
            argv += [flag(name), str(value)]
    return argv


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
