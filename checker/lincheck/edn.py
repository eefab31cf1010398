"""A small, strict reader for the subset of EDN that Jepsen histories use.

Supported: maps ``{}``, vectors ``[]``, lists ``()``, sets ``#{}``, keywords, symbols, strings
(with the usual escapes), integers (``N`` suffix allowed), floats (``M`` suffix allowed),
``nil``, ``true``/``false``, characters (``\\a``, ``\\newline``...), ``;`` comments, commas as
whitespace, ``#_`` discard, and tagged literals ``#tag form``, which read as the tagged form
itself (``#inst "..."`` is the string, ``#jepsen.history.Op{...}`` the map): a history checker
needs the data, not the host type.

Value mapping: vectors and lists become Python lists, maps dicts, sets frozensets (their
elements frozen), keywords ``Keyword`` and symbols ``Symbol`` (both ``str`` subclasses without
the colon, so ``Keyword("read") == "read"``). Anything else raises ``EdnError`` carrying the
1-based line of the offending character.
"""

from __future__ import annotations

from collections.abc import Iterator

# Run time needs nothing from typing (importing it costs a per-file run).
TYPE_CHECKING = False  # mypy reads any TYPE_CHECKING as true: typing is for it alone
if TYPE_CHECKING:
    from typing import Any

# Deeper nesting than this is hostile or broken input; Jepsen ops nest 3 or 4 levels.
EDN_DEPTH_MAX = 100


class Keyword(str):
    """An EDN keyword, without its leading colon."""

    __slots__ = ()

    def __repr__(self) -> str:
        # Error messages quote values with repr: a name holding a line break (the reader's
        # tokens stop at \n but not at \x85 or \u2028) must not split the message.
        name = str(self)
        return ":" + (name if name.isprintable() else repr(name)[1:-1])


class Symbol(str):
    """An EDN symbol."""

    __slots__ = ()


class EdnError(ValueError):
    """Unreadable EDN; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.reason = message
        super().__init__(f"line {line}: {message}")


_DELIMS = frozenset("()[]{}\";, \t\r\n\f")
_CHAR_NAMES = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r",
               "formfeed": "\f", "backspace": "\b"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "b": "\b", "f": "\f"}
_CLOSERS = {"[": "]", "(": ")", "{": "}"}
_BACKSLASH = "\\"  # Python 3.11 allows no backslash inside an f-string's braces


# Values that are their own frozen form, tested by exact type first: models freeze values at
# every step, so this is on the search's hottest path (an isinstance against a union is slow).
_ATOMS = frozenset({int, str, float, bool, type(None), Keyword, Symbol})


def freeze(value: Any) -> Any:
    """A hashable equivalent of a read value: lists become tuples, dicts sorted item tuples."""
    if type(value) in _ATOMS:
        return value
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted(((freeze(k), freeze(v)) for k, v in value.items()), key=repr))
    if isinstance(value, set):
        return frozenset(freeze(v) for v in value)
    return value


class _Reader:
    def __init__(self, text: str, line: int = 1) -> None:
        self.text = text
        self.pos = 0
        self.line = line

    def error(self, message: str) -> EdnError:
        return EdnError(self.line, message)

    def skip_ws(self) -> None:
        text, n = self.text, len(self.text)
        while self.pos < n:
            c = text[self.pos]
            if c == "\n":
                self.line += 1
                self.pos += 1
            elif c in " \t\r\f,":
                self.pos += 1
            elif c == ";":
                end = text.find("\n", self.pos)
                self.pos = n if end < 0 else end
            elif c == "#" and text.startswith("#_", self.pos):
                self.pos += 2
                self.read(0)  # the discarded form
            else:
                return

    def at_end(self) -> bool:
        self.skip_ws()
        return self.pos >= len(self.text)

    def token(self) -> str:
        start = self.pos
        text, n = self.text, len(self.text)
        while self.pos < n and text[self.pos] not in _DELIMS:
            self.pos += 1
        return text[start:self.pos]

    def read(self, depth: int) -> Any:
        if depth > EDN_DEPTH_MAX:
            raise self.error(f"nesting deeper than {EDN_DEPTH_MAX}")
        self.skip_ws()
        if self.pos >= len(self.text):
            raise self.error("unexpected end of input")
        c = self.text[self.pos]
        if c in _CLOSERS:
            self.pos += 1
            items = self.read_seq(_CLOSERS[c], depth)
            if c != "{":
                return items
            return self.make_map(items)
        if c in ")]}":
            raise self.error(f"unexpected {c!r}")
        if c == '"':
            return self.read_string()
        if c == "#":
            return self.read_dispatch(depth)
        if c == "\\":
            return self.read_char()
        if c == ":":
            self.pos += 1
            name = self.token()
            if not name or name.startswith(":"):
                raise self.error("bad keyword")
            return Keyword(name)
        return self.read_atom()

    def read_seq(self, closer: str, depth: int) -> list[Any]:
        return [value for _line, value in self.read_seq_lines(closer, depth)]

    def read_seq_lines(self, closer: str, depth: int = 0) -> list[tuple[int, Any]]:
        """The elements up to ``closer``, each with the line it starts on."""
        items: list[tuple[int, Any]] = []
        while True:
            self.skip_ws()
            if self.pos >= len(self.text):
                raise self.error(f"missing {closer!r}")
            c = self.text[self.pos]
            if c == closer:
                self.pos += 1
                return items
            if c in ")]}":
                raise self.error(f"expected {closer!r}, found {c!r}")
            line = self.line
            items.append((line, self.read(depth + 1)))

    def make_map(self, items: list[Any]) -> dict[Any, Any]:
        if len(items) % 2:
            raise self.error("map with an odd number of forms")
        result: dict[Any, Any] = {}
        for i in range(0, len(items), 2):
            key = freeze(items[i])
            if key in result:
                raise self.error(f"duplicate map key {key!r}")
            result[key] = items[i + 1]
        return result

    def read_string(self) -> str:
        text, n = self.text, len(self.text)
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= n:
                raise self.error("unterminated string")
            c = text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                esc = text[self.pos + 1:self.pos + 2]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    self.pos += 2
                elif esc == "u":
                    digits = text[self.pos + 2:self.pos + 6]
                    if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                        raise self.error("bad \\u escape in string")
                    out.append(chr(int(digits, 16)))
                    self.pos += 6
                else:
                    raise self.error(f"bad escape {_BACKSLASH + esc!r} in string")
                continue
            if c == "\n":
                self.line += 1
            out.append(c)
            self.pos += 1

    def read_dispatch(self, depth: int) -> Any:
        nxt = self.text[self.pos + 1:self.pos + 2]
        if nxt == "{":
            self.pos += 2
            items = self.read_seq("}", depth)
            try:
                return frozenset(freeze(v) for v in items)
            except TypeError as e:
                raise self.error(f"unhashable set element: {e}") from None
        if nxt and (nxt.isalpha()):
            self.pos += 1
            tag = self.token()
            if not tag:
                raise self.error("bad tag")
            return self.read(depth + 1)  # the tagged form stands for itself
        raise self.error(f"unsupported dispatch {'#' + nxt!r}")

    def read_char(self) -> str:
        self.pos += 1
        if self.pos >= len(self.text):
            raise self.error("bad character literal")
        first = self.text[self.pos]
        self.pos += 1
        rest = self.token()
        name = first + rest
        if len(name) == 1:
            return name
        if name in _CHAR_NAMES:
            return _CHAR_NAMES[name]
        if name.startswith("u") and len(name) == 5:
            try:
                return chr(int(name[1:], 16))
            except ValueError:
                pass
        raise self.error(f"bad character literal {_BACKSLASH + name!r}")

    def read_atom(self) -> Any:
        tok = self.token()
        if not tok:
            raise self.error(f"unexpected {self.text[self.pos]!r}")
        if tok == "nil":
            return None
        if tok == "true":
            return True
        if tok == "false":
            return False
        c = tok[0]
        if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
            return self.number(tok)
        return Symbol(tok)

    def number(self, tok: str) -> int | float:
        body = tok[:-1] if tok[-1] in "NM" else tok
        try:
            if tok[-1] != "M" and all(ch.isdigit() for ch in body.lstrip("+-")):
                return int(body)
            return float(body)
        except ValueError:
            raise self.error(f"bad number {tok!r}") from None


def read_forms(text: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(line, form)`` for each top-level form, line being where the form starts."""
    reader = _Reader(text)
    while not reader.at_end():
        line = reader.line
        yield line, reader.read(0)


def read_one(text: str, line: int = 1) -> Any:
    """Read exactly one form from ``text`` (which starts on ``line``)."""
    reader = _Reader(text, line)
    value = reader.read(0)
    if not reader.at_end():
        raise reader.error("trailing data after the value")
    return value


def read_history_forms(text: str) -> list[tuple[int, Any]]:
    """The records of a history file, ``(line, form)`` each, by Knossos' rule: a file holding
    one vector or list has its elements as the records (``[{...} {...}]`` or ``({...} ...)``);
    otherwise each top-level form is a record (one map, or ``[process type f value]`` tuple,
    per line). A lone top-level collection is returned as its elements: whether it is one
    tuple rather than a collection of records is for the caller to decide."""
    reader = _Reader(text)
    reader.skip_ws()
    forms: list[tuple[int, Any]] = []
    opener = text[reader.pos:reader.pos + 1]
    if opener in ("[", "("):
        start = reader.line
        reader.pos += 1
        items = reader.read_seq_lines(_CLOSERS[opener])
        if reader.at_end():
            return items
        forms.append((start, [item for _, item in items]))
    while not reader.at_end():
        line = reader.line
        forms.append((line, reader.read(0)))
    return forms
