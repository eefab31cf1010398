"""``lincheck._records.Record`` builds the class ``typing.NamedTuple`` would, without typing."""

from __future__ import annotations

import pickle
from typing import Any, NamedTuple

import pytest
from lincheck._records import Record
from lincheck.history import Operation
from lincheck.result import PartitionResult


class _Typed(NamedTuple):
    """doc"""

    a: int
    b: str = "x"

    def twice(self) -> int:
        return self.a * 2


class _Plain(Record):
    """doc"""

    a: int
    b: str = "x"

    def twice(self) -> int:
        return int(self.a) * 2


def test_a_record_has_the_fields_defaults_methods_and_doc_of_a_named_tuple() -> None:
    typed = _Typed(3)
    plain: Any = _Plain(3)  # type: ignore[call-arg]  # mypy sees Record, not the tuple
    assert plain == typed == (3, "x")
    assert plain._fields == typed._fields and plain._field_defaults == typed._field_defaults
    assert plain.twice() == typed.twice() == 6
    assert plain._replace(b="y") == (3, "y")
    assert type(plain).__doc__ == "doc" and type(plain).__qualname__ == "_Plain"
    assert isinstance(plain, tuple) and type(plain).__module__ == __name__


def test_a_field_without_default_after_one_with_is_refused_as_by_named_tuple() -> None:
    with pytest.raises(TypeError, match="without a default"):
        class _Bad(Record):
            a: int = 1
            b: int


def test_lincheck_records_pickle_by_reference() -> None:
    """Results come back from the parallel search's worker processes pickled."""
    op = Operation(0, 1, "read", None, 5, 0, 1, "ok")
    part = PartitionResult(key=None, verdict="ok", operation_ids=(0,))
    assert pickle.loads(pickle.dumps(op)) == op
    assert pickle.loads(pickle.dumps(part)) == part
