"""SQLAlchemy 2.0 models of what a run stores.

Timestamps are int nanoseconds UTC (``*_ns`` / ``ts_event``), as on the bus;
they become datetimes only when shown. Event tables hold an event's fields
under the same names, in the same order, after ``run_id``. Every event table is keyed by
``(run_id, seq)``: a run's sequence number is unique, so a batch written twice
(after a crash and a resume) cannot duplicate a row.

A column's SQL type follows from its annotation: ``float`` is ``FLOAT``, ``str``
``TEXT`` and ``int`` ``INTEGER`` (:class:`Base`), the aliases below name the other
types, and ``| None`` makes a column nullable. Columns that several tables share
are declared once, on the mixins :class:`EventKey` (and its :class:`EventRow` and
:class:`AgentEventRow`), :class:`Job` and :class:`TaskRow`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from sqlalchemy import BigInteger, Float, ForeignKey, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite stores these tables clustered by their (run_id, seq) key: one B-tree per row.
NO_ROWID = {"sqlite_with_rowid": False}

#: 64-bit integers: times (int ns UTC), sequence numbers, seeds and a paper run's counters
Int64 = Annotated[int, mapped_column(BigInteger)]
#: identifiers and symbols: order, fill, strategy and agent ids, a code version
Ident = Annotated[str, mapped_column(String(100))]
#: the name of a run, a sweep, a feed, a client or a worker
Name = Annotated[str, mapped_column(String(200))]
#: one word: a status, a kind, an order event, a gap's action
Word = Annotated[str, mapped_column(String(20))]
#: a SHA-256 in hex (a config, the bars, a checkpoint, a task's fills)
Sha256 = Annotated[str, mapped_column(String(64))]
#: a file's path: a scenario, a checkpoint
FilePath = Annotated[str, mapped_column(String(1000))]
#: the run a row belongs to (the first part of its key): its rows go with it
RunKey = Annotated[int, mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)]
#: the sweep a row belongs to (the first part of its key): its rows go with it
SweepKey = Annotated[
    int, mapped_column(ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
]

__all__ = [
    "AgentActionRow",
    "AgentEventRow",
    "Base",
    "EventKey",
    "EventRow",
    "FeedGap",
    "Fill",
    "Job",
    "Order",
    "OrderEvent",
    "PaperBar",
    "PaperState",
    "PortfolioSnapshotRow",
    "Run",
    "RunStatus",
    "SeededJob",
    "ShapleyValueRow",
    "Sweep",
    "SweepTask",
    "TaskRow",
    "TrainingMetric",
    "TrainingRun",
    "ValuationRow",
    "WalkForwardEquity",
    "WalkForwardFold",
]


class RunStatus(StrEnum):
    """The statuses of a run row (``runs.status``, stored as these strings).

    ``running`` while its process writes it; ``completed`` (every bar stored);
    ``failed`` (a handler or the database raised; the error is stored);
    ``interrupted`` (its process died, judged by a reader: see :mod:`storage.runs`);
    and for paper runs ``stopped`` (a signal or ``--max-bars``; resumable) and
    ``halted`` (the feed guard stopped it; resumable, see :mod:`engine.feeds.guard`).
    """

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    STOPPED = "stopped"
    HALTED = "halted"


class Base(DeclarativeBase):
    # the SQL types of unannotated ``float`` and ``str`` (``int`` is INTEGER by default)
    type_annotation_map: ClassVar[dict[Any, Any]] = {float: Float(), str: Text()}


class EventKey:
    """The key and time every event table shares: ``(run_id, seq)``, then ``ts_event``.

    ``sort_order`` keeps the columns of these mixins first, in their order, so the key
    stays ``(run_id, seq)``.
    """

    run_id: Mapped[RunKey] = mapped_column(sort_order=-7)
    seq: Mapped[Int64] = mapped_column(primary_key=True, sort_order=-6)
    ts_event: Mapped[Int64] = mapped_column(sort_order=-5)


class EventRow(EventKey):
    """An event table whose rows are whole messages: the key, then both timestamps."""

    ts_init: Mapped[Int64] = mapped_column(sort_order=-4)


class AgentEventRow(EventRow):
    """An event table of one agent's messages: after the timestamps, the symbol and the
    agent (its id and its index in the ensemble)."""

    symbol: Mapped[Ident] = mapped_column(sort_order=-3)
    agent_id: Mapped[Ident] = mapped_column(sort_order=-2)
    agent_index: Mapped[int] = mapped_column(sort_order=-1)


class Job:
    """What a run, a sweep and a training run record alike: an id and a name, the
    scenario and code it ran, its status and when it started and ended."""

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True, sort_order=-1)  # first
    name: Mapped[Name]
    scenario: Mapped[FilePath]
    config_json: Mapped[str]
    code_version: Mapped[Ident]
    #: a :class:`RunStatus` value
    status: Mapped[Word] = mapped_column(index=True)
    started_ns: Mapped[Int64]
    ended_ns: Mapped[Int64 | None]
    wall_seconds: Mapped[float | None]


class SeededJob(Job):
    """A job reproducible from its config (by hash) and seed, with its error if it failed."""

    config_hash: Mapped[Sha256]
    seed: Mapped[Int64]
    error: Mapped[str | None]


class Run(SeededJob, Base):
    __tablename__ = "runs"

    kind: Mapped[Word] = mapped_column(default="backtest")
    symbol: Mapped[Ident]
    bars: Mapped[int] = mapped_column(default=0)
    bar_gaps: Mapped[int] = mapped_column(default=0)
    first_bar_ns: Mapped[Int64 | None]
    last_bar_ns: Mapped[Int64 | None]
    summary_json: Mapped[str | None]
    #: SHA-256 of the bars the run replayed (engine.feeds.bars.bars_fingerprint)
    data_fingerprint: Mapped[Sha256 | None]
    #: SHA-256 of the checkpoint's weights file, for a run that trades with one
    checkpoint_fingerprint: Mapped[Sha256 | None]
    #: first and last bar end of the checkpoint's training window (NULL: no checkpoint)
    trained_first_ns: Mapped[Int64 | None]
    trained_last_ns: Mapped[Int64 | None]
    #: the process writing the run (storage.runs: a reader marks the run ``interrupted``
    #: when that process is gone from this host or its heartbeat is old)
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None]
    #: refreshed in the transaction of every flush, and every few seconds while waiting
    heartbeat_ns: Mapped[Int64 | None]
    #: bars whose rows are committed (``bars``: the bars planned, or processed so far)
    bars_stored: Mapped[int | None]


class Order(EventRow, Base):
    __tablename__ = "orders"

    order_id: Mapped[Ident]
    strategy_id: Mapped[Ident]
    symbol: Mapped[Ident]
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(12))
    quantity: Mapped[float]
    limit_price: Mapped[float | None]
    stop_price: Mapped[float | None]
    time_in_force: Mapped[str] = mapped_column(String(4))
    #: the entry order of a bracket whose exit this order is (NULL: not an exit)
    parent_order_id: Mapped[Ident | None]

    __table_args__ = (Index("ix_orders_run_order", "run_id", "order_id"), NO_ROWID)


class OrderEvent(EventKey, Base):
    """Lifecycle of orders after submission: accepted, denied, rejected, canceled, expired."""

    __tablename__ = "order_events"

    order_id: Mapped[Ident]
    event: Mapped[Word]
    reason: Mapped[str | None]

    __table_args__ = (Index("ix_order_events_run_order", "run_id", "order_id"), NO_ROWID)


class Fill(EventRow, Base):
    __tablename__ = "fills"

    fill_id: Mapped[Ident]
    order_id: Mapped[Ident]
    strategy_id: Mapped[Ident]
    symbol: Mapped[Ident]
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float]
    price: Mapped[float]
    commission: Mapped[float]
    slippage: Mapped[float]
    filled_quantity: Mapped[float]
    leaves_quantity: Mapped[float]

    __table_args__ = (Index("ix_fills_run_ts", "run_id", "ts_event"), NO_ROWID)


class PortfolioSnapshotRow(EventRow, Base):
    __tablename__ = "portfolio_snapshots"

    symbol: Mapped[Ident]
    position: Mapped[float]
    avg_price: Mapped[float]
    mark_price: Mapped[float]
    cash: Mapped[float]
    realised_pnl: Mapped[float]
    unrealised_pnl: Mapped[float]
    equity: Mapped[float]
    exposure: Mapped[float]
    fees: Mapped[float]
    turnover: Mapped[float]
    #: cumulative borrow fees on short positions and interest on negative cash
    borrow_fees: Mapped[float] = mapped_column(server_default="0")
    financing: Mapped[float] = mapped_column(server_default="0")

    __table_args__ = (NO_ROWID,)


class AgentActionRow(AgentEventRow, Base):
    __tablename__ = "agent_actions"

    bearish: Mapped[float]
    neutral: Mapped[float]
    bullish: Mapped[float]
    action: Mapped[int]
    confidence: Mapped[float]

    __table_args__ = (NO_ROWID,)


class ShapleyValueRow(AgentEventRow, Base):
    __tablename__ = "shapley_values"

    decision_ts: Mapped[Int64]
    phi: Mapped[float]
    value_full: Mapped[float]
    value_model: Mapped[float]
    coalitions: Mapped[int]
    method: Mapped[Word]
    stderr: Mapped[float]

    __table_args__ = (Index("ix_shapley_values_run_agent", "run_id", "agent_index"), NO_ROWID)


class ValuationRow(AgentEventRow, Base):
    __tablename__ = "valuations"

    share_price: Mapped[float]
    volatility: Mapped[float]
    strike: Mapped[float]
    time_to_expiry: Mapped[float]
    option_value: Mapped[float]
    target_weight: Mapped[float]
    weight: Mapped[float]
    bubble: Mapped[float]
    pricing: Mapped[str] = mapped_column(String(32), server_default="black_scholes")

    # the Shapley listing joins each Shapley value to the valuation of its agent and bar
    __table_args__ = (
        Index("ix_valuations_run_ts_agent", "run_id", "ts_event", "agent_index"),
        NO_ROWID,
    )


class PaperBar(Base):
    """A bar a paper run accepted from its feed, stored with everything it produced.

    ``feed_seq`` is the feed's sequence number; ``seq`` the bar's on the run's bus and
    ``last_seq`` the last message it led to. ``received_ns`` is when the bar arrived
    (the run's clock while it was processed) and ``digest`` a hash of every message it
    led to: a resumed run re-drives the stored bars and checks both. In a universe every
    symbol's bars share the feed's sequence (``symbol`` names the bar's).
    """

    __tablename__ = "paper_bars"

    run_id: Mapped[RunKey]
    feed_seq: Mapped[Int64] = mapped_column(primary_key=True)
    seq: Mapped[Int64]
    last_seq: Mapped[Int64]
    ts_event: Mapped[Int64]
    received_ns: Mapped[Int64]
    open: Mapped[float]
    high: Mapped[float]
    low: Mapped[float]
    close: Mapped[float]
    volume: Mapped[float]
    digest: Mapped[str] = mapped_column(String(32))
    #: the bar's symbol in a paper run of a universe (NULL: the run's one symbol)
    symbol: Mapped[str | None] = mapped_column(String(100))

    __table_args__ = (NO_ROWID,)


class PaperState(Base):
    """Where a paper run stands: updated in the transaction of every bar it accepts."""

    __tablename__ = "paper_state"

    run_id: Mapped[RunKey]
    feed: Mapped[Name]
    client_id: Mapped[Name]
    bars: Mapped[Int64] = mapped_column(default=0)
    last_feed_seq: Mapped[Int64] = mapped_column(default=0)
    last_seq: Mapped[Int64] = mapped_column(default=0)
    last_bar_ns: Mapped[Int64 | None]
    last_received_ns: Mapped[Int64 | None]
    bar_ns: Mapped[Int64]
    stale_after_ns: Mapped[Int64]
    dropped: Mapped[Int64] = mapped_column(default=0)
    last_drop: Mapped[str | None]
    updated_ns: Mapped[Int64]
    #: well-formed bars set aside as implausible (engine.feeds.guard), and the last reason
    quarantined: Mapped[Int64] = mapped_column(default=0, server_default="0")
    last_quarantine: Mapped[str | None]


class FeedGap(Base):
    """Feed sequence numbers ``first_seq..last_seq`` that a paper run never received.

    ``action`` is ``skipped`` (the run went on without them, ``--on-gap continue``) or
    ``halted`` (the run stopped at the bar after them; the row goes when the missing
    bars arrive). ``after_ts`` / ``before_ts``: the bar times on either side.
    """

    __tablename__ = "feed_gaps"

    run_id: Mapped[RunKey]
    first_seq: Mapped[Int64] = mapped_column(primary_key=True)
    last_seq: Mapped[Int64]
    bars: Mapped[Int64]
    action: Mapped[Word]
    after_ts: Mapped[Int64 | None]
    before_ts: Mapped[Int64 | None]
    detected_ns: Mapped[Int64]

    __table_args__ = (NO_ROWID,)


class Sweep(Job, Base):
    """A parameter sweep or a walk-forward evaluation (``kind``): many runs of one scenario.

    ``spec_json`` holds what was asked (the grid and seeds, or the windows and the
    optimisation grid); ``summary_json`` the headline figures when it ends.
    """

    __tablename__ = "sweeps"

    kind: Mapped[Word]
    spec_json: Mapped[str]
    scheduler: Mapped[Name]
    tasks: Mapped[int] = mapped_column(default=0)
    summary_json: Mapped[str | None]


class TaskRow:
    """What a sweep's task and a walk-forward's fold record alike: the sweep (the first
    part of the key), the status, the run it stored (kept NULL when that run is deleted),
    and its error or summary."""

    sweep_id: Mapped[SweepKey] = mapped_column(sort_order=-1)
    status: Mapped[Word]
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    error: Mapped[str | None]
    summary_json: Mapped[str | None]


class SweepTask(TaskRow, Base):
    """One task of a sweep: its overrides and seed, then its run or its error."""

    __tablename__ = "sweep_tasks"

    task: Mapped[int] = mapped_column(primary_key=True)
    overrides_json: Mapped[str]
    seed: Mapped[Int64]
    config_hash: Mapped[Sha256]
    fills: Mapped[int | None]
    fills_hash: Mapped[Sha256 | None]
    wall_seconds: Mapped[float | None]
    worker: Mapped[Name | None]


class WalkForwardFold(TaskRow, Base):
    """One fold of a walk-forward: its windows (int ns UTC, ``[start, end)`` on bar end
    times), what the train step chose, and the out-of-sample run on the test window."""

    __tablename__ = "walk_forward_folds"

    fold: Mapped[int] = mapped_column(primary_key=True)
    train_start_ns: Mapped[Int64]
    train_end_ns: Mapped[Int64]
    test_start_ns: Mapped[Int64]
    test_end_ns: Mapped[Int64]
    train_bars: Mapped[int]
    test_bars: Mapped[int]
    train_note: Mapped[str | None]
    train_json: Mapped[str | None]
    params_json: Mapped[str | None]


class WalkForwardEquity(Base):
    """The stitched out-of-sample equity curve: each fold's test bars, chained by return."""

    __tablename__ = "walk_forward_equity"

    sweep_id: Mapped[SweepKey]
    ts_event: Mapped[Int64] = mapped_column(primary_key=True)
    fold: Mapped[int]
    equity: Mapped[float]
    fold_equity: Mapped[float]

    __table_args__ = (NO_ROWID,)


class TrainingRun(SeededJob, Base):
    """One ``emarl train``: what was trained, from which scenario, and where it was saved."""

    __tablename__ = "training_runs"

    updates: Mapped[int] = mapped_column(default=0)
    checkpoint: Mapped[FilePath | None]


class TrainingMetric(Base):
    """The metrics of one MAPPO update (NaN stored as NULL)."""

    __tablename__ = "training_metrics"

    training_run_id: Mapped[int] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True
    )
    update: Mapped[int] = mapped_column(primary_key=True)
    stage: Mapped[int]
    complexity: Mapped[float]
    episodes: Mapped[int]
    agent_steps: Mapped[Int64]
    episode_return: Mapped[float | None]
    episode_pnl: Mapped[float | None]
    policy_loss: Mapped[float | None]
    value_loss: Mapped[float | None]
    entropy: Mapped[float | None]
    approx_kl: Mapped[float | None]
    clip_fraction: Mapped[float | None]
    explained_variance: Mapped[float | None]
    weights: Mapped[Name]
    seconds: Mapped[float]
