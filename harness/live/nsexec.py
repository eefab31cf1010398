"""``python -m harness.live.nsexec NAMESPACE ARGV...``: run ARGV inside a network namespace.

What ``ip netns exec`` does for a node, without the ``ip`` binary: enter the namespace, then
``exec`` (so the pid the harness started is the node's own pid, for SIGKILL and SIGSTOP).
"""

from __future__ import annotations

import os
import sys

from harness.live import netns

USAGE = "usage: python -m harness.live.nsexec NAMESPACE PROGRAM [ARG...]"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    name, program = argv[0], argv[1:]
    try:
        netns.enter(name)
    except OSError as exc:
        print(f"nsexec: cannot enter network namespace {name!r}: {exc}", file=sys.stderr)
        return 2
    os.execvp(program[0], program)
    raise AssertionError("execvp returned")  # pragma: no cover - execvp raises or never returns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
