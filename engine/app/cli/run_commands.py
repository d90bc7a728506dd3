"""The commands that run a scenario: ``backtest`` (store a run and print its summary),
``train`` (MAPPO training to a checkpoint, with its per-update log) and ``evaluate``
(the learned ensemble against its references over the same bars).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.app.cli.common import (
    DbOption,
    QuietOption,
    _console,
    _db_url,
    _emit,
    _fail,
    _fmt_time,
)
from engine.app.cli.report_commands import _write_report
from engine.app.cli.summary import WINDOW_TITLES, _print_summary
from engine.app.provenance import checkpoint_path
from engine.core.errors import EmarlError


def backtest(
    scenario: Annotated[Path, typer.Argument(help="Scenario TOML file, e.g. scenarios/demo.toml.")],
    db: DbOption = None,
    quiet: QuietOption = False,
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
    # the backtest loads numba, pandas and numpy: only when it runs
    import msgspec

    from engine.app.backtest import run_backtest
    from engine.app.scenario import load_scenario
    from engine.core.configs import check_seed

    try:
        config = load_scenario(scenario)
        if seed is not None:
            check_seed("--seed", seed)
            config = msgspec.structs.replace(
                config, run=msgspec.structs.replace(config.run, seed=seed)
            )
        show_progress = not quiet and sys.stderr.isatty()
        if show_progress:
            # rich loads only for a progress bar
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
    summary["symbols"] = result.outcome.symbols
    summary["data"] = result.outcome.data
    if (report or report_file is not None) and result.run_id is not None:
        written = _write_report(db or config.storage.url, result.run_id, report_file)
        summary["report"] = str(written)
        if not output_json:
            _console(stderr=True).print(f"report written to {written}")
    if output_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    _print_summary(config.run.name, result.data.symbol, summary, result.fills)
    if result.outcome.symbols:
        _emit(
            [{"symbol": k, **v} for k, v in result.outcome.symbols.items()],
            ["symbol", "fills", "trades", "win_rate", "fees", "final_position", "pnl"],
            "table",
            title="by symbol: fills, round trips, fees, final position, P&L contribution",
        )
    if result.agents:
        title = "agents: cumulative Shapley P&L, final share price, weight"
        if result.outcome.symbols:  # a meta-investor per symbol (Kernel.agent_summary)
            title += (
                f" (P&L summed over the {len(result.outcome.symbols)} symbols, the rest their mean)"
            )
        _emit(
            result.agents,
            ["agent", "shapley_pnl", "share_price", "weight"],
            "table",
            title=title,
        )


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
    quiet: QuietOption = False,
) -> None:
    """Train the three agents with MAPPO and write a checkpoint (.pt + .json).

    Per-update metrics (episode return, policy and value loss, entropy, approximate
    KL, clip fraction, explained variance) go to the database and a CSV log.

    Example: emarl train scenarios/train_weichai.toml --out checkpoints/weichai_mappo.pt
    """
    # the scenario loads numpy and msgspec, the code version importlib.metadata: only to train
    from engine.app.scenario import config_hash, load_scenario
    from engine.core.version import code_version

    try:
        config = load_scenario(scenario)
    except EmarlError as exc:
        raise _fail(exc) from None
    # training loads torch, storage SQLAlchemy: only once the scenario has loaded
    from engine.app.train import check_updates, train_scenario
    from storage.db import connect
    from storage.training import add_training_metric, create_training_run, finish_training_run

    started = time.perf_counter()
    try:
        target = out if out is not None else checkpoint_path(config)
        check_updates(updates)  # refused before a training row is stored
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
                # rich loads only for a progress bar
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
    from engine.app.evaluate import evaluate_scenario  # loads numpy: only when it runs

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
        "table",
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
    # the scenario loads numpy and msgspec: only when evaluating
    from engine.app.scenario import load_scenario, scenario_from_dict

    if target.endswith(".toml") or Path(target).is_file():
        return load_scenario(target)
    # storage loads SQLAlchemy: only to read a stored run's scenario
    from storage.db import connect
    from storage.frames import run_info

    info = run_info(connect(_db_url(db), create=False), target)
    scenario = info.get("scenario") or ""
    base_dir = str(Path(scenario).resolve().parent) if scenario else "."
    return scenario_from_dict(
        info["config"], source=f"run {info['id']} (stored scenario)", base_dir=base_dir
    )
