"""``emarl sweep`` and ``emarl walkforward`` end to end, on the test cluster's scheduler."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from storage.db import connect
from storage.query import list_sweeps, walk_forward_equity

pytestmark = pytest.mark.slow


def _scenario(tmp_path: Path) -> tuple[Path, str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    path = tmp_path / "small.toml"
    path.write_text(
        '[run]\nname = "cli-small"\nseed = 2\n'
        '[data]\nsource = "synthetic"\n[data.synthetic]\nbars = 1500\n'
        "[strategy]\nfast = 5\nslow = 20\nquantity = 10\n"
        f'[storage]\nurl = "{url}"\n'
    )
    return path, url


def test_cli_sweep_on_a_remote_scheduler_prints_ranked_results(
    dask_client: Any, tmp_path: Path
) -> None:
    scenario, url = _scenario(tmp_path)
    address = dask_client.scheduler.address
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            str(scenario),
            "--grid",
            "strategy.fast=3,8",
            "--seeds",
            "2",
            "--scheduler",
            address,
            "--sort",
            "total_return",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 4
    returns = [row["total_return"] for row in rows]
    assert returns == sorted(returns, reverse=True)
    assert {(row["strategy.fast"], row["seed"]) for row in rows} == {
        (f, s) for f in (3, 8) for s in (2, 3)
    }
    sweeps = list_sweeps(connect(url))
    assert sweeps[0]["scheduler"] == address and sweeps[0]["status"] == "completed"


def test_cli_sweep_with_a_failing_task_exits_1_and_says_so(
    dask_client: Any, tmp_path: Path
) -> None:
    scenario, _ = _scenario(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "sweep",
            str(scenario),
            "--grid",
            "data.start=2020-01-05,2031-01-01",
            "--scheduler",
            dask_client.scheduler.address,
            "--quiet",
        ],
    )
    assert result.exit_code == 1
    assert "1 of 2 tasks failed" in result.output
    assert "DataError" in result.output


def test_cli_walkforward_prints_folds_and_stores_the_curve(
    dask_client: Any, tmp_path: Path
) -> None:
    scenario, url = _scenario(tmp_path)
    result = CliRunner().invoke(
        app,
        [
            "walkforward",
            str(scenario),
            "--train",
            "2W",
            "--test",
            "1W",
            "--optimize",
            "strategy.fast=3,8",
            "--scheduler",
            dask_client.scheduler.address,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert len(out["folds"]) >= 2
    assert all(fold["train_note"].startswith("best of 2") for fold in out["folds"])
    curve = walk_forward_equity(url, out["sweep_id"])
    assert len(curve) == sum(fold["test_bars"] for fold in out["folds"])
    assert out["summary"]["total_return"] == pytest.approx(
        curve["equity"].iloc[-1] / 1_000_000.0 - 1
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "2Q"], "--train: '2Q' is not a period"),
        (["--train", "1W", "--test", "2W", "--step", "1W"], "shorter than --test"),
        (["--optimize", "strategy.fastest=3"], "did you mean 'fast'"),
    ],
)
def test_cli_walkforward_bad_options_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    scenario, url = _scenario(tmp_path)
    result = CliRunner().invoke(app, ["walkforward", str(scenario), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not Path(url.removeprefix("sqlite:///")).exists()
