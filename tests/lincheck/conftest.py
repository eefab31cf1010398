"""Makes tests/lincheck/strategies.py importable as ``lincheck_strategies`` (a unique name:
test folders are not packages, and a bare ``strategies`` could collide with another folder's)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location("lincheck_strategies",
                                               Path(__file__).with_name("strategies.py"))
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules["lincheck_strategies"] = _module
_spec.loader.exec_module(_module)
