"""``emarl evaluate``: the learned ensemble of a scenario against an ablation of itself and
the references, on the same bars (the measures: :mod:`strategies.marl.evaluate`).

Strategic accuracy (SPEC 1): among the ensemble's non-neutral decisions (a decision
on the close of bar t whose ensemble direction sign(P_bull - P_bear) is not 0 and
whose confidence passed the gate), the share whose direction equals the sign of the
forward return close[t+k] / close[t] - 1 (a zero return counts as a miss; decisions
closer than k bars to the end are left out).

Every row is measured on the same bars, from ``trade_start`` to ``end`` (an ablation):

* ``learned``: the scenario's learned ensemble, weighted by the meta-investor (a backtest
  with the warm-up before ``trade_start``);
* ``equal_weights``: the same agents with fixed equal weights at full exposure;
* ``<agent>_alone``: each agent alone (all the weight, full exposure);
* ``sma_10_30``: the SMA(10)/SMA(30) crossover with ``quantity = max_position``;
* ``buy_and_hold_account``: the whole account in the instrument from the first bar's
  close, rounded down to the lot (``buy_and_hold_account_units``; no costs);
* ``buy_and_hold``: ``max_position`` units from the first bar's close (no costs; the
  output states the size as ``buy_and_hold_units``).

Sharpe = mean / std of the per-bar equity returns x √(bars per year), bars per year
counted from the data; max drawdown of the equity curve; hit rate = share of bars
held with a position whose P&L was positive.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgspec
import numpy as np

from engine.app.backtest import run_backtest
from engine.app.outcome import training_windows
from engine.app.provenance import checkpoint_path, read_training_record
from engine.app.significance import edge_figures
from engine.app.warmup import check_warmup, trade_start_ns
from engine.core.errors import ConfigError
from engine.core.events import PortfolioSnapshot, TargetPosition
from engine.feeds.bars import load_bars
from strategies.marl.config import MappoEnsembleConfig
from strategies.marl.evaluate import equity_statistics, strategic_accuracy
from strategies.marl.networks import AGENTS
from strategies.sma_cross import SmaCrossConfig

__all__ = ["evaluate_scenario"]


def _iso(ns: int) -> str:

    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat()


def _run(config: Any, data: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[int, float]]:

    ts: list[int] = []
    equity: list[float] = []
    position: list[float] = []
    directions: dict[int, float] = {}
    threshold = getattr(config.strategy, "confidence_threshold", 0.0)

    def tap(bus: Any) -> None:
        def on_snapshot(s: PortfolioSnapshot) -> None:
            ts.append(s.ts_event)
            equity.append(s.equity)
            position.append(s.position)

        def on_target(t: TargetPosition) -> None:
            gated = t.confidence >= threshold - 1e-12
            directions[t.ts_event] = float(np.sign(t.bullish - t.bearish)) if gated else 0.0

        bus.subscribe(PortfolioSnapshot, on_snapshot)
        bus.subscribe(TargetPosition, on_target)

    run_backtest(config, data=data, persist=False, tap=tap)
    return np.asarray(ts), np.asarray(equity), np.asarray(position), directions


def _figures(
    ts: np.ndarray,
    equity: np.ndarray,
    position: np.ndarray,
    direction: np.ndarray,
    close: np.ndarray,
    seed: int,
) -> dict[str, float]:
    """Equity statistics, strategic accuracy and the edge figures of one strategy: the
    block-bootstrap 95% intervals of Sharpe and total return, PSR against 0 and against
    buy-and-hold of the whole account over the same bars (engine.app.significance)."""

    figures = equity_statistics(ts, equity, position)
    for k in (1, 8):
        accuracy, count = strategic_accuracy(direction, close, k)
        figures[f"strategic_accuracy_k{k}"] = accuracy
        figures[f"decisions_k{k}"] = count
    if len(equity) > 2:
        years = (int(ts[-1]) - int(ts[0])) / (365.25 * 86_400e9)
        edge = edge_figures(
            np.diff(equity) / equity[:-1],
            (len(ts) - 1) / years if years > 0 else math.nan,
            np.diff(close) / close[:-1],
            seed=seed,
        )
        for key in ("sharpe_low", "sharpe_high", "total_return_low", "total_return_high"):
            figures[key] = edge[key]
        figures["psr"] = edge["psr"]
        figures["psr_vs_buy_and_hold"] = edge["psr_benchmark"]
    return figures


def evaluate_scenario(
    config: Any, *, trade_start: str = "", end: str = "", allow_in_sample: bool = False
) -> dict[str, Any]:
    """Figures of the learned ensemble, buy-and-hold and SMA over [trade_start, end].

    ``trade_start`` empty keeps the scenario's own ``run.trade_start``; when that is empty
    too, the evaluation covers every bar (the indicators' warm-up bars make no decision).
    ``end`` empty keeps the scenario's ``data.end``.

    A window that overlaps the bars the checkpoint was trained on is refused
    (:class:`ConfigError` naming both windows) unless ``allow_in_sample``; then every
    figure is also given for each part of the window (``windows``: ``in_sample``,
    ``out_of_sample``, ``before_training``; see :func:`engine.app.backtest.training_windows`).
    """

    if not isinstance(config.strategy, MappoEnsembleConfig):
        raise ConfigError(
            "emarl evaluate scores a learned ensemble ([strategy] kind = 'mappo_ensemble'), "
            f"not {type(config.strategy).__struct_config__.tag!r}; compare other strategies' "
            "runs with emarl compare"
        )
    if trade_start:
        run = msgspec.structs.replace(config.run, trade_start=trade_start)
        config = msgspec.structs.replace(config, run=run)
    if end:
        config = msgspec.structs.replace(config, data=msgspec.structs.replace(config.data, end=end))
    record = read_training_record(checkpoint_path(config))
    data = load_bars(
        config.data,
        config.single("emarl evaluate").symbol,
        path=config.data_path(),
        seed=config.run.seed,
    )
    check_warmup(config, len(data))
    start_ns = trade_start_ns(config)
    if start_ns is None:
        start_ns = int(data.ts[0])
    first = int(np.searchsorted(data.ts, start_ns))
    if len(data) - first < 2:
        raise ConfigError(
            f"--trade-start {config.run.trade_start!r}: fewer than 2 bars from there to the "
            f"data's end ({_iso(int(data.ts[-1]))}); pick an earlier start"
        )
    windows = training_windows(record, int(data.ts[first]), int(data.ts[-1]))
    if set(windows) != {"out_of_sample"} and not allow_in_sample:
        chose = ""
        seen = record.last_bar_ns
        if record.validation is not None:
            chose = (
                f" or chose it on ({_day(record.validation[0])} .. {_day(record.validation[1])})"
            )
            seen = record.validation[1]
        raise ConfigError(
            f"the evaluation window {_day(int(data.ts[first]))} .. {_day(int(data.ts[-1]))} "
            f"overlaps the bars checkpoint {record.checkpoint.name} was trained on "
            f"({_day(record.first_bar_ns)} .. {_day(record.last_bar_ns)}){chose}; evaluate "
            f"from after {_day(seen)} (--trade-start) or pass --allow-in-sample"
        )
    ts, close = data.ts[first:], data.close[first:]
    max_position = config.strategy.max_position
    cash = config.broker.initial_cash
    lot = config.single("emarl evaluate").lot_size

    def learned(meta: dict[str, Any] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The ensemble with [strategy.meta] updated by ``meta`` (None: as configured)."""
        run_config = config
        if meta is not None:
            strategy = msgspec.structs.replace(
                config.strategy, meta=config.strategy.meta.with_fields(**meta)
            )
            run_config = msgspec.structs.replace(config, strategy=strategy)
        ts_run, equity, position, directions = _run(run_config, data)
        keep = ts_run >= start_ns
        direction = np.array([directions.get(int(t), 0.0) for t in ts])
        return equity[keep], position[keep], direction

    sma_config = msgspec.structs.replace(
        config, strategy=SmaCrossConfig(fast=10, slow=30, quantity=max_position)
    )
    ts_s, eq_s, pos_s, _ = _run(sma_config, data)
    keep_s = ts_s >= start_ns
    units = math.floor(cash / close[0] / lot) * lot  # the whole account, in lots
    series = {
        "learned": learned(None),
        "equal_weights": learned({"allocator": "equal", "exposure": "full"}),
        **{
            f"{agent}_alone": learned(
                {
                    "allocator": "softmax",
                    "softmax_raw_weights": tuple(0.0 if j == i else -1e4 for j in range(3)),
                    "exposure": "full",
                }
            )
            for i, agent in enumerate(AGENTS)
        },
        # the SMA decides on bar t's close what it holds from bar t+1's open
        "sma_10_30": (eq_s[keep_s], pos_s[keep_s], np.append(np.sign(pos_s[keep_s])[1:], 0.0)),
        "buy_and_hold_account": (
            cash + units * (close - close[0]),
            np.full(len(close), units),
            np.ones(len(close)),
        ),
        "buy_and_hold": (
            cash + max_position * (close - close[0]),
            np.full(len(close), max_position),
            np.ones(len(close)),
        ),
    }

    def figures(lo: int, hi: int) -> dict[str, dict[str, float]]:
        return {
            name: _figures(
                ts[lo:hi], eq[lo:hi], pos[lo:hi], way[lo:hi], close[lo:hi], config.run.seed
            )
            for name, (eq, pos, way) in series.items()
        }

    out: dict[str, Any] = {
        "bars": len(close),
        "first_bar_ns": int(ts[0]),
        "last_bar_ns": int(ts[-1]),
        "buy_and_hold_units": max_position,
        "buy_and_hold_account_units": units,
        "checkpoint": {
            "path": str(record.checkpoint),
            "fingerprint": record.fingerprint,
            "trained_first_bar_ns": record.first_bar_ns,
            "trained_last_bar_ns": record.last_bar_ns,
        },
        **figures(0, len(close)),
    }
    if set(windows) != {"out_of_sample"}:
        parts: dict[str, Any] = {}
        for name, (lo_ns, hi_ns) in windows.items():
            lo = int(np.searchsorted(ts, lo_ns))
            hi = int(np.searchsorted(ts, hi_ns, side="right"))
            parts[name] = {
                "bars": hi - lo,
                "first_bar_ns": int(ts[lo]),
                "last_bar_ns": int(ts[hi - 1]),
                **figures(lo, hi),
            }
        out["windows"] = parts
    return out


def _day(ns: int) -> str:

    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M")
