"""What a paper run keeps in SQL besides the Recorder's rows: its bars and its state.

Every bar a paper run accepts is written with everything it produced in one
transaction (see :meth:`storage.recorder.Recorder.flush`): the Recorder's
rows, the bar itself (``paper_bars``), the run's position in its feed
(``paper_state``) and the gap before it, if any (``feed_gaps``, see
:mod:`engine.feeds.guard`). The state update is conditional on the feed position the
process last read, so two processes that drive the same run cannot both
commit a bar: the second gets a :class:`StorageError`.

:func:`run_status` gathers what ``emarl status`` prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    Label,
    Subquery,
    and_,
    bindparam,
    delete,
    desc,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.orm import InstrumentedAttribute

from engine.core.errors import StorageError
from storage.db import storage_errors, write_statement, write_transaction
from storage.models import (
    EventKey,
    FeedGap,
    Fill,
    Order,
    OrderEvent,
    PaperBar,
    PaperState,
    PortfolioSnapshotRow,
    Run,
    RunStatus,
    ValuationRow,
)
from storage.query import resolve_run

__all__ = [
    "PaperRun",
    "StoredBar",
    "bar_writer",
    "create_paper_state",
    "feed_gaps",
    "find_paper_run",
    "last_snapshot",
    "load_state",
    "record_drop",
    "record_halt",
    "record_quarantine",
    "run_status",
    "set_run_status",
    "stored_bars",
]

PAPER = "paper"
TERMINAL_EVENTS = ("denied", "rejected", "canceled", "expired")
SKIPPED_GAP = "skipped"  # the run went on without the bars
HALTED_GAP = "halted"  # the run stopped before them


@dataclass(frozen=True)
class PaperRun:
    run_id: int
    name: str
    status: str
    config_hash: str


@dataclass(frozen=True)
class StoredBar:
    feed_seq: int
    seq: int
    last_seq: int
    ts_event: int
    received_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    digest: str
    #: the bar's symbol in a universe (None: the run's one symbol)
    symbol: str | None = None


def find_paper_run(engine: Engine, name: str) -> PaperRun | None:
    """The newest paper run called ``name``, if any."""
    query = (
        select(Run.id, Run.name, Run.status, Run.config_hash)
        .where(Run.kind == PAPER, Run.name == name)
        .order_by(desc(Run.id))
        .limit(1)
    )
    with storage_errors(f"looking up paper run {name!r}"), engine.connect() as connection:
        row = connection.execute(query).first()
    return None if row is None else PaperRun(int(row[0]), row[1], row[2], row[3])


def create_paper_state(
    engine: Engine, run_id: int, *, feed: str, client_id: str, bar_ns: int, stale_after_ns: int
) -> None:
    """The state row of a new paper run (nothing processed yet)."""
    with storage_errors(f"run {run_id}: creating its paper state"), engine.begin() as connection:
        connection.execute(
            insert(PaperState).values(
                run_id=run_id,
                feed=feed,
                client_id=client_id,
                bars=0,
                last_feed_seq=0,
                last_seq=0,
                bar_ns=bar_ns,
                stale_after_ns=stale_after_ns,
                dropped=0,
                updated_ns=time.time_ns(),
            )
        )


def load_state(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """The run's paper state, with ``halted_gap``: whether a gap stopped it."""
    with storage_errors(f"run {run_id}: reading its paper state"), engine.connect() as connection:
        row = (
            connection.execute(select(PaperState.__table__).where(PaperState.run_id == run_id))
            .mappings()
            .first()
        )
        halted = connection.execute(
            select(func.count())
            .select_from(FeedGap)
            .where(FeedGap.run_id == run_id, FeedGap.action == HALTED_GAP)
        ).scalar_one()
    return None if row is None else {**row, "halted_gap": bool(halted)}


def set_run_status(
    engine: Engine, run_id: int, status: RunStatus, *, error: str | None = None, **values: Any
) -> None:
    """Update a run row's status (and any other column given)."""
    write_statement(
        engine,
        f"run {run_id}: setting status {status!r}",
        update(Run).where(Run.id == run_id).values(status=status, error=error, **values),
    )


_INSERT_BAR = insert(PaperBar)
_ADVANCE = (
    update(PaperState)
    .where(
        and_(
            PaperState.run_id == bindparam("state_run_id"),
            PaperState.last_feed_seq == bindparam("previous_feed_seq"),
        )
    )
    .values(
        bars=bindparam("state_bars"),
        last_feed_seq=bindparam("state_feed_seq"),
        last_seq=bindparam("state_last_seq"),
        last_bar_ns=bindparam("state_bar_ns"),
        last_received_ns=bindparam("state_received_ns"),
        updated_ns=bindparam("state_updated_ns"),
    )
)


def _gap_row(run_id: int, gap: Any, action: str) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "first_seq": gap.first,
        "last_seq": gap.last,
        "bars": gap.bars,
        "action": action,
        "after_ts": gap.after_ts,
        "before_ts": gap.before_ts,
        "detected_ns": time.time_ns(),
    }


def bar_writer(
    run_id: int,
    bar: StoredBar,
    *,
    previous_feed_seq: int,
    bars: int,
    gap: Any = None,
    clear_halted: bool = False,
) -> Callable[[Connection], None]:
    """Statements that store ``bar`` and advance the state, for the bar's transaction.

    ``gap`` (an :class:`engine.feeds.guard.Gap`) is stored as skipped; ``clear_halted``
    deletes the gap rows a halt stored before this bar (the run went on past them).
    """

    def write(connection: Connection) -> None:
        connection.execute(_INSERT_BAR, {"run_id": run_id, **bar.__dict__})
        result = connection.execute(
            _ADVANCE,
            {
                "state_run_id": run_id,
                "previous_feed_seq": previous_feed_seq,
                "state_bars": bars,
                "state_feed_seq": bar.feed_seq,
                "state_last_seq": bar.last_seq,
                "state_bar_ns": bar.ts_event,
                "state_received_ns": bar.received_ns,
                "state_updated_ns": time.time_ns(),
            },
        )
        if result.rowcount != 1:
            raise StorageError(
                f"run {run_id}: the stored feed position is no longer {previous_feed_seq}; "
                "another process is driving this run"
            )
        if clear_halted:
            connection.execute(
                delete(FeedGap).where(FeedGap.run_id == run_id, FeedGap.action == HALTED_GAP)
            )
        if gap is not None:
            connection.execute(insert(FeedGap).values(**_gap_row(run_id, gap, SKIPPED_GAP)))

    return write


def record_halt(engine: Engine, run_id: int, gap: Any) -> None:
    """Store the gap that halts a run (replacing any earlier halted gap)."""
    with storage_errors(f"run {run_id}: recording its halt"), engine.begin() as connection:
        connection.execute(
            delete(FeedGap).where(FeedGap.run_id == run_id, FeedGap.action == HALTED_GAP)
        )
        if gap is not None:
            connection.execute(insert(FeedGap).values(**_gap_row(run_id, gap, HALTED_GAP)))


def _count(
    engine: Engine,
    run_id: int,
    what: str,
    counter: InstrumentedAttribute[int],
    last: InstrumentedAttribute[str | None],
    reason: str,
) -> None:
    """Add one to a paper state's ``counter`` and keep ``reason`` as its ``last``. The
    count is read and set in one transaction, so a try lost as it committed is told
    apart by the count it set (:func:`storage.db.write_transaction`)."""
    where = PaperState.run_id == run_id
    counted: list[int] = []

    def work(connection: Connection) -> None:
        counted[:] = [connection.execute(select(counter).where(where)).scalar_one() + 1]
        connection.execute(
            update(PaperState).where(where).values({counter: counted[0], last: reason[:2000]})
        )

    def committed(connection: Connection) -> bool:
        return (
            bool(counted)
            and connection.execute(select(counter).where(where)).scalar_one() == counted[0]
        )

    write_transaction(engine, f"run {run_id}: recording {what}", work, committed)


def record_quarantine(engine: Engine, run_id: int, reason: str) -> None:
    """Count a quarantined bar and keep its reason."""
    _count(
        engine,
        run_id,
        "a quarantined bar",
        PaperState.quarantined,
        PaperState.last_quarantine,
        reason,
    )


def feed_gaps(connection: Connection, run_id: int) -> list[dict[str, Any]]:
    """The run's feed gaps in sequence order (first_seq, last_seq, bars, action, times)."""
    query = select(FeedGap.__table__).where(FeedGap.run_id == run_id).order_by(FeedGap.first_seq)
    return _dicts(connection, query)


def record_drop(engine: Engine, run_id: int, reason: str) -> None:
    """Count a dropped message and keep its reason."""
    _count(engine, run_id, "a dropped message", PaperState.dropped, PaperState.last_drop, reason)


def stored_bars(engine: Engine, run_id: int, chunk: int = 5_000) -> Iterator[StoredBar]:
    """The run's bars in feed order, read in chunks."""
    columns = [
        PaperBar.feed_seq,
        PaperBar.seq,
        PaperBar.last_seq,
        PaperBar.ts_event,
        PaperBar.received_ns,
        PaperBar.open,
        PaperBar.high,
        PaperBar.low,
        PaperBar.close,
        PaperBar.volume,
        PaperBar.digest,
        PaperBar.symbol,
    ]
    after = -1
    while True:
        query = (
            select(*columns)
            .where(PaperBar.run_id == run_id, PaperBar.feed_seq > after)
            .order_by(PaperBar.feed_seq)
            .limit(chunk)
        )
        with storage_errors(f"run {run_id}: reading its stored bars"), engine.connect() as c:
            rows: list[Any] = list(c.execute(query).all())
        for row in rows:
            yield StoredBar(
                int(row[0]),
                int(row[1]),
                int(row[2]),
                int(row[3]),
                int(row[4]),
                float(row[5]),
                float(row[6]),
                float(row[7]),
                float(row[8]),
                float(row[9]),
                str(row[10]),
                row[11],
            )
        if len(rows) < chunk:
            return
        after = int(rows[-1][0])


def last_snapshot(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """The run's newest portfolio snapshot as a dict of its columns."""
    table = PortfolioSnapshotRow.__table__
    query = select(table).where(table.c.run_id == run_id).order_by(desc(table.c.seq)).limit(1)
    with storage_errors(f"run {run_id}: reading its last snapshot"), engine.connect() as c:
        row = c.execute(query).mappings().first()
    return None if row is None else dict(row)


def run_status(
    engine: Engine, run: str, *, now_ns: int | None = None, include_incomplete: bool = False
) -> dict[str, Any]:
    """Position, equity, last bar and its lag, open orders and agent weights of a run.

    ``run`` is a run id, a run name (the newest run of that name) or ``latest`` (the
    newest completed run, or of any status with ``include_incomplete``).
    """

    now = time.time_ns() if now_ns is None else now_ns
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    columns = (
        Run.name,
        Run.kind,
        Run.status,
        Run.symbol,
        Run.error,
        Run.bars,
        Run.bars_stored,
        Run.host,
        Run.pid,
        Run.heartbeat_ns,
    )
    with storage_errors(f"reading the status of run {run!r}"), engine.connect() as connection:
        row = connection.execute(select(*columns).where(Run.id == run_id)).one()
        out: dict[str, Any] = {
            "run_id": run_id,
            "name": row.name,
            "kind": row.kind,
            "status": row.status,
            "symbol": row.symbol,
            "error": row.error,
            "bars": row.bars,
            "bars_stored": row.bars_stored,
            "host": row.host,
            "pid": row.pid,
            "heartbeat_ns": row.heartbeat_ns,
        }
        snap = PortfolioSnapshotRow.__table__
        snapshot = (
            connection.execute(
                select(snap).where(snap.c.run_id == run_id).order_by(desc(snap.c.seq)).limit(1)
            )
            .mappings()
            .first()
        )
        out["snapshot"] = None if snapshot is None else dict(snapshot)
        out["symbols"] = _symbol_rows(connection, run_id)
        state = (
            connection.execute(select(PaperState.__table__).where(PaperState.run_id == run_id))
            .mappings()
            .first()
        )
        if state is not None:
            s = SimpleNamespace(**state)
            received = s.last_received_ns
            out["feed"] = {
                "feed": s.feed,
                "client_id": s.client_id,
                "bars": s.bars,
                "last_feed_seq": s.last_feed_seq,
                "last_bar_ns": s.last_bar_ns,
                "last_received_ns": received,
                "bar_lag_seconds": None if s.last_bar_ns is None else (now - s.last_bar_ns) / 1e9,
                "receive_lag_seconds": None if received is None else (now - received) / 1e9,
                "stale": received is not None and now - received > s.stale_after_ns,
                "stale_after_seconds": s.stale_after_ns / 1e9,
                "dropped": s.dropped,
                "last_drop": s.last_drop,
                "quarantined": s.quarantined,
                "last_quarantine": s.last_quarantine,
            }
            gaps = feed_gaps(connection, run_id)
            out["feed"]["gaps"] = gaps
            out["feed"]["missing_bars"] = sum(
                gap["bars"] for gap in gaps if gap["action"] == SKIPPED_GAP
            )
        else:
            out["feed"] = None
        out["open_orders"] = _open_orders(connection, run_id)
        out["agents"] = _agent_weights(connection, run_id)
    return out


def _symbol_rows(connection: Connection, run_id: int) -> list[dict[str, Any]]:
    """Per symbol (a universe's; one row for one instrument), its latest snapshot's
    position, average price, mark, realised and unrealised P&L and time, by symbol."""
    snap = PortfolioSnapshotRow.__table__
    latest = (
        select(snap.c.symbol, func.max(snap.c.seq).label("seq"))
        .where(snap.c.run_id == run_id)
        .group_by(snap.c.symbol)
        .subquery()
    )
    query = (
        select(
            snap.c.symbol,
            snap.c.position,
            snap.c.avg_price,
            snap.c.mark_price,
            snap.c.realised_pnl,
            snap.c.unrealised_pnl,
            snap.c.ts_event,
        )
        .join(latest, and_(snap.c.symbol == latest.c.symbol, snap.c.seq == latest.c.seq))
        .where(snap.c.run_id == run_id)
        .order_by(snap.c.symbol)
    )
    return _dicts(connection, query)


def _dicts(connection: Connection, query: Executable) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(query).mappings()]


def _per_key(
    model: type[EventKey], run_id: int, key: InstrumentedAttribute[Any], value: Label[Any]
) -> Subquery:
    """``key`` and the aggregate ``value`` of a run's rows of ``model``, a row per key."""
    return select(key, value).where(model.run_id == run_id).group_by(key).subquery()


def _open_orders(connection: Connection, run_id: int) -> list[dict[str, Any]]:
    filled = _per_key(Fill, run_id, Fill.order_id, func.sum(Fill.quantity).label("filled"))
    closed = select(OrderEvent.order_id).where(
        OrderEvent.run_id == run_id, OrderEvent.event.in_(TERMINAL_EVENTS)
    )
    query = (
        select(
            Order.order_id,
            Order.ts_event,
            Order.symbol,
            Order.side,
            Order.order_type,
            Order.quantity,
            Order.limit_price,
            Order.stop_price,
            func.coalesce(filled.c.filled, 0.0).label("filled"),
        )
        .outerjoin(filled, filled.c.order_id == Order.order_id)
        .where(Order.run_id == run_id, Order.order_id.not_in(closed))
        .where(func.coalesce(filled.c.filled, 0.0) < Order.quantity - 1e-9)
        .order_by(Order.seq)
    )
    return _dicts(connection, query)


def _agent_weights(connection: Connection, run_id: int) -> list[dict[str, Any]]:
    """Each agent's latest valuation (in a universe, on each symbol)."""
    v = ValuationRow
    newest = (
        select(v.symbol, v.agent_index, func.max(v.seq).label("seq"))
        .where(v.run_id == run_id)
        .group_by(v.symbol, v.agent_index)
        .subquery()
    )
    query = (
        select(
            v.symbol, v.agent_index, v.agent_id, v.weight, v.share_price, v.option_value, v.ts_event
        )
        .join(newest, and_(v.symbol == newest.c.symbol, v.seq == newest.c.seq))
        .where(v.run_id == run_id)
        .order_by(v.symbol, v.agent_index)
    )
    return _dicts(connection, query)
