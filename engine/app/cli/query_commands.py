"""The commands that read stored runs: ``runs`` (the list, and pruning interrupted
ones), ``trades`` (a run's fills, or their P&L by period, side or agent, also as a
file), ``shapley`` (each agent's credit per bar) and ``compare`` (runs side by side).
They load no numerical package, so they start quickly; the database layer
(SQLAlchemy) loads inside them.
"""

from __future__ import annotations

import csv
import functools
import json
import sys
from operator import itemgetter
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from engine.app.cli.common import (
    DbOption,
    FormatOption,
    IncompleteOption,
    LimitOption,
    OutputFormat,
    RunOption,
    _bad_option,
    _cell,
    _console,
    _db_url,
    _emit,
    _fail,
    _fmt_time,
    _fmt_times,
    _limit,
    _resolve,
    _shown,
)
from engine.core.errors import EmarlError

Side = Literal["buy", "sell"]
ExportFormat = Literal["table", "csv", "json", "parquet"]
PnlGroup = Literal["day", "week", "month", "side", "symbol", "agent"]


def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first (0: all).")] = 20,
    output: FormatOption = "table",
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Delete the interrupted runs (their process died) with all their rows; "
            "an interrupted paper run deleted this way can no longer be resumed.",
        ),
    ] = False,
) -> None:
    """List stored runs, newest first: bars planned and bars stored, status, figures.

    A run whose process died shows as interrupted. Example: emarl runs --limit 5
    """
    # storage loads SQLAlchemy: only when the command runs
    from storage.db import connect
    from storage.query import list_runs

    most = _limit(limit, table=False)
    try:
        engine = connect(_db_url(db), create=False)
        if prune:
            from storage.runs import prune_interrupted  # storage.runs loads only for --prune

            deleted = prune_interrupted(engine)
        else:
            rows = list_runs(engine, limit=most)
    except EmarlError as exc:
        raise _fail(exc) from None
    if prune:
        for run in deleted:
            stored = run["bars_stored"] if run["bars_stored"] is not None else "?"
            typer.echo(
                f"deleted run {run['id']} ({run['name']}, {run['kind']}): interrupted at bar "
                f"{stored} of {run['bars']}"
            )
        typer.echo(f"{len(deleted)} interrupted run(s) deleted")
        return
    if not rows:
        _console(stderr=True).print("no runs stored yet (run 'emarl backtest SCENARIO')")
        raise typer.Exit(1)
    for row in rows:
        row["started"] = _fmt_time(row.pop("started_ns"))
        for key in ("trained_first", "trained_last"):
            row[key] = _fmt_time(row.pop(f"{key}_ns")) or None
    columns = [
        "id",
        "name",
        "kind",
        "status",
        "symbol",
        "strategy",
        "bars",
        "bars_stored",
        "started",
        "wall_seconds",
        "total_return",
        "sharpe",
        "trades",
        "denied",
        "rejected",
        "refused_by_kind",
        "seed",
        "config_hash",
        "code_version",
        "data_fingerprint",
        "checkpoint_fingerprint",
        "trained_first",
        "trained_last",
        "error",
    ]
    shown = [
        "id",
        "name",
        "status",
        "symbol",
        "bars",
        "bars_stored",
        "started",
        "total_return",
        "sharpe",
        "trades",
        "denied",
    ]
    _emit(rows, columns if output != "table" else shown, output, title="runs")


def trades(
    run: RunOption = "latest",
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601; naive = UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time, inclusive.")] = None,
    side: Annotated[Side | None, typer.Option(help="Only buys or only sells.")] = None,
    by: Annotated[
        PnlGroup | None,
        typer.Option(
            "--by",
            help="Aggregate P&L per UTC day, week (Monday) or month, per side, per symbol, or "
            "per agent (Shapley attribution) instead of listing fills.",
        ),
    ] = None,
    output: Annotated[
        ExportFormat, typer.Option("--format", help="Output format (parquet needs --out).")
    ] = "table",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write to this file instead of the terminal."),
    ] = None,
    db: DbOption = None,
    include_incomplete: IncompleteOption = False,
    limit: LimitOption = None,
) -> None:
    """List a run's fills (its trade history), oldest first, or aggregate their P&L.

    Example: emarl trades --run latest --side buy --since 2019-01-01 --format csv

    Example: emarl trades --by month --format parquet -o pnl.parquet
    """
    # storage loads SQLAlchemy: only when the command runs
    from storage.db import connect
    from storage.query import (
        AGENT_PNL_COLUMNS,
        PNL_COLUMNS,
        TRADE_COLUMNS,
        pnl_rows,
        trade_rows,
    )

    if output == "parquet" and out is None:
        raise _bad_option("--format parquet writes a file: add --out FILE.parquet")
    if out is not None and output == "table":
        raise _bad_option("--out writes csv, json or parquet: add --format csv|json|parquet")
    try:
        engine = connect(_db_url(db), create=False)
        run_id = _resolve(engine, run, include_incomplete)
        if by is not None:
            rows = pnl_rows(
                engine,
                run_id,
                by,
                symbol=symbol,
                since=since,
                until=until,
                side=side,
            )
        else:
            rows = trade_rows(
                engine,
                run_id,
                symbol=symbol,
                since=since,
                until=until,
                side=side,
            )
    except EmarlError as exc:
        raise _fail(exc) from None
    if not rows:
        what = "Shapley values (does the run have agents?)" if by == "agent" else "trades"
        _console(stderr=True).print(f"no {what} match these filters")
        raise typer.Exit(1)
    if by is not None:
        columns = list(AGENT_PNL_COLUMNS if by == "agent" else (by, *PNL_COLUMNS))
        title = f"P&L of run {run_id} by {by} (UTC)"
        _export(rows, columns, output, out, title)
        return
    shown = _limit(limit, output == "table" and out is None)
    if shown is not None and len(rows) > shown:
        _shown(shown, len(rows), "fills")
        rows = rows[len(rows) - shown :]
    if output != "parquet":
        _fmt_times(rows, "time", "time")
    columns = list(TRADE_COLUMNS)
    if output == "table":
        columns = ["time", "side", "quantity", "price", "commission", "slippage", "order_id"]
    _export(rows, columns, output, out, f"trades of run {run_id} (times UTC)", times=("time",))


def _export(
    rows: list[dict[str, Any]],
    columns: list[str],
    output: ExportFormat,
    out: Path | None,
    title: str,
    times: tuple[str, ...] = (),
) -> None:
    """Rows to the terminal, or to ``out`` as CSV, JSON or Parquet (``times`` columns hold
    int ns UTC and become timestamps in Parquet)."""
    if out is None:  # parquet needs --out (checked first)
        assert output != "parquet"
        _emit(rows, columns, output, title)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if output == "parquet":
            import pandas as pd  # pandas loads only to write Parquet

            frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
            for name in times:
                if name in frame:
                    frame[name] = pd.to_datetime(frame[name].astype("int64"), utc=True)
            frame.to_parquet(out, index=False)
        elif output == "json":
            with out.open("w", encoding="utf-8") as handle:
                json.dump([{c: r.get(c) for c in columns} for r in rows], handle, indent=1)
        else:
            with out.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(
                    handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
                )
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise _bad_option(f"cannot write {out}: {exc.strerror or exc}") from None
    _console(stderr=True).print(f"wrote {len(rows):,} rows to {out}")


def shapley(
    run: RunOption = "latest",
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="One row per agent instead of per bar.")
    ] = False,
    output: FormatOption = "table",
    db: DbOption = None,
    include_incomplete: IncompleteOption = False,
    limit: LimitOption = None,
) -> None:
    """Each agent's Shapley credit per bar (with share price, option value, weight, bubble).

    Example: emarl shapley --run latest --aggregate
    """
    # storage loads SQLAlchemy: only when the command runs
    from storage.db import connect
    from storage.query import compare_rows, shapley_count, shapley_rows, shapley_symbols

    shown = None if aggregate else _limit(limit, output == "table")
    # every row to CSV: written as it is read, in memory that does not grow with the run
    stream = output == "csv" and not aggregate and shown is None
    rows: list[dict[str, Any]] = []
    try:
        engine = connect(_db_url(db), create=False)
        run_id = _resolve(engine, run, include_incomplete)
        if stream:
            symbols = shapley_symbols(engine, run_id)
        else:
            rows = shapley_rows(engine, run_id, aggregate=aggregate, limit=shown)
            if shown is not None and len(rows) == shown:
                _shown(shown, shapley_count(engine, run_id), "rows")
            symbols = sorted({row["symbol"] for row in rows})
        if not symbols:  # no row: the run's status and strategy say why
            (info,) = compare_rows(engine, [run_id], include_incomplete=True)
    except EmarlError as exc:
        raise _fail(exc) from None
    if not symbols:
        _console(stderr=True).print(_why_no_shapley(run_id, info), soft_wrap=True)
        raise typer.Exit(1)
    columns = list(SHAPLEY_TOTAL_COLUMNS if aggregate else SHAPLEY_COLUMNS)
    if len(symbols) > 1:  # a universe: a meta-investor per symbol
        columns.insert(1, "symbol")
    if stream:
        try:
            _stream_shapley_csv(engine, run_id, columns)
        except EmarlError as exc:
            raise _fail(exc) from None
        return
    if not aggregate:
        _fmt_times(rows, "ts_event", "time")
    _emit(rows, columns, output, title="Shapley credit (times UTC)")


SHAPLEY_COLUMNS = ("time", "agent_id", "phi", "value_full", "method", "stderr", "share_price",
                   "option_value", "weight", "bubble")  # fmt: skip
SHAPLEY_TOTAL_COLUMNS = ("agent_index", "agent_id", "steps", "shapley_pnl", "mean_phi",
                         "share_price", "option_value", "weight", "bubble")  # fmt: skip


def _stream_shapley_csv(engine: Any, run_id: int, columns: list[str]) -> None:
    """A run's Shapley values as CSV on stdout, each batch written as it is read: the same
    text :func:`_emit` writes from the rows of ``shapley_rows``."""
    from storage.query import SHAPLEY_ROW_KEYS, iter_shapley_rows  # loaded by the command

    assert columns[0] == "time"
    pick = itemgetter(*(SHAPLEY_ROW_KEYS.index(name) for name in columns[1:]))
    time_of = functools.lru_cache(maxsize=1_024)(_fmt_time)  # a bar's agents share a time
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows((time_of(row[0]), *pick(row)) for row in iter_shapley_rows(engine, run_id))


def _why_no_shapley(run_id: int, info: dict[str, Any]) -> str:
    """Why a run has no Shapley values: not stored yet (it is running or was cut short, so
    its agents may not have settled a step), or its strategy credited no agents."""
    if info["status"] != "completed":
        return f"run {run_id} has stored no Shapley values yet"
    return (
        f"run {run_id} has no Shapley values: its strategy ({info['strategy']}) credited no agents"
    )


def compare(
    runs: Annotated[
        list[str], typer.Argument(help="Two or more run ids or names ('latest' allowed).")
    ],
    output: Annotated[
        OutputFormat,
        typer.Option("--format", help="table: metrics by runs; csv and json: one row per run."),
    ] = "table",
    db: DbOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Put runs' metrics side by side.

    Example: emarl compare 3 4 latest
    """
    # storage loads SQLAlchemy: only when the command runs
    from storage.db import connect
    from storage.query import (
        COMPARE_METRICS,
        EDGE_METRICS,
        TRAINING_WINDOWS,
        WINDOW_METRICS,
        compare_rows,
    )

    if len(runs) < 2:
        raise _bad_option("compare needs at least two runs, e.g. emarl compare 3 4")
    try:
        engine = connect(_db_url(db), create=False)
        ids = [_resolve(engine, run, include_incomplete) for run in runs]
        rows = compare_rows(engine, ids)
    except EmarlError as exc:
        raise _fail(exc) from None
    metrics = [{"start_ns": "start", "end_ns": "end"}.get(key, key) for key in COMPARE_METRICS]
    metrics += [*EDGE_METRICS.values(), "denied", "rejected", "refused_by_kind"]
    if any(row["trained_last_ns"] is not None for row in rows):
        metrics.append("trained_until")
        metrics += [f"{w}.{k}" for w in TRAINING_WINDOWS for k in WINDOW_METRICS]
    for row in rows:
        row["start"] = _fmt_time(row.pop("start_ns"))
        row["end"] = _fmt_time(row.pop("end_ns"))
        row["trained_until"] = _fmt_time(row.pop("trained_last_ns")) or None
    if output != "table":
        _emit(rows, ["id", "name", "status", "symbol", "strategy", *metrics], output, title="")
        return
    # rich loads only when a table is printed
    from rich import box
    from rich.table import Table

    table = Table(title="runs side by side", box=box.SIMPLE)
    table.add_column("metric", style="bold")
    for row in rows:
        table.add_column(f"run {row['id']}", justify="right", no_wrap=True)
    for key in ("name", "status", "symbol", "strategy", *metrics):
        table.add_row(key, *("" if row.get(key) is None else _cell(row[key]) for row in rows))
    _console().print(table)
