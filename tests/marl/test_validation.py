"""Checkpoints chosen on a validation window: the score equals a backtest's Sharpe over
that window, the best update is kept, training stops early, and runs label the window."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from engine.app.cli import app

SCENARIO = """
[run]
name = "validated"
seed = 5
trade_start = "2020-03-20T00:00:00Z"
[data]
source = "synthetic"
synthetic = {{ bars = 4_000 }}
end = "2020-02-10T00:00:00Z"
[instrument]
symbol = "SYN"
[broker]
commission_bps = 2.5
commission_minimum = 1.0
slippage_bps = 1.0
[strategy]
kind = "mappo_ensemble"
checkpoint = "ck/agents.pt"
max_position = 100
no_trade_band = 0.1
min_hold_bars = 3
[train]
updates = {updates}
n_envs = 4
episode_length = 16
rollout_steps = 8
epochs = 1
minibatch_size = 16
threads = 1
learning_rate = 0.01
validation_end = "2020-03-10T00:00:00Z"
validate_every = 1
patience = {patience}
reward_turnover = 0.5
[storage]
url = "sqlite:///{db}"
"""


def _train(tmp_path: Path, updates: int, patience: int) -> dict:
    scenario = tmp_path / "validated.toml"
    scenario.write_text(
        SCENARIO.format(updates=updates, patience=patience, db=tmp_path / "runs.db")
    )
    result = CliRunner().invoke(app, ["train", str(scenario), "-q"])
    assert result.exit_code == 0, result.output
    assert "kept update" in result.output
    return json.loads((tmp_path / "ck" / "agents.json").read_text())["data"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("validated")
    return folder, _train(folder, updates=4, patience=0)


def test_validation_score_equals_the_backtest_sharpe_of_the_window(trained) -> None:
    folder, data = trained
    held = data["validation"]
    scores = dict(held["scores"])
    assert sorted(scores) == [1, 2, 3, 4]
    assert held["selected_update"] == max(scores, key=scores.get)  # the best one is kept
    start = held["first_bar_ns"]
    start_iso = pd.Timestamp(start, tz="UTC").isoformat()
    evaluated = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(folder / "validated.toml"),
            "--trade-start",
            start_iso,
            "--end",
            "2020-03-10T00:00:00Z",
            "--allow-in-sample",
            "--json",
        ],
    )
    assert evaluated.exit_code == 0, evaluated.output
    figures = json.loads(evaluated.output)
    assert figures["first_bar_ns"] == start and figures["bars"] == held["bars"]
    assert figures["learned"]["sharpe"] == pytest.approx(scores[held["selected_update"]], rel=1e-6)
    assert set(figures["windows"]) == {"validation"}  # the window chose the checkpoint
    refused = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(folder / "validated.toml"),
            "--trade-start",
            start_iso,
            "--end",
            "2020-03-10T00:00:00Z",
        ],
    )
    assert refused.exit_code == 2 and "chose it on" in refused.output


def test_backtest_shows_the_validation_window_as_its_own_part(trained) -> None:
    folder, data = trained
    # every bar, trading from inside the training window: all three parts
    text = (folder / "validated.toml").read_text()
    text = text.replace('end = "2020-02-10T00:00:00Z"\n', "")
    trading = folder / "trading.toml"
    trading.write_text(text.replace('"2020-03-20T00:00:00Z"', '"2020-02-01T00:00:00Z"'))
    result = CliRunner().invoke(app, ["backtest", str(trading), "-q", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    held = data["validation"]
    windows = summary["training"]["windows"]
    assert list(windows) == ["in_sample", "validation", "out_of_sample"]
    assert windows["in_sample"]["end_ns"] == data["last_bar_ns"]
    assert (windows["validation"]["start_ns"], windows["validation"]["end_ns"]) == (
        held["first_bar_ns"],
        held["last_bar_ns"],
    )
    assert windows["validation"]["bars"] == held["bars"]
    assert windows["out_of_sample"]["start_ns"] > held["last_bar_ns"]


def test_training_stops_after_patience_scores_without_improvement(tmp_path: Path) -> None:
    held = _train(tmp_path, updates=30, patience=2)["validation"]
    scores = [score for _update, score in held["scores"]]
    best = scores.index(max(scores))
    assert held["stopped_early"] and len(scores) == best + 3 < 30


def test_validation_window_must_end_before_trading(tmp_path: Path) -> None:
    scenario = tmp_path / "late.toml"
    text = SCENARIO.format(updates=1, patience=0, db=tmp_path / "runs.db")
    scenario.write_text(
        text.replace('validation_end = "2020-03-10', 'validation_end = "2020-03-25')
    )
    result = CliRunner().invoke(app, ["train", str(scenario), "-q"])
    assert result.exit_code == 2
    assert "validation bars must come before the bars the run trades" in result.output
