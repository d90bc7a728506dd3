"""``emarl paper --max-bars`` and ``emarl status`` on runs driven over a real broker.

A run stopped by ``--max-bars N`` holds exactly N bars and resumes with bar
N+1 to the end of the feed, giving the uninterrupted backtest's ledger; in
between, ``emarl status`` reports what the database holds (an open order, the
position, equity, the last bar and its lag), and for a meta-investor run the
agents' weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.app.backtest import run_backtest
from engine.app.cli import app
from engine.app.scenario import load_scenario
from engine.feeds.bars import load_bars
from storage.db import connect
from tests.paper.broker import Mosquitto
from tests.paper.conftest import demo_subset
from tests.paper.test_mqtt import (
    FILLS,
    SNAPSHOTS,
    emarl,
    finish,
    paper_run_id,
    rows,
    wait_for,
)

pytestmark = pytest.mark.service

OPEN_ORDERS = (
    "SELECT o.order_id, o.side, o.quantity FROM orders o WHERE o.run_id = :r AND NOT EXISTS "
    "(SELECT 1 FROM fills f WHERE f.run_id = o.run_id AND f.order_id = o.order_id) "
    "AND NOT EXISTS (SELECT 1 FROM order_events e WHERE e.run_id = o.run_id "
    "AND e.order_id = o.order_id AND e.event IN ('cancelled', 'rejected', 'denied', 'expired')) "
    "ORDER BY o.seq"
)


def status(db_url: str, run: str, *options: str) -> str:
    result = CliRunner().invoke(app, ["status", run, "--db", db_url, *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_max_bars_stops_after_n_bars_and_a_restart_resumes_to_the_end(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    bars = 300
    db_url = f"sqlite:///{tmp_path / 'limit.db'}"
    scenario = demo_subset(weichai_path, tmp_path, bars, db_url)
    config = load_scenario(scenario)
    backtest = run_backtest(config, db_url=db_url)
    assert backtest.run_id is not None
    fills = rows(db_url, FILLS, backtest.run_id)
    snapshots = rows(db_url, SNAPSHOTS, backtest.run_id)
    # stop on the bar that sends the first order: it is open while the run is down
    ts = load_bars(config.data, config.instrument.symbol, path=config.data_path()).ts.tolist()
    first_order = rows(
        db_url, "SELECT min(ts_event) FROM orders WHERE run_id = :r", backtest.run_id
    )
    limit = sum(1 for t in ts if t <= first_order[0][0])
    assert 10 < limit < bars - 50 and len(fills) > 3

    log = tmp_path / "paper.log"
    args = ("paper", str(scenario), "--bus", mosquitto.url, "--run", "limit")
    paper = emarl(*args, "--max-bars", str(limit), log=log)
    wait_for(log, "listening on", paper)
    publish_log = tmp_path / "publish.log"
    publish = emarl("publish", str(scenario), "--bus", mosquitto.url, "--speed", "max",
                    log=publish_log)  # fmt: skip
    finish(paper, log)
    finish(publish, publish_log)  # the broker holds the rest for the run's session
    assert f"bar limit reached after {limit} new bars" in log.read_text()
    assert f"paper run {paper_run_id(db_url, 'limit')}: max_bars; {limit} new bars" in (
        log.read_text()
    )
    run_id = paper_run_id(db_url, "limit")
    stored = rows(db_url, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in stored] == list(range(1, limit + 1))
    state = rows(db_url, "SELECT bars, last_feed_seq FROM paper_state WHERE run_id = :r", run_id)
    assert state == [(limit, limit)]
    paper_snapshots = rows(db_url, SNAPSHOTS, run_id)
    assert paper_snapshots == snapshots[: len(paper_snapshots)]
    assert paper_snapshots[-1][1] == ts[limit - 1]

    # status of the stopped run, as json and as a table
    before = time.time_ns()
    info = json.loads(status(db_url, "limit", "--format", "json"))
    after = time.time_ns()
    assert (info["run_id"], info["kind"], info["status"]) == (run_id, "paper", "stopped")
    with connect(db_url).connect() as connection:
        newest = connection.execute(
            text("SELECT * FROM portfolio_snapshots WHERE run_id = :r ORDER BY seq DESC LIMIT 1"),
            {"r": run_id},
        )
        assert info["snapshot"] == dict(newest.mappings().one())
    feed = info["feed"]
    assert (feed["bars"], feed["last_feed_seq"], feed["last_bar_ns"]) == (
        limit,
        limit,
        ts[limit - 1],
    )
    assert (
        (before - ts[limit - 1]) / 1e9 <= feed["bar_lag_seconds"] <= (after - ts[limit - 1]) / 1e9
    )
    assert feed["dropped"] == 0
    open_orders = rows(db_url, OPEN_ORDERS, run_id)
    assert len(open_orders) == 1
    assert [(o["order_id"], o["side"], o["quantity"]) for o in info["open_orders"]] == open_orders
    table = status(db_url, "limit")
    order_id = open_orders[0][0]
    for needle in ("position", "equity", "last bar", "lag", "open orders", order_id, "stopped"):
        assert needle in table, table

    # the second start resumes with bar limit + 1 and runs to the end of the feed
    paper = emarl(*args, log=log)
    finish(paper, log)
    text_log = log.read_text()
    assert f"re-drove {limit} stored bars" in text_log
    assert f"next feed seq {limit + 1}" in text_log
    assert f"feed ended after {bars - limit} new bars" in text_log
    assert "feed gap" not in text_log
    stored = rows(db_url, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in stored] == list(range(1, bars + 1))
    assert rows(db_url, FILLS, run_id) == fills
    assert rows(db_url, SNAPSHOTS, run_id) == snapshots
    done = json.loads(status(db_url, str(run_id), "--format", "json"))
    assert done["status"] == "completed" and done["open_orders"] == []
    assert done["feed"]["bars"] == bars


META = """
[run]
name = "meta-paper"
seed = 5

[data]
source = "synthetic"

[data.synthetic]
bars = {bars}

[strategy]
kind = "scripted_ensemble"
agents = ["random", "neutral", "random"]
max_position = 500
confidence_threshold = -2.0

[strategy.meta]
expiry_bars = 20

[broker]
commission_bps = 1.0
slippage_bps = 0.5

[storage]
url = "{url}"
"""


def test_status_of_a_meta_investor_run_shows_the_agent_weights(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    bars = 80
    db_url = f"sqlite:///{tmp_path / 'meta.db'}"
    scenario = tmp_path / "meta.toml"
    scenario.write_text(META.format(bars=bars, url=db_url), encoding="utf-8")
    log = tmp_path / "paper.log"
    paper = emarl("paper", str(scenario), "--bus", mosquitto.url, log=log)
    wait_for(log, "listening on", paper)
    publish_log = tmp_path / "publish.log"
    publish = emarl("publish", str(scenario), "--bus", mosquitto.url, log=publish_log)
    finish(publish, publish_log)
    finish(paper, log)
    run_id = paper_run_id(db_url, "meta-paper")
    info = json.loads(status(db_url, "meta-paper", "--format", "json"))
    assert info["run_id"] == run_id and info["feed"]["bars"] == bars
    newest = rows(
        db_url,
        "SELECT v.agent_index, v.agent_id, v.weight, v.share_price, v.option_value, v.ts_event "
        "FROM valuations v WHERE v.run_id = :r AND v.seq = (SELECT max(w.seq) FROM valuations w "
        "WHERE w.run_id = v.run_id AND w.agent_index = v.agent_index) ORDER BY v.agent_index",
        run_id,
    )
    assert [i for i, *_ in newest] == [0, 1, 2]
    columns = ("agent_index", "agent_id", "weight", "share_price", "option_value", "ts_event")
    assert [tuple(agent[c] for c in columns) for agent in info["agents"]] == newest
    assert sum(agent["weight"] for agent in info["agents"]) == pytest.approx(1.0)
    table = status(db_url, "meta-paper")
    assert "agent weights" in table
    for _index, agent_id, *_ in newest:
        assert str(agent_id) in table, table
