"""lincheck: a pure-Python linearizability checker (Wing & Gong with Lowe's memoization and
P-compositionality), standard library only.

    import lincheck
    history = lincheck.read_history("history.jsonl")
    result = lincheck.check(history, lincheck.get_model("cas-register"), timeout=10)
    print(result.verdict)  # "ok", "illegal" or "unknown"

In pytest, ``lincheck.assert_linearizable(history, "kv")`` fails with an explanation and writes
an HTML report next to the test's temporary files.
"""

from __future__ import annotations

import importlib

# mypy reads any TYPE_CHECKING as true; at run time typing is not imported (start-up time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from lincheck.formats import FORMATS as FORMATS
    from lincheck.formats import history_from_events as history_from_events
    from lincheck.formats import parse_history as parse_history
    from lincheck.formats import read_history as read_history
    from lincheck.formats import write_jsonl as write_jsonl
    from lincheck.history import Event as Event
    from lincheck.history import History as History
    from lincheck.history import HistoryError as HistoryError
    from lincheck.history import Operation as Operation
    from lincheck.models import INCONSISTENT as INCONSISTENT
    from lincheck.models import MODELS as MODELS
    from lincheck.models import Model as Model
    from lincheck.models import get_model as get_model
    from lincheck.report_html import render_html as render_html
    from lincheck.report_html import write_html as write_html
    from lincheck.report_json import result_to_json as result_to_json
    from lincheck.report_text import explain as explain
    from lincheck.result import PartitionResult as PartitionResult
    from lincheck.result import Result as Result
    from lincheck.search import check as check
    from lincheck.testing import assert_linearizable as assert_linearizable

# Each public name and the module that defines it. They are imported on first use (PEP 562),
# so that ``python -m lincheck`` and ``import lincheck`` do not pay for the HTML report or
# the parallel search (multiprocessing) when a run never needs them: start-up time is what a
# per-file CLI invocation costs.
_LAZY: dict[str, str] = {
    "FORMATS": "lincheck.formats",
    "history_from_events": "lincheck.formats",
    "parse_history": "lincheck.formats",
    "read_history": "lincheck.formats",
    "write_jsonl": "lincheck.formats",
    "Event": "lincheck.history",
    "History": "lincheck.history",
    "HistoryError": "lincheck.history",
    "Operation": "lincheck.history",
    "INCONSISTENT": "lincheck.models",
    "MODELS": "lincheck.models",
    "Model": "lincheck.models",
    "get_model": "lincheck.models",
    "render_html": "lincheck.report_html",
    "write_html": "lincheck.report_html",
    "result_to_json": "lincheck.report_json",
    "explain": "lincheck.report_text",
    "PartitionResult": "lincheck.result",
    "Result": "lincheck.result",
    "check": "lincheck.search",
    "assert_linearizable": "lincheck.testing",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lincheck' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "FORMATS",
    "INCONSISTENT",
    "MODELS",
    "Event",
    "History",
    "HistoryError",
    "Model",
    "Operation",
    "PartitionResult",
    "Result",
    "assert_linearizable",
    "check",
    "explain",
    "get_model",
    "history_from_events",
    "parse_history",
    "read_history",
    "render_html",
    "result_to_json",
    "write_html",
    "write_jsonl",
]
