"""``Record``: ``typing.NamedTuple``'s class syntax at run time, without importing ``typing``.

Importing ``typing`` costs a per-file ``lincheck check`` process more than any lincheck module,
and the records (``Event``, ``Operation``, results, ``Model``) were all it was needed for at run
time. Modules write::

    TYPE_CHECKING = False
    if TYPE_CHECKING:
        from typing import NamedTuple   # what mypy checks against
    else:
        from lincheck._records import Record as NamedTuple

    class Operation(NamedTuple):
        id: int
        key: Any = None

and get the same class either way: a ``collections.namedtuple`` whose fields are the
annotated names in order, with their defaults, plus the methods and docstring of the body.
(mypy reads any name ``TYPE_CHECKING`` as true, so the ``else`` branch is for run time only.)
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# Class-body names that are not members to copy onto the namedtuple.
_MACHINERY = frozenset({"__annotations__", "__module__", "__qualname__", "__classcell__",
                        "__orig_bases__", "__slots__"})


class _RecordMeta(type):
    def __new__(mcs, name: str, bases: tuple[type, ...], body: dict[str, Any]) -> Any:
        if not bases:  # Record itself
            return super().__new__(mcs, name, bases, body)
        fields = list(body.get("__annotations__", {}))
        defaults = [body[f] for f in fields if f in body]
        if any(f not in body for f in fields[len(fields) - len(defaults):]):
            raise TypeError(f"{name}: a field without a default follows one with a default")
        cls = namedtuple(name, fields, defaults=defaults,  # type: ignore[misc]
                         module=body.get("__module__"))
        for key, value in body.items():
            if key not in _MACHINERY and key not in fields:
                setattr(cls, key, value)
        cls.__qualname__ = body.get("__qualname__", name)
        cls.__annotations__ = dict(body.get("__annotations__", {}))
        if "__classcell__" in body:  # a method uses super() or __class__: point it here
            body["__classcell__"].cell_contents = cls
        return cls


class Record(metaclass=_RecordMeta):
    """Base to write a record class with (see the module docstring)."""
