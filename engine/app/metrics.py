"""Performance statistics of a run, from its per-bar equity and its fills.

Annualisation uses the bars actually present: ``periods_per_year`` is the
number of bar-to-bar returns divided by the years the run spans (first to
last bar), so a market that trades 8 bars a day on 242 days a year is
annualised with about 1,936 periods, whatever the wall-clock gaps.

* returns ``r_t = equity_t / equity_{t-1} - 1``, with ``equity_{-1}`` the
  initial cash;
* Sharpe ``mean(r) / std(r, ddof=1) * sqrt(P)`` (risk-free rate 0);
* Sortino ``mean(r) * P / (sqrt(mean(min(r, 0)^2)) * sqrt(P))``;
* CAGR ``(equity_end / initial) ** (P / n) - 1`` over ``n`` returns;
* max drawdown ``min(equity / running max - 1)``, the initial cash included;
* Calmar ``CAGR / |max drawdown|``;
* a trade is a round trip from flat to flat (a reversal closes one trade and
  opens the next); its P&L is net of the commissions of its fills, a fill
  that reverses the position splitting its commission pro rata; win rate is
  the share of closed trades with P&L > 0;
* exposure is the share of bars with a position; turnover is traded
  notional divided by the average equity.

:func:`window_summaries` gives the same statistics for parts of a run (the bars a
checkpoint was trained on, the bars after): each part starts from the equity at the end
of the bar before it, counts the fills stamped inside it, and the round trips that close
inside it (a trip opened earlier keeps its whole P&L, as in the run's own trade list).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from brokers.costs import YEAR_NS  # a year of calendar time, as rates are charged
from engine.app.significance import edge_figures
from engine.core import accounting

__all__ = [
    "Summary",
    "bar_returns",
    "compute_summary",
    "edge_of",
    "round_trip_closes",
    "round_trips",
    "window_summaries",
]


@dataclass(frozen=True)
class Summary:
    bars: int
    bar_gaps: int
    start_ns: int
    end_ns: int
    initial_equity: float
    final_equity: float
    total_return: float
    cagr: float
    annual_volatility: float
    sharpe: float
    sortino: float
    max_drawdown: float
    calmar: float
    trades: int
    win_rate: float
    exposure: float
    turnover: float
    fees: float
    periods_per_year: float
    #: holding costs charged by the portfolio (brokers.portfolio); fees are commissions
    borrow_fees: float = 0.0
    financing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def round_trips(
    side: np.ndarray, quantity: np.ndarray, price: np.ndarray, commission: np.ndarray
) -> np.ndarray:
    """P&L of each closed round trip, net of commissions (see the module docstring)."""
    return round_trip_closes(side, quantity, price, commission)[0]


def round_trip_closes(
    side: np.ndarray, quantity: np.ndarray, price: np.ndarray, commission: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(P&L of each closed round trip, index of the fill that closed it), booked by
    average cost (:func:`engine.core.accounting.round_trips`)."""
    trips, _open = accounting.round_trips(
        range(len(side)), side.tolist(), quantity.tolist(), price.tolist(), commission.tolist()
    )
    return (
        np.array([t.pnl for t in trips], dtype=float),
        np.array([t.close_index for t in trips], dtype=np.int64),
    )


def compute_summary(
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    initial_equity: float,
    fills: dict[str, np.ndarray],
    fees: float,
    bar_gaps: int = 0,
    trips: np.ndarray | None = None,
    *,
    borrow_fees: float = 0.0,
    financing: float = 0.0,
) -> Summary:
    """All statistics of a run; NaN where a statistic is undefined (too few bars, no trades).

    ``trips``: the round trips' P&L when the caller has them (by default they are made
    from ``fills``, which must then start flat). ``fees`` (commissions), ``borrow_fees``
    and ``financing`` are the run's totals, reported as they are."""
    n = len(equity)
    nan = float("nan")
    if n == 0:
        return Summary(
            0,
            bar_gaps,
            0,
            0,
            initial_equity,
            initial_equity,
            0.0,
            nan,
            nan,
            nan,
            nan,
            0.0,
            nan,
            0,
            nan,
            0.0,
            0.0,
            fees,
            nan,
            borrow_fees,
            financing,
        )
    returns = bar_returns(equity, initial_equity)
    span_years = (int(ts[-1]) - int(ts[0])) / YEAR_NS
    periods = (n - 1) / span_years if span_years > 0 else nan
    final = float(equity[-1])
    total = final / initial_equity - 1.0
    years = n / periods if periods == periods and periods > 0 else nan
    cagr = (final / initial_equity) ** (1.0 / years) - 1.0 if years == years and final > 0 else nan
    std = float(np.std(returns, ddof=1)) if n > 1 else nan
    mean = float(np.mean(returns))
    ann_vol = std * math.sqrt(periods) if periods == periods else nan
    sharpe = mean / std * math.sqrt(periods) if std and std == std and periods == periods else nan
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
    sortino = (
        mean * periods / (downside * math.sqrt(periods))
        if downside > 0 and periods == periods
        else nan
    )
    peaks = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    drawdown = float(np.min(equity / peaks - 1.0))
    calmar = cagr / abs(drawdown) if drawdown < 0 and cagr == cagr else nan
    if trips is None:
        trips = round_trips(fills["side"], fills["quantity"], fills["price"], fills["commission"])
    win_rate = float(np.mean(trips > 0)) if len(trips) else nan
    exposure = float(np.mean(position != 0.0))
    traded = float(np.sum(fills["quantity"] * fills["price"])) if len(fills["price"]) else 0.0
    turnover = traded / float(np.mean(equity)) if np.mean(equity) > 0 else nan
    return Summary(
        bars=n,
        bar_gaps=bar_gaps,
        start_ns=int(ts[0]),
        end_ns=int(ts[-1]),
        initial_equity=initial_equity,
        final_equity=final,
        total_return=total,
        cagr=cagr,
        annual_volatility=ann_vol,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown=drawdown,
        calmar=calmar,
        trades=len(trips),
        win_rate=win_rate,
        exposure=exposure,
        turnover=turnover,
        fees=fees,
        periods_per_year=periods,
        borrow_fees=borrow_fees,
        financing=financing,
    )


def bar_returns(equity: np.ndarray, initial_equity: float) -> np.ndarray:
    """r_t = equity_t / equity_{t-1} - 1 with equity_{-1} the initial equity (the
    summary's returns)."""
    previous = np.concatenate([[initial_equity], equity[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = equity / previous - 1.0
    return out


def edge_of(
    equity: np.ndarray,
    initial_equity: float,
    periods_per_year: float,
    marks: np.ndarray | None,
    seed: int,
) -> dict[str, Any]:
    """:func:`engine.app.significance.edge_figures` of an equity curve: bootstrap intervals of
    Sharpe and total return, PSR against 0 and against buy-and-hold of the whole account
    over the same bars (``marks``: the close before the curve's first bar, then the close
    of each of its bars, so that the benchmark's returns line up with the curve's)."""

    benchmark = None if marks is None or len(marks) < 2 else np.diff(marks) / marks[:-1]
    figures = edge_figures(
        bar_returns(equity, initial_equity), periods_per_year, benchmark, seed=seed
    )
    return dict(figures)


def window_summaries(
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    initial_equity: float,
    fills: dict[str, np.ndarray],
    windows: dict[str, tuple[int, int]],
    gaps: Callable[[np.ndarray], int] | None = None,
    marks: np.ndarray | None = None,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Statistics of the bars whose end lies in each window ``name -> (first_ns, last_ns)``
    (inclusive); windows without a bar are left out. ``fills`` carries ``ts`` besides the
    columns of :func:`compute_summary`; ``gaps(ts)`` counts a window's missing bars.
    With ``marks`` (the close before the first bar, then every bar's close: one more than
    ``ts``) each window also gets ``edge`` (:func:`edge_of`).
    """
    fill_ts = np.asarray(fills["ts"], dtype=np.int64)
    trips, closing = round_trip_closes(
        fills["side"], fills["quantity"], fills["price"], fills["commission"]
    )
    trip_ts = fill_ts[closing] if len(closing) else np.zeros(0, dtype=np.int64)
    out: dict[str, dict[str, Any]] = {}
    for name, (lo_ns, hi_ns) in windows.items():
        lo = int(np.searchsorted(ts, lo_ns, side="left"))
        hi = int(np.searchsorted(ts, hi_ns, side="right"))
        if hi <= lo:
            continue
        inside = (fill_ts >= ts[lo]) & (fill_ts <= ts[hi - 1])
        part = {key: np.asarray(value)[inside] for key, value in fills.items()}
        closed = (trip_ts >= ts[lo]) & (trip_ts <= ts[hi - 1])
        summary = compute_summary(
            ts[lo:hi],
            equity[lo:hi],
            position[lo:hi],
            float(equity[lo - 1]) if lo > 0 else initial_equity,
            part,
            float(np.sum(part["commission"])),
            gaps(ts[lo:hi]) if gaps is not None else 0,
            trips=trips[closed],
        )
        out[name] = summary.to_dict()
        if marks is not None:
            out[name]["edge"] = edge_of(
                equity[lo:hi],
                float(equity[lo - 1]) if lo > 0 else initial_equity,
                summary.periods_per_year,
                marks[lo : hi + 1],
                seed,
            )
    return out
