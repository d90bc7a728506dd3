"""Walk-forward and sweeps of the learned ensemble: each fold or task trains its own agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from engine.app.backtest import run_backtest
from engine.app.scenario import ScenarioConfig
from engine.app.sweep import Batch, parse_grid, run_sweep, with_overrides
from engine.app.walkforward import NothingToTrain, Period, run_walk_forward
from engine.core.errors import ConfigError
from storage.db import connect
from storage.models import Run
from storage.query import sweep_task_rows, walk_forward_rows
from tests.conftest import synthetic_scenario

pytestmark = pytest.mark.slow

MAPPO = 'kind = "mappo_ensemble"\ncheckpoint = "ck/shipped.pt"\nmax_position = 100'
TINY_TRAIN = (
    "updates = 5\nn_envs = 4\nepisode_length = 16\nrollout_steps = 8\nepochs = 1\n"
    "minibatch_size = 16\nthreads = 1"
)
FOLDS = {"train": Period(2, "W"), "test": Period(1, "W"), "step": Period(1, "W")}


def _mappo(bars: int = 1_500, **sections: str) -> ScenarioConfig:
    # max_participation > 0, as in the demo: training runs without the cap, tests keep it.
    return synthetic_scenario(
        bars,
        run=sections.pop("run", "seed = 5"),
        strategy=MAPPO,
        train=TINY_TRAIN,
        broker="max_participation = 0.5",
        **sections,
    )


def _stored_config(url: str, run_id: int) -> dict[str, Any]:
    with connect(url).connect() as c:
        text = c.execute(select(Run.config_json).where(Run.id == run_id)).scalar_one()
    return dict(json.loads(text))


def _ns(text: str) -> int:
    return int(pd.Timestamp(text).value)


def test_walk_forward_trains_each_fold_on_its_train_window_and_tests_with_it(
    dask_client: Any, sqlite_url: str, tmp_path: Path
) -> None:
    config = _mappo()
    folder = tmp_path / "folds"
    result = run_walk_forward(
        config,
        **FOLDS,
        batch=Batch(train_updates=1, checkpoint_dir=folder, db_url=sqlite_url, client=dask_client),
    )
    folds = walk_forward_rows(connect(sqlite_url), result.sweep_id)
    assert len(folds) >= 2
    assert all(f["status"] == "completed" for f in folds), [f["error"] for f in folds]
    for fold in folds:
        path = folder / f"fold-{fold['fold']}.pt"
        assert fold["params"] == {"strategy.checkpoint": str(path)}
        assert fold["candidates"][0]["checkpoint"] == str(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["updates"] == 1  # --train-updates beats [train] updates = 5
        assert meta["data"]["bars"] == fold["train_bars"]
        # The checkpoint was trained on bars that all end before the test window starts.
        assert _ns(meta["data"]["end"]) < fold["test_start_ns"]
        assert meta["data"]["start"] and _ns(meta["data"]["start"]) == fold["train_start_ns"]
        run_config = _stored_config(sqlite_url, fold["run_id"])
        assert run_config["strategy"]["checkpoint"] == str(path)
        assert run_config["broker"]["max_participation"] == 0.5
    # The fold's test run is the backtest of its test window with that fold's checkpoint.
    last = folds[-1]
    window = _stored_config(sqlite_url, last["run_id"])
    replay = run_backtest(
        with_overrides(
            config,
            {
                "data.start": window["data"]["start"],
                "data.end": window["data"]["end"],
                "run.trade_start": window["run"]["trade_start"],
                "strategy.checkpoint": str(folder / f"fold-{last['fold']}.pt"),
            },
        ),
        persist=False,
    )
    assert replay.summary.total_return == last["total_return"]
    assert replay.summary.final_equity == last["final_equity"]
    assert result.summary["folds"] == len(folds)


def test_walk_forward_of_a_learned_scenario_never_tests_a_foreign_checkpoint_silently(
    tmp_path: Path,
) -> None:
    config = _mappo()
    with pytest.raises(ConfigError, match="--keep-checkpoint"):
        run_walk_forward(config, **FOLDS, trainer=NothingToTrain(), batch=Batch(db_url="sqlite://"))
    with pytest.raises(ConfigError, match="--keep-checkpoint"):
        run_walk_forward(
            config,
            **FOLDS,
            optimize=parse_grid(["strategy.max_position=50,100"]),
            batch=Batch(db_url="sqlite://"),
        )
    with pytest.raises(ConfigError, match="not both"):
        run_walk_forward(
            config, **FOLDS, keep_checkpoint=True, batch=Batch(train_updates=1, db_url="sqlite://")
        )
    sma = synthetic_scenario(1_500, strategy="fast = 5\nslow = 20")
    with pytest.raises(ConfigError, match="mappo_ensemble"):
        run_walk_forward(sma, **FOLDS, batch=Batch(train_updates=1, db_url="sqlite://"))


def test_walk_forward_custom_train_step_that_keeps_the_checkpoint_fails_its_folds(
    dask_client: Any, sqlite_url: str
) -> None:
    from engine.app.walkforward import TrainResult

    def lazy(config: ScenarioConfig, window: Any) -> TrainResult:
        return TrainResult(note="did nothing")

    result = run_walk_forward(
        _mappo(), **FOLDS, trainer=lazy, batch=Batch(db_url=sqlite_url, client=dask_client)
    )
    assert {f["status"] for f in result.folds} == {"failed"}
    assert all("--keep-checkpoint" in f["error"] for f in result.folds)
    assert all(f["run_id"] is None for f in result.folds)


def test_sweep_with_train_grid_trains_then_backtests_each_task(
    dask_client: Any, sqlite_url: str, tmp_path: Path
) -> None:
    # Task 0 trains on the bars before 2020-01-20; task 1's window holds too few warm bars.
    config = _mappo(run='seed = 5\ntrade_start = "2020-01-20"')
    grid = parse_grid(["run.trade_start=2020-01-20,2020-01-02"])
    with pytest.raises(ConfigError, match="only matters with --train"):
        run_sweep(
            config, parse_grid(["train.epochs=1,2"]), train=False, batch=Batch(db_url=sqlite_url)
        )
    folder = tmp_path / "tasks"
    result = run_sweep(
        config,
        grid,
        train=True,
        batch=Batch(train_updates=1, checkpoint_dir=folder, db_url=sqlite_url, client=dask_client),
    )
    rows = {row["task"]: row for row in sweep_task_rows(connect(sqlite_url), result.sweep_id)}
    assert rows[0]["status"] == "completed"
    assert rows[1]["status"] == "failed" and rows[1]["run_id"] is None
    assert rows[1]["error"].startswith("train: ConfigError: training: no run of")
    meta = json.loads((folder / "task-0.json").read_text())
    assert meta["updates"] == 1
    trade_start = _ns("2020-01-20T00:00:00+00:00")
    assert _ns(meta["data"]["end"]) < trade_start
    stored = _stored_config(sqlite_url, rows[0]["run_id"])
    assert stored["strategy"]["checkpoint"] == str(folder / "task-0.pt")
    assert stored["run"]["trade_start"] == "2020-01-20"
    assert rows[0]["start_ns"] >= trade_start  # the backtest's metrics start at trade_start
    assert [r["checkpoint"] for r in result.rows if r["task"] == 0] == [str(folder / "task-0.pt")]


def test_sweep_grid_over_train_turns_training_on_and_needs_trade_start() -> None:
    with pytest.raises(ConfigError, match="set run.trade_start"):
        run_sweep(_mappo(), parse_grid(["train.epochs=1,2"]), batch=Batch(db_url="sqlite://"))
    sma = synthetic_scenario(800, run='trade_start = "2020-01-05"', strategy="fast = 5\nslow = 20")
    with pytest.raises(ConfigError, match="mappo_ensemble"):
        run_sweep(
            sma, parse_grid(["strategy.fast=3,4"]), train=True, batch=Batch(db_url="sqlite://")
        )


def test_cli_walkforward_of_a_learned_scenario_options(tmp_path: Path) -> None:
    from engine.app.cli import app

    scenario = tmp_path / "learned.toml"
    scenario.write_text(
        '[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 1500\n'
        f"[strategy]\n{MAPPO}\n[train]\n{TINY_TRAIN}\n"
        f'[storage]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n'
    )
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "walkforward",
            str(scenario),
            "--train",
            "2W",
            "--test",
            "1W",
            "--optimize",
            "strategy.max_position=5,9",
        ],
    )
    assert result.exit_code == 2 and "--keep-checkpoint" in result.output
    result = runner.invoke(
        app, ["walkforward", str(scenario), "--train", "2W", "--test", "1W", "--train-updates", "0"]
    )
    assert result.exit_code == 2 and "--train-updates must be at least 1" in result.output
