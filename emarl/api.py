"""emarl from Python: backtest a scenario, with its own strategy or one of yours.

::

    import emarl
    from strategies.base import Strategy

    class Breakout(Strategy):
        lookback: int = 20
        ...

    result = emarl.backtest("scenarios/weichai_sma.toml", strategy=Breakout, lookback=40)
    result.summary.sharpe, result.equity, result.fills, result.plot()

:func:`backtest` works in a script and inside a running event loop (a Jupyter notebook,
where ``asyncio.run`` is refused: the run then goes on an event loop of its own in a
worker thread, and the call returns when it is done). In a coroutine, ``await``
:func:`backtest_async` instead.

``strategy`` is a :class:`strategies.base.Strategy` subclass (its parameters are its
annotated class attributes; ``**params`` set them) or a function
``(config, bus, clock, **params)`` returning the component(s) to run in the strategy's
place. A stored run of it records ``kind = "custom"``, its import path and its
parameters in place of the scenario's ``[strategy]``, so ``emarl runs``, ``compare`` and
``report`` say what ran. Without ``strategy``, ``**params`` override keys of the
scenario's own ``[strategy]`` (``fast=5`` for ``sma_cross``); ``overrides`` sets any key
by its dotted path (``{"broker.commission_bps": 0}``).

The result holds the run's figures (``summary``, ``orders_summary``, ``edge``) and its
frames, indexed by bar time in UTC: ``equity`` (equity, cash and drawdown per bar, with
the position and mark of one instrument), ``positions`` and ``marks`` (one column per
symbol), ``fills`` and ``orders`` (one row per order with what became of it) and, for a
universe, ``symbols`` (each symbol's fills, trades, fees and P&L contribution).
``plot()`` returns a plotly figure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import functools
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.app.backtest import BacktestResult, run_backtest_async
from engine.app.kernel import custom_strategy
from engine.app.metrics import Summary
from engine.app.outcome import ResultsCollector
from engine.app.scenario import ScenarioConfig, load_scenario, scenario_from_dict
from engine.app.sweep_grid import with_overrides
from engine.app.universe_results import UniverseCollector
from engine.core.bus import MessageBus
from engine.core.errors import ConfigError
from engine.core.events import (
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)
from strategies.base import Strategy

__all__ = ["OrderLog", "Result", "backtest", "backtest_async", "scenario"]

P = ParamSpec("P")
R = TypeVar("R")

ORDER_COLUMNS = (
    "order_id",
    "strategy_id",
    "symbol",
    "side",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "time_in_force",
    "parent_order_id",
    "status",
    "filled_quantity",
    "average_price",
    "commission",
    "reason",
    "closed",
)
FILL_COLUMNS = (
    "order_id",
    "fill_id",
    "strategy_id",
    "symbol",
    "side",
    "quantity",
    "price",
    "commission",
    "slippage",
)


def scenario(
    source: ScenarioConfig | str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
) -> ScenarioConfig:
    """A checked scenario from a config, a TOML file's path or the scenario's tables as a
    dict, with dotted-path ``overrides`` applied."""
    if isinstance(source, ScenarioConfig):
        config = source
    elif isinstance(source, str | Path):
        config = load_scenario(source)
    elif isinstance(source, Mapping):
        config = scenario_from_dict(copy.deepcopy(dict(source)), source="<dict>")
    else:
        raise ConfigError(
            f"a scenario is a ScenarioConfig, a TOML file's path or a dict, got {source!r}"
        )
    if not overrides:
        return config
    return with_overrides(config, dict(overrides), source="overrides")


async def backtest_async(
    source: ScenarioConfig | str | Path | Mapping[str, Any],
    strategy: type[Strategy] | Callable[..., Any] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    db_url: str | None = None,
    persist: bool = True,
    name: str | None = None,
    **params: Any,
) -> Result:
    """Backtest ``source`` (module docstring) on the running event loop and return its
    :class:`Result`; :func:`backtest` is the same call from code that does not await."""
    config = scenario(source, overrides)
    factory = record = None
    if strategy is not None:
        factory, record = custom_strategy(strategy, params)
    elif params:
        section = {f"strategy.{key}": value for key, value in params.items()}
        config = scenario(config, section)
    if name is None and strategy is not None:
        name = f"{config.run.name}-{getattr(strategy, '__name__', 'custom').lower()}"
    if name is not None:
        config = scenario(config, {"run.name": name})
    log: list[OrderLog] = []

    def tap(bus: MessageBus) -> None:
        log.append(OrderLog(bus))
        log[0].subscribe()

    scenario_path = str(source) if isinstance(source, str | Path) else ""
    result = await run_backtest_async(
        config,
        db_url=db_url,
        persist=persist,
        scenario_path=scenario_path,
        strategy_factory=factory,
        strategy_record=record,
        tap=tap,
    )
    strategy_config = record or config.to_dict()["strategy"]
    return Result(config, result, log[0], strategy_config)


def _blocking(coroutine: Callable[P, Coroutine[Any, Any, R]], doc: str) -> Callable[P, R]:
    """``coroutine`` as a plain call (documented by ``doc``): on ``asyncio.run``, or,
    inside a running event loop (a notebook's), on a loop of its own in a worker thread."""

    @functools.wraps(coroutine)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        work = coroutine(*args, **kwargs)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(work)
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="emarl-backtest") as pool:
            return pool.submit(asyncio.run, work).result()

    call.__doc__ = doc
    return call


backtest = _blocking(
    backtest_async,
    """Backtest ``source`` (module docstring) and return its :class:`Result`, in a script
    or inside a running event loop; the arguments are :func:`backtest_async`'s.""",
)


@dataclass
class _Order:
    submit: SubmitOrder
    status: str = "submitted"
    filled: float = 0.0
    notional: float = 0.0
    commission: float = 0.0
    reason: str = ""
    closed_ns: int | None = None


class OrderLog:
    """An observer that keeps every order and what became of it (one row an order)."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.orders: dict[str, _Order] = {}

    def subscribe(self) -> None:
        bus = self._bus
        bus.subscribe(SubmitOrder, self.on_submit)
        bus.subscribe(OrderAccepted, self.on_accepted)
        bus.subscribe(OrderFilled, self.on_fill)
        for closing in (OrderCanceled, OrderExpired, OrderDenied, OrderRejected):
            bus.subscribe(closing, self.on_closed)

    def on_submit(self, command: SubmitOrder) -> None:
        self.orders[command.order_id] = _Order(command)

    def on_accepted(self, event: OrderAccepted) -> None:
        order = self.orders.get(event.order_id)
        if order is not None and order.status == "submitted":
            order.status = "accepted"

    def on_fill(self, fill: OrderFilled) -> None:
        order = self.orders.get(fill.order_id)
        if order is None:
            return
        order.filled += fill.quantity
        order.notional += fill.quantity * fill.price
        order.commission += fill.commission
        if fill.leaves_quantity <= 0.0:
            order.status, order.closed_ns = "filled", fill.ts_event
        else:
            order.status = "partially_filled"

    def on_closed(self, event: OrderCanceled | OrderExpired | OrderDenied | OrderRejected) -> None:
        order = self.orders.get(event.order_id)
        if order is None:
            return
        order.status = {
            OrderCanceled: "canceled",
            OrderExpired: "expired",
            OrderDenied: "denied",
            OrderRejected: "rejected",
        }[type(event)]
        order.reason = getattr(event, "reason", "")
        order.closed_ns = event.ts_event

    def frame(self) -> pd.DataFrame:
        rows = [
            (
                o.submit.ts_event,
                o.submit.order_id,
                o.submit.strategy_id,
                o.submit.symbol,
                o.submit.side,
                o.submit.quantity,
                o.submit.order_type,
                o.submit.limit_price,
                o.submit.stop_price,
                o.submit.time_in_force,
                o.submit.parent_order_id,
                o.status,
                o.filled,
                o.notional / o.filled if o.filled else np.nan,
                o.commission,
                o.reason,
                _time(o.closed_ns),
            )
            for o in self.orders.values()
        ]
        frame = pd.DataFrame(rows, columns=["time", *ORDER_COLUMNS])
        frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
        return frame.set_index("time")


def _time(ns: int | None) -> pd.Timestamp:
    return pd.NaT if ns is None else pd.Timestamp(ns, tz="UTC")


@dataclass
class Result:
    """A finished backtest: its figures, its frames (module docstring) and ``plot()``."""

    config: ScenarioConfig
    backtest: BacktestResult
    order_log: OrderLog = field(repr=False)
    #: what ran: the scenario's ``[strategy]``, or a custom strategy's import path and
    #: parameters (as the run row stores it)
    strategy: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        s = self.summary
        return (
            f"<emarl.Result run {self.run_id}: {s.bars:,} bars, total return "
            f"{s.total_return:+.2%}, Sharpe {s.sharpe:.2f}, {s.trades} trades, "
            f"{self.backtest.fills} fills>"
        )

    @property
    def run_id(self) -> int | None:
        """The stored run's id (None when ``persist=False``)."""
        return self.backtest.run_id

    @property
    def summary(self) -> Summary:
        return self.backtest.summary

    @property
    def orders_summary(self) -> dict[str, Any]:
        """Orders sent, denied and rejected by kind, and why there is no fill if none."""
        return self.backtest.orders

    @property
    def edge(self) -> dict[str, Any] | None:
        return self.backtest.edge

    @property
    def data_changes(self) -> dict[str, Any] | None:
        """What loading changed in the data: rows dropped and filled by problem, rows
        sorted, the bar length resampled from, Unix timestamps read (None: nothing)."""
        return self.backtest.outcome.data

    @property
    def equity(self) -> pd.DataFrame:
        """Per bar (a universe: per time slice): equity, cash, drawdown from the running
        peak (the initial cash included) and, for one instrument, its position and mark."""
        c = self._collector
        n = c.count
        equity = c.equity[:n].copy()
        peak = np.maximum.accumulate(np.concatenate([[self.summary.initial_equity], equity]))
        columns = {"equity": equity, "cash": c.cash[:n].copy()}
        if not isinstance(c, UniverseCollector):
            columns |= {"position": c.position[:n].copy(), "mark": c.mark[:n].copy()}
        columns["drawdown"] = equity / peak[1:] - 1.0
        return pd.DataFrame(columns, index=self._index())

    @property
    def positions(self) -> pd.DataFrame:
        """Per bar, the position (units) in each symbol: one column a symbol."""
        c = self._collector
        n = c.count
        if isinstance(c, UniverseCollector):
            table = c.positions[:n].copy()
        else:
            table = c.position[:n].copy()[:, None]
        return pd.DataFrame(table, index=self._index(), columns=list(self.config.symbols))

    @property
    def marks(self) -> pd.DataFrame:
        """Per bar, each symbol's latest close: one column a symbol."""
        c = self._collector
        n = c.count
        table = c.marks[:n] if isinstance(c, UniverseCollector) else c.mark[:n, None]
        return pd.DataFrame(table.copy(), index=self._index(), columns=list(self.config.symbols))

    @property
    def symbols(self) -> pd.DataFrame | None:
        """A universe's figures by symbol (fills, trades, fees, P&L contribution); None
        for one instrument."""
        figures = self.backtest.outcome.symbols
        return None if figures is None else pd.DataFrame(figures).T

    @property
    def _collector(self) -> ResultsCollector:
        collector = self.backtest.collector
        assert collector is not None  # every backtest keeps one
        return collector

    def _index(self) -> pd.DatetimeIndex:
        c = self._collector
        return pd.DatetimeIndex(pd.to_datetime(c.ts[: c.count], utc=True), name="time")

    @property
    def fills(self) -> pd.DataFrame:
        c = self._collector
        rows = [[getattr(f, name) for name in FILL_COLUMNS] for f in c.fills]
        frame = pd.DataFrame(rows, columns=list(FILL_COLUMNS))
        times = [f.ts_event for f in c.fills]
        frame.index = pd.DatetimeIndex(pd.to_datetime(times, utc=True), name="time")
        return frame.astype({"quantity": float, "price": float, "commission": float})

    @property
    def orders(self) -> pd.DataFrame:
        return self.order_log.frame()

    def plot(self) -> go.Figure:
        """Price with the fills, equity, drawdown and position, one panel each (a universe:
        each symbol's close relative to its first, and each symbol's position)."""
        equity = self.equity
        universe = isinstance(self._collector, UniverseCollector)
        fig = make_subplots(
            rows=4,
            cols=1,
            shared_xaxes=True,
            row_heights=[0.4, 0.25, 0.15, 0.2],
            vertical_spacing=0.03,
            subplot_titles=(
                "close / first close" if universe else "price and fills",
                "equity",
                "drawdown %",
                "positions" if universe else "position",
            ),
        )
        prices = self._universe_prices() if universe else self._price_and_fills(equity)
        for trace in prices:
            fig.add_trace(trace, row=1, col=1)
        fig.add_trace(go.Scatter(x=equity.index, y=equity["equity"], name="equity"), row=2, col=1)
        drawdown = 100 * equity["drawdown"]
        fig.add_trace(
            go.Scatter(x=equity.index, y=drawdown, name="drawdown %", fill="tozeroy"), row=3, col=1
        )
        positions = self.positions
        for symbol in self.config.symbols:
            name = f"{symbol} position" if universe else "position"
            fig.add_trace(
                go.Scatter(x=positions.index, y=positions[symbol], name=name), row=4, col=1
            )
        label = self.strategy.get("import_path") or self.strategy.get("kind", "")
        what = f"{len(self.config.symbols)} symbols" if universe else self.config.symbols[0]
        fig.update_layout(title=f"{self.config.run.name}: {label} on {what}", height=950)
        return fig

    def _price_and_fills(self, equity: pd.DataFrame) -> list[go.Scatter]:
        fills = self.fills
        traces = [go.Scatter(x=equity.index, y=equity["mark"], name="close")]
        for side, marker, colour in (
            ("buy", "triangle-up", "#2e7d32"),
            ("sell", "triangle-down", "#c62828"),
        ):
            chosen = fills[fills["side"] == side]
            traces.append(
                go.Scatter(
                    x=chosen.index,
                    y=chosen["price"],
                    mode="markers",
                    name=side,
                    marker={"symbol": marker, "color": colour, "size": 8},
                )
            )
        return traces

    def _universe_prices(self) -> list[go.Scatter]:
        traces = []
        for symbol, close in self.marks.replace(0.0, np.nan).items():
            first = close.dropna().iloc[0] if close.notna().any() else 1.0
            traces.append(go.Scatter(x=close.index, y=close / first, name=str(symbol)))
        return traces
