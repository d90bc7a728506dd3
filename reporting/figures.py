"""The report's plotly figures, one function per chart.

Inputs are the frames of :mod:`storage.frames` (times as int ns UTC). Times
become float milliseconds since the epoch, which plotly draws on a date axis
and serialises as compact binary arrays. Dense series go through
:mod:`reporting.downsample`; fills (trade markers) are always drawn exactly.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from reporting.downsample import DEFAULT_BUCKETS, bucket_means, minmax_indices
from reporting.trades import fill_kinds
from storage.training import LEARNING_CURVES

__all__ = [
    "agent_actions_figure",
    "bubbles_figure",
    "equity_figure",
    "learning_curves_figure",
    "monthly_returns_figure",
    "monthly_returns_table",
    "price_figure",
    "refused_markers",
    "shade_training_window",
    "shapley_figure",
    "valuations_figure",
    "walk_forward_figure",
    "weights_figure",
]

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")
LONG, SHORT = "#1a9850", "#d73027"
# Markers drawn at once per trace: every fill is in the figure, and zooming in shows
# every one in view, but drawing tens of thousands of SVG markers would stall the page.
MAX_MARKERS = 1_500
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _ms(ts_ns: Any) -> np.ndarray:
    return np.asarray(ts_ns, dtype=np.int64) / 1e6


def _layout(fig: go.Figure, title: str, height: int = 420, **extra: Any) -> go.Figure:
    layout: dict[str, Any] = {
        "title": {"text": title, "x": 0.01},
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "legend": {"orientation": "h", "y": -0.12},
        "hovermode": "x unified",
    }
    layout.update(extra)
    fig.update_layout(**layout)
    return fig


def _thin_line(
    ts_ns: np.ndarray, y: np.ndarray, name: str, buckets: int, **style: Any
) -> dict[str, Any]:
    keep = minmax_indices(y, buckets)
    return {
        "type": "scatter",
        "mode": "lines",
        "x": _ms(ts_ns[keep]),
        "y": np.asarray(y, dtype=float)[keep],
        "name": name,
        **style,
    }


def price_figure(
    snapshots: pd.DataFrame,
    fills: pd.DataFrame,
    symbol: str,
    buckets: int = DEFAULT_BUCKETS,
) -> go.Figure:
    """The mark price (close) with every fill marked as a long or short entry or exit."""

    ts = snapshots["ts_event"].to_numpy()
    fig = go.Figure()
    fig.add_trace(
        _thin_line(ts, snapshots["mark_price"].to_numpy(), "close", buckets, line={"width": 1})
    )
    if len(fills):
        side = fills["side"].to_numpy()
        quantity = fills["quantity"].to_numpy(dtype=float)
        opens, closes = fill_kinds(side, quantity)
        buy = side == "buy"
        groups = (
            ("long entry", opens & buy, "triangle-up", LONG),
            ("short entry", opens & ~buy, "triangle-down", SHORT),
            ("long exit", closes & ~buy, "x", LONG),
            ("short exit", closes & buy, "x", SHORT),
        )
        for name, mask, symbol_name, colour in groups:
            if not mask.any():
                continue
            chosen = fills[mask]
            fig.add_trace(
                go.Scatter(
                    x=_ms(chosen["ts_event"].to_numpy()),
                    y=chosen["price"].to_numpy(dtype=float),
                    customdata=chosen["quantity"].to_numpy(dtype=float),
                    mode="markers",
                    name=name,
                    marker={
                        "symbol": symbol_name,
                        "color": colour,
                        "size": 8,
                        "maxdisplayed": MAX_MARKERS if mask.sum() > MAX_MARKERS else 0,
                    },
                    hovertemplate=f"{name}: %{{customdata:,}} @ %{{y:.4f}}<extra></extra>",
                )
            )
    return _layout(
        fig, f"{symbol}: price with entries and exits", 480, xaxis={"type": "date"}, yaxis={}
    )


TRAINING_FILL = "rgba(255, 193, 7, 0.16)"


VALIDATION_FILL = "rgba(33, 150, 243, 0.10)"


def shade_training_window(
    fig: go.Figure, first_ns: int, last_ns: int, validation: tuple[int, int] | None = None
) -> go.Figure:
    """Shade the bars a checkpoint was trained on (in sample), and the validation bars that
    chose it, on every panel of a time chart, with a label on the first."""
    grid = getattr(fig, "_grid_ref", None)
    where: dict[str, Any] = {"row": "all", "col": "all"} if grid is not None else {}
    fig.add_vrect(
        x0=float(first_ns) / 1e6,
        x1=float(last_ns) / 1e6,
        fillcolor=TRAINING_FILL,
        line_width=0,
        layer="below",
        **where,
    )
    if validation is not None:
        fig.add_vrect(
            x0=float(validation[0]) / 1e6,
            x1=float(validation[1]) / 1e6,
            fillcolor=VALIDATION_FILL,
            line_width=0,
            layer="below",
            **where,
        )
    fig.add_annotation(
        x=float(first_ns) / 1e6,
        y=1.0,
        xref="x",
        yref="paper",
        text="in sample: the checkpoint was trained on these bars",
        showarrow=False,
        xanchor="left",
        yanchor="bottom",
        font={"size": 11, "color": "#8a6d00"},
    )
    return fig


def refused_markers(
    fig: go.Figure, refused: pd.DataFrame, snapshots: pd.DataFrame, symbol: str = ""
) -> go.Figure:
    """Mark every denied or rejected order on a price chart, at the close of its bar."""

    if not len(refused):
        return fig
    ts = snapshots["ts_event"].to_numpy()
    marks = snapshots["mark_price"].to_numpy(dtype=float)
    at = np.clip(np.searchsorted(ts, refused["ts_event"].to_numpy(), side="right") - 1, 0, None)
    for event, colour in (("denied", "#6a1b9a"), ("rejected", "#455a64")):
        chosen = (refused["event"] == event).to_numpy()
        if not chosen.any():
            continue
        fig.add_trace(
            go.Scatter(
                x=_ms(refused["ts_event"].to_numpy()[chosen]),
                y=marks[at[chosen]],
                customdata=refused["reason"].to_numpy()[chosen],
                mode="markers",
                name=f"order {event}",
                marker={
                    "symbol": "circle-open",
                    "color": colour,
                    "size": 9,
                    "maxdisplayed": MAX_MARKERS if chosen.sum() > MAX_MARKERS else 0,
                },
                hovertemplate=f"order {event}: %{{customdata}}<extra></extra>",
            )
        )
    return fig


def equity_figure(
    snapshots: pd.DataFrame, initial_equity: float, buckets: int = DEFAULT_BUCKETS
) -> go.Figure:
    """Equity above, drawdown from the running peak (initial cash included) below."""

    ts = snapshots["ts_event"].to_numpy()
    equity = snapshots["equity"].to_numpy(dtype=float)
    peaks = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    drawdown = 100.0 * (equity / peaks - 1.0)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.05
    )
    fig.add_trace(_thin_line(ts, equity, "equity", buckets, line={"width": 1.2}), row=1, col=1)
    _add_drawdown(fig, ts, drawdown, buckets)
    fig.update_yaxes(title_text="equity", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return _layout(fig, "Equity and drawdown", 520)


def _add_drawdown(fig: go.Figure, ts: np.ndarray, drawdown: np.ndarray, buckets: int) -> None:
    """The drawdown panel (row 2) under an equity curve, on a date axis."""
    fig.add_trace(
        _thin_line(
            ts, drawdown, "drawdown %", buckets, line={"width": 1, "color": SHORT}, fill="tozeroy"
        ),
        row=2,
        col=1,
    )
    fig.update_xaxes(type="date")


def _agents(frame: pd.DataFrame) -> list[tuple[int, str, pd.DataFrame]]:
    out = []
    for index, group in frame.groupby("agent_index", sort=True):
        out.append((int(index), str(group["agent_id"].iloc[0]), group))
    return out


def agent_actions_figure(actions: pd.DataFrame, buckets: int = DEFAULT_BUCKETS) -> go.Figure:
    """Each agent's vote over time as colour: +1 bullish, 0 neutral, -1 bearish (the mean
    vote where several bars share a column)."""

    columns = []
    names = []
    for _, agent_id, group in _agents(actions):
        vote = group["action"].to_numpy(dtype=float) - 1.0
        columns.append(bucket_means(group["ts_event"].to_numpy(), vote, buckets))
        names.append(agent_id)
    # Every agent votes on every bar, so the buckets line up; trim any ragged end.
    width = min(len(means) for _, means in columns)
    z = np.vstack([means[:width] for _, means in columns])
    fig = go.Figure(
        go.Heatmap(
            x=_ms(columns[0][0][:width]),
            y=names,
            z=z,
            zmin=-1.0,
            zmax=1.0,
            colorscale=[[0.0, SHORT], [0.5, "#f7f7f7"], [1.0, LONG]],
            colorbar={"title": {"text": "vote"}, "tickvals": [-1, 0, 1]},
            hovertemplate="%{y}: %{z:.2f}<extra></extra>",
        )
    )
    return _layout(
        fig,
        "Agent actions (bullish +1, neutral 0, bearish -1)",
        160 + 60 * len(names),
        xaxis={"type": "date"},
        hovermode="closest",
    )


def weights_figure(valuations: pd.DataFrame, buckets: int = DEFAULT_BUCKETS) -> go.Figure:
    """Ensemble weights per agent, stacked (they sum to one)."""

    fig = go.Figure()
    for index, agent_id, group in _agents(valuations):
        xs, means = bucket_means(
            group["ts_event"].to_numpy(), group["weight"].to_numpy(dtype=float), buckets
        )
        colour = PALETTE[index % len(PALETTE)]
        fig.add_trace(
            go.Scatter(
                x=_ms(xs),
                y=means,
                name=agent_id,
                mode="lines",
                stackgroup="weights",
                line={"width": 0.5, "color": colour},
            )
        )
    return _layout(fig, "Ensemble weights (stacked)", 380, xaxis={"type": "date"})


def shapley_figure(shapley: pd.DataFrame, buckets: int = DEFAULT_BUCKETS) -> go.Figure:
    """Cumulative Shapley P&L credited to each agent."""

    fig = go.Figure()
    for index, agent_id, group in _agents(shapley):
        cumulative = np.cumsum(group["phi"].to_numpy(dtype=float))
        fig.add_trace(
            _thin_line(
                group["ts_event"].to_numpy(),
                cumulative,
                agent_id,
                buckets,
                line={"color": PALETTE[index % len(PALETTE)]},
            )
        )
    return _layout(fig, "Cumulative Shapley P&L per agent", 400, xaxis={"type": "date"})


def valuations_figure(valuations: pd.DataFrame, buckets: int = DEFAULT_BUCKETS) -> go.Figure:
    """Each agent's share price (log scale) and option value."""

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.07)
    for index, agent_id, group in _agents(valuations):
        ts = group["ts_event"].to_numpy()
        colour = PALETTE[index % len(PALETTE)]
        fig.add_trace(
            _thin_line(
                ts,
                group["share_price"].to_numpy(dtype=float),
                f"{agent_id} share price",
                buckets,
                line={"color": colour},
                legendgroup=agent_id,
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            _thin_line(
                ts,
                group["option_value"].to_numpy(dtype=float),
                f"{agent_id} option value",
                buckets,
                line={"color": colour, "dash": "dot"},
                legendgroup=agent_id,
            ),
            row=2,
            col=1,
        )
    fig.update_xaxes(type="date")
    fig.update_yaxes(title_text="share price (log)", type="log", row=1, col=1)
    fig.update_yaxes(title_text="option value", row=2, col=1)
    return _layout(fig, "Share prices and option values per agent", 560)


def bubbles_figure(
    valuations: pd.DataFrame, threshold: float | None, buckets: int = DEFAULT_BUCKETS
) -> go.Figure:
    """Bubble coefficients per agent (log scale) with the penalty threshold θ (None: the
    run did not record it, as in runs stored before it was; no line is drawn)."""

    fig = go.Figure()
    for index, agent_id, group in _agents(valuations):
        fig.add_trace(
            _thin_line(
                group["ts_event"].to_numpy(),
                group["bubble"].to_numpy(dtype=float),
                agent_id,
                buckets,
                line={"color": PALETTE[index % len(PALETTE)]},
            )
        )
    if threshold is not None:
        fig.add_hline(
            y=threshold,
            line={"dash": "dash", "color": "#444"},
            annotation_text=f"threshold θ = {threshold:g}",
            annotation_position="top left",
        )
    return _layout(
        fig,
        "Bubble coefficients (weight / target weight)",
        400,
        xaxis={"type": "date"},
        yaxis={"type": "log", "title": {"text": "bubble (log)"}},
    )


def monthly_returns_table(snapshots: pd.DataFrame, initial_equity: float) -> pd.DataFrame:
    """Return (%) of each calendar month (UTC) from month-end equity, years by months.

    The first month is measured from the initial cash; months without bars are NaN.
    """

    equity = pd.Series(
        snapshots["equity"].to_numpy(dtype=float),
        index=pd.to_datetime(snapshots["ts_event"].to_numpy(dtype=np.int64), utc=True),
    )
    month_end = equity.groupby([equity.index.year, equity.index.month]).last()
    previous = month_end.shift(1)
    previous.iloc[0] = initial_equity
    returns = 100.0 * (month_end / previous - 1.0)
    table = returns.unstack(level=1).reindex(columns=range(1, 13))
    table.index.name = "year"
    table.columns = list(MONTHS)
    return table


def monthly_returns_figure(table: pd.DataFrame) -> go.Figure:
    """A year-by-month heatmap of :func:`monthly_returns_table`."""

    z = table.to_numpy(dtype=float)
    text = np.where(np.isnan(z), "", np.char.mod("%.1f%%", np.nan_to_num(z)))
    limit = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
    fig = go.Figure(
        go.Heatmap(
            x=list(table.columns),
            y=[str(year) for year in table.index],
            z=z,
            text=text,
            texttemplate="%{text}",
            zmin=-limit,
            zmax=limit,
            colorscale=[[0.0, SHORT], [0.5, "#f7f7f7"], [1.0, LONG]],
            colorbar={"title": {"text": "%"}},
            hovertemplate="%{y} %{x}: %{z:.2f}%<extra></extra>",
            xgap=2,
            ygap=2,
        )
    )
    return _layout(
        fig,
        "Monthly returns (%)",
        140 + 28 * len(table.index),
        yaxis={"autorange": "reversed", "type": "category"},
        hovermode="closest",
    )


def learning_curves_figure(metrics: pd.DataFrame) -> go.Figure:
    """Training curves, one panel per metric against the update number.

    ``metrics`` has an ``update`` column and any of ``LEARNING_CURVES``
    (episode return, policy and value loss, entropy, approximate KL, clip
    fraction, explained variance); other columns are ignored. Raises
    ``ValueError`` when ``update`` or every metric is missing.
    """

    if "update" not in metrics.columns:
        raise ValueError("learning curves need an 'update' column")
    present = [name for name in LEARNING_CURVES if name in metrics.columns]
    if not present:
        raise ValueError(
            f"learning curves need at least one of {', '.join(LEARNING_CURVES)}; "
            f"got columns {', '.join(map(str, metrics.columns))}"
        )
    frame = metrics.sort_values("update")
    update = frame["update"].to_numpy(dtype=float)
    columns = 2
    rows = -(-len(present) // columns)
    fig = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[name.replace("_", " ") for name in present],
        vertical_spacing=0.12 if rows > 1 else 0.1,
    )
    for i, name in enumerate(present):
        values = frame[name].to_numpy(dtype=float)
        # NaN marks an update in which no episode ended: draw the updates that have a value
        # (a NaN between two points would break the line, and isolated points draw nothing)
        finite = np.flatnonzero(np.isfinite(values))
        keep = finite[minmax_indices(values[finite])]
        fig.add_trace(
            {
                "type": "scatter",
                "mode": "lines+markers" if len(keep) <= 60 else "lines",
                "x": update[keep],
                "y": values[keep],
                "name": name,
                "line": {"color": PALETTE[i % len(PALETTE)]},
                "marker": {"size": 4},
            },
            row=i // columns + 1,
            col=i % columns + 1,
        )
        if not len(finite):
            fig.add_annotation(
                text="no value yet",
                showarrow=False,
                xref=f"x{i + 1 if i else ''} domain",
                yref=f"y{i + 1 if i else ''} domain",
                x=0.5,
                y=0.5,
            )
    fig.update_xaxes(title_text="update")
    return _layout(fig, "Learning curves", 260 * rows + 60, showlegend=False, hovermode="closest")


def walk_forward_figure(
    curve: pd.DataFrame, initial_equity: float, buckets: int = DEFAULT_BUCKETS
) -> go.Figure:
    """The stitched out-of-sample equity of a walk-forward, one colour per fold, with the
    drawdown from its running peak (initial cash included) below.

    ``curve`` is :func:`storage.query.walk_forward_equity`'s frame (``time``, ``fold``,
    ``equity``). Each fold's line starts at the previous fold's last point, so the curve
    is drawn unbroken.
    """

    ts = curve["time"].astype("int64").to_numpy()
    fold = curve["fold"].to_numpy(dtype=np.int64)
    equity = curve["equity"].to_numpy(dtype=float)
    peaks = np.maximum.accumulate(np.concatenate([[initial_equity], equity]))[1:]
    drawdown = 100.0 * (equity / peaks - 1.0)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.68, 0.32], vertical_spacing=0.05
    )
    starts: list[int] = []
    if len(fold):
        starts = np.flatnonzero(np.concatenate([[True], fold[1:] != fold[:-1]])).tolist()
    for lo, hi in itertools.pairwise([*starts, len(fold)] if starts else []):
        number = int(fold[lo])
        colour = PALETTE[number % len(PALETTE)]
        first = max(lo - 1, 0)  # join the previous fold's last point
        fig.add_trace(
            _thin_line(
                ts[first:hi],
                equity[first:hi],
                f"fold {number}",
                buckets,
                line={"width": 1.2, "color": colour},
                legendgroup=f"fold-{number}",
            ),
            row=1,
            col=1,
        )
    _add_drawdown(fig, ts, drawdown, buckets)
    fig.update_yaxes(title_text="equity (stitched)", row=1, col=1)
    fig.update_yaxes(title_text="drawdown %", row=2, col=1)
    return _layout(fig, "Stitched out-of-sample equity, by fold", 520)
