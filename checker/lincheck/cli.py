"""The ``lincheck`` command line.

    lincheck check FILE --model NAME [--initial JSON] [--format FORMAT] [--timeout SECONDS]
                        [--html OUT] [--json] [--allow-empty]
    lincheck models
    lincheck convert FILE --to jsonl OUT [--format FORMAT]

Exit status of ``check``: 0 linearizable, 1 not linearizable, 2 unknown (deadline reached),
3 bad input or usage (a history with no operations is bad input unless ``--allow-empty``),
4 internal error (a bug in lincheck: the one line names the exception;
set ``LINCHECK_DEBUG=1`` for the traceback). Python's default status for an uncaught exception
is 1, which would read as "not linearizable": hence the catch-all. Every error is ONE line on
stderr, naming the file and line when the input is at fault. ``--json`` prints the result
(schema in ``lincheck.report_json``) on stdout; otherwise a short explanation is printed.
``--html OUT`` writes the report whatever the verdict.
"""

from __future__ import annotations

import os
import sys

from .history import History, HistoryError

# Read by mypy only (it treats any TYPE_CHECKING as true): importing ``typing`` and
# ``collections.abc`` costs every per-file run a millisecond or two of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence
    from typing import Any, NoReturn

    from .result import Result

EXIT_OK = 0
EXIT_ILLEGAL = 1
EXIT_UNKNOWN = 2
EXIT_BAD_INPUT = 3
EXIT_INTERNAL_ERROR = 4
EXIT_BY_VERDICT = {"ok": EXIT_OK, "illegal": EXIT_ILLEGAL, "unknown": EXIT_UNKNOWN}
FORMAT_CHOICES = ("auto", "jsonl", "edn", "porcupine-etcd", "porcupine-kv")
PROG = "lincheck"


class UsageError(Exception):
    """Bad arguments or input: the message is the one stderr line; the exit status is 3."""


class CheckArgs:
    """The arguments of ``check``, whether read by the fast path or by argparse."""

    def __init__(self, file: str, model: str, initial: str | None = None, format: str = "auto",
                 timeout: float | None = None, html: str | None = None, json: bool = False,
                 allow_empty: bool = False, **_: Any) -> None:
        self.file, self.model, self.initial, self.format = file, model, initial, format
        self.timeout, self.html, self.json, self.allow_empty = timeout, html, json, allow_empty


# The options of ``check`` the fast path reads: those taking a value, and the switches.
_CHECK_VALUED = ("--model", "--initial", "--format", "--timeout", "--html")
_CHECK_SWITCHES = ("--json", "--allow-empty")


def parse_check_fast(argv: Sequence[str]) -> CheckArgs | None:
    """``check`` arguments in their plain shape (``--opt value`` or ``--opt=value``, one FILE,
    no abbreviations, nothing starting with ``-`` where a value goes), read without argparse;
    None for anything else, which argparse then reads and, if need be, reports. argparse
    (and gettext and locale with it) is a few milliseconds of a per-file run's start-up; the
    fast path accepts nothing argparse would refuse, and reads everything as argparse does."""
    if len(argv) < 2 or argv[0] != "check":
        return None
    file: str | None = None
    values: dict[str, str] = {}
    switches: set[str] = set()
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        name, eq, inline = arg.partition("=")
        if arg in _CHECK_SWITCHES:
            switches.add(arg)
        elif name in _CHECK_VALUED and eq:
            values[name] = inline
        elif arg in _CHECK_VALUED and rest and not rest[0].startswith("-"):
            values[arg] = rest.pop(0)
        elif file is None and arg and not arg.startswith("-"):
            file = arg
        else:
            return None
    timeout = values.get("--timeout")
    if file is None or "--model" not in values or (
            values.get("--format", "auto") not in FORMAT_CHOICES):
        return None
    try:
        seconds = None if timeout is None else _timeout(timeout)
    except ValueError:
        return None
    return CheckArgs(file, values["--model"], values.get("--initial"),
                     values.get("--format", "auto"), seconds, values.get("--html"),
                     "--json" in switches, "--allow-empty" in switches)


def _terminal_columns() -> int:
    try:
        return int(os.environ.get("COLUMNS", "")) or os.get_terminal_size(sys.stdout.fileno())[0]
    except (ValueError, OSError):
        return 80


def _timeout(text: str) -> float:
    """Seconds from ``--timeout``; ValueError (argparse reports it as a bad value)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):  # also refuses nan
        raise ValueError(f"must be a positive number of seconds: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    import argparse

    class HelpFormatter(argparse.HelpFormatter):
        """argparse's formatter, given the width so that it does not import ``shutil`` (and
        with it three compression modules) for the terminal size: start-up time."""

        def __init__(self, prog: str) -> None:
            super().__init__(prog, width=_terminal_columns() - 2)

    class ArgumentParser(argparse.ArgumentParser):
        """argparse that reports errors as one line and lets ``main`` exit 3 (argparse: 2)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", HelpFormatter)
            super().__init__(*args, **kwargs)

        def error(self, message: str) -> NoReturn:
            raise UsageError(f"{self.prog}: {message} (see --help)")

    def seconds(text: str) -> float:
        try:
            return _timeout(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parser = ArgumentParser(
        prog=PROG,
        description="Check histories of concurrent operations for linearizability.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    check = commands.add_parser(
        "check",
        help="check one history file",
        description="Check FILE against a model. Exit status: 0 linearizable, "
        "1 not linearizable, 2 unknown (deadline reached), 3 bad input or usage, "
        "4 internal error.",
    )
    check.add_argument("file", metavar="FILE", help="history file")
    check.add_argument("--model", required=True, metavar="NAME", help="see `lincheck models`")
    check.add_argument(
        "--initial", metavar="JSON", help="initial model state as JSON (default: the model's)"
    )
    check.add_argument("--format", choices=FORMAT_CHOICES, default="auto")
    check.add_argument(
        "--timeout",
        type=seconds,
        metavar="SECONDS",
        help="deadline; past it the verdict is unknown",
    )
    check.add_argument("--html", metavar="OUT", help="write a self-contained HTML report to OUT")
    check.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    check.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept a history with no operations (by default it is bad input, exit 3)",
    )

    commands.add_parser("models", help="list the models, one per line")

    convert = commands.add_parser("convert", help="convert a history to JSON Lines")
    convert.add_argument("file", metavar="FILE", help="history file")
    convert.add_argument("--to", required=True, choices=("jsonl",), help="output format")
    convert.add_argument("out", metavar="OUT", help="output file ('-' for stdout)")
    convert.add_argument("--format", choices=FORMAT_CHOICES, default="auto")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(argv) if argv is not None else sys.argv[1:]
    try:
        fast = parse_check_fast(argv)
        if fast is not None:
            return _check(fast)
        args = build_parser().parse_args(argv)
        if args.command == "check":
            return _check(CheckArgs(**vars(args)))
        if args.command == "models":
            return _models()
        return _convert(args)
    except SystemExit as stop:  # --help and --version exit through argparse
        return stop.code if isinstance(stop.code, int) else EXIT_OK
    except UsageError as error:
        _error_line(str(error))
        return EXIT_BAD_INPUT
    except HistoryError as error:
        _error_line(f"{PROG}: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error_line(f"{PROG}: interrupted")
        return 130
    except Exception as error:  # a bug, or input that slipped past validation
        if os.environ.get("LINCHECK_DEBUG"):
            raise
        _error_line(
            f"{PROG}: internal error: {type(error).__name__}: {error} "
            "(set LINCHECK_DEBUG=1 for the traceback; please report it)"
        )
        return EXIT_INTERNAL_ERROR


def _error_line(message: str) -> None:
    # One line whatever the message holds: hostile input must not forge extra output lines.
    print(" ".join(message.split()), file=sys.stderr)


def _read(path: str, fmt: str) -> History:
    from .formats import read_history

    try:
        return read_history(path, format=fmt)
    except OSError as error:
        raise UsageError(f"{PROG}: {path}: cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise UsageError(f"{PROG}: {path}: not UTF-8 text ({error.reason})") from None


def _model(name: str, initial_text: str | None) -> Any:
    from .models import get_model

    initial: Any = None
    if initial_text is not None:
        import json

        try:
            initial = json.loads(initial_text)
        except ValueError as error:
            raise UsageError(f"{PROG}: --initial: not valid JSON: {error}") from None
    try:
        return get_model(name, initial)
    except (ValueError, TypeError) as error:
        raise UsageError(f"{PROG}: --model {name}: {error}") from None


def _check(args: CheckArgs) -> int:
    from .search import check
    from .validate import require_operations, validate_functions

    model = _model(args.model, args.initial)
    history = _read(args.file, args.format)
    if not args.allow_empty:
        require_operations(history)
    validate_functions(history, model)
    result: Result = check(history, model, timeout=args.timeout)
    if args.html:
        from .report_html import write_html

        try:
            write_html(history, result, args.html, model=model)
        except OSError as error:
            raise UsageError(
                f"{PROG}: --html {args.html}: cannot write: {error.strerror or error}"
            ) from None
    # Each report module is imported only when its output is asked for (start-up time).
    if args.json:
        import json

        from .report_json import result_to_json

        print(json.dumps(result_to_json(result, history), ensure_ascii=False))
    else:
        from .report_text import explain

        print(explain(history, result, model=model))
        if args.html:
            print(f"HTML report: {args.html}")
    return EXIT_BY_VERDICT.get(result.verdict, EXIT_UNKNOWN)


def _models() -> int:
    from .models import MODELS

    for name in sorted(MODELS):
        print(f"{name:<16} {_model_summary(name, MODELS[name])}".rstrip())
    return EXIT_OK


def _model_summary(name: str, entry: Any) -> str:
    """One line about a model: its own description or docstring, else its entry in the table of
    built-ins in ``lincheck.models``' docstring (``name``  text), so there is one source."""
    import re

    from . import models

    text = getattr(entry, "description", None) or getattr(entry, "__doc__", None) or ""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if lines:
        return lines[0]
    entry_re = re.compile(rf"^``{re.escape(name)}``\s+(.+)$")
    found: list[str] = []
    for line in (models.__doc__ or "").splitlines():
        if found and (not line.strip() or line.lstrip().startswith("``") or line[:1] != " "):
            break  # the entry ends where the next one (or the table) ends
        match = entry_re.match(line.strip())
        if match:
            found.append(match.group(1))
        elif found:
            found.append(line.strip())
    text = " ".join(" ".join(found).replace("``", "").split())
    return text.split(". ")[0].rstrip(".") + "." if text else ""


def _convert(args: argparse.Namespace) -> int:
    from .formats import write_jsonl

    history = _read(args.file, args.format)
    try:
        if args.out == "-":
            write_jsonl(history, sys.stdout)
        else:
            write_jsonl(history, args.out)
    except OSError as error:
        raise UsageError(f"{PROG}: {args.out}: cannot write: {error.strerror or error}") from None
    return EXIT_OK
