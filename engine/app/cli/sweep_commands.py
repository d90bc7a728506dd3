"""The commands that run many backtests on Dask: ``sweep`` (every combination of a
parameter grid, ranked, with the deflated Sharpe ratio of the best) and ``walkforward``
(train on each window, test out of sample on the next, stitch the tests), with the
options they share and the walk-forward's fold table.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from engine.app.cli.common import (
    DbOption,
    FormatOption,
    QuietOption,
    _console,
    _emit,
    _fail,
    _num,
    _pct,
    option_groups,
)
from engine.core.errors import EmarlError

if TYPE_CHECKING:
    from engine.app.scenario import ScenarioConfig

R = TypeVar("R")


def _task_progress(label: str, quiet: bool) -> Any:
    """A rich progress bar on a terminal (stderr), else None."""
    if quiet or not sys.stderr.isatty():
        return None
    # rich loads only for a progress bar
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} tasks"),
        TimeElapsedColumn(),
        console=_console(stderr=True),
        transient=True,
    )


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


@dataclass(frozen=True)
class DaskOptions:
    """The options ``sweep`` and ``walkforward`` share: the Dask cluster and its retries,
    the database and which rows each run keeps, how each task trains, and the output."""

    sort: SortOption = "sharpe"
    scheduler: SchedulerOption = None
    workers: WorkersOption = 2
    retries: RetriesOption = 2
    summary_only: SummaryOnlyOption = False
    train_updates: TrainUpdatesOption = None
    checkpoint_dir: CheckpointDirOption = None
    db: DbOption = None
    quiet: QuietOption = False
    output: FormatOption = "table"

    def run(
        self, label: str, scenario: Path, work: Callable[[ScenarioConfig, Any], R]
    ) -> tuple[ScenarioConfig, R]:
        """Load ``scenario``, check ``--sort``, and do ``work(config, batch)`` with the
        :class:`~engine.app.sweep.Batch` these options give and a progress bar on a
        terminal; returns the config and what ``work`` returns. An
        :class:`~engine.core.errors.EmarlError` exits with its one-line message."""
        try:
            return self._run(label, scenario, work)
        except EmarlError as exc:
            raise _fail(exc) from None

    def _run(
        self, label: str, scenario: Path, work: Callable[[ScenarioConfig, Any], R]
    ) -> tuple[ScenarioConfig, R]:
        # the scenario and the sweep load numpy and msgspec: only when it runs
        from engine.app.scenario import load_scenario
        from engine.app.sweep import Batch, check_metric

        config = load_scenario(scenario)
        check_metric(self.sort)

        def batch(progress: Callable[[int, int], None] | None) -> Any:
            return Batch(
                db_url=self.db,
                scheduler=self.scheduler,
                workers=self.workers,
                retries=self.retries,
                keep_messages=not self.summary_only,
                scenario_path=str(scenario),
                train_updates=self.train_updates,
                checkpoint_dir=self.checkpoint_dir,
                progress=progress,
            )

        bar = _task_progress(label, self.quiet)
        if bar is None:
            return config, work(config, batch(None))
        with bar:
            task = bar.add_task(label, total=None)

            def progress(done: int, total: int) -> None:
                bar.update(task, completed=done, total=total)

            return config, work(config, batch(progress))


@option_groups
def sweep(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    grid: GridOption = None,
    seeds: Annotated[
        int, typer.Option(help="Seeds per combination: the scenario's seed, then +1, +2, ...")
    ] = 1,
    train_first: Annotated[
        bool,
        typer.Option(
            "--train",
            help="mappo_ensemble: each task trains the agents on the bars before "
            "run.trade_start, then backtests from it (on when a --grid key is in [train]).",
        ),
    ] = False,
    *,
    options: DaskOptions,
) -> None:
    """Backtest every combination of a parameter grid on Dask and rank the results.

    Every run is stored (with SQLite only this process writes; with PostgreSQL the
    workers do). A task that fails is stored with its error and the sweep goes on;
    the exit code is then 1.

    Example: emarl sweep scenarios/weichai_sma.toml --grid strategy.fast=5,10
    --grid strategy.slow=30,60
    """
    from engine.app.sweep import parse_grid, run_sweep  # loads numpy: only when it runs

    try:
        parsed = parse_grid(grid or [])
    except EmarlError as exc:
        raise _fail(exc) from None
    _, result = options.run(
        "sweep",
        scenario,
        lambda config, batch: run_sweep(
            config,
            parsed,
            seeds=seeds,
            sort=options.sort,
            train=True if train_first else None,
            batch=batch,
        ),
    )
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
    if options.sort not in columns:
        columns.insert(columns.index("status") + 1, options.sort)
    rows = result.rows
    if options.output == "table":
        rows = [{**row, "error": _shorten(row["error"], 70)} for row in rows]
    else:
        columns += ["fills_hash", "wall_seconds", "worker"]
        if any(row.get("checkpoint") for row in rows):
            columns.append("checkpoint")
    _emit(
        rows,
        columns,
        options.output,
        title=f"sweep {result.sweep_id}: {len(result.rows)} tasks on {result.workers} workers "
        f"in {result.wall_seconds:.1f} s, best {options.sort} first",
    )
    deflated = result.deflated
    if options.output == "table" and deflated.get("best_task") is not None:
        _console().print(
            f"deflated Sharpe ratio of the best by {options.sort} (task {deflated['best_task']}): "
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


@option_groups
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
    keep_checkpoint: Annotated[
        bool,
        typer.Option(
            "--keep-checkpoint",
            help="mappo_ensemble: test every fold with the scenario's checkpoint instead of "
            "training one per fold (it may have been trained on test bars).",
        ),
    ] = False,
    *,
    options: DaskOptions,
) -> None:
    """Rolling walk-forward: train on each window, test out of sample on the next.

    Prints per-fold metrics and the stitched out-of-sample figures; the stitched
    equity curve is stored (storage.query.walk_forward_equity) and drawn by
    emarl report ID --walkforward. A mappo_ensemble scenario trains each fold's
    checkpoint on its train window (the [train] settings; --train-updates N).

    Example: emarl walkforward scenarios/weichai_sma.toml --train 24M --optimize strategy.fast=5,10
    """
    # the walk-forward loads numpy and msgspec: only when it runs
    from engine.app.sweep import parse_grid
    from engine.app.walkforward import parse_period, run_walk_forward

    try:
        train_period = parse_period(train, "--train")
        test_period = parse_period(test, "--test")
        step_period = parse_period(step, "--step") if step else test_period
        grid = parse_grid(optimize or [])
    except EmarlError as exc:
        raise _fail(exc) from None
    config, result = options.run(
        "walk-forward",
        scenario,
        lambda config, batch: run_walk_forward(
            config,
            train=train_period,
            test=test_period,
            step=step_period,
            optimize=grid or None,
            sort=options.sort,
            keep_checkpoint=keep_checkpoint,
            batch=batch,
        ),
    )
    if options.output == "json":
        typer.echo(
            json.dumps(
                {"sweep_id": result.sweep_id, "folds": result.folds, "summary": result.summary},
                indent=1,
                default=str,
            )
        )
    else:
        zone = config.data.timezone
        if options.output == "csv":
            rows = [_fold_row(fold, zone) for fold in result.folds]
            _emit(rows, [*FOLD_TABLE_COLUMNS, "note"], options.output, title="")
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
    import pandas as pd  # pandas loads only when folds are printed

    row = dict(fold)
    for key in ("train_start", "test_start", "test_end"):
        row[key] = str(pd.Timestamp(row[key]).tz_convert(zone).date())
    row["params"] = " ".join(f"{k}={v}" for k, v in (fold["params"] or {}).items())
    row["note"] = fold["error"] or fold["train_note"] or ""
    return row


def walk_forward_table(folds: list[dict[str, Any]], zone: str, title: str) -> Any:
    """The folds as a table that fits 120 columns: figures per fold (returns in percent),
    then each fold's train note or error, whole, on lines of its own under the table."""
    # rich loads only when a table is printed
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
