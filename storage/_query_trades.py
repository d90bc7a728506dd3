"""A run's fills and their P&L: ``emarl trades`` and ``emarl trades --by ...``.

Re-exported by :mod:`storage.query`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from engine.core.accounting import AverageCost
from engine.core.errors import ConfigError
from storage._query_runs import parse_time, resolve_run
from storage.db import storage_errors
from storage.models import Fill, ShapleyValueRow

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "AGENT_PNL_COLUMNS",
    "FILL_COLUMNS",
    "PNL_COLUMNS",
    "PNL_GROUPS",
    "TRADE_COLUMNS",
    "pnl",
    "pnl_rows",
    "realised_pnl_by_average_cost",
    "trade_rows",
    "trades",
]

# what trade_rows reads of each fill
_LISTED = (
    Fill.run_id,
    Fill.seq,
    Fill.ts_event,
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
#: the fill columns :func:`trade_rows` reads, in order
FILL_COLUMNS = tuple(column.key for column in _LISTED)
#: the keys of a :func:`trade_rows` row (``ts_event`` becomes ``time``)
TRADE_COLUMNS = tuple("time" if name == "ts_event" else name for name in FILL_COLUMNS)

PNL_GROUPS = ("day", "week", "month", "side", "agent")
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


def _check_window(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    start = parse_time(since, "--since")
    stop = parse_time(until, "--until")
    if start is not None and stop is not None and stop < start:
        raise ConfigError(f"--until ({until}) is before --since ({since})")
    return start, stop


def trade_rows(
    engine: Engine,
    run: int | str | None = "latest",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    """Fills of a run matching the filters, oldest first, as plain dicts (no pandas needed).

    ``run``: an id, a name or ``latest`` (see :func:`resolve_run`)."""
    if side is not None and side not in ("buy", "sell"):
        raise ConfigError(f"--side must be 'buy' or 'sell', got {side!r}")
    start, stop = _check_window(since, until)
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    query = select(*_LISTED).where(Fill.run_id == run_id).order_by(Fill.seq)
    if symbol:
        query = query.where(Fill.symbol == symbol)
    if side:
        query = query.where(Fill.side == side)
    if start is not None:
        query = query.where(Fill.ts_event >= start)
    if stop is not None:
        query = query.where(Fill.ts_event <= stop)
    with storage_errors(f"reading the trades of run {run_id}"), engine.connect() as connection:
        rows = connection.execute(query).all()
    return [dict(zip(TRADE_COLUMNS, row, strict=True)) for row in rows]


def trades(
    engine: Engine | str,
    run: int | str | None = "latest",
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """A run's fills as a DataFrame (``time`` in UTC), filtered like ``emarl trades``.

    ``engine`` is an SQLAlchemy engine or a database URL.
    """
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    rows = trade_rows(
        engine,
        run,
        symbol=symbol,
        since=since,
        until=until,
        side=side,
        include_incomplete=include_incomplete,
    )
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
    from datetime import UTC, datetime, timedelta

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
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    """A run's trade P&L aggregated ``by`` day, week, month, side or agent (plain dicts).

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
        if side is not None:
            raise ConfigError("--side does not apply to --by agent (Shapley credit has no side)")
        return _agent_pnl_rows(
            engine,
            run,
            symbol=symbol,
            since=since,
            until=until,
            include_incomplete=include_incomplete,
        )
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    everything = trade_rows(engine, run_id)
    realised = realised_pnl_by_average_cost(everything)
    # Validates the filters the same way as the plain listing.
    kept = trade_rows(engine, run_id, symbol=symbol, since=since, until=until, side=side)
    wanted = {row["seq"] for row in kept}
    groups: dict[str, dict[str, Any]] = {}
    for row, pnl in zip(everything, realised, strict=True):
        if row["seq"] not in wanted:
            continue
        key = row["side"] if by == "side" else _period(row["time"], by)
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
    engine: Engine,
    run: int | str | None,
    *,
    symbol: str | None,
    since: str | None,
    until: str | None,
    include_incomplete: bool = False,
) -> list[dict[str, Any]]:
    """Each agent's Shapley credit over the run (``pnl_rows(by="agent")``)."""
    start, stop = _check_window(since, until)
    run_id = resolve_run(engine, run, include_incomplete=include_incomplete)
    shapley = ShapleyValueRow
    query = (
        select(
            shapley.agent_index,
            func.max(shapley.agent_id).label("agent_id"),
            func.count().label("steps"),
            func.sum(shapley.phi).label("shapley_pnl"),
        )
        .where(shapley.run_id == run_id)
        .group_by(shapley.agent_index)
        .order_by(shapley.agent_index)
    )
    if symbol:
        query = query.where(shapley.symbol == symbol)
    if start is not None:
        query = query.where(shapley.ts_event >= start)
    if stop is not None:
        query = query.where(shapley.ts_event <= stop)
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
    *,
    symbol: str | None = None,
    since: str | None = None,
    until: str | None = None,
    side: str | None = None,
    include_incomplete: bool = False,
) -> pd.DataFrame:
    """:func:`pnl_rows` as a DataFrame, one row per group (``engine`` may be a URL)."""
    import pandas as pd

    if isinstance(engine, str):
        from storage.db import connect

        engine = connect(engine, create=False)
    rows = pnl_rows(
        engine,
        run,
        by,
        symbol=symbol,
        since=since,
        until=until,
        side=side,
        include_incomplete=include_incomplete,
    )
    columns = list(AGENT_PNL_COLUMNS) if by == "agent" else [by, *PNL_COLUMNS]
    return pd.DataFrame(rows, columns=columns)
