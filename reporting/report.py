"""One self-contained HTML report per run.

:func:`build_report` reads a stored run and returns the HTML: a header, the
metrics table, then the charts that have data (price with entries and exits,
equity and drawdown, monthly returns, and for runs with agents their actions,
ensemble weights, cumulative Shapley P&L, share prices and option values,
bubble coefficients), and the round-trip trade list. Sections without data
are left out with a one-line note. plotly.js is inlined, so the file opens
with no network. Once every chart is drawn the page sets
``window.emarlReport = {ready: true, charts: N, renderMs, readyAtMs}`` (the
drawing time, and the time since navigation start, in milliseconds).
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plotly.offline import get_plotlyjs

from reporting import figures, universe
from reporting.downsample import DEFAULT_BUCKETS
from reporting.tables import (
    METRIC_KINDS,
    fmt,
    metrics_table,
    refusals_table,
    time_text,
    trades_table,
)
from reporting.trades import round_trips_frame
from storage.frames import (
    agent_actions_frame,
    feed_integrity,
    fills_frame,
    last_stored_ns,
    refused_orders_frame,
    run_info,
    shapley_frame,
    snapshots_frame,
    valuations_frame,
)
from storage.models import RunStatus
from storage.query import strategy_label, sweep_info, walk_forward_equity, walk_forward_rows

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    from sqlalchemy import Engine

__all__ = [
    "Section",
    "build_report",
    "render_html",
    "training_report",
    "walk_forward_report",
    "write_report",
]


class Section:
    """A titled part of the report: a figure, raw HTML, or a note saying why it is empty."""

    def __init__(
        self,
        title: str,
        *,
        figure: go.Figure | None = None,
        body: str = "",
        note: str = "",
    ) -> None:
        self.title = title
        self.figure = figure
        self.body = body
        self.note = note


def _bubble_threshold(info: dict[str, Any]) -> float | None:
    """The θ the run's meta-investor used: its panel summary's (a finished run), else its
    scenario's explicit ``[strategy.meta] bubble_threshold``; None when neither says."""
    panel = (info.get("summary") or {}).get("panel") or {}
    if "bubble_threshold" in panel:
        return float(panel["bubble_threshold"])
    meta = (info.get("config") or {}).get("strategy", {}).get("meta", {}) or {}
    return float(meta["bubble_threshold"]) if "bubble_threshold" in meta else None


def run_sections(
    engine: Engine, run: int | str | None = "latest", *, buckets: int = DEFAULT_BUCKETS
) -> tuple[dict[str, Any], list[Section]]:
    """The run row and the report's sections for a stored run."""

    info = run_info(engine, run)
    run_id = int(info["id"])
    summary = info["summary"]
    symbol = str(info["symbol"])
    trained = (info.get("trained_first_ns"), info.get("trained_last_ns"))
    held_out = (summary.get("training") or {}).get("validation")

    def shaded(figure: go.Figure) -> go.Figure:
        """Every time chart shades the bars the checkpoint was trained on (and the
        validation bars that chose it)."""
        if trained[0] is None or trained[1] is None:
            return figure
        return figures.shade_training_window(
            figure, int(trained[0]), int(trained[1]), tuple(held_out) if held_out else None
        )

    initial = float(
        summary.get("initial_equity") or info["config"].get("broker", {}).get("initial_cash", 1.0)
    )
    sections: list[Section] = []
    if summary:
        sections.append(Section("Metrics", body=metrics_table(summary)))
    else:
        sections.append(
            Section("Metrics", note=f"The run is {info['status']}; it stored no summary.")
        )
    snapshots = snapshots_frame(engine, run_id)
    fills = fills_frame(engine, run_id)
    refused = refused_orders_frame(engine, run_id)
    per_symbol = summary.get("symbols")
    if len(snapshots) and per_symbol:  # a universe: the account's rows, symbol by symbol
        sections.append(Section("P&L by symbol", figure=universe.symbol_pnl_figure(per_symbol)))
        sections.append(
            Section("Positions", figure=shaded(universe.position_heatmap(snapshots, buckets)))
        )
        snapshots = universe.account_rows(snapshots)
    elif len(snapshots):
        snapshots = snapshots[snapshots["symbol"] == symbol] if symbol else snapshots
        own_fills = fills[fills["symbol"] == symbol] if len(fills) else fills
        price = figures.price_figure(snapshots, own_fills, symbol, buckets)
        sections.append(
            Section(
                "Price, entries and exits",
                figure=shaded(figures.refused_markers(price, refused, snapshots)),
            )
        )
    if len(snapshots):
        sections.append(
            Section(
                "Equity and drawdown",
                figure=shaded(figures.equity_figure(snapshots, initial, buckets)),
            )
        )
        table = figures.monthly_returns_table(snapshots, initial)
        sections.append(Section("Monthly returns", figure=figures.monthly_returns_figure(table)))
    else:
        sections.append(Section("Price and equity", note="The run stored no bars."))
    if len(refused) or summary.get("orders"):
        sections.append(
            Section(
                "Denied and rejected orders", body=refusals_table(summary.get("orders"), refused)
            )
        )
    actions = agent_actions_frame(engine, run_id)
    shapley = shapley_frame(engine, run_id)
    valuations = valuations_frame(engine, run_id)
    # a universe: a meta-investor per symbol, drawn together (said under each figure)
    n = len(per_symbol or ())
    mean = f"The mean over the {n} symbols' meta-investors at each time." if n > 1 else ""
    threshold = _bubble_threshold(info)
    agent_figures: list[tuple[str, Any, Callable[[], Any], str]] = [
        (
            "Agent actions",
            actions,
            lambda: figures.agent_actions_figure(actions, buckets),
            f"The {n} symbols' panels together.",
        ),
        ("Ensemble weights", valuations, lambda: figures.weights_figure(valuations, buckets), mean),
        (
            "Shapley attribution",
            shapley,
            lambda: figures.shapley_figure(shapley, buckets),
            f"Each agent's credit summed over the {n} symbols.",
        ),
        (
            "Share prices and option values",
            valuations,
            lambda: figures.valuations_figure(valuations, buckets),
            mean,
        ),
        (
            "Bubbles",
            valuations,
            lambda: figures.bubbles_figure(valuations, threshold, buckets),
            mean,
        ),
    ]
    for title, frame, draw, note in agent_figures:
        if len(frame):
            sections.append(Section(title, figure=shaded(draw()), note=note if n > 1 else ""))
    if not (len(actions) or len(shapley) or len(valuations)):
        kind = strategy_label(json.dumps(info["config"])) or "this strategy"
        sections.append(
            Section(
                "Agents",
                note=(
                    f"No agents in this run ({kind}): agent actions, ensemble weights, "
                    "Shapley attribution, share prices, option values and bubbles do not apply."
                ),
            )
        )
    if info["kind"] == "paper":
        sections.append(feed_section(engine, run_id))
    if len(fills):
        own = fills[fills["symbol"] == symbol] if symbol else fills
        trips, still_open = round_trips_frame(own)
        sections.append(Section("Trades", body=trades_table(trips, still_open)))
    else:
        sections.append(Section("Trades", note="The run made no trades."))
    return info, sections


def feed_section(engine: Engine, run_id: int) -> Section:
    """A paper run's feed: the bars never received and the bars quarantined."""

    feed = feed_integrity(engine, run_id)
    if feed is None:
        return Section("Feed", note="The run stored no feed state.")
    gaps = feed["gaps"]
    rows = "".join(
        f"<tr><td>{gap['first_seq']:,}..{gap['last_seq']:,}</td><td>{gap['bars']:,}</td>"
        f"<td>{time_text(gap['after_ts'])}</td><td>{time_text(gap['before_ts'])}</td>"
        f"<td>{html.escape(gap['action'])}</td></tr>"
        for gap in gaps
    )
    missing = sum(gap["bars"] for gap in gaps if gap["action"] == "skipped")
    summary = (
        f"<p>{len(gaps):,} gap(s) in the feed, {missing:,} bar(s) never received and traded "
        f"without; {feed['quarantined']:,} bar(s) quarantined as implausible; "
        f"{feed['dropped']:,} message(s) dropped.</p>"
    )
    if feed["last_quarantine"]:
        summary += f"<p>Last quarantined: {html.escape(feed['last_quarantine'])}</p>"
    if not gaps:
        return Section("Feed", body=summary)
    table = (
        "<table><tr><th>feed seq</th><th>bars</th><th>after the bar of (UTC)</th>"
        f"<th>before the bar of (UTC)</th><th>the run</th></tr>{rows}</table>"
    )
    return Section("Feed", body=summary + table)


def _figure_json(figure: go.Figure) -> str:
    text = str(figure.to_json())
    # A JSON string inside <script> must not close the tag.
    return text.replace("</", "<\\/")


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;
background:#fafafa}
header{background:#1f2937;color:#fff;padding:18px 28px}
header h1{margin:0 0 6px;font-size:22px}
header p{margin:0;color:#cbd5e1;font-size:14px}
main{max-width:1280px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:6px;margin:16px 0;padding:12px 16px}
h2{font-size:17px;margin:4px 0 10px}
.note{color:#555;font-style:italic;margin:4px 0}
table{border-collapse:collapse;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
table.metrics th{text-align:left;font-weight:600}
.scroll{max-height:520px;overflow:auto}
summary{cursor:pointer;color:#1f2937;font-weight:600;margin:4px 0}
table.trades thead th{position:sticky;top:0;background:#f3f4f6}
td.pos{color:#1a7f37}td.neg{color:#c62828}
"""

LOADER = """
(function(){
  var started = performance.now();
  var nodes = document.querySelectorAll('script.figure');
  var drawing = [];
  nodes.forEach(function(node){
    var spec = JSON.parse(node.textContent);
    var target = document.getElementById(node.dataset.target);
    drawing.push(Plotly.newPlot(target, spec.data, spec.layout,
      {responsive: true, displaylogo: false}));
  });
  Promise.all(drawing).then(function(){
    var now = performance.now();
    window.emarlReport = {ready: true, charts: drawing.length,
      renderMs: now - started, readyAtMs: now};
  }, function(error){
    window.emarlReport = {ready: false, error: String(error)};
    console.error(error);
  });
})();
"""


def render_html(title: str, subtitle: str, sections: list[Section]) -> str:
    """The report page: header, sections, plotly.js inlined and a loader that draws
    every figure."""

    parts = []
    scripts = []
    for number, section in enumerate(sections):
        content = []
        if section.note:
            content.append(f'<p class="note">{html.escape(section.note)}</p>')
        if section.body:
            content.append(section.body)
        if section.figure is not None:
            target = f"chart-{number}"
            content.append(f'<div class="chart" id="{target}"></div>')
            scripts.append(
                f'<script type="application/json" class="figure" data-target="{target}">'
                f"{_figure_json(section.figure)}</script>"
            )
        parts.append(f"<section><h2>{html.escape(section.title)}</h2>{''.join(content)}</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<link rel="icon" href="data:,">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>"
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p></header>"
        f"<main>{''.join(parts)}</main>"
        f"{''.join(scripts)}<script>{LOADER}</script></body></html>\n"
    )


def build_report(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    learning_curves: pd.DataFrame | None = None,
    buckets: int = DEFAULT_BUCKETS,
) -> str:
    """The HTML report of a stored run (``run`` is an id or ``"latest"``).

    ``learning_curves``, a frame of per-update training metrics (see
    :func:`reporting.figures.learning_curves_figure`), adds a learning-curves section.
    """
    info, sections = run_sections(engine, run, buckets=buckets)
    if learning_curves is not None:
        sections.append(
            Section("Learning curves", figure=figures.learning_curves_figure(learning_curves))
        )
    elif info.get("kind") == "train":
        sections.append(Section("Learning curves", note="No training metrics were given."))
    title = f"{info['name']}: {info['symbol']}, run {info['id']}"
    period = ""
    last_ns = info.get("last_bar_ns")
    bars = f"{info['bars']:,} bars"
    stored = info.get("bars_stored")

    if info["status"] != RunStatus.COMPLETED and info["kind"] != "paper" and stored is not None:
        # the rows end where the run stopped, not where it was to end

        last_ns = last_stored_ns(engine, int(info["id"]))
        bars = f"{info['status']} at bar {stored:,} of {info['bars']:,}"
    if info.get("first_bar_ns") is not None and last_ns is not None:
        period = f"{time_text(info['first_bar_ns'])} .. {time_text(last_ns)} UTC, "
    subtitle = (
        f"{info['kind']} · {strategy_label(json.dumps(info['config']))} · {info['status']} · "
        f"{period}{bars} · seed "
        f"{info['seed']} · scenario {info['scenario'] or 'n/a'} · code {info['code_version']}"
        f" · bars {_short(info.get('data_fingerprint'))}"
    )
    if info.get("checkpoint_fingerprint"):
        subtitle += (
            f" · checkpoint {_short(info['checkpoint_fingerprint'])}, trained on "
            f"{time_text(info['trained_first_ns'])} .. {time_text(info['trained_last_ns'])} UTC "
            "(shaded in the charts)"
        )
    return render_html(title, subtitle, sections)


def _short(fingerprint: str | None) -> str:
    """The first 12 hex digits of a SHA-256 fingerprint (the whole one is in the run row)."""
    return f"sha256:{fingerprint[:12]}" if fingerprint else "n/a"


def training_report(metrics: pd.DataFrame, title: str = "Training run") -> str:
    """A report holding only the learning curves of a frame of per-update metrics."""
    figure = figures.learning_curves_figure(metrics)
    updates = len(metrics)
    return render_html(title, f"{updates:,} updates", [Section("Learning curves", figure=figure)])


# A fold's test metrics: keys of the metrics table, formatted as there, under short headings.
FOLD_COLUMNS = (
    ("total_return", "return"),
    ("sharpe", "Sharpe"),
    ("max_drawdown", "max drawdown"),
    ("trades", "trades"),
    ("fees", "fees"),
    ("exposure", "exposure"),
    ("final_equity", "final equity"),
)


def folds_table(folds: list[dict[str, Any]]) -> str:
    """A walk-forward's folds as an HTML table: windows, train step, test metrics."""
    head = (
        "<tr><th>fold</th><th>train from (UTC)</th><th>test from</th><th>test to</th>"
        "<th>test bars</th><th>status</th>"
        + "".join(f"<th>{html.escape(heading)}</th>" for _key, heading in FOLD_COLUMNS)
        + "<th>run</th><th>train step</th></tr>"
    )
    body = []
    for fold in folds:
        cells = "".join(
            f"<td>{fmt(fold.get(key), METRIC_KINDS[key])}</td>" for key, _heading in FOLD_COLUMNS
        )
        value = fold.get("total_return")
        colour = "" if value is None else "pos" if value > 0 else "neg" if value < 0 else ""
        cells = cells.replace("<td>", f'<td class="{colour}">', 1) if colour else cells
        params = " ".join(f"{k}={v}" for k, v in (fold.get("params") or {}).items())
        step = fold.get("error") or " · ".join(x for x in (params, fold.get("train_note")) if x)
        body.append(
            f"<tr><td>{fold['fold']}</td><td>{time_text(fold['train_start_ns'])}</td>"
            f"<td>{time_text(fold['test_start_ns'])}</td><td>{time_text(fold['test_end_ns'])}</td>"
            f"<td>{fold['test_bars']:,}</td><td>{html.escape(fold['status'])}</td>{cells}"
            f"<td>{'' if fold.get('run_id') is None else fold['run_id']}</td>"
            f'<td style="text-align:left">{html.escape(step or "")}</td></tr>'
        )
    return (
        '<div class="scroll"><table class="trades"><thead>'
        + head
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def walk_forward_report(
    engine: Engine, sweep: int | str | None = "latest", *, buckets: int = DEFAULT_BUCKETS
) -> str:
    """The HTML report of a stored walk-forward: the stitched out-of-sample metrics,
    the stitched equity curve coloured by fold, and the per-fold table."""

    info = sweep_info(engine, sweep, "walkforward")
    folds = walk_forward_rows(engine, info["id"])
    curve = walk_forward_equity(engine, info["id"])
    summary = info["summary"]
    # The stitched curve starts at the scenario's cash.
    initial = info["config"].get("broker", {}).get("initial_cash")
    if initial is None and len(curve):
        initial = curve["equity"].iloc[0]
    sections = []
    if "total_return" in summary:
        sections.append(Section("Out of sample, stitched", body=metrics_table(summary)))
    else:
        sections.append(
            Section("Out of sample, stitched", note="No fold completed: nothing to stitch.")
        )
    if len(curve):
        sections.append(
            Section(
                "Stitched equity by fold",
                figure=figures.walk_forward_figure(curve, float(initial), buckets),
            )
        )
    else:
        sections.append(Section("Stitched equity by fold", note="No out-of-sample bars stored."))
    sections.append(Section("Folds", body=folds_table(folds)))
    spec = info["spec"]
    completed = sum(1 for fold in folds if fold["status"] == "completed")
    subtitle = (
        f"walk-forward · {info['status']} · --train {spec.get('train')} --test "
        f"{spec.get('test')} --step {spec.get('step')} · {completed} of {len(folds)} folds "
        f"completed · train step {spec.get('trainer')} · scenario {info['scenario'] or 'n/a'}"
    )
    return render_html(f"{info['name']}: walk-forward {info['id']}", subtitle, sections)


def write_report(
    engine: Engine,
    run: int | str | None,
    path: str | Path,
    **options: Any,
) -> Path:
    """Build the report of ``run`` and write it to ``path`` (folders are made)."""
    target = Path(path)
    text = build_report(engine, run, **options)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target


def default_path(run_id: int) -> Path:
    """Where ``emarl report`` writes when no file is given: ``runs/report-<id>.html``."""
    return Path("runs") / f"report-{run_id}.html"
