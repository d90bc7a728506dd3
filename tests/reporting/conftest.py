"""Stored runs to report on: one with three scripted agents, one SMA crossover.

Both are real backtests on the synthetic market, written once per module into
one SQLite file (run 1: agents, run 2: SMA).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from engine.app.backtest import run_backtest
from engine.app.scenario import parse_scenario

AGENT_BARS = 1_500
SMA_BARS = 3_000

AGENT_SCENARIO = """
[run]
name = "report-agents"
seed = 5
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[instrument]
symbol = "SYNTH"
[broker]
initial_cash = 1_000_000.0
commission_bps = 1.0
slippage_bps = 0.5
[strategy]
kind = "scripted_ensemble"
agents = ["oracle", "contrarian", "random"]
max_position = 1_000
confidence_threshold = -2.0
[strategy.meta]
smoothing = 0.1
alpha = 0.001
"""

SMA_SCENARIO = """
[run]
name = "report-sma"
seed = 3
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[broker]
commission_bps = 1.0
commission_minimum = 1.0
slippage_bps = 0.5
[strategy]
fast = 5
slow = 20
quantity = 500
"""


@pytest.fixture(scope="package")
def report_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding run 1 (three scripted agents) and run 2 (SMA crossover)."""
    from storage.db import dispose_all

    url = f"sqlite:///{tmp_path_factory.mktemp('reports') / 'runs.db'}"
    first = run_backtest(parse_scenario(AGENT_SCENARIO.format(bars=AGENT_BARS)), db_url=url)
    second = run_backtest(parse_scenario(SMA_SCENARIO.format(bars=SMA_BARS)), db_url=url)
    assert (first.run_id, second.run_id) == (1, 2)
    dispose_all()
    yield url
    dispose_all()


FIGURE = re.compile(
    r'<script type="application/json" class="figure" data-target="([^"]+)">(.*?)</script>',
    re.S,
)
SECTION = re.compile(r"<section><h2>(.*?)</h2>(.*?)</section>", re.S)


def decode(value: Any) -> np.ndarray:
    """A plotly JSON array (a list, or ``{"dtype", "bdata"}`` base64) as numpy."""
    if isinstance(value, dict) and "bdata" in value:
        raw = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            dims = [int(n) for n in str(shape).split(",")]
            raw = raw.reshape(dims)
        return raw
    return np.asarray(value, dtype=object)


def figures_of(page: str) -> dict[str, dict[str, Any]]:
    """Every figure's JSON in a report page, keyed by the title of its section."""
    specs = dict(FIGURE.findall(page))
    out = {}
    for title, body in SECTION.findall(page):
        match = re.search(r'<div class="chart" id="([^"]+)">', body)
        if match is None:
            continue
        out[title] = json.loads(specs[match.group(1)].replace("<\\/", "</"))
    return out


def finite_points(trace: dict[str, Any]) -> int:
    """Data points of a trace: finite y values, or finite cells of a heatmap's z."""
    if "z" in trace:
        z = trace["z"]
        values = decode(z) if isinstance(z, dict) else np.asarray(z, dtype=float)
        return int(np.isfinite(values.astype(float)).sum())
    y = decode(trace.get("y", []))
    return int(np.isfinite(y.astype(float)).sum())
