"""A universe's report: the account's rows, each symbol's P&L contribution, positions.

A universe's run stores one snapshot per bar per symbol; the account's row of a time
slice is its last snapshot (:func:`account_rows`), from which the equity, drawdown and
monthly-returns charts are drawn as for one instrument. The P&L contribution of each
symbol comes from the run's summary (``symbols``, :mod:`engine.app.universe_results`);
the heatmap shows each symbol's position value (units x mark) as a share of the
account's equity, over time, averaged into display buckets.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from reporting.downsample import DEFAULT_BUCKETS
from reporting.figures import LONG, SHORT

__all__ = ["account_rows", "position_heatmap", "symbol_pnl_figure"]


def account_rows(snapshots: pd.DataFrame) -> pd.DataFrame:
    """The account per time slice: the last snapshot of each bar end time."""
    return snapshots.drop_duplicates("ts_event", keep="last").reset_index(drop=True)


def symbol_pnl_figure(symbols: dict[str, dict[str, Any]]) -> go.Figure:
    """Each symbol's P&L contribution (net of its fees), largest first."""
    ordered = sorted(symbols.items(), key=lambda item: item[1]["pnl"], reverse=True)
    names = [name for name, _ in ordered]
    pnl = [figures["pnl"] for _, figures in ordered]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=pnl,
            marker={"color": [LONG if value >= 0 else SHORT for value in pnl]},
            customdata=[[f["trades"], f["fees"]] for _, f in ordered],
            hovertemplate=(
                "%{x}: %{y:,.2f}<br>%{customdata[0]} trades, fees %{customdata[1]:,.2f}"
                "<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title={"text": "P&L contribution by symbol (net of fees)", "x": 0.01},
        template="plotly_white",
        height=380,
        yaxis={"title": "P&L"},
    )
    return fig


def position_heatmap(snapshots: pd.DataFrame, buckets: int = DEFAULT_BUCKETS) -> go.Figure:
    """Each symbol's position value as a share of equity, symbols by time."""
    frame = snapshots.assign(
        share=snapshots["position"] * snapshots["mark_price"] / snapshots["equity"]
    )
    table = frame.pivot_table(index="ts_event", columns="symbol", values="share", sort=False)
    table = table.sort_index().ffill().fillna(0.0)
    symbols = list(dict.fromkeys(snapshots["symbol"]))
    table = table[symbols]
    edges = np.linspace(0, len(table), min(buckets, len(table)) + 1).astype(int)
    chunks = [table.iloc[a:b] for a, b in itertools.pairwise(edges) if b > a]
    values = np.array([chunk.mean().to_numpy() for chunk in chunks]).T
    times = pd.to_datetime([int(chunk.index[0]) for chunk in chunks], utc=True)
    limit = float(np.nanmax(np.abs(values))) if values.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            x=times,
            y=symbols,
            z=values,
            zmin=-limit,
            zmax=limit,
            colorscale="RdBu",
            colorbar={"title": "share of equity"},
            hovertemplate="%{y} %{x}: %{z:.1%}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": "Positions (value / equity)", "x": 0.01},
        template="plotly_white",
        height=max(260, 28 * len(symbols) + 120),
    )
    return fig
