"""``python -m harness.zoo.live BUG MODULE ARG...``: run a live node with a zoo bug switched on.

The live backend starts each node through this wrapper when a run has ``--bug``: the bug's
patches (``harness.zoo.active``) are applied inside the node process, then MODULE (``raftlib.cli``
or another wrapper such as ``harness.live.lazyfs``) runs as ``__main__``. ``raftlib serve``
itself has no flag for any bug, as in the simulator.

A bug whose patches replace methods of the simulator's own classes (``harness.sim``) changes
nothing in a real process; ``live_refusal`` names those, so a live run refuses them in one
line instead of running a correct cluster under a bug's name.
"""

from __future__ import annotations

import runpy
import sys

from harness import zoo

USAGE = "usage: python -m harness.zoo.live BUG MODULE [ARG...]"


def live_refusal(name: str) -> str | None:
    """Why bug ``name`` cannot run live (``None``: it can)."""
    sim_only = sorted({owner.__name__ for owner, _, _ in zoo.get(name).patches_for(live=True)
                       if owner.__module__.startswith("harness.sim")})
    if sim_only:
        return (f"bug {name!r} patches the simulator's {', '.join(sim_only)}, which real nodes "
                "do not run (use --backend sim)")
    return None


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    name, module = argv[0], argv[1]
    with zoo.active(name, live=True):
        sys.argv = [module, *argv[2:]]
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
