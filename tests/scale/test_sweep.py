"""Sweeps on a real Dask LocalCluster (2 worker processes)."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from engine.app.backtest import run_backtest
from engine.app.sweep import (
    Batch,
    TaskOutcome,
    TaskSpec,
    fills_hash,
    parse_grid,
    run_sweep,
    run_task,
    with_overrides,
)
from engine.core.events import OrderFilled
from storage.db import connect
from storage.models import PortfolioSnapshotRow, Run, Sweep
from storage.query import sweep_task_rows, trade_rows
from tests.conftest import synthetic_scenario

pytestmark = pytest.mark.slow

BARS = 800
SMA = "fast = 5\nslow = 20\nquantity = 10"
FILL_FIELDS = ("time", "side", "quantity", "price", "commission", "slippage", "order_id")


def _config() -> Any:
    return synthetic_scenario(BARS, run="seed = 11", strategy=SMA, broker="slippage_bps = 1.0")


def _same(a: Any, b: Any) -> bool:
    return a == b or (a != a and b != b)  # NaN equals NaN here


def test_sweep_results_equal_the_same_backtests_run_one_by_one(
    dask_client: Any, db_url: str, tmp_path: Path
) -> None:
    config = _config()
    grid = parse_grid(["strategy.fast=3,8", "broker.commission_bps=0,2"])
    result = run_sweep(config, grid, seeds=1, batch=Batch(db_url=db_url, client=dask_client))
    assert len(result.rows) == 4 and result.failed == 0
    sequential_url = f"sqlite:///{tmp_path / 'one_by_one.db'}"
    sweep_engine = connect(db_url)
    for row in result.rows:
        overrides = {key: row[key] for key in grid}
        alone = with_overrides(config, overrides)
        fills: list[Any] = []
        expected = run_backtest(
            alone,
            db_url=sequential_url,
            tap=lambda bus, f=fills: bus.subscribe(OrderFilled, f.append),
        )
        for metric, value in expected.summary.to_dict().items():
            if metric in row:
                assert _same(row[metric], value), (overrides, metric, row[metric], value)
        assert row["fills"] == expected.fills == len(fills) > 0
        assert row["fills_hash"] == fills_hash(fills)
        stored = [{k: r[k] for k in FILL_FIELDS} for r in trade_rows(sweep_engine, row["run_id"])]
        alone_stored = [
            {k: r[k] for k in FILL_FIELDS}
            for r in trade_rows(connect(sequential_url), expected.run_id)
        ]
        assert stored == alone_stored
        # a sweep's run records what a backtest's does: provenance and its orders
        with sweep_engine.connect() as c:
            swept = c.execute(select(Run).where(Run.id == row["run_id"])).one()
        with connect(sequential_url).connect() as c:
            single = c.execute(select(Run).where(Run.id == expected.run_id)).one()
        assert swept.data_fingerprint == single.data_fingerprint is not None
        assert json.loads(swept.summary_json)["orders"] == expected.orders
    with sweep_engine.connect() as c:
        snapshots = c.execute(select(func.count()).select_from(PortfolioSnapshotRow)).scalar()
        sweep = c.execute(select(Sweep)).mappings().one()
    assert snapshots == 4 * BARS  # every run stored whole, once
    assert sweep["status"] == "completed" and sweep["tasks"] == 4
    assert [r["status"] for r in sweep_task_rows(sweep_engine, result.sweep_id)] == [
        "completed"
    ] * 4


def test_sweep_failing_task_is_recorded_with_its_error_and_the_rest_run(
    dask_client: Any, sqlite_url: str
) -> None:
    grid = parse_grid(["data.end=2019-06-01,2030-01-01", "strategy.fast=3,8"])
    result = run_sweep(_config(), grid, batch=Batch(db_url=sqlite_url, client=dask_client))
    rows = sweep_task_rows(connect(sqlite_url), result.sweep_id)
    failed = [r for r in rows if r["status"] == "failed"]
    completed = [r for r in rows if r["status"] == "completed"]
    assert len(failed) == 2 and len(completed) == 2
    for row in failed:
        assert row["overrides"]["data.end"] == "2019-06-01"
        assert row["error"].startswith("DataError:") and "no bars" in row["error"]
        assert row["run_id"] is None
    assert all(r["run_id"] is not None and r["total_return"] is not None for r in completed)
    assert result.failed == 2
    # Failed tasks sort last.
    assert [r["status"] for r in result.rows] == ["completed", "completed", "failed", "failed"]


def kill_worker_once(marker: str, victim: int, spec: TaskSpec, *args: Any) -> TaskOutcome:
    """Run the task, except that the first attempt at task ``victim`` kills its worker."""
    if spec.task == victim and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)  # the worker process dies mid-task, as on a crash or an OOM kill
    return run_task(spec, *args)


def test_sweep_worker_killed_mid_sweep_loses_no_result_and_its_task_is_rerun(
    dask_client: Any, sqlite_url: str, tmp_path: Path
) -> None:
    import cloudpickle

    import tests.scale.test_sweep as this_module

    cloudpickle.register_pickle_by_value(this_module)
    marker = tmp_path / "killed"
    grid = parse_grid(["strategy.fast=2,3,4,6,8"])
    task_function = functools.partial(kill_worker_once, str(marker), 3)
    result = run_sweep(
        _config(),
        grid,
        task_function=task_function,
        batch=Batch(db_url=sqlite_url, client=dask_client),
    )
    assert marker.exists()  # a worker did die on task 3
    assert result.failed == 0
    assert sorted(r["task"] for r in result.rows) == [0, 1, 2, 3, 4]
    victim = next(r for r in result.rows if r["task"] == 3)
    assert victim["status"] == "completed"
    engine = connect(sqlite_url)
    with engine.connect() as c:
        runs = c.execute(select(func.count()).select_from(Run)).scalar()
        snapshots = c.execute(select(func.count()).select_from(PortfolioSnapshotRow)).scalar()
    assert runs == 5  # every task stored exactly once
    assert snapshots == 5 * BARS
    # The re-run task gives the result it would have given on the first try.
    alone = run_backtest(with_overrides(_config(), {"strategy.fast": 6}), persist=False)
    assert _same(victim["sharpe"], alone.summary.sharpe)
    assert victim["total_return"] == alone.summary.total_return
    dask_client.wait_for_workers(2, timeout=60)


def _sweep_with_one_task(engine: Any) -> int:
    from storage.sweeps import create_sweep, record_task

    sweep_id = create_sweep(
        engine, kind="sweep", name="s", scenario="", config={}, spec={}, code_version="test",
        scheduler="local:1", tasks=1,
    )  # fmt: skip
    record_task(
        engine,
        sweep_id,
        {"task": 0, "overrides": {}, "seed": 1, "config_hash": "h", "status": "pending"},
        new=True,
    )
    return sweep_id


def test_store_task_run_stores_a_task_once_and_replaces_an_unfinished_attempt(
    db_url: str,
) -> None:
    """A retried task (its worker died after writing) finds its run instead of adding one."""
    from engine.core.events import PortfolioSnapshot
    from storage.runs import create_run
    from storage.sweeps import store_task_run

    captured: list[Any] = []
    result = run_backtest(
        _config(), persist=False, tap=lambda bus: bus.subscribe(PortfolioSnapshot, captured.append)
    )
    engine = connect(db_url)
    sweep_id = _sweep_with_one_task(engine)
    run = {
        "name": "r", "kind": "sweep", "scenario": "", "symbol": "SYN", "config": {},
        "config_hash": "h", "seed": 1, "code_version": "test", "bars": BARS, "bar_gaps": 0,
        "first_bar_ns": 0, "last_bar_ns": 1,
    }  # fmt: skip
    summary = result.summary.to_dict()
    # An earlier attempt that died while writing: a running run linked to the task.
    stale = create_run(engine, **run)
    from storage.sweeps import record_task

    record_task(engine, sweep_id, {"task": 0, "run_id": stale}, new=False)
    args = {"sweep_id": sweep_id, "task": 0, "run": run, "summary": summary, "wall_seconds": 1.0}
    first, reused = store_task_run(engine, messages=captured, **args)
    assert not reused  # the stale run was deleted (SQLite may hand out its id again)
    again, reused = store_task_run(engine, messages=captured, **args)
    assert (again, reused) == (first, True)
    with engine.connect() as c:
        runs = c.execute(select(Run.id, Run.status)).all()
        snapshots = c.execute(select(func.count()).select_from(PortfolioSnapshotRow)).scalar()
    assert [tuple(r) for r in runs] == [(first, "completed")]
    assert snapshots == BARS
    assert sweep_task_rows(engine, sweep_id)[0]["run_id"] == first


def kill_worker_after_storing(marker: str, victim: int, spec: TaskSpec, *args: Any) -> TaskOutcome:
    """Run the task; the first attempt at task ``victim`` then kills its worker before it
    can return (the run is already committed)."""
    outcome = run_task(spec, *args)
    if spec.task == victim and not os.path.exists(marker):
        Path(marker).write_text(str(outcome.run_id))
        os._exit(1)
    return outcome


@pytest.mark.service
def test_sweep_postgres_worker_dying_after_commit_stores_no_duplicate_run(
    dask_client: Any, postgres_url: str, tmp_path: Path
) -> None:
    import cloudpickle

    import tests.scale.test_sweep as this_module

    cloudpickle.register_pickle_by_value(this_module)
    marker = tmp_path / "killed"
    task_function = functools.partial(kill_worker_after_storing, str(marker), 1)
    result = run_sweep(
        _config(),
        parse_grid(["strategy.fast=3,8"]),
        task_function=task_function,
        batch=Batch(db_url=postgres_url, client=dask_client),
    )
    assert marker.exists()
    assert result.failed == 0
    victim = next(r for r in result.rows if r["task"] == 1)
    assert victim["run_id"] == int(marker.read_text())  # the retry reused the stored run
    engine = connect(postgres_url)
    with engine.connect() as c:
        runs = c.execute(select(func.count()).select_from(Run)).scalar()
        snapshots = c.execute(select(func.count()).select_from(PortfolioSnapshotRow)).scalar()
    assert runs == 2
    assert snapshots == 2 * BARS
    dask_client.wait_for_workers(2, timeout=60)


def test_deflated_best_equals_the_deflated_sharpe_ratio_of_the_best_trial() -> None:
    """The best of N trials is judged against the Sharpe ratio the best of N skill-less
    trials would show (engine.app.significance, checked there against the published example)."""
    import math

    import numpy as np
    from scipy.stats import kurtosis, norm, skew

    from engine.app.sweep import deflated_best

    rng = np.random.default_rng(9)
    periods = 1_900.0
    rows, returns = [], []
    for task in range(6):
        r = rng.normal(0.0002 * task, 0.01, 3_000)
        returns.append(r)
        sharpe = r.mean() / r.std(ddof=1)
        rows.append(
            {
                "task": task,
                "status": "completed",
                "sharpe": sharpe * math.sqrt(periods),
                "periods_per_year": periods,
                "edge": {
                    "observations": len(r),
                    "skewness": float(skew(r)),
                    "kurtosis": float(kurtosis(r, fisher=False)),
                },
            }
        )
    rows.append({"task": 6, "status": "failed", "sharpe": None})  # a trial all the same
    out = deflated_best(rows, "sharpe")
    per_bar = [row["sharpe"] / math.sqrt(periods) for row in rows[:6]]
    best = int(np.argmax(per_bar))
    assert out["best_task"] == best and out["trials"] == 7
    gamma = 0.5772156649015329
    hurdle = math.sqrt(np.var(per_bar, ddof=1)) * (
        (1 - gamma) * norm.ppf(1 - 1 / 7) + gamma * norm.ppf(1 - 1 / (7 * math.e))
    )
    r = returns[best]
    sr = per_bar[best]
    g3, g4 = skew(r), kurtosis(r, fisher=False)
    expected = norm.cdf(
        (sr - hurdle) * math.sqrt(len(r) - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
    )
    assert out["dsr"] == pytest.approx(expected, rel=1e-9)
    assert out["expected_max_sharpe"] == pytest.approx(hurdle * math.sqrt(periods))
    assert math.isnan(deflated_best(rows[:1], "sharpe")["dsr"])  # one trial: nothing to deflate
