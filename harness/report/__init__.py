"""report.html: a run directory as one page a person can read.

    from harness.report import write_report
    write_report(Path("runs/seed-1"))   # -> runs/seed-1/report.html

The page holds the verdict and what every check said, the exact command that reproduces the
run, a latency plot of every operation and a throughput plot (fault windows shaded and
labelled), a per-node timeline, lincheck's explanation with a link to ``lincheck.html`` when
the history is not linearizable, and the fault schedule as a table. It needs only the files of
the run directory (any backend that writes them gets the same page) and renders whatever
exists when a run stopped half way. ``raft-harness report DIR`` rebuilds it; a campaign
directory gets an ``index.html`` linking every run's page (``write_campaign_index``).
"""

from typing import TYPE_CHECKING, Any

from harness.report.campaign_page import write_campaign_index as write_campaign_index

if TYPE_CHECKING:
    from harness.report.write import REPORT_NAME as REPORT_NAME
    from harness.report.write import render_report as render_report
    from harness.report.write import write_report as write_report

# A run's page (``write``) imports matplotlib, about a second: it loads on first use, so a
# campaign's index (and whatever imports this package for it) does without.
_FROM_WRITE = frozenset({"REPORT_NAME", "render_report", "write_report"})


def __getattr__(name: str) -> Any:
    if name in _FROM_WRITE:
        from harness.report import write

        return getattr(write, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["REPORT_NAME", "render_report", "write_campaign_index", "write_report"]
