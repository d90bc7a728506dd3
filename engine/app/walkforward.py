"""Walk-forward evaluation: rolling folds, trained in sample, tested out of sample.

Folds (:mod:`engine.app.walkforward_folds`) are laid over the data's time range from
the local midnight ``a`` of its first bar: fold ``k`` trains on
``[a + k*step, a + train + k*step)`` and tests on the ``test`` period right after it (cut
at the next fold's test start). Windows are half-open on bar end times, so no bar is in
two windows of a fold, and with ``step == test`` the test windows of consecutive folds
meet exactly. A fold exists only when the data reaches the last day of its test window.

Each fold is one Dask task (:func:`run_fold`): the *train step* gets the
scenario cut to the train window and returns scenario overrides for the test
(a :data:`Trainer`); then the test window is backtested with those overrides.
The test run loads the bars from the train window's start: they warm up
indicators and strategy state but nothing trades before the test window
(``run.trade_start``), and its metrics cover the test window only.

Train steps (:mod:`engine.app.walkforward_train`):

* :class:`NothingToTrain`: strategies with nothing to learn, and no ``--optimize``.
* :class:`GridSelection`: evaluate an ``--optimize`` grid on the train window and
  test the best combination (by the ``--sort`` metric).
* :class:`MappoTraining`: the default for a ``mappo_ensemble`` scenario. It trains
  the agents on the train window only (the path of ``emarl train``, with the
  scenario's ``[train]`` settings; ``train_updates`` overrides the number of
  updates), writes the fold's checkpoint to ``checkpoint_dir/fold-<k>.pt`` and
  tests the fold with it.
* :class:`KeepCheckpoint`: test a ``mappo_ensemble`` scenario with its own
  checkpoint, only when asked (``keep_checkpoint``): that checkpoint was trained
  on bars that may lie in the test windows. Without it, a train step that leaves
  ``strategy.checkpoint`` as it was fails the fold instead of testing it in sample.
* Any callable ``(ScenarioConfig, TrainWindow) -> TrainResult``: the hook for a
  learned strategy, which trains on the window and returns, say, a checkpoint
  path as an override.

The out-of-sample equity curves of the folds are chained by return into one
stitched curve (stored, and read back with
:func:`storage.query.walk_forward_equity`). Each fold starts flat with the
scenario's cash; a position open at the end of a test window is marked to
market there.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.app.metrics import compute_summary
from engine.app.scenario import ScenarioConfig, config_hash, scenario_from_dict
from engine.app.sweep import (
    Batch,
    SweepStore,
    TaskOutcome,
    TaskSpec,
    as_completed,
    build_tasks,
    check_metric,
    lost_outcome,
    run_task,
    store_outcome,
    with_overrides,
)
from engine.app.walkforward_folds import (
    Fold,
    Period,
    iso_time,
    make_folds,
    oos_window_overrides,
    parse_period,
    train_window_overrides,
)
from engine.app.walkforward_train import (
    GridSelection,
    KeepCheckpoint,
    MappoTraining,
    NothingToTrain,
    Trainer,
    TrainResult,
    TrainWindow,
)
from engine.core.errors import ConfigError
from engine.feeds.bars import load_bars
from storage.sweeps import finish_sweep, record_fold, store_equity
from strategies.marl.config import MappoEnsembleConfig

__all__ = [
    "Fold",
    "GridSelection",
    "KeepCheckpoint",
    "MappoTraining",
    "NothingToTrain",
    "Period",
    "TrainResult",
    "TrainWindow",
    "Trainer",
    "WalkForwardResult",
    "make_folds",
    "oos_window_overrides",
    "parse_period",
    "run_fold",
    "run_walk_forward",
    "stitch",
    "train_window_overrides",
]


@dataclass
class FoldSpec:
    fold: Fold
    train_config: dict[str, Any]
    test_config: dict[str, Any]
    base_dir: str
    scenario: str
    sweep_id: int | None = None
    require_checkpoint: bool = False


def run_fold(
    spec: FoldSpec,
    trainer: Trainer,
    db_url: str | None = None,
    worker_writes: bool = False,
    keep_messages: bool = True,
) -> tuple[TrainResult | None, TaskOutcome]:
    """One fold on a worker: the train step on the train window, then the test run."""
    fold = spec.fold
    window = TrainWindow(fold.index, fold.train_start_ns, fold.train_end_ns, fold.train_bars)
    started = time.perf_counter()
    try:
        train_config = scenario_from_dict(
            copy.deepcopy(spec.train_config), source=f"fold {fold.index}", base_dir=spec.base_dir
        )
        trained = trainer(train_config, window)
        base = scenario_from_dict(
            copy.deepcopy(spec.test_config), source=f"fold {fold.index}", base_dir=spec.base_dir
        )
        test_config = with_overrides(base, trained.overrides, source=f"fold {fold.index}")
        if spec.require_checkpoint and "strategy.checkpoint" not in trained.overrides:
            raise ConfigError(
                "it set no strategy.checkpoint, so the test would use the scenario's, "
                "trained on other bars (pass --keep-checkpoint to accept that)"
            )
    except Exception as exc:
        failed = TaskOutcome(
            task=fold.index,
            status="failed",
            error=f"train step: {type(exc).__name__}: {exc}".splitlines()[0],
            wall_seconds=time.perf_counter() - started,
        )
        return None, failed
    task = TaskSpec(
        task=fold.index,
        overrides=trained.overrides,
        seed=test_config.run.seed,
        config=test_config.to_dict(),
        base_dir=test_config.base_dir,
        scenario=spec.scenario,
        config_hash=config_hash(test_config),
        kind="walkforward",
        sweep_id=spec.sweep_id,
    )
    outcome = run_task(task, db_url, worker_writes, keep_messages, keep_equity=True)
    return trained, outcome


def stitch(
    curves: Sequence[tuple[int, np.ndarray, np.ndarray, float]], initial: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Chain each fold's curve ``(fold, ts, equity, fold initial equity)`` by return.

    Returns ``ts, fold, stitched equity, the fold's own equity``; the stitched curve
    starts at ``initial`` and each fold continues from where the previous one ended.
    """
    level = initial
    parts_ts, parts_fold, parts_eq, parts_raw = [], [], [], []
    for index, ts, equity, start in curves:
        if len(ts) == 0:
            continue
        chained = level * equity / start
        level = float(chained[-1])
        parts_ts.append(ts)
        parts_fold.append(np.full(len(ts), index, dtype=np.int64))
        parts_eq.append(chained)
        parts_raw.append(equity)
    if not parts_ts:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty.astype(np.int64), empty, empty
    return (
        np.concatenate(parts_ts),
        np.concatenate(parts_fold),
        np.concatenate(parts_eq),
        np.concatenate(parts_raw),
    )


@dataclass
class WalkForwardResult:
    sweep_id: int
    folds: list[dict[str, Any]]
    summary: dict[str, Any]
    equity: Any  # pandas DataFrame: time, fold, equity, fold_equity
    wall_seconds: float
    db_url: str


def _overall(
    ts: np.ndarray, equity: np.ndarray, initial: float, folds: list[dict[str, Any]]
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "folds": len(folds),
        "completed": sum(1 for f in folds if f["status"] == "completed"),
    }
    if len(ts) < 2:
        return out
    empty = {
        "side": np.zeros(0, dtype=object),
        "quantity": np.zeros(0),
        "price": np.zeros(0),
        "commission": np.zeros(0),
    }
    summary = compute_summary(ts, equity, np.zeros(len(ts)), initial, empty, 0.0, 0).to_dict()
    for key in (
        "bars",
        "start_ns",
        "end_ns",
        "final_equity",
        "total_return",
        "cagr",
        "annual_volatility",
        "sharpe",
        "sortino",
        "max_drawdown",
        "calmar",
    ):
        out[key] = summary[key]
    out["trades"] = sum(f.get("trades") or 0 for f in folds)
    out["fees"] = sum(f.get("fees") or 0.0 for f in folds)
    return out


def run_walk_forward(
    config: ScenarioConfig,
    *,
    train: Period,
    test: Period,
    step: Period,
    optimize: dict[str, list[Any]] | None = None,
    sort: str = "sharpe",
    trainer: Trainer | None = None,
    keep_checkpoint: bool = False,
    batch: Batch | None = None,
) -> WalkForwardResult:
    """Lay the folds, run each on Dask as ``batch`` says (train step, then test), store
    and stitch.

    A ``mappo_ensemble`` scenario trains each fold (:class:`MappoTraining`, into the
    batch's checkpoint folder, with its ``train_updates``) unless ``keep_checkpoint``
    says to test every fold with the scenario's checkpoint.
    """
    import pandas as pd  # pandas loads only when a walk-forward runs (the CLI starts without)

    batch = batch or Batch()
    check_metric(sort)
    if trainer is not None and optimize:
        raise ConfigError("give a trainer or an --optimize grid, not both")
    learned = isinstance(config.strategy, MappoEnsembleConfig)
    train_updates = batch.train_updates
    if not learned and (keep_checkpoint or train_updates is not None):
        option = "--keep-checkpoint" if keep_checkpoint else "--train-updates"
        raise ConfigError(f"{option} is for [strategy] kind = 'mappo_ensemble' scenarios")
    if keep_checkpoint and train_updates is not None:
        raise ConfigError("--train-updates and --keep-checkpoint: train, or keep, not both")
    batch.check_train_updates()
    train_each_fold = learned and not keep_checkpoint and trainer is None and not optimize
    if learned and not keep_checkpoint and (optimize or isinstance(trainer, NothingToTrain)):
        raise ConfigError(
            "a mappo_ensemble walk-forward trains each fold's checkpoint; --optimize (or a "
            "train step that trains nothing) would test every fold with the scenario's "
            "checkpoint, trained on other bars: pass --keep-checkpoint to accept that"
        )
    if trainer is None:
        if optimize:
            build_tasks(config, optimize)  # every combination valid before anything runs
            trainer = GridSelection(optimize, sort)
        elif keep_checkpoint:
            trainer = KeepCheckpoint()
        elif not train_each_fold:
            trainer = NothingToTrain()
    data = load_bars(
        config.data,
        config.single("walk-forward").symbol,
        path=config.data_path(),
        seed=config.run.seed,
    )
    folds = make_folds(data.ts, config.data.timezone, train, test, step)
    specs = []
    for fold in folds:
        train_config = with_overrides(
            config, train_window_overrides(fold, data.ts), source=f"fold {fold.index} train"
        )
        test_config = with_overrides(
            config, oos_window_overrides(fold, data.ts), source=f"fold {fold.index} test"
        )
        if optimize:  # whichever combination a fold chooses must build on its test window
            build_tasks(test_config, optimize)
        specs.append(
            FoldSpec(
                fold=fold,
                train_config=train_config.to_dict(),
                test_config=test_config.to_dict(),
                base_dir=config.base_dir,
                scenario=batch.scenario_path,
                require_checkpoint=learned and not keep_checkpoint,
            )
        )
    store = SweepStore.open(
        config,
        kind="walkforward",
        batch=batch,
        spec={
            "train": str(train),
            "test": str(test),
            "step": str(step),
            "optimize": optimize or {},
            "sort": sort,
            "trainer": MappoTraining.__name__ if trainer is None else type(trainer).__name__,
            "keep_checkpoint": keep_checkpoint,
        },
        tasks=len(folds),
    )
    if trainer is None:
        trainer = MappoTraining(str(batch.checkpoints(store, "walkforward")), train_updates)
    specs = [dataclasses.replace(spec, sweep_id=store.sweep_id) for spec in specs]
    for fold in folds:
        record_fold(
            store.engine,
            store.sweep_id,
            {
                "fold": fold.index,
                "train_start_ns": fold.train_start_ns,
                "train_end_ns": fold.train_end_ns,
                "test_start_ns": fold.test_start_ns,
                "test_end_ns": fold.test_end_ns,
                "train_bars": fold.train_bars,
                "test_bars": fold.test_bars,
                "status": "pending",
            },
            new=True,
        )
    rows: dict[int, dict[str, Any]] = {}
    curves: dict[int, tuple[int, np.ndarray, np.ndarray, float]] = {}
    status = "failed"
    summary: dict[str, Any] = {}
    try:
        with batch.dask() as dask:
            batch.report(0, len(specs))
            for spec, (trained, outcome) in as_completed(
                dask,
                run_fold,
                specs,
                arguments=lambda spec: (
                    spec,
                    trainer,
                    store.url,
                    store.parallel,
                    batch.keep_messages,
                ),
                key=lambda spec: f"emarl-walkforward-{store.sweep_id}-fold-{spec.fold.index}",
                retries=batch.retries,
                lost=lambda spec, exc: (None, lost_outcome(spec.fold.index, exc)),
            ):
                fold = spec.fold
                outcome.run_id = store_outcome(store.engine, outcome)
                fold_summary = outcome.summary or {}
                record_fold(
                    store.engine,
                    store.sweep_id,
                    {
                        "fold": fold.index,
                        "status": outcome.status,
                        "train_note": trained.note if trained else None,
                        "train": trained.candidates if trained else None,
                        "params": trained.overrides if trained else None,
                        "run_id": outcome.run_id,
                        "error": outcome.error,
                        "summary": outcome.summary,
                    },
                    new=False,
                )
                rows[fold.index] = {
                    "fold": fold.index,
                    "train_start": iso_time(fold.train_start_ns),
                    "test_start": iso_time(fold.test_start_ns),
                    "test_end": iso_time(fold.test_end_ns),
                    "train_bars": fold.train_bars,
                    "test_bars": fold.test_bars,
                    "status": outcome.status,
                    "train_note": trained.note if trained else None,
                    "params": trained.overrides if trained else None,
                    "run_id": outcome.run_id,
                    "error": outcome.error,
                    **{k: fold_summary.get(k) for k in _FOLD_METRICS},
                }
                if outcome.status == "completed" and outcome.equity is not None:
                    curves[fold.index] = (
                        fold.index,
                        outcome.equity_ts,
                        outcome.equity,
                        float(fold_summary["initial_equity"]),
                    )
                batch.report(len(rows), len(specs))
        ordered = [rows[i] for i in sorted(rows)]
        ts, fold_of, equity, raw = stitch(
            [curves[i] for i in sorted(curves)], config.broker.initial_cash
        )
        store_equity(
            store.engine,
            store.sweep_id,
            ts.tolist(),
            fold_of.tolist(),
            equity.tolist(),
            raw.tolist(),
        )
        summary = _overall(ts, equity, config.broker.initial_cash, ordered)
        status = "completed"
    finally:
        wall = time.perf_counter() - store.started
        finish_sweep(
            store.engine, store.sweep_id, status=status, wall_seconds=wall, summary=summary
        )
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(ts, utc=True),
            "fold": fold_of,
            "equity": equity,
            "fold_equity": raw,
        }
    )
    return WalkForwardResult(
        sweep_id=store.sweep_id,
        folds=ordered,
        summary=summary,
        equity=frame,
        wall_seconds=wall,
        db_url=store.url,
    )


_FOLD_METRICS = (
    "bars",
    "total_return",
    "sharpe",
    "max_drawdown",
    "trades",
    "fees",
    "exposure",
    "final_equity",
)
