"""Parameter sweeps on Dask distributed: many backtests of one scenario.

A grid names scenario fields by their dotted path (``broker.commission_bps=0,1,2``,
``strategy.fast=5,10``); every combination, times ``seeds`` seeds, is one task.
Every combination is built into a :class:`~engine.app.scenario.ScenarioConfig` before
anything is submitted, so an unknown path or a bad value is a ``ConfigError``
(with a "did you mean") before anything runs.

A task is a pure function of its spec (:func:`run_task`): the effective
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
import datetime
import difflib
import functools
import hashlib
import itertools
import logging
import math
import operator
import statistics
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from engine.app.metrics import Summary
from engine.app.scenario import ScenarioConfig, config_hash, scenario_from_dict
from engine.core.errors import ConfigError, StorageError
from strategies.marl.config import MappoEnsembleConfig

__all__ = [
    "METRICS",
    "SweepResult",
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

#: Metrics a sweep can be sorted by (the fields of the run summary).
METRICS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Summary) if f.name not in ("start_ns", "end_ns")
)
#: Metrics where smaller is better; everything else sorts largest first.
SMALLER_IS_BETTER = frozenset({"annual_volatility", "fees", "turnover", "bar_gaps"})


# -- grids --------------------------------------------------------------------------


def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets and quotes."""
    parts: list[str] = []
    depth = 0
    quote = ""
    current = ""
    for char in text:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        current += char
    parts.append(current.strip())
    return parts


def _parse_value(text: str) -> Any:
    """A TOML value (number, boolean, quoted string, array), else the text as a string."""
    try:
        value = tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text
    if isinstance(value, datetime.date | datetime.time):
        return text  # scenario dates and times are strings
    return value


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["broker.commission_bps=0,1,2", "strategy.fast=5,10"]`` -> path -> values."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(
                f"--grid {item!r}: expected PATH=V1,V2,... (e.g. broker.commission_bps=0,1,2)"
            )
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values once")
        parts = _split_values(values)
        if any(part == "" for part in parts):
            raise ConfigError(f"--grid {item!r}: an empty value (check the commas)")
        parsed = [_parse_value(part) for part in parts]
        if len({repr(v) for v in parsed}) != len(parsed):
            raise ConfigError(f"--grid {item!r}: a value is listed twice")
        grid[key] = parsed
    return grid


def set_path(raw: dict[str, Any], path: str, value: Any) -> None:
    """Set ``raw[a][b][c] = value`` for ``path = "a.b.c"`` (sections made as needed)."""
    parts = path.split(".")
    if any(not part for part in parts):
        raise ConfigError(f"{path!r} is not a dotted path such as broker.commission_bps")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            above = ".".join(parts[: depth + 1])
            raise ConfigError(f"{path}: {above} is a value, not a section")
        node = child
    if isinstance(node.get(parts[-1]), dict) and not isinstance(value, dict):
        raise ConfigError(f"{path} is a section ([{path}]); name one of its keys")
    node[parts[-1]] = value


def _describe(overrides: dict[str, Any]) -> str:
    return " ".join(f"{key}={value!r}" for key, value in overrides.items())


def with_overrides(
    config: ScenarioConfig, overrides: dict[str, Any], *, source: str = "--grid"
) -> ScenarioConfig:
    """``config`` with dotted-path overrides applied, validated like a scenario file."""
    raw = copy.deepcopy(config.to_dict())
    for key, value in overrides.items():
        try:
            set_path(raw, key, value)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return scenario_from_dict(
        raw, source=f"{source} {_describe(overrides)}".strip(), base_dir=config.base_dir
    )


@dataclass(frozen=True)
class TaskSpec:
    """What a worker needs to run one task: plain data, cheap to send."""

    task: int
    overrides: dict[str, Any]
    seed: int
    config: dict[str, Any]
    base_dir: str
    scenario: str
    config_hash: str
    kind: str = "sweep"
    sweep_id: int | None = None
    train: bool = False
    train_updates: int | None = None
    checkpoint: str = ""


def build_tasks(
    config: ScenarioConfig,
    grid: dict[str, list[Any]],
    seeds: int = 1,
    *,
    scenario: str = "",
    kind: str = "sweep",
) -> list[TaskSpec]:
    """Every combination of the grid, times ``seeds`` consecutive seeds, validated."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    keys = list(grid)
    for key in keys:  # a bad path is reported alone, before any combination
        with_overrides(config, {key: grid[key][0]})
    tasks: list[TaskSpec] = []
    for combination in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, combination, strict=True))
        built = with_overrides(config, overrides)
        for offset in range(seeds):
            seed = built.run.seed + offset
            final = msgspec.structs.replace(
                built, run=msgspec.structs.replace(built.run, seed=seed)
            )
            tasks.append(
                TaskSpec(
                    task=len(tasks),
                    overrides=overrides,
                    seed=seed,
                    config=final.to_dict(),
                    base_dir=final.base_dir,
                    scenario=scenario,
                    config_hash=config_hash(final),
                    kind=kind,
                )
            )
    return tasks


def check_metric(metric: str) -> str:
    """``metric`` if it is a summary metric, else a ``ConfigError`` with a suggestion."""
    if metric in METRICS:
        return metric
    close = difflib.get_close_matches(metric, METRICS, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; choose one of {', '.join(METRICS)}"
    raise ConfigError(f"--sort: unknown metric {metric!r}{hint}")


# -- training -----------------------------------------------------------------------


def training_window(config: ScenarioConfig, *, source: str = "--train") -> ScenarioConfig:
    """``config`` cut to the bars before ``run.trade_start``: what a sweep task trains on."""
    from engine.app.warmup import trade_start_ns, training_config

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
    from engine.app.train import train_scenario

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
    from storage.recorder import DEFAULT_TABLES

    types = tuple(DEFAULT_TABLES)
    union = functools.reduce(operator.or_, types[1:], types[0])
    return msgspec.msgpack.decode(payload, type=list[union])  # type: ignore[valid-type]


def _worker_name() -> str:
    try:
        from distributed import get_worker

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
    from engine.app.backtest import run_backtest
    from engine.core.events import OrderFilled, PortfolioSnapshot
    from engine.core.version import code_version

    started = time.perf_counter()
    worker = _worker_name()
    captured: list[Any] = []
    types: set[type[Any]] = {OrderFilled}
    if keep_equity:
        types.add(PortfolioSnapshot)
    if keep_messages:
        from storage.recorder import DEFAULT_TABLES

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
        import numpy as np

        snapshots = [m for m in captured if type(m) is PortfolioSnapshot]
        ts = np.array([s.ts_event for s in snapshots], dtype=np.int64)
        first = int(np.searchsorted(ts, summary["start_ns"]))
        outcome.equity_ts = ts[first:]
        outcome.equity = np.array([s.equity for s in snapshots[first:]])
    data = result.data
    run = {
        "name": config.run.name,
        "kind": spec.kind,
        "scenario": spec.scenario,
        "symbol": config.instrument.symbol,
        "config": config.to_dict(),
        "config_hash": config_hash(config),
        "seed": config.run.seed,
        "code_version": code_version(),
        "bars": len(data),
        "bar_gaps": data.report.gaps,
        "first_bar_ns": int(data.ts[0]),
        "last_bar_ns": int(data.ts[-1]),
        **(result.provenance or {}),
    }
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
    from storage.db import connect
    from storage.recorder import DEFAULT_TABLES
    from storage.sweeps import store_run, store_task_run

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


# -- the client ---------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return url.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "postgres")


def _distributed() -> Any:
    """The ``distributed`` package (imported when a sweep starts: it is slow to import)."""
    import distributed

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
    from engine.app.significance import expected_max_sharpe, psr_from_moments

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
    from storage.sweeps import store_run

    if outcome.status != "completed" or outcome.run is None:
        return outcome.run_id
    return store_run(
        engine,
        run=outcome.run,
        messages=None if outcome.messages is None else decode_messages(outcome.messages),
        summary=outcome.summary or {},
        wall_seconds=outcome.wall_seconds,
    )


def _lost(task: int, exc: BaseException) -> TaskOutcome:
    """The outcome of a task Dask gave up on (its workers kept dying, or it raised)."""
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    return TaskOutcome(task=task, status="failed", error=message)


TaskFunction = Callable[..., TaskOutcome]


def run_sweep(
    config: ScenarioConfig,
    grid: dict[str, list[Any]],
    *,
    seeds: int = 1,
    db_url: str | None = None,
    scheduler: str | None = None,
    workers: int = 2,
    retries: int = 2,
    keep_messages: bool = True,
    scenario_path: str = "",
    sort: str = "sharpe",
    progress: Callable[[int, int], None] | None = None,
    task_function: TaskFunction | None = None,
    client: Any = None,
    train: bool | None = None,
    train_updates: int | None = None,
    checkpoint_dir: str | Path | None = None,
) -> SweepResult:
    """Run every task of the grid on Dask, storing each result as it completes.

    ``task_function`` (default :func:`run_task`) is what workers run; ``client``
    an already open Dask client (otherwise one is opened from ``scheduler`` /
    ``workers`` and closed at the end).

    ``train`` makes every task train the agents of a ``mappo_ensemble`` scenario on
    the bars before ``run.trade_start`` (``train_updates`` MAPPO updates, default the
    scenario's), then backtest with that checkpoint; it is on by default when a grid
    key is in ``[train]``. Task ``k`` writes ``checkpoint_dir/task-k.pt`` (default
    ``runs/sweep-<id>/``; on several machines, a folder they all see).
    """
    from engine.core.version import code_version
    from storage.db import connect
    from storage.sweeps import create_sweep, finish_sweep, record_task

    check_metric(sort)
    tasks = build_tasks(config, grid, seeds, scenario=scenario_path)
    touches_train = [key for key in grid if key.split(".", 1)[0] == "train"]
    if train is None:
        train = bool(touches_train)
    elif not train and touches_train:
        raise ConfigError(
            f"--grid {touches_train[0]} changes [train], which only matters with --train"
        )
    if train_updates is not None:
        if not train:
            raise ConfigError("--train-updates needs --train (each task trains, then backtests)")
        if train_updates < 1:
            raise ConfigError(f"--train-updates must be at least 1, got {train_updates}")
    if train:
        for spec in tasks:  # every task has a training window before anything runs
            training_window(
                scenario_from_dict(copy.deepcopy(spec.config), base_dir=spec.base_dir),
                source=f"--train, task {spec.task}",
            )
    url = db_url or config.storage.url
    engine = connect(url)
    worker_writes = is_postgres(url)
    function = task_function or run_task
    started = time.perf_counter()
    sweep_id = create_sweep(
        engine,
        kind="sweep",
        name=config.run.name,
        scenario=scenario_path,
        config=config.to_dict(),
        spec={
            "grid": grid,
            "seeds": seeds,
            "sort": sort,
            "retries": retries,
            "train": train,
            "train_updates": train_updates,
        },
        code_version=code_version(),
        scheduler=scheduler or f"local:{workers}",
        tasks=len(tasks),
    )
    folder = Path(checkpoint_dir or Path("runs") / f"sweep-{sweep_id}").resolve()
    tasks = [
        dataclasses.replace(
            spec,
            sweep_id=sweep_id,
            train=train,
            train_updates=train_updates,
            checkpoint=str(folder / f"task-{spec.task}.pt") if train else "",
        )
        for spec in tasks
    ]
    for spec in tasks:
        record_task(
            engine,
            sweep_id,
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
        with _maybe_client(client, scheduler, workers) as dask:
            as_completed = _distributed().as_completed
            n_workers = len(dask.scheduler_info().get("workers", {})) or workers
            futures = {
                dask.submit(
                    function,
                    spec,
                    url,
                    worker_writes,
                    keep_messages,
                    key=f"emarl-sweep-{sweep_id}-task-{spec.task}",
                    retries=retries,
                    pure=False,
                ): spec
                for spec in tasks
            }
            if progress is not None:
                progress(0, len(tasks))
            for future in as_completed(list(futures)):
                spec = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:
                    outcome = _lost(spec.task, exc)
                future.release()
                outcome.run_id = store_outcome(engine, outcome)
                record_task(
                    engine,
                    sweep_id,
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
                if progress is not None:
                    progress(len(rows), len(tasks))
        status = "completed"
    finally:
        wall = time.perf_counter() - started
        failed = sum(1 for row in rows if row["status"] != "completed")
        deflated = deflated_best(rows, sort)
        finish_sweep(
            engine,
            sweep_id,
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
        sweep_id=sweep_id,
        rows=sort_rows(rows, sort),
        wall_seconds=wall,
        workers=n_workers,
        db_url=url,
        grid_keys=list(grid),
        deflated=deflated,
    )


@contextmanager
def _maybe_client(client: Any, scheduler: str | None, workers: int) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with dask_client(scheduler, workers) as opened:
        yield opened
