"""Learning curves of a stored training run: `emarl report RUN --training`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from engine.app.cli import app
from storage.db import connect
from storage.training import add_training_metric, create_training_run, training_metrics
from tests.reporting.conftest import decode, figures_of

runner = CliRunner()


def _store(url: str, updates: int) -> tuple[int, list[float]]:
    engine = connect(url)
    run_id = create_training_run(
        engine, name="tiny", scenario="s.toml", config={}, config_hash="x", seed=1,
        code_version="test",
    )  # fmt: skip
    returns = [float(np.tanh(u / 5.0)) for u in range(1, updates + 1)]
    for u, value in enumerate(returns, start=1):
        add_training_metric(
            engine,
            run_id,
            {
                "update": u, "stage": 1, "complexity": 0.3, "episodes": 4 * u,
                "agent_steps": 100 * u, "episode_return": value, "episode_pnl": value / 2,
                "policy_loss": -0.01, "value_loss": 1.0 / u, "entropy": 1.09 - u / 100,
                "approx_kl": 0.001, "clip_fraction": 0.1, "explained_variance": float("nan"),
                "weights": "0.33,0.33,0.34", "seconds": 0.5,
            },
        )  # fmt: skip
    return run_id, returns


def test_training_report_draws_the_stored_learning_curves(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    run_id, returns = _store(url, 12)
    target = tmp_path / "curves.html"
    result = runner.invoke(app, ["report", "latest", "--training", "-o", str(target), "--db", url])
    assert result.exit_code == 0, result.output
    figure = figures_of(target.read_text())["Learning curves"]
    by_name = {trace.get("name"): trace for trace in figure["data"]}
    assert len(figure["data"]) >= 7
    np.testing.assert_allclose(decode(by_name["episode_return"]["y"]).astype(float), returns)
    np.testing.assert_array_equal(decode(by_name["episode_return"]["x"]), np.arange(1, 13))
    _id, name, frame = training_metrics(connect(url, create=False), run_id)
    assert name == "tiny" and len(frame) == 12 and frame["explained_variance"].isna().all()


def test_training_report_unknown_run_exits_3(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    _store(url, 2)
    result = runner.invoke(app, ["report", "9", "--training", "--db", url])
    assert result.exit_code == 3
    assert "no training run with id 9" in result.output
    result = runner.invoke(app, ["report", "abc", "--training", "--db", url])
    assert result.exit_code == 2
