"""Sweep grids: parsing, dotted paths, validation before anything runs, ranking."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.sweep import (
    build_tasks,
    check_metric,
    parse_grid,
    set_path,
    sort_rows,
    with_overrides,
)
from engine.core.errors import ConfigError
from tests.conftest import synthetic_scenario

SMA = "fast = 5\nslow = 20\nquantity = 10"


def test_parse_grid_values_are_typed_like_toml() -> None:
    grid = parse_grid(
        [
            "broker.commission_bps=0,1.5,2",
            "strategy.long_only=true,false",
            "data.end=2020-02-01,2020-03-01T00:00:00Z",
            "run.name=a,'b,c'",
        ]
    )
    assert grid["broker.commission_bps"] == [0, 1.5, 2]
    assert grid["strategy.long_only"] == [True, False]
    # Dates stay strings: scenario dates are strings.
    assert grid["data.end"] == ["2020-02-01", "2020-03-01T00:00:00Z"]
    assert grid["run.name"] == ["a", "b,c"]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("strategy.fast", "expected PATH=V1,V2"),
        ("=1,2", "expected PATH=V1,V2"),
        ("strategy.fast=1,,2", "empty value"),
        ("strategy.fast=3,3", "listed twice"),
    ],
)
def test_parse_grid_bad_item_says_what_is_wrong(item: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_grid([item])


def test_parse_grid_repeated_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        parse_grid(["strategy.fast=3", "strategy.fast=5"])


def test_set_path_makes_sections_and_refuses_to_go_below_a_value() -> None:
    raw: dict = {"broker": {"commission_bps": 1.0}}
    set_path(raw, "data.synthetic.bars", 10)
    assert raw["data"] == {"synthetic": {"bars": 10}}
    with pytest.raises(ConfigError, match=r"broker\.commission_bps is a value"):
        set_path(raw, "broker.commission_bps.x", 1)
    with pytest.raises(ConfigError, match="is a section"):
        set_path(raw, "data.synthetic", 3)


def test_build_tasks_every_combination_times_seeds() -> None:
    config = synthetic_scenario(500, run="seed = 7", strategy=SMA)
    grid = parse_grid(["strategy.fast=3,5", "broker.commission_bps=0,1,2"])
    tasks = build_tasks(config, grid, seeds=2)
    assert len(tasks) == 2 * 3 * 2
    assert [t.task for t in tasks] == list(range(12))
    combos = {(t.overrides["strategy.fast"], t.overrides["broker.commission_bps"]) for t in tasks}
    assert combos == {(f, c) for f in (3, 5) for c in (0, 1, 2)}
    assert sorted({t.seed for t in tasks}) == [7, 8]
    first = tasks[0]
    assert first.config["strategy"]["fast"] == 3
    assert first.config["broker"]["commission_bps"] == 0
    assert first.config["run"]["seed"] == 7
    assert len({t.config_hash for t in tasks}) == 12


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("broker.comission_bps=0,1", r"unknown key 'comission_bps' in \[broker\]; did you mean "),
        ("brokr.commission_bps=0", "unknown key 'brokr' in the top level; did you mean 'broker'"),
        ("strategy.fastt=3", "did you mean 'fast'"),
        ("strategy.fast=abc", "Expected `int`"),
        ("strategy.fast=3,40", r"strategy.fast \(40\) must be smaller than strategy.slow"),
        ("broker.commission_bps=-1", "zero or positive"),
    ],
)
def test_unknown_path_or_bad_value_is_a_config_error(item: str, message: str) -> None:
    config = synthetic_scenario(500, strategy=SMA)
    with pytest.raises(ConfigError, match=message):
        build_tasks(config, parse_grid([item]))


def test_with_overrides_changes_only_the_named_fields() -> None:
    config = synthetic_scenario(500, strategy=SMA)
    changed = with_overrides(config, {"strategy.fast": 7, "broker.slippage_bps": 2.0})
    assert changed.strategy.fast == 7  # type: ignore[union-attr]
    assert changed.broker.slippage_bps == 2.0
    assert changed.data == config.data
    assert changed.strategy.slow == config.strategy.slow  # type: ignore[union-attr]


def test_check_metric_suggests_the_closest() -> None:
    assert check_metric("sharpe") == "sharpe"
    with pytest.raises(ConfigError, match="did you mean 'sharpe'"):
        check_metric("sharp")


def test_sort_rows_best_first_failed_and_nan_last() -> None:
    rows = [
        {"task": 0, "status": "completed", "sharpe": 1.0, "annual_volatility": 0.3},
        {"task": 1, "status": "failed", "sharpe": None, "annual_volatility": None},
        {"task": 2, "status": "completed", "sharpe": math.nan, "annual_volatility": 0.1},
        {"task": 3, "status": "completed", "sharpe": 2.5, "annual_volatility": 0.2},
    ]
    assert [r["task"] for r in sort_rows(rows, "sharpe")] == [3, 0, 1, 2]
    # Smaller is better for volatility.
    assert [r["task"] for r in sort_rows(rows, "annual_volatility")][:3] == [2, 3, 0]


def _scenario_file(tmp_path: Path, db: Path) -> Path:
    path = tmp_path / "small.toml"
    path.write_text(
        f'[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 400\n'
        f'[strategy]\n{SMA}\n[storage]\nurl = "sqlite:///{db}"\n'
    )
    return path


def test_cli_sweep_unknown_path_exits_2_before_anything_runs(tmp_path: Path) -> None:
    db = tmp_path / "sweep.db"
    scenario = _scenario_file(tmp_path, db)
    result = CliRunner().invoke(
        app, ["sweep", str(scenario), "--grid", "broker.comission_bps=0,1", "--quiet"]
    )
    assert result.exit_code == 2
    assert "did you mean 'commission_bps'" in result.output
    assert "[broker]" in result.output
    assert not db.exists()  # nothing was stored, no cluster was started


def test_cli_sweep_unknown_sort_metric_exits_2(tmp_path: Path) -> None:
    db = tmp_path / "sweep.db"
    scenario = _scenario_file(tmp_path, db)
    result = CliRunner().invoke(
        app, ["sweep", str(scenario), "--grid", "strategy.fast=3,5", "--sort", "sharp"]
    )
    assert result.exit_code == 2
    assert "did you mean 'sharpe'" in result.output
    assert not db.exists()
