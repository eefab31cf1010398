"""``python -m harness.zoo.live BUG MODULE ARG...``: run a live node with a zoo bug switched on.

The live backend starts each node through this wrapper when a run has ``--bug``: the bug's
patches (``harness.zoo.active``) are applied inside the node process, then MODULE (``raftlib.cli``
or another wrapper such as ``harness.live.lazyfs``) runs as ``__main__``. ``raftlib serve``
itself has no flag for any bug, as in the simulator.

A bug whose patches replace methods of the simulator's own classes (``harness.sim``) changes
nothing in a real process; ``live_refusal`` names those, so a live run refuses them in one
line instead of running a correct cluster under a bug's name. It names the membership bugs
too: they show only under the ``member`` nemesis, which the live backend cannot inject yet.
"""

from __future__ import annotations

import runpy
import sys

from harness import zoo

USAGE = "usage: python -m harness.zoo.live BUG MODULE [ARG...]"


def live_refusal(name: str) -> str | None:
    """Why bug ``name`` cannot run live (``None``: it can)."""
    bug = zoo.get(name)
    sim_only = sorted({owner.__name__ for owner, _, _ in bug.patches_for(live=True)
                       if owner.__module__.startswith("harness.sim")})
    if sim_only:
        return (f"bug {name!r} patches the simulator's {', '.join(sim_only)}, which real nodes "
                "do not run (use --backend sim)")
    if "member" in bug.detection.nemesis:
        # A membership bug shows only when the configuration changes, and the live nemesis
        # cannot change it (harness.live.nemesis refuses "member"): the run would be a
        # correct cluster under the bug's name.
        return (f"bug {name!r} needs the member nemesis (membership changes), which the live "
                "backend cannot inject yet (use --backend sim)")
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
