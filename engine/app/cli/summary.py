"""The summary ``emarl backtest`` prints: the performance rows of a run (and of each part
of its bars when it traded with a checkpoint: in sample, validation, out of sample), the
edge rows (bootstrap intervals, probabilistic Sharpe ratios), orders, panel and speed.
It holds no command.
"""

from __future__ import annotations

from typing import Any

from engine.app.cli.common import _console, _fmt_time, _num, _pct, human_number


def _speed(s: dict[str, Any]) -> str:
    """Replay speed, then the whole run's time and how much of it came before the first bar
    (in a fresh process: imports, the compiled-code cache, a checkpoint)."""
    return (
        f"{s['replay_bars_per_second']:,.0f} bars/s after {s['setup_seconds']:.2f} s "
        f"of setup ({s['wall_seconds']:.2f} s in all)"
    )


WINDOW_TITLES = {
    "before_training": "before training",
    "in_sample": "IN SAMPLE (trained on)",
    "validation": "validation (chose it)",
    "out_of_sample": "out of sample",
}


def _metric_rows(s: dict[str, Any], fills: int | None) -> list[tuple[str, str]]:
    """The performance rows of a summary (the whole run's or one window's)."""
    trades = f"{s['trades']:,}" + ("" if fills is None else f" ({fills:,} fills)")
    return [
        ("period", f"{_fmt_time(s['start_ns'])} .. {_fmt_time(s['end_ns'])} UTC"),
        ("bars", f"{s['bars']:,} ({s['bar_gaps']:,} missing inside sessions)"),
        ("final equity", _num(s["final_equity"])),
        ("total return", _pct(s["total_return"])),
        ("CAGR", _pct(s["cagr"])),
        (
            "annual volatility",
            "n/a"
            if s["annual_volatility"] != s["annual_volatility"]
            else f"{s['annual_volatility']:.2%}",
        ),
        ("Sharpe", _num(s["sharpe"])),
        ("Sortino", _num(s["sortino"])),
        ("max drawdown", _pct(s["max_drawdown"])),
        ("Calmar", _num(s["calmar"])),
        ("trades (round trips)", trades),
        ("win rate", "n/a" if s["win_rate"] != s["win_rate"] else f"{s['win_rate']:.1%}"),
        ("exposure (time in market)", f"{s['exposure']:.1%}"),
        ("turnover (x mean equity)", _num(s["turnover"])),
        ("fees", _num(s["fees"])),
        *[
            (label, _num(s[key]))
            for key, label in (("borrow_fees", "borrow fees"), ("financing", "financing"))
            if s.get(key)
        ],
        ("bars per year (annualisation)", _num(s["periods_per_year"], 0)),
        *_edge_rows(s.get("edge")),
    ]


def _edge_rows(edge: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Is the edge real: bootstrap intervals and probabilistic Sharpe ratios."""
    if not edge:
        return []
    level = f"{edge['confidence']:.0%}"
    return [
        (
            f"Sharpe, {level} interval (block bootstrap)",
            f"{_num(edge['sharpe_low'])} .. {_num(edge['sharpe_high'])}",
        ),
        (
            f"total return, {level} interval",
            f"{_pct(edge['total_return_low'])} .. {_pct(edge['total_return_high'])}",
        ),
        ("P(true Sharpe > 0) (PSR)", "n/a" if edge["psr"] != edge["psr"] else f"{edge['psr']:.1%}"),
        (
            "P(Sharpe > buy-and-hold's) (PSR)",
            "n/a"
            if edge["psr_benchmark"] != edge["psr_benchmark"]
            else f"{edge['psr_benchmark']:.1%} (buy-and-hold {_num(edge['benchmark_sharpe'])})",
        ),
    ]


def _print_summary(name: str, symbol: str, s: dict[str, Any], fills: int) -> None:
    """The summary table; a run that traded with a checkpoint gets one column per part of
    its bars (in sample: inside the checkpoint's training window; out of sample: after)."""
    # rich loads only when printing, engine.app.outcome (pandas) only after a backtest
    from rich.table import Table

    from engine.app.outcome import describe_data_changes, describe_refusals

    training = s.get("training") or {}
    windows: dict[str, dict[str, Any]] = training.get("windows") or {}
    table = Table(title=f"{name}: {symbol}, run {s['run_id']}", show_header=bool(windows))
    table.add_column("metric", style="bold")
    table.add_column("whole run" if windows else "value", justify="right")
    for key in windows:
        table.add_column(WINDOW_TITLES.get(key, key), justify="right")
    columns = [_metric_rows(s, fills)] + [_metric_rows(w, None) for w in windows.values()]
    for i, (label, value) in enumerate(columns[0]):
        table.add_row(label, value, *(column[i][1] for column in columns[1:]))
    notes: list[tuple[str, str]] = []
    if s.get("data"):
        notes.append(("data as loaded", describe_data_changes(s["data"])))
    orders = s.get("orders")
    if orders is not None:
        notes.append(("orders", f"{orders['sent']:,} sent; {describe_refusals(orders)}"))
        if "no_fills" in orders:
            notes.append(("no fills because", orders["no_fills"]))
    if training:
        notes.append(
            (
                "checkpoint trained on",
                f"{training['symbol']} {_fmt_time(training['first_bar_ns'])} .. "
                f"{_fmt_time(training['last_bar_ns'])} UTC ({training['bars']:,} bars)",
            )
        )
    panel = s.get("panel")
    if panel and panel.get("steps"):
        notes.append(
            (
                "panel",
                f"effective number of agents {panel['effective_agents']:.2f} (time average of "
                f"1/Σw²); share prices {human_number(panel['share_price_min'])} .. "
                f"{human_number(panel['share_price_max'])}; mean exposure "
                f"{panel['exposure_mean']:.0%} of max_position",
            )
        )
    notes += [("speed", _speed(s)), ("run id", str(s["run_id"]))]
    console = _console()
    if not windows:  # one column: the notes are rows of the table
        for label, value in notes:
            table.add_row(label, value)
        console.print(table)
        return
    console.print(table)
    for label, value in notes:
        console.print(f"{label}: {value}", highlight=False, markup=False)
    if "in_sample" in windows:
        console.print(
            "in sample: the checkpoint was trained on the bars of the "
            f"'{WINDOW_TITLES['in_sample']}' column; only the out-of-sample figures say "
            "anything about bars it has not seen",
            style="bold yellow",
            highlight=False,
            markup=False,
        )
