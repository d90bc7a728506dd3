"""Report contents, read back from the plotly figure JSON inside the page."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest

from engine.app.metrics import round_trips
from reporting import build_report, learning_curves_figure, training_report
from reporting.tables import MAX_TRADE_ROWS
from reporting.trades import fill_kinds, round_trips_frame
from storage.db import connect
from storage.frames import fills_frame, run_info, snapshots_frame
from tests.reporting.conftest import SECTION, decode, figures_of, finite_points

AGENT_CHARTS = (
    "Price, entries and exits",
    "Equity and drawdown",
    "Monthly returns",
    "Agent actions",
    "Ensemble weights",
    "Shapley attribution",
    "Share prices and option values",
    "Bubbles",
)


@pytest.fixture(scope="module")
def agent_page(report_db: str) -> str:
    return build_report(connect(report_db, create=False), 1)


@pytest.fixture(scope="module")
def sma_page(report_db: str) -> str:
    return build_report(connect(report_db, create=False), 2)


def test_report_agent_run_has_every_chart_with_data(agent_page: str) -> None:
    charts = figures_of(agent_page)
    assert tuple(charts) == AGENT_CHARTS
    for title, figure in charts.items():
        assert figure["data"], title
        for trace in figure["data"]:
            assert finite_points(trace) > 0, (title, trace.get("name"))


def test_report_sma_run_leaves_out_agent_charts_and_says_why(sma_page: str) -> None:
    charts = figures_of(sma_page)
    assert tuple(charts) == ("Price, entries and exits", "Equity and drawdown", "Monthly returns")
    sections = dict(SECTION.findall(sma_page))
    assert "No agents in this run (sma_cross)" in sections["Agents"]
    for figure in charts.values():
        assert all(finite_points(trace) > 0 for trace in figure["data"])


def test_report_is_self_contained(sma_page: str) -> None:
    from plotly.offline import get_plotlyjs

    assert re.search(r"<script[^>]+src=", sma_page) is None
    assert re.search(r"<link[^>]+href=\"https?:", sma_page) is None
    # plotly.js itself is inside the page, the bundle of the installed plotly.
    banner = re.search(r"plotly\.js v\d+\.\d+\.\d+", get_plotlyjs())
    assert banner is not None and banner.group(0) in sma_page
    assert get_plotlyjs()[-2000:] in sma_page


def test_report_marks_every_fill_exactly(report_db: str, agent_page: str) -> None:
    engine = connect(report_db, create=False)
    fills = fills_frame(engine, 1)
    price = figures_of(agent_page)["Price, entries and exits"]["data"]
    markers = [trace for trace in price if trace.get("mode") == "markers"]
    marked = set()
    for trace in markers:
        xs = decode(trace["x"]).astype(float)
        ys = decode(trace["y"]).astype(float)
        marked.update(zip(xs.tolist(), ys.tolist(), strict=True))
    expected = set(zip((fills["ts_event"] / 1e6).tolist(), fills["price"].tolist(), strict=True))
    assert expected == marked
    opens, closes = fill_kinds(fills["side"].to_numpy(), fills["quantity"].to_numpy())
    assert sum(len(decode(t["x"])) for t in markers) == int(opens.sum() + closes.sum())


def test_report_downsamples_lines_but_keeps_extremes(report_db: str) -> None:
    engine = connect(report_db, create=False)
    page = build_report(engine, 2, buckets=50)
    snapshots = snapshots_frame(engine, 2)
    line = figures_of(page)["Price, entries and exits"]["data"][0]
    y = decode(line["y"]).astype(float)
    close = snapshots["mark_price"].to_numpy()
    assert len(y) <= 4 * 50 < len(close)
    assert y.max() == close.max() and y.min() == close.min()
    assert y[0] == close[0] and y[-1] == close[-1]
    x = decode(line["x"]).astype(float)
    assert np.all(np.diff(x) > 0)


def test_report_monthly_returns_compound_to_total_return(report_db: str, agent_page: str) -> None:
    info = run_info(connect(report_db, create=False), 1)
    heatmap = figures_of(agent_page)["Monthly returns"]["data"][0]
    z = decode(heatmap["z"]).astype(float)
    monthly = z[np.isfinite(z)] / 100.0
    compounded = float(np.prod(1.0 + monthly) - 1.0)
    assert compounded == pytest.approx(info["summary"]["total_return"], rel=1e-9, abs=1e-12)


def test_report_metrics_table_shows_the_stored_summary(report_db: str, agent_page: str) -> None:
    summary = run_info(connect(report_db, create=False), 1)["summary"]
    metrics = dict(SECTION.findall(agent_page))["Metrics"]
    cells = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", metrics))
    assert cells["Sharpe"] == f"{summary['sharpe']:,.2f}"
    assert cells["max drawdown"] == f"{summary['max_drawdown']:.2%}"
    assert cells["trades (round trips)"] == f"{summary['trades']:,}"


def test_report_trade_list_matches_round_trips(report_db: str, agent_page: str) -> None:
    engine = connect(report_db, create=False)
    fills = fills_frame(engine, 1)
    trips, _ = round_trips_frame(fills)
    summary = run_info(engine, 1)["summary"]
    assert len(trips) == summary["trades"]
    section = html.unescape(dict(SECTION.findall(agent_page))["Trades"])
    rows = re.findall(r"<tr><td>(\d+)</td>", section)
    assert len(rows) == min(len(trips), MAX_TRADE_ROWS)
    assert int(rows[-1]) == len(trips)


def test_round_trips_pnl_matches_engine_metrics(report_db: str) -> None:
    fills = fills_frame(connect(report_db, create=False), 1)
    trips, _ = round_trips_frame(fills)
    expected = round_trips(
        fills["side"].to_numpy(),
        fills["quantity"].to_numpy(dtype=float),
        fills["price"].to_numpy(dtype=float),
        fills["commission"].to_numpy(dtype=float),
    )
    np.testing.assert_allclose(trips["pnl"].to_numpy(), expected, rtol=1e-9, atol=1e-6)


def test_round_trips_split_a_reversal_into_two_trips() -> None:
    fills = pd.DataFrame(
        {
            "ts_event": [1, 2, 3],
            "side": ["buy", "sell", "buy"],
            "quantity": [10.0, 15.0, 5.0],
            "price": [100.0, 110.0, 104.0],
            "commission": [1.0, 3.0, 1.0],
        }
    )
    trips, still_open = round_trips_frame(fills)
    assert still_open == 0.0
    assert trips["direction"].tolist() == ["long", "short"]
    assert trips["entry_ns"].tolist() == [1, 2] and trips["exit_ns"].tolist() == [2, 3]
    # long 10 @100 -> 110: +100, less 1 and two thirds of 3; short 5 @110 -> 104: +30, less 1 + 1.
    assert trips["pnl"].tolist() == pytest.approx([100.0 - 1.0 - 2.0, 30.0 - 1.0 - 1.0])
    assert trips["quantity"].tolist() == [10.0, 5.0]
    opens, closes = fill_kinds(fills["side"].to_numpy(), fills["quantity"].to_numpy())
    assert opens.tolist() == [True, True, False]
    assert closes.tolist() == [False, True, True]


def test_report_unknown_run_raises_run_not_found(report_db: str) -> None:
    from engine.core.errors import RunNotFoundError

    with pytest.raises(RunNotFoundError, match="no run with id 42"):
        build_report(connect(report_db, create=False), 42)


def synthetic_training(updates: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    steps = np.arange(updates)
    return pd.DataFrame(
        {
            "update": steps,
            "episode_return": np.log1p(steps) + rng.normal(0, 0.1, updates),
            "policy_loss": rng.normal(0, 0.01, updates),
            "value_loss": np.exp(-steps / 100) + rng.normal(0, 0.01, updates),
            "entropy": 1.1 - steps / updates,
            "approx_kl": np.abs(rng.normal(0.01, 0.005, updates)),
            "clip_fraction": rng.uniform(0.05, 0.2, updates),
            "explained_variance": 1 - np.exp(-steps / 50),
            "wall_seconds": steps * 0.5,
        }
    )


def test_learning_curves_draw_one_panel_per_metric() -> None:
    frame = synthetic_training()
    figure = learning_curves_figure(frame.sample(frac=1.0, random_state=1))
    names = [trace.name for trace in figure.data]
    assert names == [
        "episode_return",
        "policy_loss",
        "value_loss",
        "entropy",
        "approx_kl",
        "clip_fraction",
        "explained_variance",
    ]
    entropy = figure.data[3]
    np.testing.assert_array_equal(np.asarray(entropy.x), frame["update"].to_numpy(dtype=float))
    np.testing.assert_allclose(np.asarray(entropy.y), frame["entropy"].to_numpy())


def test_learning_curves_with_some_metrics_and_in_a_report(report_db: str) -> None:
    frame = synthetic_training(40)[["update", "episode_return", "value_loss"]]
    page = training_report(frame, title="ppo")
    (figure,) = figures_of(page).values()
    assert [trace["name"] for trace in figure["data"]] == ["episode_return", "value_loss"]
    assert all(finite_points(trace) == 40 for trace in figure["data"])
    with_run = build_report(connect(report_db, create=False), 2, learning_curves=frame)
    assert "Learning curves" in figures_of(with_run)


@pytest.mark.parametrize(
    ("columns", "message"),
    [(["episode_return"], "'update'"), (["update", "loss"], "at least one of")],
)
def test_learning_curves_bad_frame_says_what_is_missing(columns: list[str], message: str) -> None:
    frame = pd.DataFrame({name: [1.0, 2.0] for name in columns})
    with pytest.raises(ValueError, match=message):
        learning_curves_figure(frame)


@pytest.mark.service
def test_report_and_aggregates_on_postgresql(postgres_url: str) -> None:
    from engine.app.backtest import run_backtest
    from engine.app.scenario import parse_scenario
    from storage.query import pnl
    from tests.reporting.conftest import AGENT_SCENARIO

    result = run_backtest(parse_scenario(AGENT_SCENARIO.format(bars=400)), db_url=postgres_url)
    engine = connect(postgres_url, create=False)
    charts = figures_of(build_report(engine, result.run_id))
    assert tuple(charts) == AGENT_CHARTS
    assert all(finite_points(t) > 0 for figure in charts.values() for t in figure["data"])
    months = pnl(engine, result.run_id, "month")
    assert months["fills"].sum() == result.fills
    agents = pnl(engine, result.run_id, "agent")
    assert agents["agent_id"].tolist() == ["oracle-0", "contrarian-1", "random-2"]


def test_learning_curves_draw_the_updates_that_ended_an_episode() -> None:
    """An update in which no episode ended records NaN; the panel used to come out blank
    (NaN between isolated points breaks the line). It draws every value that exists."""
    updates = np.arange(1, 41)
    episode_return = np.where(updates % 2 == 0, np.sin(updates / 5.0), np.nan)
    metrics = pd.DataFrame(
        {
            "update": updates,
            "episode_return": episode_return,
            "episode_pnl": np.where(updates % 3 == 0, updates * 10.0, np.nan),
            "policy_loss": np.cos(updates / 7.0),
        }
    )
    figure = learning_curves_figure(metrics)
    traces = {trace.name: trace for trace in figure.data}
    drawn = traces["episode_return"]
    assert not np.isnan(np.asarray(drawn.y, dtype=float)).any()
    np.testing.assert_array_equal(drawn.x, updates[updates % 2 == 0])
    np.testing.assert_allclose(drawn.y, episode_return[updates % 2 == 0])
    assert len(traces["episode_pnl"].y) == 13
    assert len(traces["policy_loss"].y) == 40
