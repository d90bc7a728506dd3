"""A run's fills and their P&L: ``emarl trades`` and ``emarl trades --by ...``.

Re-exported by :mod:`storage.query`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from sqlalchemy import ColumnElement, Engine, func, select

from engine.core.accounting import AverageCost
from engine.core.errors import ConfigError
from storage._query_runs import parse_time, resolve_run
from storage.db import engine_of, storage_errors
from storage.models import Fill, ShapleyValueRow

if TYPE_CHECKING:
    import pandas as pd  # only for a DataFrame: the query commands print without pandas

__all__ = [
    "AGENT_PNL_COLUMNS",
    "FILL_COLUMNS",
    "FILL_DETAILS",
    "PNL_COLUMNS",
    "PNL_GROUPS",
    "TRADE_COLUMNS",
    "TradeFilters",
    "pnl",
    "pnl_rows",
    "realised_pnl_by_average_cost",
    "trade_rows",
    "trades",
]

#: what the trade listings read of each fill after its run and key (``seq``, ``ts_event``):
#: :func:`trade_rows` and :func:`storage.frames.fills_frame`
FILL_DETAILS = (
    Fill.symbol,
    Fill.side,
    Fill.quantity,
    Fill.price,
    Fill.commission,
    Fill.slippage,
    Fill.order_id,
    Fill.fill_id,
    Fill.strategy_id,
)
# what trade_rows reads of each fill
_LISTED = (Fill.run_id, Fill.seq, Fill.ts_event, *FILL_DETAILS)
#: the fill columns :func:`trade_rows` reads, in order
FILL_COLUMNS = tuple(column.key for column in _LISTED)
#: the keys of a :func:`trade_rows` row (``ts_event`` becomes ``time``)
TRADE_COLUMNS = tuple("time" if name == "ts_event" else name for name in FILL_COLUMNS)

PNL_GROUPS = ("day", "week", "month", "side", "symbol", "agent")
PNL_COLUMNS = (
    "fills",
    "quantity",
    "notional",
    "commission",
    "slippage",
    "realised_pnl",
    "net_pnl",
)
AGENT_PNL_COLUMNS = ("agent_index", "agent_id", "steps", "shapley_pnl", "share", "mean_phi")


class TradeFilters(TypedDict, total=False):
    """The filters of ``emarl trades``, the keywords every reader here takes."""

    #: only the fills (or Shapley values) of this symbol
    symbol: str | None
    #: from this time, and up to this one inclusive (ISO 8601; naive means UTC)
    since: str | None
    until: str | None
    #: only ``buy`` or only ``sell`` fills
    side: str | None
    #: ``latest`` may name a run that did not complete (see :func:`resolve_run`)
    include_incomplete: bool


def _conditions(
    row: type[Fill] | type[ShapleyValueRow], filters: TradeFilters
) -> list[ColumnElement[bool]]:
    """The filters checked, as conditions on ``row``'s table: its symbol and time window."""
    unknown = filters.keys() - TradeFilters.__optional_keys__
    if unknown:
        raise TypeError(f"unexpected filter(s): {', '.join(sorted(unknown))}")
    side = filters.get("side")
    if side is not None and side not in ("buy", "sell"):
        raise ConfigError(f"--side must be 'buy' or 'sell', got {side!r}")
    symbol, since, until = filters.get("symbol"), filters.get("since"), filters.get("until")
    start = parse_time(since, "--since")
    stop = parse_time(until, "--until")
    if start is not None and stop is not None and stop < start:
        raise ConfigError(f"--until ({until}) is before --since ({since})")
    conditions: list[ColumnElement[bool]] = []
    if symbol:
        conditions.append(row.symbol == symbol)
    if start is not None:
        conditions.append(row.ts_event >= start)
    if stop is not None:
        conditions.append(row.ts_event <= stop)
    return conditions


def trade_rows(
    engine: Engine, run: int | str | None = "latest", **filters: Unpack[TradeFilters]
) -> list[dict[str, Any]]:
    """Fills of a run matching the filters, oldest first, as plain dicts (no pandas needed).

    ``run``: an id, a name or ``latest`` (see :func:`resolve_run`)."""
    conditions = _conditions(Fill, filters)
    side = filters.get("side")
    if side:
        conditions.append(Fill.side == side)
    run_id = resolve_run(engine, run, include_incomplete=filters.get("include_incomplete", False))
    query = select(*_LISTED).where(Fill.run_id == run_id, *conditions).order_by(Fill.seq)
    with storage_errors(f"reading the trades of run {run_id}"), engine.connect() as connection:
        rows = connection.execute(query).all()
    return [dict(zip(TRADE_COLUMNS, row, strict=True)) for row in rows]


def trades(
    engine: Engine | str, run: int | str | None = "latest", **filters: Unpack[TradeFilters]
) -> pd.DataFrame:
    """A run's fills as a DataFrame (``time`` in UTC), filtered like ``emarl trades``.

    ``engine`` is an SQLAlchemy engine or a database URL.
    """
    import pandas as pd  # only for a DataFrame: the query commands print without pandas

    rows = trade_rows(engine_of(engine), run, **filters)
    frame = pd.DataFrame(rows, columns=list(TRADE_COLUMNS))
    frame["time"] = pd.to_datetime(frame["time"].astype("int64"), utc=True)
    return frame


def realised_pnl_by_average_cost(rows: list[dict[str, Any]]) -> list[float]:
    """Realised P&L of each fill (before commission), booked per symbol by average cost
    (:mod:`engine.core.accounting`, as the portfolio books it). ``rows`` are
    :func:`trade_rows` rows in sequence order."""
    books: dict[str, AverageCost] = {}
    out = []
    for row in rows:
        book = books.setdefault(row["symbol"], AverageCost())
        signed = row["quantity"] if row["side"] == "buy" else -row["quantity"]
        out.append(book.fill(signed, row["price"]))
    return out


def _period(ns: int, by: str) -> str:

    day = datetime.fromtimestamp(ns // 1_000_000_000, UTC).date()
    if by == "day":
        return day.isoformat()
    if by == "week":
        return (day - timedelta(days=day.weekday())).isoformat()
    return f"{day.year:04d}-{day.month:02d}"


def pnl_rows(
    engine: Engine,
    run: int | str | None = "latest",
    by: str = "month",
    **filters: Unpack[TradeFilters],
) -> list[dict[str, Any]]:
    """A run's trade P&L aggregated ``by`` day, week, month, side, symbol or agent (plain
    dicts).

    Periods are UTC: ``day`` is the date, ``week`` the date of its Monday (ISO
    weeks), ``month`` ``YYYY-MM``. Per group: fills, quantity, notional,
    commission, slippage, ``realised_pnl`` (average-cost, before commission, as
    the portfolio books it) and ``net_pnl`` (realised minus commission). P&L is
    booked on the fill that closes, so filters select fills but the average
    price comes from the whole history. ``agent`` gives each agent's Shapley
    attribution instead: steps, ``shapley_pnl`` (sum of its credit), its
    ``share`` of the total and ``mean_phi``; ``side`` does not apply there.
    """
    if by not in PNL_GROUPS:
        raise ConfigError(f"--by must be one of {', '.join(PNL_GROUPS)}, got {by!r}")
    if by == "agent":
        if filters.get("side") is not None:
            raise ConfigError("--side does not apply to --by agent (Shapley credit has no side)")
        return _agent_pnl_rows(engine, run, filters)
    run_id = resolve_run(engine, run, include_incomplete=filters.get("include_incomplete", False))
    everything = trade_rows(engine, run_id)
    realised = realised_pnl_by_average_cost(everything)
    # Validates the filters the same way as the plain listing.
    kept = trade_rows(engine, run_id, **filters)
    wanted = {row["seq"] for row in kept}
    groups: dict[str, dict[str, Any]] = {}
    for row, pnl in zip(everything, realised, strict=True):
        if row["seq"] not in wanted:
            continue
        key = row[by] if by in ("side", "symbol") else _period(row["time"], by)
        entry = groups.setdefault(key, {by: key, **dict.fromkeys(PNL_COLUMNS, 0.0)})
        entry["fills"] += 1
        entry["quantity"] += row["quantity"]
        entry["notional"] += row["quantity"] * row["price"]
        entry["commission"] += row["commission"]
        entry["slippage"] += row["slippage"]
        entry["realised_pnl"] += pnl
        entry["net_pnl"] += pnl - row["commission"]
    out = [groups[key] for key in sorted(groups)]
    for entry in out:
        entry["fills"] = int(entry["fills"])
    return out


def _agent_pnl_rows(
    engine: Engine, run: int | str | None, filters: TradeFilters
) -> list[dict[str, Any]]:
    """Each agent's Shapley credit over the run (``pnl_rows(by="agent")``)."""
    conditions = _conditions(ShapleyValueRow, filters)
    run_id = resolve_run(engine, run, include_incomplete=filters.get("include_incomplete", False))
    shapley = ShapleyValueRow
    query = (
        select(
            shapley.agent_index,
            func.max(shapley.agent_id).label("agent_id"),
            func.count().label("steps"),
            func.sum(shapley.phi).label("shapley_pnl"),
        )
        .where(shapley.run_id == run_id, *conditions)
        .group_by(shapley.agent_index)
        .order_by(shapley.agent_index)
    )
    with storage_errors(f"reading the Shapley values of run {run_id}"), engine.connect() as c:
        rows = c.execute(query).all()
    total = sum(float(row.shapley_pnl) for row in rows)
    out = []
    for index, agent_id, steps, pnl_sum in rows:
        credit = float(pnl_sum)
        out.append(
            {
                "agent_index": index,
                "agent_id": agent_id,
                "steps": int(steps),
                "shapley_pnl": credit,
                "share": credit / total if total else float("nan"),
                "mean_phi": credit / int(steps),
            }
        )
    return out


def pnl(
    engine: Engine | str,
    run: int | str | None = "latest",
    by: str = "month",
    **filters: Unpack[TradeFilters],
) -> pd.DataFrame:
    """:func:`pnl_rows` as a DataFrame, one row per group (``engine`` may be a URL)."""
    import pandas as pd  # only for a DataFrame: the query commands print without pandas

    rows = pnl_rows(engine_of(engine), run, by, **filters)
    columns = list(AGENT_PNL_COLUMNS) if by == "agent" else [by, *PNL_COLUMNS]
    return pd.DataFrame(rows, columns=columns)
