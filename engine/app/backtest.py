"""The backtest: a thin shell over the kernel and a run session.

It loads and checks the bars, builds the kernel (:func:`engine.app.kernel.build_kernel`:
every component, in its order), stores a run (:class:`engine.app.session.RunSession`,
whose recorder is the kernel's first component), feeds every bar through
:meth:`~engine.app.kernel.Kernel.drive` in chunks (yielding to the event loop between
them), and stores the summary (:func:`engine.app.outcome.summarize`). Within a chunk
dispatch is plain calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.app.kernel import StrategyFactory, build_kernel
from engine.app.outcome import Outcome, ResultsCollector, provenance, summarize
from engine.app.scenario import ScenarioConfig
from engine.app.universe_results import UniverseCollector
from engine.app.warmup import check_warmup, trade_start_ns
from engine.core.bus import MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError
from engine.core.events import RunFinished
from engine.feeds.bardata import FIELDS
from engine.feeds.bars import BarData, load_bars
from engine.feeds.universe import Universe, load_universe, symbols_label

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from engine.app.kernel import Kernel
    from engine.app.metrics import Summary

__all__ = ["BacktestResult", "run_backtest", "run_backtest_async"]

# runs at least this long write through a writer process by default (see run_backtest_async)
WRITER_PROCESS_MIN_BARS = 20_000
CHUNK = 4096


@dataclass
class BacktestResult:
    run_id: int | None
    outcome: Outcome
    rows_written: int
    wall_seconds: float
    bars_per_second: float
    data: BarData | Universe
    #: of ``wall_seconds``, the time before the first bar: storing the run, building the
    #: kernel (in a fresh process also imports, the compiled-code cache, a checkpoint)
    setup_seconds: float = 0.0
    #: the run row's provenance columns (:func:`engine.app.outcome.provenance`)
    provenance: dict[str, Any] | None = None
    #: per bar: time, equity, position, cash and mark; the fills (the kernel's observer)
    collector: ResultsCollector | None = None

    @property
    def summary(self) -> Summary:
        return self.outcome.summary

    @property
    def fills(self) -> int:
        return self.outcome.fills

    @property
    def orders(self) -> dict[str, Any]:
        """What became of the orders: sent, denied and rejected by kind, and why there is
        no fill when there is none (:func:`engine.app.outcome.order_outcomes`)."""
        return self.outcome.orders

    @property
    def edge(self) -> dict[str, Any] | None:
        """Is the edge real: bootstrap intervals, PSR against 0 and buy-and-hold."""
        return self.outcome.edge

    @property
    def training(self) -> dict[str, Any] | None:
        """The checkpoint's training window and the figures of the bars inside it and after
        it; None without a checkpoint."""
        return self.outcome.training

    @property
    def agents(self) -> list[dict[str, Any]] | None:
        return self.outcome.agents

    @property
    def panel(self) -> dict[str, Any] | None:
        """The meta-investor's panel over the run; None without one."""
        return self.outcome.panel

    def stored_summary(self) -> dict[str, Any]:
        """The summary as the run row stores it (:meth:`engine.app.outcome.Outcome.stored`)."""
        return self.outcome.stored()

    @property
    def replay_bars_per_second(self) -> float:
        """Bars per second from the first bar on (``bars_per_second`` counts the setup)."""
        replay = self.wall_seconds - self.setup_seconds
        return len(self.data) / replay if replay > 0 else float("inf")


def run_backtest(config: ScenarioConfig, **options: Any) -> BacktestResult:
    """Run a scenario to the end on an event loop of its own: :func:`run_backtest_async`,
    with the same keyword options."""
    return asyncio.run(run_backtest_async(config, **options))


async def run_backtest_async(
    config: ScenarioConfig,
    *,
    db_url: str | None = None,
    data: BarData | Universe | None = None,
    persist: bool = True,
    scenario_path: str = "",
    progress: Callable[[int, int], None] | None = None,
    strategy_factory: StrategyFactory | None = None,
    strategy_record: dict[str, Any] | None = None,
    tap: Callable[[MessageBus], None] | None = None,
    writer_process: bool | None = None,
) -> BacktestResult:
    """Load and validate the bars, build the pipeline, store a run, replay every bar,
    store the summary.

    Data errors, and any component that cannot be built (a missing or refused
    checkpoint), surface before anything is stored. If a handler raises, the
    finished bars are written, the run is marked ``failed`` with the error,
    and :class:`HandlerError` propagates. ``tap(bus)`` is called before anything
    subscribes (a sweep task keeps the run's messages with it). With
    ``run.trade_start`` the bars before it only warm up (see :mod:`engine.app.warmup`)
    and the summary starts there.

    With persistence the rows can be written by a :class:`~storage.writer.WriterProcess`
    on another core; the run's status is then set only after every row is committed.
    ``writer_process=None`` (the default) uses one for runs of at least
    ``WRITER_PROCESS_MIN_BARS`` (20,000) bars on any database but an in-memory SQLite
    one, which another process cannot open: starting the child costs some 0.3 s, and
    it saves some 30 µs a bar. ``True`` / ``False`` force either way.

    ``strategy_factory`` runs another strategy than the scenario's; ``strategy_record``
    (:func:`engine.app.kernel.custom_strategy`) is what the run row stores of it.
    """
    if data is None:
        data = load_data(config)
    elif data.symbol != symbols_label(config.symbols):
        raise ConfigError(
            f"the bars are for {data.symbol!r} but the scenario trades "
            f"{symbols_label(config.symbols)!r}"
        )
    if strategy_factory is None:  # a custom strategy's warm-up is its own affair
        check_warmup(config, len(data))
    warmup_until = trade_start_ns(config)
    if warmup_until is not None and warmup_until > int(data.ts[-1]):
        raise ConfigError(
            f"run.trade_start={config.run.trade_start!r} is after the last bar of the data"
        )
    started = time.perf_counter()
    bus = MessageBus()
    clock = SimulatedClock()
    if tap is not None:
        tap(bus)
    kernel = build_kernel(config, bus, clock, bars=data, strategy=strategy_factory)
    session = None
    if persist:
        # the storage stack (SQLAlchemy, the recorder) loads only for a stored run
        from engine.app.session import RunSession
        from storage.db import connect

        engine = connect(db_url or config.storage.url)
        if writer_process is None:
            writer_process = len(data) >= WRITER_PROCESS_MIN_BARS and not _in_memory(engine)
        session = RunSession.create(
            engine,
            config,
            bus,
            kind="backtest",
            scenario_path=scenario_path,
            data=data,
            record=kernel.training_record,
            writer_process=writer_process,
            started=started,
            strategy=strategy_record,
        )
    collector = (
        UniverseCollector(bus, data.symbols, len(data.times))
        if isinstance(data, Universe)
        else ResultsCollector(bus, len(data))
    )
    kernel.start(session.recorder if session else None, observers=[collector])
    try:
        setup = time.perf_counter() - started
        try:
            await _replay(data, kernel, progress)
            bus.publish(
                RunFinished(
                    ts_event=clock.time_ns,
                    ts_init=clock.time_ns,
                    seq=bus.next_seq(),
                    bars=len(data),
                )
            )
        except BaseException as exc:
            if session is not None:
                session.fail(exc)
            raise
        wall = time.perf_counter() - started
        outcome = summarize(
            config,
            collector,
            kernel,
            trade_from_ns=warmup_until,
            gaps=data.report.gaps,
            data=data.report.changes(),
        )
        if session is not None:
            session.complete(outcome.stored(), wall)
    finally:
        if session is not None:
            session.close()
    return BacktestResult(
        run_id=None if session is None else session.run_id,
        outcome=outcome,
        rows_written=0 if session is None else session.recorder.rows_written,
        wall_seconds=wall,
        bars_per_second=len(data) / wall if wall > 0 else float("inf"),
        data=data,
        setup_seconds=setup,
        provenance=provenance(data, kernel.training_record),
        collector=collector,
    )


def _in_memory(engine: Engine) -> bool:
    url = engine.url
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def load_data(config: ScenarioConfig) -> BarData | Universe:
    """The scenario's bars: one instrument's, or a universe's merged onto one clock."""
    if not config.instruments:
        symbol = config.instrument.symbol
        return load_bars(config.data, symbol, path=config.data_path(), seed=config.run.seed)
    own = [config.data_path(i.path) if i.path else None for i in config.instruments]
    universe = load_universe(
        config.data, config.symbols, own, base=Path(config.base_dir), seed=config.run.seed
    )
    return universe.series[0] if len(universe.series) == 1 else universe


async def _replay(
    data: BarData | Universe, kernel: Kernel, progress: Callable[[int, int], None] | None
) -> None:
    """Drive every bar in order (a universe's in time-slice order, :mod:`engine.feeds.
    universe`), yielding to the event loop between chunks. Within a chunk, plain calls."""
    total = len(data)
    symbols = data.symbols if isinstance(data, Universe) else []
    for start in range(0, total, CHUNK):
        stop = min(start + CHUNK, total)
        ts, o, h, lo, c, v = (getattr(data, n)[start:stop].tolist() for n in ("ts", *FIELDS))
        names = None
        if isinstance(data, Universe):
            names = [symbols[j] for j in data.symbol_index[start:stop].tolist()]
        kernel.feed(ts, o, h, lo, c, v, names)
        if progress is not None:
            progress(stop, total)
        await asyncio.sleep(0)
