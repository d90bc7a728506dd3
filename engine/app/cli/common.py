"""What the commands share: the database and run options, the output formats, the
console, one-line errors and their exit codes (``_fail``, ``_bad_option``), resolving a
run, and how times, numbers and tables of rows are printed (``_emit``, ``human_number``).
It holds no command.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import inspect
import json
import os
import sys
import time
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import typer

from engine.core.errors import (
    ConfigError,
    DataError,
    EmarlError,
    HandlerError,
    RunNotFoundError,
    StorageError,
)

R = TypeVar("R")


def option_groups(command: Callable[..., R]) -> Callable[..., R]:
    """Let ``command`` take a group of options the commands share as one argument.

    Each keyword-only parameter of ``command`` whose type is a dataclass is shown to typer
    as that dataclass's fields (each declared with its ``typer.Option`` and default), in
    its place; a call gathers them back into one instance of the dataclass.
    """
    signature = inspect.signature(command, eval_str=True)
    shown: list[inspect.Parameter] = []
    groups: dict[str, tuple[Any, list[str]]] = {}
    for parameter in signature.parameters.values():
        group = parameter.annotation
        if not (isinstance(group, type) and dataclasses.is_dataclass(group)):
            shown.append(parameter)
            continue
        hints = typing.get_type_hints(group, include_extras=True)
        fields = dataclasses.fields(group)
        groups[parameter.name] = (group, [f.name for f in fields])
        shown += [
            inspect.Parameter(
                f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name]
            )
            for f in fields
        ]

    @functools.wraps(command)
    def gathered(**values: Any) -> R:
        for name, (group, fields) in groups.items():
            values[name] = group(**{field: values.pop(field) for field in fields})
        return command(**values)

    gathered.__signature__ = signature.replace(parameters=shown)  # type: ignore[attr-defined]
    return gathered


DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        envvar="EMARL_DB",
        show_envvar=False,
        help="Database URL (default: $EMARL_DB, else the scenario's, else "
        "sqlite:///runs/emarl.db).",
    ),
]


IncompleteOption = Annotated[
    bool,
    typer.Option(
        "--include-incomplete",
        help="'latest' may be a run that is not completed (running, interrupted, failed...).",
    ),
]
RunOption = Annotated[
    str, typer.Option("--run", help="Run id, run name (the newest of that name), or 'latest'.")
]


OutputFormat = Literal["table", "csv", "json"]


FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console  # rich loads only when something is printed

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps whole rows instead of squeezing them into 80 columns (unless
    # COLUMNS says how wide the reader is).
    width = None if stream.isatty() or os.environ.get("COLUMNS") else 200
    return Console(stderr=stderr, highlight=False, width=width)


def _fail(exc: EmarlError) -> typer.Exit:
    code = 1
    if isinstance(exc, ConfigError | DataError):
        code = 2
    elif isinstance(exc, RunNotFoundError):
        code = 3
    elif isinstance(exc, StorageError):
        code = 4
    elif isinstance(exc, HandlerError):
        code = 1
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    # rich loads only when something is printed; messages name sections such as [broker]
    from rich.markup import escape

    _console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True
    )
    return typer.Exit(code)


def _resolve(engine: Any, run: str, include_incomplete: bool) -> int:
    """The run id ``run`` names; prints one warning line when its rows are partial."""
    # storage loads SQLAlchemy: only when a command reads the database
    from storage.query import resolve_run
    from storage.runs import incomplete_note

    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    note = incomplete_note(engine, run_id)
    if note is not None:
        from rich.markup import escape  # rich loads only when something is printed

        _console(stderr=True).print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)
    return run_id


def _db_url(db: str | None) -> str:
    from storage.db import DEFAULT_URL  # storage loads SQLAlchemy: only when a command needs it

    return db or DEFAULT_URL


def _fmt_time(ns: int | None) -> str:
    if ns is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // 1_000_000_000))


def _fmt_times(rows: list[dict[str, Any]], source: str, target: str) -> None:
    """Set ``row[target]`` to ``row[source]`` (int ns UTC) as text, for many rows."""
    seen: dict[int, str] = {}
    for row in rows:
        ns = row[source]
        text = seen.get(ns)
        if text is None:
            text = seen[ns] = _fmt_time(ns)
        row[target] = text


LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit",
        help="Only the last N rows (0: all). Default: the last 1,000 in a table, all in a file "
        "format.",
    ),
]
TABLE_ROWS = 1_000


def _limit(limit: int | None, table: bool) -> int | None:
    """The number of rows to show: None for all."""
    if limit is None:
        return TABLE_ROWS if table else None
    if limit < 0:
        raise _bad_option(f"--limit must be 0 (all) or more, got {limit}")
    return limit or None


def _shown(count: int, total: int, what: str) -> None:
    """One line on stderr when only the last rows of a listing are shown."""
    if count < total:
        _console(stderr=True).print(
            f"showing the last {count:,} of {total:,} {what} (--limit 0 shows all; "
            "--format csv or json writes them all)",
            soft_wrap=True,
        )


def _bad_option(message: str) -> typer.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(2)


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:+.2%}"


def _num(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def _emit(rows: list[dict[str, Any]], columns: list[str], output: OutputFormat, title: str) -> None:
    if output == "json":
        typer.echo(json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=1))
        return
    if output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row.get(c) for c in columns] for row in rows)
        return
    # rich loads only when a table is printed
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE)
    for column in columns:
        table.add_column(
            column,
            justify="right" if column not in ("name", "error", "part", "strategy") else "left",
            no_wrap=True,
        )
    for row in rows:
        table.add_row(*("" if row.get(c) is None else _cell(row.get(c)) for c in columns))
    _console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return human_number(value)
    return str(value)


def human_number(x: float) -> str:
    """A float as a person reads it: 4 significant digits, thousands separated, and
    scientific notation with 3 digits only for magnitudes below 0.001 or from 1e15
    (``4.10e-12``, not ``4.10251e-12``)."""
    if x != x:
        return "n/a"
    if x == 0.0:
        return "0"
    size = abs(x)
    if size < 1e-3 or size >= 1e15 or size == float("inf"):
        return f"{x:.2e}"
    if size >= 1e5 or x == round(x):
        return f"{x:,.0f}"
    if size >= 1e3:
        return f"{x:,.2f}"
    return f"{x:.4g}"
