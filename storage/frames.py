"""A stored run as pandas DataFrames: what reports and analyses read.

One function per table, each returning the run's rows in sequence order with
``ts_event`` as int nanoseconds UTC (convert at the plot or file edge). Columns
are taken from :mod:`storage.models`, so a renamed column fails here loudly.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from sqlalchemy import ColumnElement, Engine, Table, func, select
from sqlalchemy.orm import InstrumentedAttribute

from engine.core.errors import RunNotFoundError
from storage.db import storage_errors
from storage.models import (
    AgentActionRow,
    Base,
    Fill,
    Order,
    OrderEvent,
    PaperState,
    PortfolioSnapshotRow,
    Run,
    ShapleyValueRow,
    ValuationRow,
)
from storage.paper import feed_gaps
from storage.query import FILL_DETAILS, resolve_run

if TYPE_CHECKING:
    import pandas as pd  # only for a report's frames: the CLI starts without pandas

__all__ = [
    "agent_actions_frame",
    "feed_integrity",
    "fills_frame",
    "last_stored_ns",
    "refused_orders_frame",
    "run_info",
    "shapley_frame",
    "snapshots_frame",
    "valuations_frame",
]


def run_info(engine: Engine, run: int | str | None = "latest") -> dict[str, Any]:
    """The run row as a dict, with ``config`` and ``summary`` decoded from their JSON."""
    run_id = resolve_run(engine, run)
    table = Run.__table__
    with storage_errors(f"reading run {run_id}"), engine.connect() as connection:
        row = connection.execute(select(table).where(table.c.id == run_id)).mappings().first()
    if row is None:
        raise RunNotFoundError(f"no run with id {run_id} (see 'emarl runs')")
    info = dict(row)
    info["config"] = json.loads(info.pop("config_json") or "{}")
    info["summary"] = json.loads(info.pop("summary_json") or "null") or {}
    return info


def last_stored_ns(engine: Engine, run_id: int) -> int | None:
    """The time of a run's last stored bar (its newest portfolio snapshot), if any."""
    table = PortfolioSnapshotRow.__table__
    query = select(func.max(table.c.ts_event)).where(table.c.run_id == run_id)
    with storage_errors(f"reading run {run_id}"), engine.connect() as connection:
        value = connection.execute(query).scalar()
    return None if value is None else int(value)


def feed_integrity(engine: Engine, run_id: int) -> dict[str, Any] | None:
    """A paper run's feed gaps, quarantined bars and dropped messages (None: not paper)."""

    state = PaperState.__table__
    with storage_errors(f"reading the feed of run {run_id}"), engine.connect() as connection:
        row = (
            connection.execute(
                select(state.c.dropped, state.c.quarantined, state.c.last_quarantine).where(
                    state.c.run_id == run_id
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        return {**row, "gaps": feed_gaps(connection, run_id)}


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


#: a column to read: of a table, or of a model
_Column = ColumnElement[Any] | InstrumentedAttribute[Any]
#: the numpy dtype a column reads into, by its Python type (any other: objects)
_DTYPES = {int: "i8", float: "f8"}


def _frame(
    engine: Engine, model: type[Base], run_id: int, columns: tuple[_Column, ...]
) -> pd.DataFrame:
    """A run's rows of ``model`` in sequence order: ``seq``, ``ts_event``, then ``columns``,
    as numpy arrays (``i8`` for integer columns, ``f8`` for floats, objects for the rest).

    Large runs hold millions of rows, so this reads through the driver's cursor
    straight into a numpy record array (several times faster than building
    SQLAlchemy rows); the statement is still built and rendered by SQLAlchemy.
    """
    import pandas as pd  # only for a report's frames: the CLI starts without pandas

    table = _table(model)
    read = (table.c.seq, table.c.ts_event, *columns)
    query = select(*read).where(table.c.run_id == int(run_id)).order_by(table.c.seq)
    sql = str(query.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with storage_errors(f"reading {table.name} of run {run_id}"):
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute(sql)
            rows = cursor.fetchall()
            cursor.close()
        finally:
            connection.close()
    dtype = [(column.key, _DTYPES.get(column.type.python_type, "O")) for column in read]
    records = np.array(rows, dtype=dtype)
    return pd.DataFrame({name: records[name] for name, _ in dtype})


def _agent_ids(engine: Engine, table: Table, run_id: int, first: int | None) -> dict[int, str]:
    """Agent index to id, from the first ``first`` rows (every agent acts on the first
    bars, and the key order makes this quick), or from all rows when ``first`` is None."""
    query = select(table.c.agent_index, table.c.agent_id).where(table.c.run_id == run_id)
    if first is not None:
        query = query.order_by(table.c.seq).limit(first)
    with storage_errors(f"reading the agents of run {run_id}"), engine.connect() as connection:
        return {int(index): str(agent) for index, agent in connection.execute(query).all()}


def _agent_frame(
    engine: Engine, model: type[Base], run_id: int, columns: tuple[_Column, ...]
) -> pd.DataFrame:
    """:func:`_frame` of an agent table with ``agent_index`` and ``agent_id`` before
    ``columns`` (the rows store the index; each agent's id is looked up once)."""
    table = _table(model)
    frame = _frame(engine, model, run_id, (table.c.agent_index, *columns))
    ids: dict[int, str] = {}
    if len(frame):
        ids = _agent_ids(engine, table, run_id, 1_000)
        if not set(frame["agent_index"].unique().tolist()) <= set(ids):
            ids = _agent_ids(engine, table, run_id, None)
    frame.insert(2, "agent_id", frame["agent_index"].map(ids).astype(object))
    return frame


def snapshots_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Per-bar portfolio snapshots: position, mark price, cash, P&L, equity, fees, borrow
    fees and financing."""
    row = PortfolioSnapshotRow
    columns = (
        row.symbol,
        row.position,
        row.avg_price,
        row.mark_price,
        row.cash,
        row.realised_pnl,
        row.unrealised_pnl,
        row.equity,
        row.fees,
        row.borrow_fees,
        row.financing,
    )
    return _frame(engine, row, run_id, columns)


def fills_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Every fill of the run, oldest first (the columns ``emarl trades`` lists)."""
    return _frame(engine, Fill, run_id, FILL_DETAILS)


def agent_actions_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Every agent's vote per bar: probabilities, the chosen action (0 bearish, 1 neutral,
    2 bullish) and its confidence."""
    row = AgentActionRow
    columns = (row.bearish, row.neutral, row.bullish, row.action, row.confidence)
    return _agent_frame(engine, row, run_id, columns)


def shapley_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Each agent's Shapley credit per step."""
    row = ShapleyValueRow
    return _agent_frame(engine, row, run_id, (row.phi, row.value_full))


def valuations_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Each agent's share price, option value, weight and bubble coefficient per step."""
    row = ValuationRow
    columns = (row.share_price, row.option_value, row.target_weight, row.weight, row.bubble)
    return _agent_frame(engine, row, run_id, columns)


def refused_orders_frame(engine: Engine, run_id: int) -> pd.DataFrame:
    """Orders the risk check denied or the broker rejected, oldest first: ``ts_event``,
    ``event`` (``denied`` / ``rejected``), ``reason``, ``order_id``, and the order's
    ``side`` and ``quantity`` (empty for the rejection of a cancel request).

    Two reads, not a join: the refused events first (few, as a rule), then their orders by
    ``(run_id, order_id)``; SQLite would otherwise join every order event of a long run to
    the orders table by ``run_id`` alone, quadratic in the run's orders."""
    import pandas as pd  # only for a report's frames: the CLI starts without pandas

    events = OrderEvent.__table__
    orders = Order.__table__
    query = (
        select(events.c.ts_event, events.c.event, events.c.reason, events.c.order_id)
        .where(events.c.run_id == int(run_id), events.c.event.in_(("denied", "rejected")))
        .order_by(events.c.seq)
    )
    placed: dict[str, tuple[Any, Any]] = {}
    with storage_errors(f"reading the refused orders of run {run_id}"), engine.connect() as c:
        refused = c.execute(query).all()
        ids = sorted({row.order_id for row in refused})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            lookup = select(orders.c.order_id, orders.c.side, orders.c.quantity).where(
                orders.c.run_id == int(run_id), orders.c.order_id.in_(chunk)
            )
            for order_id, side, quantity in c.execute(lookup).all():
                placed[order_id] = (side, quantity)
    columns = ["ts_event", "event", "reason", "order_id", "side", "quantity"]
    frame = pd.DataFrame(
        [(*row, *placed.get(row.order_id, (None, None))) for row in refused], columns=columns
    )
    frame["ts_event"] = frame["ts_event"].astype("int64")
    return frame
