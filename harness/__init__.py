"""harness: Jepsen-style runs of random client histories under faults, checked by lincheck.

The ``sim`` backend runs a whole cluster, its clients and its faults in one process on virtual
time; a run is a function of its options and seed (``raft-harness run --backend sim``).

    from harness import RunOptions, run
    report = run(RunOptions(nemesis=("partition", "kill"), seed=7), out_dir=None)
    print(report.line)
"""

from harness.options import RunOptions as RunOptions
from harness.outcomes import RunReport as RunReport
from harness.runner import run as run

__all__ = ["RunOptions", "RunReport", "run"]
