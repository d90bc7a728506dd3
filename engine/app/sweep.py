"""Parameter sweeps on Dask distributed: many backtests of one scenario.

A grid names scenario fields by their dotted path (``broker.commission_bps=0,1,2``,
``strategy.fast=5,10``); every combination, times ``seeds`` seeds, is one task.
Every combination is built into a :class:`~engine.app.scenario.ScenarioConfig` before
anything is submitted, so an unknown path or a bad value is a ``ConfigError``
(with a "did you mean") before anything runs.

The grid is :mod:`engine.app.sweep_grid`; a task, :mod:`engine.app.sweep_task`, is a pure
function of its spec (:func:`run_task`): the effective
scenario with its overrides and seed in, a :class:`TaskOutcome` out. Where the
rows go depends on the database:

* SQLite: the worker runs in memory, keeps the run's messages and returns them;
  the client stores each result as it completes (``as_completed``), so the file
  has one writer.
* PostgreSQL: the worker stores its run itself and returns the run id. The run
  row is linked to its task row when it is created
  (:func:`storage.sweeps.store_task_run`), so a task that Dask runs again after
  its worker died reuses the run it had already stored instead of adding a second.

With ``train`` (a ``mappo_ensemble`` scenario) a task first trains the agents on
the bars before ``run.trade_start`` (the path of ``emarl train``, with the
scenario's ``[train]`` settings), writes the checkpoint to its own file and
backtests with it from ``run.trade_start`` on.

A task that fails (bad data for one combination, a strategy that raises, a
training that fails) comes back as a ``failed`` outcome with its error; the sweep
goes on. A worker that dies takes its running tasks with it: the scheduler runs
them again on another worker, and results already stored stay stored.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from engine.app.scenario import ScenarioConfig, scenario_from_dict
from engine.app.significance import expected_max_sharpe, psr_from_moments
from engine.app.sweep_grid import (
    METRICS,
    SMALLER_IS_BETTER,
    TaskSpec,
    build_tasks,
    check_metric,
    parse_grid,
    set_path,
    with_overrides,
)
from engine.app.sweep_task import (
    TaskOutcome,
    decode_messages,
    fills_hash,
    run_task,
    train_checkpoint,
    training_window,
)
from engine.core.errors import ConfigError
from engine.core.version import code_version
from storage.db import connect
from storage.sweeps import create_sweep, finish_sweep, record_task, store_run

__all__ = [
    "METRICS",
    "Batch",
    "SweepResult",
    "SweepStore",
    "TaskOutcome",
    "TaskSpec",
    "build_tasks",
    "check_metric",
    "dask_client",
    "decode_messages",
    "fills_hash",
    "is_postgres",
    "parse_grid",
    "run_sweep",
    "run_task",
    "set_path",
    "sort_rows",
    "store_outcome",
    "train_checkpoint",
    "training_window",
    "with_overrides",
]

# -- the client ---------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


@dataclass(frozen=True)
class Batch:
    """How a sweep or a walk-forward runs its tasks and where it stores them.

    ``db_url`` (default: the scenario's ``[storage] url``) receives the sweep row and
    each task's run, with its orders, fills and snapshots unless ``keep_messages`` is
    off. ``client`` is an already open Dask client; otherwise one is opened on
    ``scheduler`` (``tcp://host:8786``) or on a local cluster of ``workers`` processes,
    and closed at the end. Dask re-runs a failed task ``retries`` times. A task that
    trains does ``train_updates`` MAPPO updates (default: the scenario's) and writes its
    checkpoint under ``checkpoint_dir`` (default ``runs/<kind>-<id>/``). ``progress`` is
    called with (tasks done, tasks) as results come in.
    """

    db_url: str | None = None
    scheduler: str | None = None
    workers: int = 2
    retries: int = 2
    keep_messages: bool = True
    scenario_path: str = ""
    train_updates: int | None = None
    checkpoint_dir: str | Path | None = None
    progress: Callable[[int, int], None] | None = None
    client: Any = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"--retries must be zero or more, got {self.retries}")

    def check_train_updates(self) -> None:
        if self.train_updates is not None and self.train_updates < 1:
            raise ConfigError(f"--train-updates must be at least 1, got {self.train_updates}")

    def checkpoints(self, store: SweepStore, kind: str) -> Path:
        """The folder of the checkpoints the tasks of ``store`` train."""
        return Path(self.checkpoint_dir or Path("runs") / f"{kind}-{store.sweep_id}").resolve()

    def report(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(done, total)

    @contextmanager
    def dask(self) -> Iterator[Any]:
        """The Dask client the tasks run on (module docstring)."""
        if self.client is not None:
            yield self.client
            return
        with dask_client(self.scheduler, self.workers) as opened:
            yield opened


@dataclass(frozen=True)
class SweepStore:
    """The sweep row a sweep or walk-forward opened, and where its tasks write."""

    url: str
    engine: Engine
    sweep_id: int
    #: workers write their own rows (PostgreSQL); on SQLite the parent writes them
    parallel: bool
    #: ``time.perf_counter()`` when the sweep began
    started: float

    @classmethod
    def open(
        cls,
        config: ScenarioConfig,
        *,
        kind: str,
        batch: Batch,
        spec: dict[str, Any],
        tasks: int,
    ) -> SweepStore:
        url = batch.db_url or config.storage.url
        engine = connect(url)
        started = time.perf_counter()
        sweep_id = create_sweep(
            engine,
            kind=kind,
            name=config.run.name,
            scenario=batch.scenario_path,
            config=config.to_dict(),
            spec={**spec, "retries": batch.retries, "train_updates": batch.train_updates},
            code_version=code_version(),
            scheduler=batch.scheduler or f"local:{batch.workers}",
            tasks=tasks,
        )
        return cls(url, engine, sweep_id, is_postgres(url), started)


def _distributed() -> Any:
    """The ``distributed`` package (imported when a sweep starts: it is slow to import)."""
    import distributed  # slow to import: only when a sweep starts

    return distributed


@contextmanager
def dask_client(scheduler: str | None = None, workers: int = 2) -> Iterator[Any]:
    """A client of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a local
    cluster of ``workers`` single-threaded worker processes, closed on exit."""
    dask = _distributed()
    if scheduler:
        try:
            client = dask.Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler: cannot reach {scheduler}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    cluster = dask.LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    client = dask.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@dataclass
class SweepResult:
    sweep_id: int
    rows: list[dict[str, Any]]
    wall_seconds: float
    workers: int
    db_url: str
    grid_keys: list[str] = field(default_factory=list)
    #: the deflated Sharpe ratio of the best row given the tasks tried (deflated_best)
    deflated: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(1 for row in self.rows if row["status"] != "completed")


def sort_rows(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Best first by ``metric``; failed tasks and NaN values last."""
    sign = 1.0 if metric in SMALLER_IS_BETTER else -1.0

    def key(row: dict[str, Any]) -> tuple[int, float, int]:
        value = row.get(metric)
        if row["status"] != "completed" or value is None or value != value:
            return (1, 0.0, row["task"])
        return (0, sign * float(value), row["task"])

    return sorted(rows, key=key)


def deflated_best(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The deflated Sharpe ratio (Bailey and López de Prado 2014) of the best completed
    row by ``metric``, given the number of rows tried: PSR of its returns against the
    Sharpe ratio the best of that many skill-less trials would show (from the variance of
    the trials' per-bar Sharpe ratios); see :mod:`engine.app.significance`. Rows carry their
    summary's ``sharpe``, ``periods_per_year`` and ``edge`` (skewness, kurtosis, returns
    counted). NaN where fewer than two trials have a Sharpe ratio."""
    usable = [
        row
        for row in rows
        if row["status"] == "completed"
        and row.get("sharpe") is not None
        and math.isfinite(row["sharpe"])
        and (row.get("periods_per_year") or 0) > 0
        and row.get("edge")
    ]
    out: dict[str, Any] = {"trials": len(rows), "dsr": math.nan, "best_task": None}
    if len(usable) < 2:
        return out
    per_bar = [row["sharpe"] / math.sqrt(row["periods_per_year"]) for row in usable]
    variance = statistics.variance(per_bar)
    best = sort_rows(usable, metric)[0]
    edge = best["edge"]
    hurdle = expected_max_sharpe(len(rows), variance)
    out.update(
        best_task=best["task"],
        expected_max_sharpe=hurdle * math.sqrt(best["periods_per_year"]),
        dsr=psr_from_moments(
            best["sharpe"] / math.sqrt(best["periods_per_year"]),
            int(edge["observations"]),
            edge["skewness"],
            edge["kurtosis"],
            hurdle,
        ),
    )
    return out


def _row(spec: TaskSpec, outcome: TaskOutcome) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task": spec.task,
        **spec.overrides,
        "seed": spec.seed,
        "status": outcome.status,
        "run_id": outcome.run_id,
        "fills": outcome.fills,
        "fills_hash": outcome.fills_hash,
        "wall_seconds": outcome.wall_seconds,
        "worker": outcome.worker,
        "error": outcome.error,
        "checkpoint": (outcome.extra.get("training") or {}).get("checkpoint"),
    }
    summary = outcome.summary or {}
    for metric in METRICS:
        row[metric] = summary.get(metric)
    edge = summary.get("edge") or {}
    row["sharpe_95_low"] = edge.get("sharpe_low")
    row["sharpe_95_high"] = edge.get("sharpe_high")
    row["psr"] = edge.get("psr")
    row["edge"] = edge
    return row


def store_outcome(engine: Any, outcome: TaskOutcome) -> int | None:
    """Store a run a worker returned (SQLite mode); return its run id."""
    if outcome.status != "completed" or outcome.run is None:
        return outcome.run_id
    return store_run(
        engine,
        run=outcome.run,
        messages=None if outcome.messages is None else decode_messages(outcome.messages),
        summary=outcome.summary or {},
        wall_seconds=outcome.wall_seconds,
    )


def as_completed(
    dask: Any,
    function: Callable[..., Any],
    items: Sequence[Any],
    *,
    arguments: Callable[[Any], tuple[Any, ...]],
    key: Callable[[Any], str],
    retries: int,
    lost: Callable[[Any, BaseException], Any],
) -> Iterator[tuple[Any, Any]]:
    """Submit ``function(*arguments(item))`` for every item (Dask task key ``key(item)``,
    retried ``retries`` times) and yield ``(item, result)`` as each completes; a task Dask
    gives up on yields ``lost(item, error)``. Each result is released once yielded."""
    futures = {
        dask.submit(function, *arguments(item), key=key(item), retries=retries, pure=False): item
        for item in items
    }
    for future in _distributed().as_completed(list(futures)):
        item = futures[future]
        try:
            result = future.result()
        except Exception as exc:
            result = lost(item, exc)
        future.release()
        yield item, result


def lost_outcome(task: int, exc: BaseException) -> TaskOutcome:
    """The outcome of a task Dask gave up on (its workers kept dying, or it raised)."""
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return TaskOutcome(task=task, status="failed", error=message)


TaskFunction = Callable[..., TaskOutcome]


def run_sweep(
    config: ScenarioConfig,
    grid: dict[str, list[Any]],
    *,
    seeds: int = 1,
    sort: str = "sharpe",
    train: bool | None = None,
    batch: Batch | None = None,
    task_function: TaskFunction | None = None,
) -> SweepResult:
    """Run every task of the grid on Dask (as ``batch`` says), storing each result as it
    completes. ``task_function`` (default :func:`run_task`) is what workers run.

    ``train`` makes every task train the agents of a ``mappo_ensemble`` scenario on
    the bars before ``run.trade_start``, then backtest with that checkpoint; it is on by
    default when a grid key is in ``[train]``. Task ``k`` writes ``task-k.pt`` in the
    batch's checkpoint folder (on several machines, a folder they all see).
    """
    batch = batch or Batch()
    check_metric(sort)
    tasks = build_tasks(config, grid, seeds, scenario=batch.scenario_path)
    touches_train = [key for key in grid if key.split(".", 1)[0] == "train"]
    if train is None:
        train = bool(touches_train)
    elif not train and touches_train:
        raise ConfigError(
            f"--grid {touches_train[0]} changes [train], which only matters with --train"
        )
    if batch.train_updates is not None and not train:
        raise ConfigError("--train-updates needs --train (each task trains, then backtests)")
    batch.check_train_updates()
    if train:
        for spec in tasks:  # every task has a training window before anything runs
            training_window(
                scenario_from_dict(copy.deepcopy(spec.config), base_dir=spec.base_dir),
                source=f"--train, task {spec.task}",
            )
    function = task_function or run_task
    store = SweepStore.open(
        config,
        kind="sweep",
        batch=batch,
        spec={"grid": grid, "seeds": seeds, "sort": sort, "train": train},
        tasks=len(tasks),
    )
    folder = batch.checkpoints(store, "sweep")
    tasks = [
        dataclasses.replace(
            spec,
            sweep_id=store.sweep_id,
            train=train,
            train_updates=batch.train_updates,
            checkpoint=str(folder / f"task-{spec.task}.pt") if train else "",
        )
        for spec in tasks
    ]
    for spec in tasks:
        record_task(
            store.engine,
            store.sweep_id,
            {
                "task": spec.task,
                "overrides": spec.overrides,
                "seed": spec.seed,
                "config_hash": spec.config_hash,
                "status": "pending",
            },
            new=True,
        )
    rows: list[dict[str, Any]] = []
    status = "failed"
    try:
        with batch.dask() as dask:
            n_workers = len(dask.scheduler_info().get("workers", {})) or batch.workers
            batch.report(0, len(tasks))
            for spec, outcome in as_completed(
                dask,
                function,
                tasks,
                arguments=lambda spec: (spec, store.url, store.parallel, batch.keep_messages),
                key=lambda spec: f"emarl-sweep-{store.sweep_id}-task-{spec.task}",
                retries=batch.retries,
                lost=lambda spec, exc: lost_outcome(spec.task, exc),
            ):
                outcome.run_id = store_outcome(store.engine, outcome)
                record_task(
                    store.engine,
                    store.sweep_id,
                    {
                        "task": spec.task,
                        "status": outcome.status,
                        "run_id": outcome.run_id,
                        "error": outcome.error,
                        "summary": outcome.summary,
                        "fills": outcome.fills,
                        "fills_hash": outcome.fills_hash,
                        "wall_seconds": outcome.wall_seconds,
                        "worker": outcome.worker,
                    },
                    new=False,
                )
                rows.append(_row(spec, outcome))
                batch.report(len(rows), len(tasks))
        status = "completed"
    finally:
        wall = time.perf_counter() - store.started
        failed = sum(1 for row in rows if row["status"] != "completed")
        deflated = deflated_best(rows, sort)
        finish_sweep(
            store.engine,
            store.sweep_id,
            status=status,
            wall_seconds=wall,
            summary={
                "completed": len(rows) - failed,
                "failed": failed,
                "tasks": len(tasks),
                "deflated_sharpe": deflated,
            },
        )
    return SweepResult(
        sweep_id=store.sweep_id,
        rows=sort_rows(rows, sort),
        wall_seconds=wall,
        workers=n_workers,
        db_url=store.url,
        grid_keys=list(grid),
        deflated=deflated,
    )
