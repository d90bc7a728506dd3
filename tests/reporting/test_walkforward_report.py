"""The walk-forward report: per-fold metrics and the stitched curve coloured by fold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from engine.app.cli import app
from engine.app.sweep import Batch
from engine.app.walkforward import Period, run_walk_forward
from reporting.report import walk_forward_report
from storage.db import connect
from storage.query import walk_forward_equity, walk_forward_rows
from tests.conftest import synthetic_scenario
from tests.reporting.conftest import SECTION, decode, figures_of, finite_points


@pytest.fixture(scope="module")
def walk_forward_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A stored walk-forward of an SMA crossover (3 folds), run on an in-process cluster."""
    from distributed import Client

    from storage.db import dispose_all

    url = f"sqlite:///{tmp_path_factory.mktemp('walkforward') / 'wf.db'}"
    config = synthetic_scenario(
        1_900, run="seed = 5", strategy="fast = 5\nslow = 20\nquantity = 10"
    )
    # its HTTP server on a free loopback port: the scale tests' cluster may hold Dask's 8787
    with Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0"
    ) as c:
        result = run_walk_forward(
            config,
            train=Period(2, "W"),
            test=Period(1, "W"),
            step=Period(1, "W"),
            batch=Batch(db_url=url, client=c),
        )
    dispose_all()
    yield url, result.sweep_id
    dispose_all()


def test_walk_forward_report_draws_the_stitched_curve_by_fold(
    walk_forward_db: tuple[str, int],
) -> None:
    url, sweep_id = walk_forward_db
    engine = connect(url, create=False)
    page = walk_forward_report(engine, sweep_id)
    curve = walk_forward_equity(engine, sweep_id)
    folds = walk_forward_rows(engine, sweep_id)
    assert len(folds) >= 3
    chart = figures_of(page)["Stitched equity by fold"]
    lines = [t for t in chart["data"] if t["name"].startswith("fold ")]
    assert [t["name"] for t in lines] == [f"fold {f['fold']}" for f in folds]
    assert len({t["line"]["color"] for t in lines}) == len(lines)  # one colour per fold
    for trace in chart["data"]:
        assert finite_points(trace) > 0, trace["name"]
    # Each fold's line ends on that fold's last stitched value; the last is the curve's end.
    for trace, fold in zip(lines, folds, strict=True):
        part = curve[curve["fold"] == fold["fold"]]
        assert decode(trace["y"]).astype(float)[-1] == part["equity"].iloc[-1]
        x = decode(trace["x"]).astype(float)
        assert np.all(np.diff(x) > 0)
    # The per-fold table has a row per fold with its return.
    table = dict(SECTION.findall(page))["Folds"]
    rows = re.findall(r"<tr><td>(\d+)</td>", table)
    assert rows == [str(f["fold"]) for f in folds]
    assert f"{folds[0]['total_return']:.2%}" in table
    metrics = dict(SECTION.findall(page))["Out of sample, stitched"]
    assert "Sharpe" in metrics


def test_report_command_walkforward_writes_a_self_contained_page(
    walk_forward_db: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sweep_id = walk_forward_db
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "latest", "--walkforward", "--db", url])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "runs" / f"walkforward-report-{sweep_id}.html").read_text()
    assert re.search(r"<script[^>]+src=", page) is None
    assert "Stitched equity by fold" in figures_of(page)
    bad: Any = CliRunner().invoke(app, ["report", "99", "--walkforward", "--db", url])
    assert bad.exit_code == 3 and "no walkforward with id 99" in bad.output
