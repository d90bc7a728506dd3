"""Walk-forward: fold boundaries, no look-ahead across them, train steps, stitching."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from engine.app.backtest import run_backtest
from engine.app.scenario import ScenarioConfig
from engine.app.sweep import Batch, parse_grid, with_overrides
from engine.app.walkforward import (
    Period,
    TrainResult,
    TrainWindow,
    make_folds,
    oos_window_overrides,
    parse_period,
    run_walk_forward,
    stitch,
    train_window_overrides,
)
from engine.core.errors import ConfigError
from engine.core.events import OrderFilled
from engine.feeds.bars import load_bars
from storage.db import connect
from storage.query import trade_rows, walk_forward_equity, walk_forward_rows
from tests.conftest import synthetic_scenario

SMA = "fast = 5\nslow = 20\nquantity = 10"
HOUR = 3_600 * 10**9
DAY = 24 * HOUR


def _grid_ts(start: str, days: int, minutes: int = 30) -> np.ndarray:
    first = pd.Timestamp(start, tz="UTC").value
    return first + np.arange(days * 24 * 60 // minutes, dtype=np.int64) * minutes * 60 * 10**9


def _session_ts(start: str, days: int) -> np.ndarray:
    """Exchange-like bars: 8 per weekday, 01:30-05:00 and 05:30-09:00 UTC ends."""
    out = []
    for day in pd.date_range(start, periods=days, freq="D", tz="UTC"):
        if day.weekday() < 5:
            out.extend(day + pd.Timedelta(minutes=90 + 30 * i) for i in range(8))
    return np.array([t.value for t in out], dtype=np.int64)


@pytest.mark.parametrize(
    ("ts", "zone", "train", "test"),
    [
        (_grid_ts("2020-01-01T00:30", 200), "UTC", "30D", "10D"),
        (_grid_ts("2020-01-31T00:30", 400), "UTC", "2M", "1M"),  # month ends
        (_session_ts("2019-03-01", 900), "Asia/Shanghai", "1Y", "3M"),
        (_session_ts("2019-03-01", 400), "UTC", "8W", "2W"),
    ],
)
def test_folds_never_put_a_test_bar_in_training_and_test_windows_meet(
    ts: np.ndarray, zone: str, train: str, test: str
) -> None:
    folds = make_folds(
        ts,
        zone,
        parse_period(train, "--train"),
        parse_period(test, "--test"),
        parse_period(test, "--step"),
    )
    assert len(folds) >= 3
    for fold in folds:
        train_ts = ts[fold.train_lo : fold.train_hi]
        test_ts = ts[fold.test_lo : fold.test_hi]
        assert len(train_ts) > 0 and len(test_ts) > 0
        assert fold.train_hi == fold.test_lo
        assert train_ts.max() < fold.train_end_ns == fold.test_start_ns <= test_ts.min()
        assert test_ts.max() < fold.test_end_ns
        assert train_ts.min() >= fold.train_start_ns
        # The bars in each window are exactly those whose time falls inside it.
        inside_train = (ts >= fold.train_start_ns) & (ts < fold.train_end_ns)
        inside_test = (ts >= fold.test_start_ns) & (ts < fold.test_end_ns)
        assert np.array_equal(np.flatnonzero(inside_train), np.arange(fold.train_lo, fold.train_hi))
        assert np.array_equal(np.flatnonzero(inside_test), np.arange(fold.test_lo, fold.test_hi))
    for before, after in itertools.pairwise(folds):
        assert before.test_end_ns == after.test_start_ns  # contiguous out of sample
        assert before.test_hi == after.test_lo
        assert after.train_start_ns > before.train_start_ns
    # Every bar after the first test start is tested exactly once, up to the last fold.
    tested = np.concatenate([np.arange(f.test_lo, f.test_hi) for f in folds])
    assert np.array_equal(tested, np.arange(folds[0].test_lo, folds[-1].test_hi))
    # A fold needs its test window inside the data (to the end of the last bar's day).
    last_day_end = pd.Timestamp(int(ts[-1]), tz="UTC").tz_convert(zone).normalize() + pd.Timedelta(
        days=1
    )
    assert folds[-1].test_end_ns <= last_day_end.value


def test_folds_windows_in_local_time_start_at_local_midnight() -> None:
    ts = _session_ts("2019-03-01", 200)
    folds = make_folds(ts, "Asia/Shanghai", Period(1, "M"), Period(1, "M"), Period(1, "M"))
    for fold in folds:
        local = pd.Timestamp(fold.test_start_ns, tz="UTC").tz_convert("Asia/Shanghai")
        assert (local.hour, local.minute, local.day) == (0, 0, 1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24M", Period(24, "M")),
        ("6m", Period(6, "M")),
        ("2Y", Period(2, "Y")),
        ("10 D", Period(10, "D")),
    ],
)
def test_parse_period(text: str, expected: Period) -> None:
    assert parse_period(text, "--train") == expected


@pytest.mark.parametrize("text", ["", "M", "0M", "6X", "-1M", "1.5M"])
def test_parse_period_rejects_bad_text(text: str) -> None:
    with pytest.raises(ConfigError, match="--test"):
        parse_period(text, "--test")


def test_folds_step_shorter_than_test_or_data_too_short_are_config_errors() -> None:
    ts = _grid_ts("2020-01-01T00:30", 60)
    with pytest.raises(ConfigError, match="shorter than --test"):
        make_folds(ts, "UTC", Period(10, "D"), Period(10, "D"), Period(5, "D"))
    with pytest.raises(ConfigError, match="too short for one fold"):
        make_folds(ts, "UTC", Period(2, "M"), Period(1, "M"), Period(1, "M"))


def test_stitch_chains_each_fold_by_its_return() -> None:
    curves = [
        (0, np.array([1, 2]), np.array([100.0, 110.0]), 100.0),
        (1, np.array([3, 4]), np.array([200.0, 180.0]), 200.0),
    ]
    ts, fold, equity, raw = stitch(curves, 1_000.0)
    assert ts.tolist() == [1, 2, 3, 4]
    assert fold.tolist() == [0, 0, 1, 1]
    assert equity.tolist() == pytest.approx([1_000.0, 1_100.0, 1_100.0, 990.0])
    assert raw.tolist() == [100.0, 110.0, 200.0, 180.0]


# -- no look-ahead across the boundary --------------------------------------------


def _fold_setup() -> tuple[ScenarioConfig, Any, np.ndarray]:
    config = synthetic_scenario(2_000, run="seed = 5", strategy=SMA)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    folds = make_folds(data.ts, "UTC", Period(2, "W"), Period(1, "W"), Period(1, "W"))
    return config, folds[1], data.ts


def test_train_window_scenario_holds_no_bar_of_the_test_window() -> None:
    config, fold, ts = _fold_setup()
    train = with_overrides(config, train_window_overrides(fold, ts))
    bars = load_bars(train.data, train.instrument.symbol, seed=train.run.seed)
    assert bars.ts.max() < fold.test_start_ns
    assert np.array_equal(bars.ts, ts[fold.train_lo : fold.train_hi])


def test_test_run_decisions_use_no_bar_after_them() -> None:
    """Cut the data right after a test bar: every fill up to that bar is unchanged."""
    config, fold, ts = _fold_setup()
    test = with_overrides(config, oos_window_overrides(fold, ts))

    def fills_of(scenario: ScenarioConfig) -> list[Any]:
        seen: list[Any] = []
        run_backtest(
            scenario, persist=False, tap=lambda bus: bus.subscribe(OrderFilled, seen.append)
        )
        return seen

    whole = fills_of(test)
    assert whole and min(f.ts_event for f in whole) > fold.test_start_ns
    for cut in (fold.test_lo, fold.test_lo + 1, fold.test_lo + 40, fold.test_hi - 2):
        truncated = with_overrides(
            test, {"data.end": pd.Timestamp(int(ts[cut]), tz="UTC").isoformat()}
        )
        early = [f for f in whole if f.ts_event <= ts[cut]]
        assert fills_of(truncated) == early


def test_test_window_features_equal_features_of_the_truncated_series() -> None:
    """Features of each test bar are computed from bars up to it only."""
    from indicators.features import build_features

    config, fold, ts = _fold_setup()
    test = with_overrides(config, oos_window_overrides(fold, ts))
    bars = load_bars(test.data, test.instrument.symbol, seed=test.run.seed)
    assert bars.ts[0] == ts[fold.train_lo] and bars.ts[-1] == ts[fold.test_hi - 1]
    columns = (bars.open, bars.high, bars.low, bars.close, bars.volume, bars.ts)
    whole = build_features(*columns)
    first_test = int(np.searchsorted(bars.ts, fold.test_start_ns))
    assert first_test == fold.train_bars
    for t in (first_test, first_test + 1, first_test + 100, len(bars) - 1):
        truncated = build_features(*(c[: t + 1] for c in columns))
        np.testing.assert_array_equal(whole[t], truncated[t])
    # The truncated series the test window starts from holds no test bar at all.
    assert bars.ts[first_test - 1] < fold.test_start_ns <= bars.ts[first_test]


# -- the whole walk-forward on the cluster ------------------------------------------


@dataclass(frozen=True)
class RecordingTrainer:
    """A stand-in learned strategy: 'trains' by reading its window's bars, then sets fast."""

    fast: int

    def __call__(self, config: ScenarioConfig, window: TrainWindow) -> TrainResult:
        bars = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
        return TrainResult(
            overrides={"strategy.fast": self.fast},
            note=f"{len(bars)} {int(bars.ts[-1])} {window.end_ns}",  # bars, last bar, end
        )


@pytest.mark.slow
def test_walk_forward_optimises_in_sample_and_stitches_out_of_sample(
    dask_client: Any, sqlite_url: str
) -> None:
    config = synthetic_scenario(2_000, run="seed = 5", strategy=SMA)
    grid = parse_grid(["strategy.fast=3,8"])
    result = run_walk_forward(
        config,
        train=Period(2, "W"),
        test=Period(1, "W"),
        step=Period(1, "W"),
        optimize=grid,
        batch=Batch(db_url=sqlite_url, client=dask_client),
    )
    folds = walk_forward_rows(connect(sqlite_url), result.sweep_id)
    assert len(folds) == len(result.folds) >= 3
    assert all(f["status"] == "completed" for f in folds)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    first = folds[0]
    # The train step chose the best combination on the train window alone.
    fold0 = make_folds(data.ts, "UTC", Period(2, "W"), Period(1, "W"), Period(1, "W"))[0]
    train = with_overrides(config, train_window_overrides(fold0, data.ts))
    sharpes = {
        fast: run_backtest(
            with_overrides(train, {"strategy.fast": fast}), persist=False
        ).summary.sharpe
        for fast in (3, 8)
    }
    assert first["params"] == {"strategy.fast": max(sharpes, key=sharpes.__getitem__)}
    assert [c["sharpe"] for c in first["candidates"]] == [sharpes[3], sharpes[8]]
    for fold in folds:
        assert fold["start_ns"] >= fold["test_start_ns"]  # metrics cover the test window only
        assert fold["end_ns"] < fold["test_end_ns"]
        assert fold["bars"] == fold["test_bars"]
    # The stitched curve: each test bar once, in order, chained fold after fold.
    curve = walk_forward_equity(sqlite_url, result.sweep_id)
    pd.testing.assert_frame_equal(curve, result.equity)
    times = curve["time"].astype("int64").to_numpy()
    assert np.all(np.diff(times) > 0)
    assert len(curve) == sum(f["test_bars"] for f in folds)
    for fold in folds:
        part = curve[curve["fold"] == fold["fold"]]
        assert (
            part["time"]
            .astype("int64")
            .between(fold["test_start_ns"], fold["test_end_ns"] - 1)
            .all()
        )
        assert part["fold_equity"].iloc[-1] == pytest.approx(fold["final_equity"])
    ends = curve.groupby("fold")["equity"].last().to_numpy()
    returns = np.array([f["total_return"] for f in folds])
    np.testing.assert_allclose(
        ends, config.broker.initial_cash * np.cumprod(1 + returns), rtol=1e-12
    )
    assert result.summary["total_return"] == pytest.approx(
        ends[-1] / config.broker.initial_cash - 1
    )


@pytest.mark.slow
def test_walk_forward_train_hook_sees_only_its_window_and_sets_the_test(
    dask_client: Any, sqlite_url: str
) -> None:
    import json

    from sqlalchemy import select

    from storage.models import Run

    config = synthetic_scenario(1_500, run="seed = 5", strategy=SMA)
    result = run_walk_forward(
        config,
        train=Period(2, "W"),
        test=Period(1, "W"),
        step=Period(1, "W"),
        trainer=RecordingTrainer(fast=4),
        batch=Batch(db_url=sqlite_url, client=dask_client),
    )
    engine = connect(sqlite_url)
    for fold in walk_forward_rows(engine, result.sweep_id):
        bars, last, end = (int(x) for x in fold["train_note"].split())
        assert bars == fold["train_bars"]
        assert last < fold["test_start_ns"] == end
        assert fold["params"] == {"strategy.fast": 4}
        with engine.connect() as c:
            stored = c.execute(select(Run.config_json).where(Run.id == fold["run_id"])).scalar()
        run_config = json.loads(stored)
        assert run_config["strategy"]["fast"] == 4
        assert run_config["run"]["trade_start"]


@pytest.mark.slow
def test_walk_forward_without_optimize_has_nothing_to_train(dask_client: Any, db_url: str) -> None:
    """On SQLite the client stores the fold runs; on PostgreSQL the workers do."""
    config = synthetic_scenario(1_500, run="seed = 5", strategy=SMA)
    result = run_walk_forward(
        config,
        train=Period(2, "W"),
        test=Period(1, "W"),
        step=Period(1, "W"),
        batch=Batch(db_url=db_url, client=dask_client),
    )
    assert {f["train_note"] for f in result.folds} == {"nothing to train"}
    assert all(f["params"] == {} for f in result.folds)
    stored = walk_forward_rows(connect(db_url), result.sweep_id)
    assert [f["status"] for f in stored] == ["completed"] * len(result.folds)
    assert len({f["run_id"] for f in stored}) == len(stored)
    for fold in stored:
        assert trade_rows(connect(db_url), fold["run_id"])  # the run's fills are stored
    curve = walk_forward_equity(db_url, result.sweep_id)
    assert len(curve) == sum(f["test_bars"] for f in stored)
