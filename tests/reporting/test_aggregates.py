"""Trade-history aggregates, checked against pandas computations written independently:
sums of the fills per group, and the portfolio's own realised P&L and fees per bar."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.core.errors import ConfigError, RunNotFoundError
from storage.db import connect
from storage.frames import fills_frame, shapley_frame, snapshots_frame
from storage.query import pnl, pnl_rows


def _fills(url: str, run_id: int) -> pd.DataFrame:
    frame = fills_frame(connect(url, create=False), run_id)
    frame["when"] = pd.to_datetime(frame["ts_event"], utc=True)
    frame["notional"] = frame["quantity"] * frame["price"]
    return frame


def _labels(when: pd.Series, by: str) -> pd.Series:
    if by == "day":
        return when.dt.strftime("%Y-%m-%d")
    if by == "week":
        return when.dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time.dt.strftime("%Y-%m-%d")
    return when.dt.strftime("%Y-%m")


@pytest.mark.parametrize("run_id", [1, 2])
@pytest.mark.parametrize("by", ["day", "week", "month"])
def test_pnl_by_period_sums_match_pandas_groupby(report_db: str, run_id: int, by: str) -> None:
    fills = _fills(report_db, run_id)
    expected = (
        fills.assign(group=_labels(fills["when"], by))
        .groupby("group")
        .agg(
            fills=("seq", "size"),
            quantity=("quantity", "sum"),
            notional=("notional", "sum"),
            commission=("commission", "sum"),
            slippage=("slippage", "sum"),
        )
    )
    got = pnl(report_db, run_id, by).set_index(by)
    assert got.index.tolist() == expected.index.tolist()
    assert len(got) > 1
    for name in expected.columns:
        np.testing.assert_allclose(got[name].to_numpy(float), expected[name].to_numpy(float))


@pytest.mark.parametrize("run_id", [1, 2])
@pytest.mark.parametrize("by", ["day", "month"])
def test_realised_pnl_by_period_matches_portfolio_snapshots(
    report_db: str, run_id: int, by: str
) -> None:
    """The portfolio books realised P&L and fees per bar; their change over each period
    is what the fills of that period realised."""
    snapshots = snapshots_frame(connect(report_db, create=False), run_id)
    when = pd.to_datetime(snapshots["ts_event"], utc=True)
    last = snapshots.assign(group=_labels(when, by)).groupby("group")[["realised_pnl", "fees"]]
    change = last.last().diff()
    change.iloc[0] = last.last().iloc[0]
    got = pnl(report_db, run_id, by).set_index(by)
    traded = change.loc[got.index]
    np.testing.assert_allclose(got["realised_pnl"], traded["realised_pnl"], atol=1e-6)
    np.testing.assert_allclose(got["commission"], traded["fees"], atol=1e-6)
    np.testing.assert_allclose(got["net_pnl"], got["realised_pnl"] - got["commission"])
    # Periods without fills realise nothing.
    quiet = change.drop(index=got.index)
    assert np.allclose(quiet.to_numpy(), 0.0)
    assert got["realised_pnl"].abs().sum() > 0


def test_pnl_by_side_splits_the_totals(report_db: str) -> None:
    fills = _fills(report_db, 1)
    got = pnl(report_db, 1, "side").set_index("side")
    assert got.index.tolist() == ["buy", "sell"]
    for side in ("buy", "sell"):
        mine = fills[fills["side"] == side]
        assert got.loc[side, "fills"] == len(mine)
        assert got.loc[side, "notional"] == pytest.approx(mine["notional"].sum())
    by_month = pnl(report_db, 1, "month")
    assert got["realised_pnl"].sum() == pytest.approx(by_month["realised_pnl"].sum())


def test_pnl_filters_select_fills_but_keep_the_cost_basis(report_db: str) -> None:
    everything = pnl(report_db, 1, "day").set_index("day")
    later_day = everything.index[1]
    later = pnl(report_db, 1, "day", since=later_day).set_index("day")
    assert later.index.tolist() == everything.index[1:].tolist()
    np.testing.assert_allclose(later["realised_pnl"], everything["realised_pnl"].iloc[1:])
    buys = pnl(report_db, 1, "month", side="buy")
    fills = _fills(report_db, 1)
    assert buys["fills"].sum() == (fills["side"] == "buy").sum()


def test_pnl_by_agent_is_the_shapley_credit(report_db: str) -> None:
    shapley = shapley_frame(connect(report_db, create=False), 1)
    expected = shapley.groupby("agent_index")["phi"].agg(["sum", "size", "mean"])
    got = pnl(report_db, 1, "agent").set_index("agent_index")
    assert got["agent_id"].tolist() == ["oracle-0", "contrarian-1", "random-2"]
    np.testing.assert_allclose(got["shapley_pnl"], expected["sum"])
    np.testing.assert_allclose(got["mean_phi"], expected["mean"])
    assert got["steps"].tolist() == expected["size"].tolist()
    assert got["share"].sum() == pytest.approx(1.0)
    assert got.loc[0, "shapley_pnl"] > 0 > got.loc[1, "shapley_pnl"]


def test_pnl_by_agent_of_a_run_without_agents_is_empty(report_db: str) -> None:
    assert pnl_rows(connect(report_db, create=False), 2, "agent") == []


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"by": "hour"}, ConfigError, "--by must be one of"),
        ({"by": "agent", "side": "buy"}, ConfigError, "--side does not apply"),
        ({"by": "day", "since": "soon"}, ConfigError, "--since"),
        ({"by": "month", "side": "short"}, ConfigError, "--side"),
        ({"by": "agent", "since": "2021-01-02", "until": "2021-01-01"}, ConfigError, "before"),
        ({"by": "month", "run": 99}, RunNotFoundError, "no run with id 99"),
    ],
)
def test_pnl_bad_input_is_reported(report_db: str, kwargs: dict, error: type, message: str) -> None:
    run = kwargs.pop("run", 1)
    with pytest.raises(error, match=message):
        pnl_rows(connect(report_db, create=False), run, **kwargs)
