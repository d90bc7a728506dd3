"""SQLAlchemy 2.0 models of what a run stores.

Timestamps are int nanoseconds UTC (``*_ns`` / ``ts_event``), as on the bus;
they become datetimes only when shown. Event tables hold an event's fields
under the same names, in the same order, after ``run_id``. Every event table is keyed by
``(run_id, seq)``: a run's sequence number is unique, so a batch written twice
(after a crash and a resume) cannot duplicate a row.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

# SQLite stores these tables clustered by their (run_id, seq) key: one B-tree per row.
NO_ROWID = {"sqlite_with_rowid": False}

__all__ = [
    "AgentActionRow",
    "Base",
    "FeedGap",
    "Fill",
    "Order",
    "OrderEvent",
    "PaperBar",
    "PaperState",
    "PortfolioSnapshotRow",
    "Run",
    "RunStatus",
    "ShapleyValueRow",
    "Sweep",
    "SweepTask",
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
    pass


class EventRow:
    """The key and timestamps every event table shares: ``(run_id, seq)``, then the times.

    ``sort_order`` keeps them the first columns, so the key stays ``(run_id, seq)``.
    """

    @declared_attr
    def run_id(cls) -> Mapped[int]:  # noqa: N805
        return mapped_column(
            ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True, sort_order=-4
        )

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, sort_order=-3)
    ts_event: Mapped[int] = mapped_column(BigInteger, sort_order=-2)
    ts_init: Mapped[int] = mapped_column(BigInteger, sort_order=-1)


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20), default="backtest")
    scenario: Mapped[str] = mapped_column(String(1000))
    symbol: Mapped[str] = mapped_column(String(100))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    code_version: Mapped[str] = mapped_column(String(100))
    #: a :class:`RunStatus` value
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    bars: Mapped[int] = mapped_column(Integer, default=0)
    bar_gaps: Mapped[int] = mapped_column(Integer, default=0)
    first_bar_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_bar_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    summary_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: SHA-256 of the bars the run replayed (engine.feeds.bars.bars_fingerprint)
    data_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: SHA-256 of the checkpoint's weights file, for a run that trades with one
    checkpoint_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    #: first and last bar end of the checkpoint's training window (NULL: no checkpoint)
    trained_first_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    trained_last_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: the process writing the run (storage.runs: a reader marks the run ``interrupted``
    #: when that process is gone from this host or its heartbeat is old)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: refreshed in the transaction of every flush, and every few seconds while waiting
    heartbeat_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    #: bars whose rows are committed (``bars``: the bars planned, or processed so far)
    bars_stored: Mapped[int | None] = mapped_column(Integer, nullable=True)


class Order(EventRow, Base):
    __tablename__ = "orders"

    order_id: Mapped[str] = mapped_column(String(100))
    strategy_id: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(4))
    order_type: Mapped[str] = mapped_column(String(12))
    quantity: Mapped[float] = mapped_column(Float)
    limit_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    stop_price: Mapped[float | None] = mapped_column(Float, nullable=True)
    time_in_force: Mapped[str] = mapped_column(String(4))

    __table_args__ = (Index("ix_orders_run_order", "run_id", "order_id"), NO_ROWID)


class OrderEvent(Base):
    """Lifecycle of orders after submission: accepted, denied, rejected, canceled, expired."""

    __tablename__ = "order_events"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    order_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_order_events_run_order", "run_id", "order_id"), NO_ROWID)


class Fill(EventRow, Base):
    __tablename__ = "fills"

    fill_id: Mapped[str] = mapped_column(String(100))
    order_id: Mapped[str] = mapped_column(String(100))
    strategy_id: Mapped[str] = mapped_column(String(100))
    symbol: Mapped[str] = mapped_column(String(100))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    commission: Mapped[float] = mapped_column(Float)
    slippage: Mapped[float] = mapped_column(Float)
    filled_quantity: Mapped[float] = mapped_column(Float)
    leaves_quantity: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_fills_run_ts", "run_id", "ts_event"), NO_ROWID)


class PortfolioSnapshotRow(EventRow, Base):
    __tablename__ = "portfolio_snapshots"

    symbol: Mapped[str] = mapped_column(String(100))
    position: Mapped[float] = mapped_column(Float)
    avg_price: Mapped[float] = mapped_column(Float)
    mark_price: Mapped[float] = mapped_column(Float)
    cash: Mapped[float] = mapped_column(Float)
    realised_pnl: Mapped[float] = mapped_column(Float)
    unrealised_pnl: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    exposure: Mapped[float] = mapped_column(Float)
    fees: Mapped[float] = mapped_column(Float)
    turnover: Mapped[float] = mapped_column(Float)

    __table_args__ = (NO_ROWID,)


class AgentActionRow(EventRow, Base):
    __tablename__ = "agent_actions"

    symbol: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[str] = mapped_column(String(100))
    agent_index: Mapped[int] = mapped_column(Integer)
    bearish: Mapped[float] = mapped_column(Float)
    neutral: Mapped[float] = mapped_column(Float)
    bullish: Mapped[float] = mapped_column(Float)
    action: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)

    __table_args__ = (NO_ROWID,)


class ShapleyValueRow(EventRow, Base):
    __tablename__ = "shapley_values"

    symbol: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[str] = mapped_column(String(100))
    agent_index: Mapped[int] = mapped_column(Integer)
    decision_ts: Mapped[int] = mapped_column(BigInteger)
    phi: Mapped[float] = mapped_column(Float)
    value_full: Mapped[float] = mapped_column(Float)
    value_model: Mapped[float] = mapped_column(Float)
    coalitions: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(20))
    stderr: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_shapley_values_run_agent", "run_id", "agent_index"), NO_ROWID)


class ValuationRow(EventRow, Base):
    __tablename__ = "valuations"

    symbol: Mapped[str] = mapped_column(String(100))
    agent_id: Mapped[str] = mapped_column(String(100))
    agent_index: Mapped[int] = mapped_column(Integer)
    share_price: Mapped[float] = mapped_column(Float)
    volatility: Mapped[float] = mapped_column(Float)
    strike: Mapped[float] = mapped_column(Float)
    time_to_expiry: Mapped[float] = mapped_column(Float)
    option_value: Mapped[float] = mapped_column(Float)
    target_weight: Mapped[float] = mapped_column(Float)
    weight: Mapped[float] = mapped_column(Float)
    bubble: Mapped[float] = mapped_column(Float)
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
    led to: a resumed run re-drives the stored bars and checks both.
    """

    __tablename__ = "paper_bars"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    feed_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    ts_event: Mapped[int] = mapped_column(BigInteger)
    received_ns: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[float] = mapped_column(Float)
    high: Mapped[float] = mapped_column(Float)
    low: Mapped[float] = mapped_column(Float)
    close: Mapped[float] = mapped_column(Float)
    volume: Mapped[float] = mapped_column(Float)
    digest: Mapped[str] = mapped_column(String(32))

    __table_args__ = (NO_ROWID,)


class PaperState(Base):
    """Where a paper run stands: updated in the transaction of every bar it accepts."""

    __tablename__ = "paper_state"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    feed: Mapped[str] = mapped_column(String(200))
    client_id: Mapped[str] = mapped_column(String(200))
    bars: Mapped[int] = mapped_column(BigInteger, default=0)
    last_feed_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_bar_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_received_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bar_ns: Mapped[int] = mapped_column(BigInteger)
    stale_after_ns: Mapped[int] = mapped_column(BigInteger)
    dropped: Mapped[int] = mapped_column(BigInteger, default=0)
    last_drop: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_ns: Mapped[int] = mapped_column(BigInteger)
    #: well-formed bars set aside as implausible (engine.feeds.guard), and the last reason
    quarantined: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    last_quarantine: Mapped[str | None] = mapped_column(Text, nullable=True)


class FeedGap(Base):
    """Feed sequence numbers ``first_seq..last_seq`` that a paper run never received.

    ``action`` is ``skipped`` (the run went on without them, ``--on-gap continue``) or
    ``halted`` (the run stopped at the bar after them; the row goes when the missing
    bars arrive). ``after_ts`` / ``before_ts``: the bar times on either side.
    """

    __tablename__ = "feed_gaps"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    first_seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    bars: Mapped[int] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(20))
    after_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    before_ts: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    detected_ns: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (NO_ROWID,)


class Sweep(Base):
    """A parameter sweep or a walk-forward evaluation (``kind``): many runs of one scenario.

    ``spec_json`` holds what was asked (the grid and seeds, or the windows and the
    optimisation grid); ``summary_json`` the headline figures when it ends.
    """

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str] = mapped_column(String(1000))
    config_json: Mapped[str] = mapped_column(Text)
    spec_json: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(String(100))
    scheduler: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), index=True)
    tasks: Mapped[int] = mapped_column(Integer, default=0)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    summary_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class SweepTask(Base):
    """One task of a sweep: its overrides and seed, then its run or its error."""

    __tablename__ = "sweep_tasks"

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    task: Mapped[int] = mapped_column(Integer, primary_key=True)
    overrides_json: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    config_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    fills: Mapped[int | None] = mapped_column(Integer, nullable=True)
    fills_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)


class WalkForwardFold(Base):
    """One fold of a walk-forward: its windows (int ns UTC, ``[start, end)`` on bar end
    times), what the train step chose, and the out-of-sample run on the test window."""

    __tablename__ = "walk_forward_folds"

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    fold: Mapped[int] = mapped_column(Integer, primary_key=True)
    train_start_ns: Mapped[int] = mapped_column(BigInteger)
    train_end_ns: Mapped[int] = mapped_column(BigInteger)
    test_start_ns: Mapped[int] = mapped_column(BigInteger)
    test_end_ns: Mapped[int] = mapped_column(BigInteger)
    train_bars: Mapped[int] = mapped_column(Integer)
    test_bars: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    train_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    train_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    params_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    run_id: Mapped[int | None] = mapped_column(
        ForeignKey("runs.id", ondelete="SET NULL"), nullable=True
    )
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    summary_json: Mapped[str | None] = mapped_column(Text, nullable=True)


class WalkForwardEquity(Base):
    """The stitched out-of-sample equity curve: each fold's test bars, chained by return."""

    __tablename__ = "walk_forward_equity"

    sweep_id: Mapped[int] = mapped_column(
        ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True
    )
    ts_event: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    fold: Mapped[int] = mapped_column(Integer)
    equity: Mapped[float] = mapped_column(Float)
    fold_equity: Mapped[float] = mapped_column(Float)

    __table_args__ = (NO_ROWID,)


class TrainingRun(Base):
    """One ``emarl train``: what was trained, from which scenario, and where it was saved."""

    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    scenario: Mapped[str] = mapped_column(String(1000))
    config_json: Mapped[str] = mapped_column(Text)
    config_hash: Mapped[str] = mapped_column(String(64))
    seed: Mapped[int] = mapped_column(BigInteger)
    code_version: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    started_ns: Mapped[int] = mapped_column(BigInteger)
    ended_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    wall_seconds: Mapped[float | None] = mapped_column(Float, nullable=True)
    updates: Mapped[int] = mapped_column(Integer, default=0)
    checkpoint: Mapped[str | None] = mapped_column(String(1000), nullable=True)


class TrainingMetric(Base):
    """The metrics of one MAPPO update (NaN stored as NULL)."""

    __tablename__ = "training_metrics"

    training_run_id: Mapped[int] = mapped_column(
        ForeignKey("training_runs.id", ondelete="CASCADE"), primary_key=True
    )
    update: Mapped[int] = mapped_column(Integer, primary_key=True)
    stage: Mapped[int] = mapped_column(Integer)
    complexity: Mapped[float] = mapped_column(Float)
    episodes: Mapped[int] = mapped_column(Integer)
    agent_steps: Mapped[int] = mapped_column(BigInteger)
    episode_return: Mapped[float | None] = mapped_column(Float, nullable=True)
    episode_pnl: Mapped[float | None] = mapped_column(Float, nullable=True)
    policy_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    value_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    entropy: Mapped[float | None] = mapped_column(Float, nullable=True)
    approx_kl: Mapped[float | None] = mapped_column(Float, nullable=True)
    clip_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)
    explained_variance: Mapped[float | None] = mapped_column(Float, nullable=True)
    weights: Mapped[str] = mapped_column(String(200))
    seconds: Mapped[float] = mapped_column(Float)
