"""A run's outcome: what a backtest and a paper run summarise alike.

:class:`ResultsCollector` is the kernel's observer that keeps what the summary needs,
and :func:`summarize` turns it into the summary every run stores and prints: the
figures (:func:`engine.app.metrics.compute_summary`), whether the edge is real
(:func:`engine.app.metrics.edge_of`), what became of the orders (:func:`order_outcomes`),
the figures inside and after a checkpoint's training window (:func:`training_windows`)
and the meta-investor's agents and panel.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.app.metrics import Summary, compute_summary, edge_of, window_summaries
from engine.app.provenance import TrainingRecord
from engine.app.scenario import ScenarioConfig, config_hash
from engine.core.bus import MessageBus
from engine.core.events import (
    Bar,
    OrderDenied,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
    SubmitOrder,
    reason_kind,
)
from engine.core.version import code_version
from engine.feeds.bars import BarData, bars_fingerprint, count_gaps
from engine.feeds.universe import Universe, symbols_label

if TYPE_CHECKING:
    from engine.app.kernel import Kernel

__all__ = [
    "Outcome",
    "ResultsCollector",
    "describe_refusals",
    "order_outcomes",
    "provenance",
    "run_row",
    "summarize",
    "training_windows",
]


class ResultsCollector:
    """The kernel's observer: per snapshot the time, equity, position, cash and mark; the
    fills; the orders sent, denied and rejected by kind. Arrays start at ``capacity``
    (a backtest's bar count: never grown) and double when full (a paper run)."""

    def __init__(self, bus: MessageBus, capacity: int = 1024) -> None:
        self._bus = bus
        size = max(int(capacity), 1)
        self.ts = np.zeros(size, dtype=np.int64)
        self.equity = np.zeros(size)
        self.position = np.zeros(size)
        self.cash = np.zeros(size)
        self.mark = np.zeros(size)
        self.count = 0
        self._capacity = size
        self._bind()
        #: the latest snapshot (its cumulative fees are the run's)
        self.last: PortfolioSnapshot | None = None
        self.first_open = float("nan")
        self.fills: list[OrderFilled] = []
        self.orders = 0
        self.denied: dict[str, int] = {}
        self.rejected: dict[str, int] = {}

    def subscribe(self) -> None:
        bus = self._bus
        bus.subscribe(Bar, self.on_bar)
        bus.subscribe(PortfolioSnapshot, self.on_snapshot)
        bus.subscribe(OrderFilled, self.fills.append)
        bus.subscribe(SubmitOrder, self.on_order)
        bus.subscribe(OrderDenied, self.on_denied)
        bus.subscribe(OrderRejected, self.on_rejected)

    def on_bar(self, bar: Bar) -> None:
        # the first bar's open (its snapshot may already have arrived: the portfolio
        # publishes it from its own Bar handler, which runs before this one)
        if self.first_open != self.first_open:
            self.first_open = bar.open
        self._bus.unsubscribe(self.on_bar)  # only the first bar's open is needed

    def on_order(self, _command: SubmitOrder) -> None:
        self.orders += 1

    def on_denied(self, event: OrderDenied) -> None:
        kind = reason_kind(event.reason)
        self.denied[kind] = self.denied.get(kind, 0) + 1

    def on_rejected(self, event: OrderRejected) -> None:
        kind = reason_kind(event.reason)
        self.rejected[kind] = self.rejected.get(kind, 0) + 1

    def on_snapshot(self, snapshot: PortfolioSnapshot) -> None:
        i = self.count
        if i == self._capacity:
            self._grow()
        # through memoryviews of the arrays: a scalar store costs about 2/3 of numpy's
        ts, equity, position, cash, mark = self._views
        ts[i] = snapshot.ts_event
        equity[i] = snapshot.equity
        position[i] = snapshot.position
        cash[i] = snapshot.cash
        mark[i] = snapshot.mark_price
        self.last = snapshot
        self.count = i + 1

    def _bind(self) -> None:
        self._views: tuple[Any, ...] = tuple(
            memoryview(getattr(self, name)) for name in ("ts", "equity", "position", "cash", "mark")
        )

    def _grow(self) -> None:
        for name in ("ts", "equity", "position", "cash", "mark"):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, np.zeros_like(column)]))
        self._capacity = len(self.ts)
        self._bind()

    @property
    def fees(self) -> float:
        return 0.0 if self.last is None else self.last.fees

    @property
    def borrow_fees(self) -> float:
        return 0.0 if self.last is None else self.last.borrow_fees

    @property
    def financing(self) -> float:
        return 0.0 if self.last is None else self.last.financing

    def trips(self, fills: dict[str, np.ndarray]) -> np.ndarray | None:
        """The round trips' P&L, when the fills alone do not give them (None: they do)."""
        return None

    def benchmark_marks(self, first: int) -> np.ndarray:
        """The buy-and-hold benchmark's prices over the snapshots ``first:``, with the one
        before them in front: the mark before each bar (the first bar's open for the
        first), then the bars' closes."""
        before = self.first_open if first == 0 else self.mark[first - 1]
        return np.concatenate([[before], self.mark[first : self.count]])

    def symbol_figures(self) -> dict[str, dict[str, Any]] | None:
        """Each symbol's share of the result (a universe's); None for one instrument."""
        return None

    def fill_arrays(self) -> dict[str, np.ndarray]:
        fills = self.fills
        return {
            "ts": np.array([f.ts_event for f in fills], dtype=np.int64),
            "side": np.array([f.side for f in fills], dtype=object),
            "quantity": np.array([f.quantity for f in fills], dtype=float),
            "price": np.array([f.price for f in fills], dtype=float),
            "commission": np.array([f.commission for f in fills], dtype=float),
        }


def order_outcomes(
    sent: int, denied: dict[str, int], rejected: dict[str, int], fills: int
) -> dict[str, Any]:
    """Counts of a run's orders, and ``no_fills``: why a run without a fill has none."""
    out: dict[str, Any] = {
        "sent": sent,
        "denied": dict(sorted(denied.items())),
        "rejected": dict(sorted(rejected.items())),
    }
    if fills == 0:
        refused = sum(denied.values()) + sum(n for kind, n in rejected.items() if kind != "cancel")
        if sent == 0:
            why = "no order was sent: the strategy never asked to trade"
        elif refused >= sent:
            why = f"every one of the {sent:,} orders was refused ({describe_refusals(out)})"
        else:
            why = (
                f"{sent - refused:,} of {sent:,} orders were accepted, none filled before the "
                "run ended"
            )
        out["no_fills"] = why
    return out


def describe_refusals(orders: dict[str, Any]) -> str:
    """``"denied 2,382 (margin 2,382); rejected 0"``-style text of :func:`order_outcomes`."""
    parts = []
    for what in ("denied", "rejected"):
        counts: dict[str, int] = orders.get(what) or {}
        total = sum(counts.values())
        detail = ", ".join(f"{kind} {n:,}" for kind, n in counts.items())
        parts.append(f"{what} {total:,}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts)


def describe_data_changes(changes: dict[str, Any]) -> str:
    """``"dropped 3 rows (bad price 3); 5-minute bars resampled to the bar length"``-style
    text of :meth:`engine.feeds.bardata.DataReport.changes`."""
    parts = []
    for what in ("dropped", "filled"):
        counts: dict[str, int] = changes.get(what) or {}
        if counts:
            total = sum(counts.values())
            detail = ", ".join(f"{problem} {n:,}" for problem, n in counts.items())
            parts.append(f"{what} {total:,} row{'s' * (total != 1)} ({detail})")
    if changes.get("sorted_rows"):
        n = changes["sorted_rows"]
        parts.append(f"sorted {n:,} row{'s' * (n != 1)} out of time order")
    if changes.get("resampled_from_minutes"):
        parts.append(f"resampled from {changes['resampled_from_minutes']}-minute bars")
    if changes.get("epoch_unit"):
        parts.append(f"timestamps read as Unix times in {changes['epoch_unit']} (UTC)")
    return "; ".join(parts)


def training_windows(
    record: TrainingRecord, first_ns: int, last_ns: int
) -> dict[str, tuple[int, int]]:
    """The parts of a run's bars ``[first_ns, last_ns]`` relative to a checkpoint's training
    bars: ``in_sample`` (inside its training window), ``validation`` (the held-out bars that
    chose the checkpoint, when it has them), ``out_of_sample`` (after both) and
    ``before_training`` (before it: not learned from, but learned from what came after).
    Parts without a bar of the run are left out."""
    seen = record.last_bar_ns if record.validation is None else record.validation[1]
    windows = {
        "before_training": (first_ns, record.first_bar_ns - 1),
        "in_sample": (max(first_ns, record.first_bar_ns), min(last_ns, record.last_bar_ns)),
        "validation": (
            (max(first_ns, record.validation[0]), min(last_ns, record.validation[1]))
            if record.validation is not None
            else (1, 0)
        ),
        "out_of_sample": (max(first_ns, seen + 1), last_ns),
    }
    return {name: (lo, hi) for name, (lo, hi) in windows.items() if lo <= hi}


def run_row(
    config: ScenarioConfig,
    *,
    kind: str,
    scenario_path: str,
    name: str | None = None,
    data: BarData | Universe | None = None,
    origin: dict[str, Any] | None = None,
    strategy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns a run row stores of a run of ``config`` (``storage.runs.create_run``'s
    arguments): what ran, with which code, on which bars (None for a paper run: they
    arrive live) and ``origin`` (:func:`provenance`). ``strategy`` is stored in place of
    the scenario's ``[strategy]`` when another strategy ran (:func:`custom_strategy`)."""
    stored = config.to_dict()
    if strategy is not None:
        stored["strategy"] = strategy
    return {
        "name": name or config.run.name,
        "kind": kind,
        "scenario": scenario_path,
        "symbol": symbols_label(config.symbols),
        "config": stored,
        "config_hash": config_hash(stored),
        "seed": config.run.seed,
        "code_version": code_version(),
        "bars": 0 if data is None else len(data),
        "bar_gaps": 0 if data is None else data.report.gaps,
        "first_bar_ns": None if data is None else int(data.ts[0]),
        "last_bar_ns": None if data is None else int(data.ts[-1]),
        **(origin or {}),
    }


def provenance(data: BarData | Universe | None, record: TrainingRecord | None) -> dict[str, Any]:
    """What a run row records of its inputs: the fingerprint of its bars (None for a paper
    run: they arrive live) and, for a run with a checkpoint, the checkpoint's fingerprint
    and training window (a universe's fingerprint covers every symbol's bars)."""
    return {
        "data_fingerprint": (
            None
            if data is None
            else data.fingerprint()
            if isinstance(data, Universe)
            else bars_fingerprint(data)
        ),
        "checkpoint_fingerprint": record.fingerprint if record else None,
        "trained_first_ns": record.first_bar_ns if record else None,
        "trained_last_ns": record.last_bar_ns if record else None,
    }


@dataclass
class Outcome:
    """A finished run's summary and what is stored with it."""

    summary: Summary
    orders: dict[str, Any]
    fills: int
    edge: dict[str, Any] | None = None
    training: dict[str, Any] | None = None
    agents: list[dict[str, Any]] | None = None
    panel: dict[str, Any] | None = None
    #: a universe's figures by symbol (:mod:`engine.app.universe_results`)
    symbols: dict[str, dict[str, Any]] | None = None
    #: what loading changed in the data (:meth:`engine.feeds.bardata.DataReport.changes`)
    data: dict[str, Any] | None = None

    def stored(self) -> dict[str, Any]:
        """The summary as a run row stores it: the figures, the order counts, the edge,
        the in/out-of-sample split and the agents' table and panel."""
        stored = self.summary.to_dict()
        stored["orders"] = self.orders
        for key in ("edge", "training", "agents", "panel", "symbols", "data"):
            value = getattr(self, key)
            if value is not None:
                stored[key] = value
        return stored


def summarize(
    config: ScenarioConfig,
    collector: ResultsCollector,
    kernel: Kernel,
    *,
    trade_from_ns: int | None,
    gaps: int,
    data: dict[str, Any] | None = None,
) -> Outcome:
    """The summary of the snapshots from ``trade_from_ns`` on (all without it): the bars
    before only warmed up."""
    n = collector.count
    first = 0 if trade_from_ns is None else int(np.searchsorted(collector.ts[:n], trade_from_ns))
    ts, equity, position = (
        collector.ts[first:n],
        collector.equity[first:n],
        collector.position[first:n],
    )
    fills = collector.fill_arrays()
    cash = config.broker.initial_cash
    summary = compute_summary(
        ts,
        equity,
        position,
        cash,
        fills,
        collector.fees,
        gaps,
        trips=collector.trips(fills),
        borrow_fees=collector.borrow_fees,
        financing=collector.financing,
    )
    marks = collector.benchmark_marks(first)
    edge = edge_of(equity, cash, summary.periods_per_year, marks, config.run.seed) if n else None
    orders = order_outcomes(
        collector.orders, collector.denied, collector.rejected, len(collector.fills)
    )
    record = kernel.training_record
    training = None
    if record is not None and len(ts):
        training = {
            "checkpoint": str(record.checkpoint),
            "checkpoint_fingerprint": record.fingerprint,
            "symbol": record.symbol,
            "first_bar_ns": record.first_bar_ns,
            "last_bar_ns": record.last_bar_ns,
            "bars": record.bars,
            "validation": record.validation,
            "windows": window_summaries(
                ts,
                equity,
                position,
                cash,
                fills,
                training_windows(record, int(ts[0]), int(ts[-1])),
                gaps=lambda part: count_gaps(part, config.data.timezone),
                marks=marks,
                seed=config.run.seed,
            ),
        }
    return Outcome(
        summary=summary,
        orders=orders,
        fills=len(collector.fills),
        edge=edge,
        training=training,
        agents=kernel.agent_summary(),
        panel=kernel.panel_summary(),
        symbols=collector.symbol_figures(),
        data=data,
    )
