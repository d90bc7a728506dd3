"""The report's HTML tables: the run's metrics (with the parts relative to a checkpoint's
training window), its denied and rejected orders, and its round-trip trade list.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from engine.core.events import reason_kind

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "MAX_TRADE_ROWS",
    "METRICS",
    "METRIC_KINDS",
    "OPEN_TRADE_ROWS",
    "fmt",
    "metrics_table",
    "refusals_table",
    "time_text",
    "trades_table",
]

# The trade list shows at most this many round trips (the latest); the database has all.
MAX_TRADE_ROWS = 2_000
# Up to this many, the trade list is shown unfolded.
OPEN_TRADE_ROWS = 200

METRICS = (
    ("total_return", "total return", "pct"),
    ("cagr", "CAGR", "pct"),
    ("annual_volatility", "annual volatility", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("sortino", "Sortino", "num"),
    ("max_drawdown", "max drawdown", "pct"),
    ("calmar", "Calmar", "num"),
    ("trades", "trades (round trips)", "int"),
    ("win_rate", "win rate", "pct"),
    ("exposure", "exposure (time in market)", "pct"),
    ("turnover", "turnover (x mean equity)", "num"),
    ("fees", "fees", "money"),
    ("borrow_fees", "borrow fees (shorts)", "money"),
    ("financing", "financing (negative cash)", "money"),
    ("initial_equity", "initial equity", "money"),
    ("final_equity", "final equity", "money"),
    ("bars", "bars", "int"),
    ("bar_gaps", "missing bars inside sessions", "int"),
    ("periods_per_year", "bars per year (annualisation)", "int"),
)

#: How each metric of :data:`METRICS` is formatted (:func:`fmt`), by key.
METRIC_KINDS = {key: kind for key, _label, kind in METRICS}


def fmt(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if kind == "pct":
        return f"{value:.2%}"
    if kind == "int":
        return f"{round(value):,}"
    if kind == "money":
        return f"{value:,.2f}"
    return f"{value:,.2f}"


def time_text(ns: int | None) -> str:
    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")


WINDOW_TITLES = {
    "before_training": "before training",
    "in_sample": "IN SAMPLE (trained on)",
    "validation": "validation (chose it)",
    "out_of_sample": "out of sample",
}


def metrics_table(summary: dict[str, Any]) -> str:
    """The run's summary as an HTML table (the figures ``emarl backtest`` prints); a run
    that traded with a checkpoint gets a column per part of its bars (in sample, out of
    sample) beside the whole run's."""
    windows: dict[str, dict[str, Any]] = (summary.get("training") or {}).get("windows") or {}
    columns = [summary, *windows.values()]
    head = ""
    if windows:
        head = "<tr><th></th><th>whole run</th>" + "".join(
            f"<th>{html.escape(WINDOW_TITLES.get(name, name))}</th>" for name in windows
        )
        head += "</tr><tr><th>period (UTC)</th>" + "".join(
            f"<td>{time_text(c.get('start_ns'))} .. {time_text(c.get('end_ns'))}</td>"
            for c in columns
        )
        head += "</tr>"
    rows = [
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{fmt(c.get(key), kind)}</td>" for c in columns)
        + "</tr>"
        for key, label, kind in METRICS
        if key in summary
    ]
    blanks = "<td></td>" * (len(columns) - 1)
    rows += [
        f"<tr><th>{label}</th><td>{value}</td>{blanks}</tr>" for label, value in _data_rows(summary)
    ]
    panel = summary.get("panel") or {}
    if panel.get("steps"):
        rows.append(
            "<tr><th>effective number of agents (mean 1/Σw²)</th>"
            f"<td>{fmt(panel['effective_agents'], 'num')}</td>{blanks}</tr>"
        )
        rows.append(
            "<tr><th>share prices, lowest .. highest</th>"
            f"<td>{panel['share_price_min']:.3g} .. {panel['share_price_max']:.3g}</td>"
            f"{blanks}</tr>"
        )
        rows.append(
            "<tr><th>mean exposure (share of max position)</th>"
            f"<td>{fmt(panel['exposure_mean'], 'pct')}</td>{blanks}</tr>"
        )
    return '<table class="metrics">' + head + "".join(rows) + "</table>"


def _data_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What loading changed in the data (``summary["data"]``), a row per kind of change."""
    changes = summary.get("data") or {}
    rows = [
        (f"rows {what} as loaded: {html.escape(problem)}", f"{count:,}")
        for what in ("dropped", "filled")
        for problem, count in (changes.get(what) or {}).items()
    ]
    if changes.get("sorted_rows"):
        rows.append(("rows sorted into time order as loaded", f"{changes['sorted_rows']:,}"))
    if changes.get("resampled_from_minutes"):
        rows.append(("resampled from bars of (minutes)", str(changes["resampled_from_minutes"])))
    if changes.get("epoch_unit"):
        rows.append(("timestamps read as Unix times (UTC) in", html.escape(changes["epoch_unit"])))
    return rows


def refusals_table(orders: dict[str, Any] | None, refused: pd.DataFrame) -> str:
    """Orders sent, and denied / rejected ones counted by kind of reason."""

    rows = []
    if orders is not None:
        rows.append(f"<tr><th>orders sent</th><td>{orders.get('sent', 0):,}</td></tr>")
    for event in ("denied", "rejected"):
        part = refused[refused["event"] == event] if len(refused) else refused
        counts = part["reason"].map(reason_kind).value_counts() if len(part) else {}
        rows.append(f"<tr><th>{event}</th><td>{len(part):,}</td></tr>")
        for kind, count in sorted(dict(counts).items()):
            rows.append(
                f'<tr><th style="padding-left:24px">{html.escape(str(kind))}</th>'
                f"<td>{int(count):,}</td></tr>"
            )
    body = '<table class="metrics">' + "".join(rows) + "</table>"
    if len(refused):
        first = refused.iloc[0]
        body += (
            f'<p class="note">First refusal, {time_text(int(first["ts_event"]))} UTC: '
            f"{html.escape(str(first['reason']))}</p>"
        )
    if orders is not None and orders.get("no_fills"):
        body += f'<p class="note">No fills: {html.escape(str(orders["no_fills"]))}</p>'
    return body


def trades_table(trips: pd.DataFrame, open_position: float, limit: int = MAX_TRADE_ROWS) -> str:
    """Round trips as an HTML table, the latest ``limit`` of them."""
    shown = trips.tail(limit)
    head = (
        "<tr><th>#</th><th>entry (UTC)</th><th>exit (UTC)</th><th>direction</th>"
        "<th>quantity</th><th>entry price</th><th>exit price</th><th>P&amp;L</th>"
        "<th>return %</th><th>fills</th></tr>"
    )
    body = []
    start = len(trips) - len(shown)
    for number, row in enumerate(shown.itertuples(index=False), start=start + 1):
        colour = "pos" if row.pnl > 0 else "neg" if row.pnl < 0 else ""
        body.append(
            f"<tr><td>{number}</td><td>{time_text(row.entry_ns)}</td><td>{time_text(row.exit_ns)}</td>"
            f"<td>{row.direction}</td><td>{row.quantity:,.0f}</td>"
            f"<td>{row.entry_price:.4f}</td><td>{row.exit_price:.4f}</td>"
            f'<td class="{colour}">{row.pnl:,.2f}</td><td>{row.return_pct:+.3f}</td>'
            f"<td>{row.fills}</td></tr>"
        )
    notes = []
    if start:
        notes.append(
            f"Showing the latest {len(shown):,} of {len(trips):,} round trips; "
            "every fill is in the database (emarl trades)."
        )
    if open_position:
        notes.append(f"A position of {open_position:,.0f} is still open after the last fill.")
    note = "".join(f'<p class="note">{html.escape(text)}</p>' for text in notes)
    # A long list starts folded: the browser then skips laying it out when the page opens.
    opened = " open" if len(shown) <= OPEN_TRADE_ROWS else ""
    return (
        note
        + f"<details{opened}><summary>{len(shown):,} round trips</summary>"
        + '<div class="scroll"><table class="trades"><thead>'
        + head
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table></div></details>"
    )
