"""One sweep task: a pure function of its spec, run on a Dask worker.

:func:`run_task` builds the task's scenario, trains the agents first when the sweep
trains (:func:`train_checkpoint`, the path of ``emarl train``), backtests, and returns a
:class:`TaskOutcome`: with SQLite the run's messages (MessagePack) for the client to
store, with PostgreSQL the id of the run the worker stored itself, once per task however
often Dask runs it (:func:`storage.sweeps.store_task_run`).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import operator
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from engine.app.backtest import run_backtest
from engine.app.outcome import run_row
from engine.app.scenario import ScenarioConfig, scenario_from_dict
from engine.app.sweep_grid import TaskSpec, with_overrides
from engine.app.train import train_scenario
from engine.app.warmup import trade_start_ns, training_config
from engine.core.errors import ConfigError, StorageError
from engine.core.events import OrderFilled, PortfolioSnapshot
from storage.db import connect
from storage.recorder import DEFAULT_TABLES
from storage.sweeps import store_run, store_task_run
from strategies.marl.config import MappoEnsembleConfig

__all__ = [
    "TaskOutcome",
    "decode_messages",
    "fills_hash",
    "run_task",
    "train_checkpoint",
    "training_window",
]


def training_window(config: ScenarioConfig, *, source: str = "--train") -> ScenarioConfig:
    """``config`` cut to the bars before ``run.trade_start``: what a sweep task trains on."""
    if not isinstance(config.strategy, MappoEnsembleConfig):
        raise ConfigError(
            f"{source}: training needs [strategy] kind = 'mappo_ensemble', "
            f"not {type(config.strategy).__struct_config__.tag!r}"
        )
    if trade_start_ns(config) is None:
        raise ConfigError(
            f"{source}: set run.trade_start (in the scenario or with --grid run.trade_start=...): "
            "each task trains on the bars before it and backtests from it"
        )
    return training_config(config)


def train_checkpoint(
    config: ScenarioConfig, out: str | Path, *, updates: int | None = None
) -> dict[str, Any]:
    """Train the agents of a ``mappo_ensemble`` scenario on its data window, by the code
    path of ``emarl train`` (the scenario's ``[train]`` settings, ``updates`` if given),
    and write the checkpoint to ``out``. Returns what was trained, for the record.

    The training market does not model ``broker.max_participation``, so a scenario
    that caps fills by volume trains without the cap (its backtests keep it).
    """
    if config.broker.max_participation > 0.0:
        config = with_overrides(config, {"broker.max_participation": 0.0}, source="training")
    outcome = train_scenario(config, out=Path(out), updates=updates)
    return {
        "checkpoint": str(outcome.weights_path),
        "updates": len(outcome.result.metrics),
        "episodes": outcome.result.episodes,
        "bars": outcome.bars,
        "warm_bars": outcome.warm_bars,
        "data_start": config.data.start,
        "data_end": config.data.end,
        "seconds": round(outcome.result.seconds, 3),
    }


# -- the task -----------------------------------------------------------------------


@dataclass
class TaskOutcome:
    """What a task sends back. ``messages`` (MessagePack, see :func:`decode_messages`) and
    ``run`` are set when the client stores the run (SQLite); ``run_id`` when the worker
    stored it (PostgreSQL)."""

    task: int
    status: str
    error: str | None = None
    summary: dict[str, Any] | None = None
    fills: int | None = None
    fills_hash: str | None = None
    wall_seconds: float = 0.0
    worker: str = ""
    run_id: int | None = None
    run: dict[str, Any] | None = None
    messages: bytes | None = None
    equity_ts: Any = None
    equity: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def fills_hash(fills: Sequence[Any]) -> str:
    """SHA-256 (16 hex digits) of a run's fills: time, side, quantity, price, costs, order."""
    payload = msgspec.json.encode(
        [
            (f.ts_event, f.side, f.quantity, f.price, f.commission, f.slippage, f.order_id)
            for f in fills
        ]
    )
    return hashlib.sha256(payload).hexdigest()[:16]


def decode_messages(payload: bytes) -> list[Any]:
    """The messages of a task's run, from the bytes the task sent back."""
    types = tuple(DEFAULT_TABLES)
    union = functools.reduce(operator.or_, types[1:], types[0])
    return msgspec.msgpack.decode(payload, type=list[union])  # type: ignore[valid-type]


def _worker_name() -> str:
    try:
        from distributed import get_worker  # only on a Dask worker (slow to import)

        return str(get_worker().address)
    except (ImportError, ValueError):
        return "local"


def run_task(
    spec: TaskSpec,
    db_url: str | None = None,
    worker_writes: bool = False,
    keep_messages: bool = True,
    keep_equity: bool = False,
) -> TaskOutcome:
    """Run one task's backtest. Errors of the run itself come back as a ``failed``
    outcome; a database error is raised so that Dask retries the task."""
    started = time.perf_counter()
    worker = _worker_name()
    captured: list[Any] = []
    types: set[type[Any]] = {OrderFilled}
    if keep_equity:
        types.add(PortfolioSnapshot)
    if keep_messages:
        types.update(DEFAULT_TABLES)

    def tap(bus: Any) -> None:
        for message_type in types:
            bus.subscribe(message_type, captured.append)

    trained: dict[str, Any] | None = None
    step = "train"
    try:
        config = scenario_from_dict(
            copy.deepcopy(spec.config), source=f"task {spec.task}", base_dir=spec.base_dir
        )
        if spec.train:
            trained = train_checkpoint(
                training_window(config, source=f"task {spec.task}"),
                spec.checkpoint,
                updates=spec.train_updates,
            )
            config = with_overrides(
                config, {"strategy.checkpoint": trained["checkpoint"]}, source=f"task {spec.task}"
            )
        step = "backtest"
        # The run is stored from what the tap kept (below), never by the runner itself:
        # a retried task must find the run it stored before, see store_task_run.
        result = run_backtest(config, persist=False, scenario_path=spec.scenario, tap=tap)
    except StorageError:
        raise
    except Exception as exc:
        where = "train: " if spec.train and step == "train" else ""
        return TaskOutcome(
            task=spec.task,
            status="failed",
            error=f"{where}{type(exc).__name__}: {exc}".splitlines()[0],
            wall_seconds=time.perf_counter() - started,
            worker=worker,
            extra={} if trained is None else {"training": trained},
        )
    fills = [m for m in captured if type(m) is OrderFilled]
    summary = result.stored_summary()
    outcome = TaskOutcome(
        task=spec.task,
        status="completed",
        summary=summary,
        fills=len(fills),
        fills_hash=fills_hash(fills),
        wall_seconds=time.perf_counter() - started,
        worker=worker,
        extra={} if trained is None else {"training": trained},
    )
    if keep_equity:
        snapshots = [m for m in captured if type(m) is PortfolioSnapshot]
        ts = np.array([s.ts_event for s in snapshots], dtype=np.int64)
        first = int(np.searchsorted(ts, summary["start_ns"]))
        outcome.equity_ts = ts[first:]
        outcome.equity = np.array([s.equity for s in snapshots[first:]])
    run = run_row(
        config,
        kind=spec.kind,
        scenario_path=spec.scenario,
        data=result.data,
        origin=result.provenance,
    )
    if worker_writes:
        outcome.run_id = _store_on_worker(
            spec, db_url, run, captured if keep_messages else None, outcome
        )
        return outcome
    outcome.run = run
    if keep_messages:
        # MessagePack: some 50x faster to send than pickled structs.
        outcome.messages = msgspec.msgpack.encode(captured)
    return outcome


def _store_on_worker(
    spec: TaskSpec,
    db_url: str | None,
    run: dict[str, Any],
    messages: list[Any] | None,
    outcome: TaskOutcome,
) -> int:
    """Store a task's run from the worker (PostgreSQL): once per task, however often
    Dask runs it (see :func:`storage.sweeps.store_task_run`)."""
    if db_url is None:
        raise ConfigError("a task whose worker stores its run needs the database URL")
    engine = connect(db_url)
    stored = None
    if messages is not None:
        stored = [m for m in messages if type(m) in DEFAULT_TABLES]
    if spec.sweep_id is None:  # a task run on its own, outside a sweep
        return store_run(
            engine,
            run=run,
            messages=stored,
            summary=outcome.summary or {},
            wall_seconds=outcome.wall_seconds,
        )
    run_id, reused = store_task_run(
        engine,
        sweep_id=spec.sweep_id,
        task=spec.task,
        fold=spec.kind == "walkforward",
        run=run,
        messages=stored,
        summary=outcome.summary or {},
        wall_seconds=outcome.wall_seconds,
    )
    if reused:
        outcome.extra["reused_run"] = True
    return run_id
