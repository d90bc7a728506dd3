"""Paper trading: live bars from MQTT through the backtest's pipeline, crash-safe.

The core, :class:`PaperTrader`, is synchronous and deterministic. It is a shell
over the backtest's kernel (:func:`engine.app.kernel.build_kernel`: the same
components in the same order, the run session's recorder first) and takes one feed
message at a time: :class:`engine.core.wire.FeedGate` decides whether it is the
next bar, :class:`engine.feeds.guard.FeedGuard` whether that bar is plausible
(or quarantined, or a gap that halts the run), and a bar is dispatched, then
stored with everything it produced in one transaction (the Recorder's rows,
the bar, the run's feed position, the gap it closes).

Resume. The run's clock is the wall clock sampled when a bar arrives and held
while that bar is processed, so every message a bar leads to is a function of
the bars so far and their arrival times, which are stored. Starting the same
run again re-drives the stored bars through a fresh kernel with writes
suppressed, which rebuilds every piece of state (positions, open orders,
cash, indicators, agents, meta-investor) without serialising any of it; each
bar must reproduce its stored bus sequence numbers and the hash of the
messages it led to, and the last stored snapshot must equal the rebuilt
portfolio, or the run is not resumed (:class:`ResumeError`).

Delivery. The MQTT shell (:func:`run_paper_async`, its connection in
:mod:`engine.app.paper_session`) uses a persistent session
with a client id stable for the run and acknowledges a bar only after its
transaction committed and the messages it produced were sent: a process
killed at any point gets its unacknowledged bars again and drops those it had
stored (duplicates by feed sequence number). Lost connections are retried
with jittered exponential backoff. SIGTERM and SIGINT stop the run between
bars. A stale feed (no bar for ``stale_after_bars`` bar lengths) is logged.
A halt (a gap with ``on_gap = "halt"``, an implausible bar with
``on_implausible = "halt"``) ends the run with status ``halted``, leaving the bar
that caused it unacknowledged: started again, the run reads it first.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import signal
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from engine.app.kernel import Kernel, build_kernel
from engine.app.outcome import ResultsCollector, summarize
from engine.app.paper_session import PaperOptions, PaperSession
from engine.app.provenance import TrainingRecord
from engine.app.scenario import ScenarioConfig, config_hash
from engine.app.session import RunSession
from engine.app.universe_results import UniverseCollector
from engine.app.warmup import trade_start_ns
from engine.core.bus import ANY, MessageBus
from engine.core.clock import SimulatedClock
from engine.core.errors import ConfigError, HandlerError, ResumeError
from engine.core.events import Bar, Message, encode
from engine.core.wire import DEFAULT_MAX_MESSAGE_BYTES, DROP, HALT, HOLD, PROCESS, FeedGate, Verdict
from engine.feeds.bars import count_gaps
from engine.feeds.guard import (
    ACCEPT,
    QUARANTINE,
    FeedGuard,
    FeedLimits,
    Gap,
    Judgement,
)
from engine.feeds.mqtt import MqttBus, MqttSettings, quiet_socket_races
from storage.db import connect
from storage.models import RunStatus
from storage.paper import (
    StoredBar,
    bar_writer,
    create_paper_state,
    find_paper_run,
    last_snapshot,
    load_state,
    record_drop,
    record_halt,
    record_quarantine,
    stored_bars,
)
from storage.runs import process_identity

__all__ = [
    "PaperClock",
    "PaperOptions",
    "PaperResult",
    "PaperTrader",
    "build_paper_kernel",
    "open_paper_run",
    "run_paper",
]

log = logging.getLogger("emarl.paper")

NS_PER_MINUTE = 60_000_000_000
# A paper run stores each bar in one transaction of its own (PaperTrader._process), so
# its recorder never flushes by count.
BY_BAR = 2**62
# After a resume, the messages of this many of the last stored bars are sent again:
# more than a broker lets a client hold unacknowledged (Mosquitto: 20 by default).
RESEND_BARS = 100


class PaperClock(SimulatedClock):
    """Wall-clock time, read when a bar arrives and held while that bar is processed."""


@dataclass
class PaperResult:
    run_id: int
    outcome: str  # "end" (the feed ended), "stopped" (signal), "max_bars" or "halted"
    bars: int  # bars accepted by this process
    replayed: int  # stored bars re-driven on start
    dropped: int
    reconnects: int
    wall_seconds: float
    quarantined: int = 0
    halt_reason: str | None = None


def build_paper_kernel(config: ScenarioConfig, bus: MessageBus) -> Kernel:
    """A paper run's kernel on ``bus``, on a :class:`PaperClock`: built, not started."""
    return build_kernel(config, bus, PaperClock())


class PaperTrader:
    """The synchronous core of a paper run (see the module docstring)."""

    def __init__(
        self,
        config: ScenarioConfig,
        session: RunSession,
        *,
        feed: str,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        kernel: Kernel | None = None,
        limits: FeedLimits | None = None,
        key: bytes | None = None,
    ) -> None:
        """``session``: the run's row and recorder (:func:`open_paper_run`), on the bus
        the kernel talks to; ``kernel``: from :func:`build_paper_kernel` on that bus (built
        before the run row exists), built here when not given. ``limits``: what the feed
        guard accepts (default: :class:`FeedLimits` for the scenario's bars); ``key``: the
        shared key of a signed feed."""
        self.config = config
        self.session = session
        self.engine = session.engine
        self.run_id = session.run_id
        bus = self.bus = session.bus
        self.kernel = kernel or build_paper_kernel(config, bus)
        self.symbols = config.symbols
        self.symbol = self.symbols[0]
        self.universe = len(self.symbols) > 1
        self.recorder = session.recorder
        self.collector = (
            UniverseCollector(bus, self.symbols) if self.universe else ResultsCollector(bus)
        )
        self.kernel.start(self.recorder, observers=[self.collector])
        self._hash = hashlib.blake2b(digest_size=16)
        self.last_seq = 0
        bus.subscribe(ANY, self._observe)
        if limits is None:
            limits = PaperOptions(run_name="x").limits(config)
        # a guard per symbol: each judges its symbol's prices against its own last close
        n = len(self.symbols)
        self.guards = {symbol: FeedGuard(limits, per_slice=n) for symbol in self.symbols}
        self.gate = FeedGate(
            feed, self.symbols, max_bytes=max_message_bytes, key=key, max_gap=limits.max_gap
        )
        self.bars = 0
        self.dropped = 0
        self.quarantined = 0
        self.halt_reason: str | None = None
        self.halted_gap = False  # a gap row stored as halted, deleted once bars go on
        self.last_received_ns = time.time_ns()
        # What the last stored bars sent on MQTT, rebuilt on resume and sent again.
        self.replayed_outputs: deque[list[tuple[str, bytes]]] = deque(maxlen=RESEND_BARS)

    def _observe(self, message: Message) -> None:
        self._hash.update(encode(message))
        if message.seq > self.last_seq:
            self.last_seq = message.seq

    def _drive(self, bar: Bar | StoredBar, received_ns: int) -> tuple[int, str]:
        """Dispatch one bar at its arrival time; its bus seq and the hash of what it led to."""
        self._hash = hashlib.blake2b(digest_size=16)
        seq = self.kernel.drive(
            bar.ts_event,
            bar.open,
            bar.high,
            bar.low,
            bar.close,
            bar.volume,
            received_ns,
            bar.symbol or self.symbol,
        )
        return seq, self._hash.hexdigest()

    def summary(self) -> dict[str, Any] | None:
        """The run's summary over the bars so far, as a backtest's (None before two)."""
        collector = self.collector
        if collector.count < 2:
            return None
        outcome = summarize(
            self.config,
            collector,
            self.kernel,
            trade_from_ns=trade_start_ns(self.config),
            gaps=count_gaps(collector.ts[: collector.count], self.config.data.timezone),
        )
        return outcome.stored()

    # -- resume ---------------------------------------------------------------

    def resume(self, state: dict[str, Any]) -> int:
        """Re-drive the stored bars with writes suppressed and check the rebuilt state.

        Returns the number of bars re-driven. Raises :class:`ResumeError` when a
        bar does not reproduce what was stored with it.
        """
        count = 0
        last_feed_seq = 0
        last_ts = 0
        outbox: list[tuple[str, bytes]] | None = getattr(self.bus, "outbox", None)
        for stored in stored_bars(self.engine, self.run_id):
            if outbox:
                self.replayed_outputs.append(list(outbox))
                outbox.clear()
            try:
                seq, digest = self._drive(stored, stored.received_ns)
            except HandlerError as exc:
                raise ResumeError(
                    f"run {self.run_id}: re-driving stored bar {stored.feed_seq} failed: {exc}"
                ) from exc
            self.recorder.discard()
            if seq != stored.seq or self.last_seq != stored.last_seq or digest != stored.digest:
                raise ResumeError(
                    f"run {self.run_id}: stored bar {stored.feed_seq} (time {stored.ts_event}) "
                    f"does not reproduce what it produced when it was processed (bus seq "
                    f"{seq}..{self.last_seq}, stored {stored.seq}..{stored.last_seq}; "
                    f"hash {'equal' if digest == stored.digest else 'differs'}); the code or "
                    "its data changed since; start a new run with --new"
                )
            count += 1
            last_feed_seq = stored.feed_seq
            last_ts = stored.ts_event
            symbol = stored.symbol or self.symbol
            self.guards[symbol].accepted(stored.close)
            self.gate.last_ts_of[symbol] = last_ts
        problems = []
        if count != state["bars"]:
            problems.append(f"{count} bars stored, the state says {state['bars']}")
        if last_feed_seq != state["last_feed_seq"]:
            problems.append(
                f"last stored feed seq {last_feed_seq}, the state says {state['last_feed_seq']}"
            )
        if self.last_seq != state["last_seq"]:
            problems.append(f"bus seq rebuilt to {self.last_seq}, stored {state['last_seq']}")
        snapshot = last_snapshot(self.engine, self.run_id)
        portfolio = self.kernel.portfolio
        if count and snapshot is None:
            problems.append("no portfolio snapshot stored")
        elif snapshot is not None:
            position = portfolio.position(snapshot["symbol"])
            rebuilt = {
                "cash": portfolio.cash,
                "position": position.quantity,
                "equity": portfolio.equity,
                "fees": portfolio.fees,
                "borrow_fees": portfolio.borrow_fees,
                "financing": portfolio.financing,
            }
            for key, value in rebuilt.items():
                if not math.isclose(value, snapshot[key], rel_tol=1e-12, abs_tol=1e-9):
                    problems.append(f"{key} rebuilt to {value!r}, stored {snapshot[key]!r}")
        if outbox:
            self.replayed_outputs.append(list(outbox))
            outbox.clear()
        if problems:
            raise ResumeError(
                f"run {self.run_id}: the stored state does not match the stored bars: "
                + "; ".join(problems)
            )
        self.bars = count
        self.gate.last_seq = last_feed_seq
        self.gate.last_ts = last_ts
        self.halted_gap = bool(state.get("halted_gap"))
        return count

    # -- live -----------------------------------------------------------------

    def on_message(self, topic_name: str, data: bytes, *, retained: bool = False) -> Verdict:
        """Take one message from the feed: process, store and return its verdict."""
        received = time.time_ns()
        verdict = self.gate.check(topic_name, data, retained=retained)
        if verdict.action == PROCESS:
            assert verdict.bar is not None
            guard = self.guards[verdict.bar.symbol]
            judgement = guard.judge(
                verdict.seq, verdict.bar, self.gate.last_seq, self.gate.last_ts, received
            )
            if judgement.action != ACCEPT:
                return self._set_aside(topic_name, verdict, judgement)
            if judgement.gap is not None:
                log.warning("feed gap: %s before seq %d; trading on", judgement.gap.describe(),
                            verdict.seq)  # fmt: skip
            self._process(verdict.seq, verdict.bar, received, judgement.gap)
            guard.accepted(verdict.bar.close)
            self.last_received_ns = received
            ended = self.gate.accepted(verdict.seq, verdict.bar.ts_event, verdict.bar.symbol)
            if ended is not None:
                return ended
        elif verdict.action == DROP:
            if verdict.quarantined:
                self.quarantine(f"{topic_name}: {verdict.reason}")
            else:
                self.drop(f"{topic_name}: {verdict.reason}")
        elif verdict.action == HOLD:
            log.warning("%s: %s", topic_name, verdict.reason)
        return verdict

    def _set_aside(self, topic_name: str, verdict: Verdict, judgement: Judgement) -> Verdict:
        """Quarantine a bar, or halt the run at it (see :mod:`engine.feeds.guard`)."""
        if judgement.action == QUARANTINE:
            self.quarantine(f"{topic_name}: {judgement.reason}")
            return Verdict(DROP, judgement.reason, seq=verdict.seq, quarantined=True)
        if judgement.gap is None:  # an implausible bar: counted as quarantined too
            self.quarantine(f"{topic_name}: {judgement.reason}")
        self.halt_reason = judgement.reason
        log.error("halting: %s", judgement.reason)
        record_halt(self.engine, self.run_id, judgement.gap)
        self.halted_gap = self.halted_gap or judgement.gap is not None
        return Verdict(HALT, judgement.reason, seq=verdict.seq)

    def drop(self, reason: str) -> None:
        self.dropped += 1
        log.warning("dropped message: %s", reason)
        record_drop(self.engine, self.run_id, reason)

    def quarantine(self, reason: str) -> None:
        self.quarantined += 1
        log.warning("quarantined bar: %s", reason)
        record_quarantine(self.engine, self.run_id, reason)

    def _process(self, feed_seq: int, bar: Bar, received_ns: int, gap: Gap | None) -> None:
        try:
            seq, digest = self._drive(bar, received_ns)
        except HandlerError:
            self.recorder.discard()
            raise
        stored = StoredBar(
            feed_seq=feed_seq,
            seq=seq,
            last_seq=self.last_seq,
            ts_event=bar.ts_event,
            received_ns=received_ns,
            open=bar.open,
            high=bar.high,
            low=bar.low,
            close=bar.close,
            volume=bar.volume,
            digest=digest,
            symbol=bar.symbol if self.universe else None,
        )
        writer = bar_writer(
            self.run_id,
            stored,
            previous_feed_seq=self.gate.last_seq,
            bars=self.bars + 1,
            gap=gap,
            clear_halted=self.halted_gap,
        )
        self.recorder.flush(also=writer)
        self.bars += 1
        self.halted_gap = False


# -- the asyncio shell ----------------------------------------------------------


def open_paper_run(
    engine: Engine,
    config: ScenarioConfig,
    options: PaperOptions,
    scenario_path: str,
    bus: MessageBus,
    record: TrainingRecord | None = None,
) -> tuple[RunSession, dict[str, Any], bool]:
    """The run to drive, as a session on ``bus``: the stored one of this name (to be
    resumed) or a new one (with the checkpoint's ``record`` as its provenance; its bars
    arrive live, so their fingerprint is not known when the row is written)."""
    name = options.run_name
    digest = config_hash(config)
    bar_ns = config.data.bar_minutes * NS_PER_MINUTE
    stale_ns = int(options.stale_after_bars * bar_ns)
    existing = None if options.new else find_paper_run(engine, name)
    if existing is not None:
        if existing.status == RunStatus.COMPLETED:
            raise ConfigError(
                f"paper run {name!r} (id {existing.run_id}) is completed (its feed ended); "
                "pass --new to start it afresh, or --run for another name"
            )
        if existing.config_hash != digest:
            raise ConfigError(
                f"paper run {name!r} (id {existing.run_id}) was started with another scenario "
                f"(config hash {existing.config_hash}, now {digest}); resume it with the same "
                "scenario, or pass --new"
            )
        state = load_state(engine, existing.run_id)
        if state is None:  # stopped between creating the run and its state
            create_paper_state(
                engine,
                existing.run_id,
                feed=options.feed,
                client_id=_client_id(name, existing.run_id),
                bar_ns=bar_ns,
                stale_after_ns=stale_ns,
            )
            state = load_state(engine, existing.run_id)
            assert state is not None
        if state["feed"] != options.feed:
            raise ConfigError(
                f"paper run {name!r} (id {existing.run_id}) reads feed {state['feed']!r}, "
                f"not {options.feed!r}; pass --feed {state['feed']} or --new"
            )
        return RunSession(engine, existing.run_id, bus, flush_every_bars=BY_BAR), state, True
    session = RunSession.create(
        engine,
        config,
        bus,
        kind="paper",
        scenario_path=scenario_path,
        name=name,
        record=record,
        flush_every_bars=BY_BAR,
    )
    run_id = session.run_id
    create_paper_state(
        engine,
        run_id,
        feed=options.feed,
        client_id=_client_id(name, run_id),
        bar_ns=bar_ns,
        stale_after_ns=stale_ns,
    )
    state = load_state(engine, run_id)
    assert state is not None
    return session, state, False


def _client_id(name: str, run_id: int) -> str:
    return f"emarl-paper-{name}-{run_id}"


def run_paper(
    config: ScenarioConfig,
    settings: MqttSettings,
    options: PaperOptions,
    *,
    db_url: str | None = None,
    scenario_path: str = "",
) -> PaperResult:
    """Run (or resume) a paper run until its feed ends, ``max_bars``, or SIGTERM/SIGINT."""
    return asyncio.run(
        run_paper_async(
            config,
            settings,
            options,
            db_url=db_url,
            scenario_path=scenario_path,
            handle_signals=True,
        )
    )


async def run_paper_async(
    config: ScenarioConfig,
    settings: MqttSettings,
    options: PaperOptions,
    *,
    db_url: str | None = None,
    scenario_path: str = "",
    stop: asyncio.Event | None = None,
    handle_signals: bool = False,
    on_ready: Callable[[], None] | None = None,
) -> PaperResult:
    """See :func:`run_paper`; ``stop`` ends the run between bars when set."""
    options.check()
    quiet_socket_races()
    started = time.perf_counter()
    stop = stop or asyncio.Event()
    if handle_signals:
        loop = asyncio.get_running_loop()
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(number, stop.set)
    bus: MessageBus = MqttBus(options.run_name) if options.export else MessageBus()
    # everything is built (a checkpoint loaded and checked) before a run row is stored
    kernel = build_paper_kernel(config, bus)
    engine = connect(db_url or config.storage.url)
    run, state, resumed = open_paper_run(
        engine, config, options, scenario_path, bus, kernel.training_record
    )
    run.started = started
    run_id = run.run_id
    trader = PaperTrader(
        config,
        run,
        feed=options.feed,
        max_message_bytes=options.max_message_bytes,
        kernel=kernel,
        limits=options.limits(config),
        key=options.feed_key,
    )
    replayed = 0
    if resumed:
        began = time.perf_counter()
        replayed = trader.resume(state)
        log.info(
            "run %s (id %d): resumed; re-drove %d stored bars in %.2f s, next feed seq %d",
            options.run_name,
            run_id,
            replayed,
            time.perf_counter() - began,
            trader.gate.last_seq + 1,
        )
    run.set_status(RunStatus.RUNNING, **process_identity())
    session = PaperSession(trader, settings, state["client_id"], options, stop, on_ready)
    try:
        outcome = await session.run()
    except BaseException as exc:
        if not resumed and not session.connected_once:
            # the broker refused the first connection: the new run never began
            run.discard()
        else:
            run.fail(exc, bars=trader.bars)
        raise
    wall = run.wall_seconds
    if outcome == "end":
        run.complete(trader.summary(), wall, bars=trader.bars)
    elif outcome == "halted":
        run.set_status(
            RunStatus.HALTED, error=trader.halt_reason, bars=trader.bars, wall_seconds=wall
        )
    else:
        run.set_status(RunStatus.STOPPED, bars=trader.bars, wall_seconds=wall)
    log.info(
        "run %s (id %d): %s after %d new bars (%d dropped messages, %d quarantined bars)",
        options.run_name,
        run_id,
        {
            "end": "feed ended",
            "stopped": "stopped",
            "max_bars": "bar limit reached",
            "halted": "halted",
        }[outcome],
        session.accepted,
        trader.dropped,
        trader.quarantined,
    )
    return PaperResult(
        run_id=run_id,
        outcome=outcome,
        bars=session.accepted,
        replayed=replayed,
        dropped=trader.dropped,
        reconnects=session.reconnects,
        wall_seconds=wall,
        quarantined=trader.quarantined,
        halt_reason=trader.halt_reason,
    )
