"""The Recorder: persists a run's events in batches, one transaction per flush.

It subscribes to the bus before any other handler, so it sees each bar
before that bar's fills and snapshots: when a bar arrives, everything
buffered belongs to finished bars. A flush happens on the arrival of a bar
once ``flush_every_bars`` bars are buffered, or once
:data:`~storage.runs.HEARTBEAT_SECONDS` have passed since the last flush, and
when the run ends. Every flush's transaction also sets the run row's heartbeat
and the count of bars stored (see :mod:`storage.runs`). If a
handler raises, :meth:`Recorder.abort` drops the messages of the unfinished
bar (their sequence numbers are above the bar's) and writes the rest, so the
database never holds half a bar.

Rows go to the database as tuples through the driver's ``executemany``
(the statement is built once per table; the hot path does no per-row dict
work). A message type maps to a table whose columns are ``run_id`` followed
by the message's fields, or to a converter for tables of another shape.
:func:`write_messages` stores messages recorded elsewhere (a sweep task's run) in
the same tables and rows, in one transaction, without a bus.

By default writes are synchronous. With ``writer=`` a
:class:`~storage.writer.WriterProcess` runs each flush's transaction in a child
process instead (a writer thread was measured slower here: the driver binds
parameters under the GIL, and the two threads contend for it). The flush then only
encodes its rows and sends them; :meth:`Recorder.wait` (called at the end of the run,
and by :meth:`Recorder.abort`) returns once every flush is committed and raises the
first storage error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import Connection, Engine, Table

from engine.core.events import (
    AgentAction,
    Bar,
    Message,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    PortfolioSnapshot,
    RunFinished,
    ShapleyRecord,
    SubmitOrder,
    Valuation,
)
from storage.db import storage_errors, write_rows
from storage.models import (
    AgentActionRow,
    Fill,
    Order,
    OrderEvent,
    PortfolioSnapshotRow,
    ShapleyValueRow,
    ValuationRow,
)
from storage.runs import HEARTBEAT_SECONDS, heartbeat_query, heartbeat_statement
from storage.writer import WriterProcess

if TYPE_CHECKING:
    from engine.core.bus import Bus  # the recorder only subscribes to a bus it is given

__all__ = [
    "ANALYZE_AFTER_ROWS",
    "DEFAULT_TABLES",
    "WRITER_FLUSH_BARS",
    "Recorder",
    "TableSpec",
    "write_messages",
]

WRITER_FLUSH_BARS = 1_000
#: a run that stored this many rows or more refreshes PostgreSQL's statistics of its tables
#: (:meth:`Recorder.refresh_statistics`)
ANALYZE_AFTER_ROWS = 10_000

_astuple = msgspec.structs.astuple


class TableSpec:
    """How one message type becomes rows of one table.

    Without ``convert`` the row is the message's fields in order (the table's
    columns after ``run_id``); with it, ``convert(message)`` returns the row
    tuple for ``columns``.
    """

    __slots__ = ("columns", "convert", "table")

    def __init__(
        self,
        table: Table,
        columns: Sequence[str] | None = None,
        convert: Callable[[Any], tuple[Any, ...]] | None = None,
    ) -> None:
        self.table = table
        self.columns = tuple(columns) if columns is not None else None
        self.convert = convert

    def bind(self, message_type: type[Message]) -> tuple[tuple[str, ...], Callable[[Any], Any]]:
        if self.columns is None or self.convert is None:
            columns = tuple(f.name for f in msgspec.structs.fields(message_type))
            convert: Callable[[Any], Any] = _astuple
        else:
            columns, convert = self.columns, self.convert
        missing = [c for c in ("run_id", *columns) if c not in self.table.columns]
        if missing:
            raise ValueError(f"table {self.table.name} lacks column(s) {missing}")
        return columns, convert


def _order_event(name: str) -> TableSpec:
    def convert(message: Any) -> tuple[Any, ...]:
        return (
            message.seq,
            message.ts_event,
            message.order_id,
            name,
            getattr(message, "reason", None),
        )

    return TableSpec(
        OrderEvent.__table__,  # type: ignore[arg-type]
        ("seq", "ts_event", "order_id", "event", "reason"),
        convert,
    )


DEFAULT_TABLES: dict[type[Message], TableSpec] = {
    SubmitOrder: TableSpec(Order.__table__),  # type: ignore[arg-type]
    OrderFilled: TableSpec(Fill.__table__),  # type: ignore[arg-type]
    PortfolioSnapshot: TableSpec(PortfolioSnapshotRow.__table__),  # type: ignore[arg-type]
    OrderAccepted: _order_event("accepted"),
    OrderDenied: _order_event("denied"),
    OrderRejected: _order_event("rejected"),
    OrderCanceled: _order_event("canceled"),
    OrderExpired: _order_event("expired"),
    AgentAction: TableSpec(AgentActionRow.__table__),  # type: ignore[arg-type]
    ShapleyRecord: TableSpec(ShapleyValueRow.__table__),  # type: ignore[arg-type]
    Valuation: TableSpec(ValuationRow.__table__),  # type: ignore[arg-type]
}


def _insert_sql(engine: Engine, run_id: int, table: Table, columns: Sequence[str]) -> str:
    """Driver-level SQL that inserts one row of ``columns`` into ``table``: ``run_id``
    inlined and one placeholder per column, in order."""
    dialect = engine.dialect
    marker = {"qmark": "?", "numeric": ":{}", "named": ":{}"}.get(dialect.paramstyle, "%s")
    placeholders = ", ".join(marker.format(c) for c in columns)
    quoted = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)
    table_name = dialect.identifier_preparer.format_table(table)
    return f"INSERT INTO {table_name} (run_id, {quoted}) VALUES ({int(run_id)}, {placeholders})"


def _commit(
    engine: Engine,
    run_id: int,
    batch: Sequence[tuple[str, list[Any]]],
    heartbeat: tuple[str, str],
    bars: int,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """One transaction: each table's rows, then the run row's heartbeat and ``bars``
    stored, then ``also(connection)``. ``heartbeat`` is the statement that sets it and the
    query that reads it: a transaction whose connection is lost is written again unless
    the heartbeat it set was committed (:func:`storage.db.write_rows`)."""
    count = sum(len(rows) for _sql, rows in batch)
    now = time.time_ns()
    set_sql, read_sql = heartbeat
    write_rows(
        engine,
        f"run {run_id}: writing {count} rows",
        [*batch, (set_sql, [(now, bars)])],
        (read_sql, now),
        also,
    )


def _sort_into(messages: Iterable[Message], buffers: dict[type[Message], list[Any]]) -> int:
    """Append each message to the buffer of its type (types without one are skipped);
    return how many were bars."""
    bars = 0
    for message in messages:
        if type(message) is Bar:
            bars += 1
        buffer = buffers.get(type(message))
        if buffer is not None:
            buffer.append(message)
    return bars


def write_messages(
    engine: Engine,
    run_id: int,
    messages: Iterable[Message],
    *,
    tables: dict[type[Message], TableSpec] | None = None,
) -> int:
    """Store messages recorded elsewhere (a sweep task's run) in one transaction, as a
    :class:`Recorder` stores them on the bus; return the rows written.

    Types without a table are skipped; the ``Bar`` messages count as the run's bars
    stored, set with a fresh heartbeat in the same transaction.
    """
    bound: dict[type[Message], tuple[str, Callable[[Any], Any]]] = {}
    for message_type, spec in (DEFAULT_TABLES if tables is None else tables).items():
        columns, convert = spec.bind(message_type)
        bound[message_type] = (_insert_sql(engine, run_id, spec.table, columns), convert)
    buffers: dict[type[Message], list[Any]] = {message_type: [] for message_type in bound}
    bars = _sort_into(messages, buffers)
    batch = [
        (sql, list(map(convert, buffers[message_type])))
        for message_type, (sql, convert) in bound.items()
        if buffers[message_type]
    ]
    if not batch:
        return 0
    heartbeat = (heartbeat_statement(engine, run_id), heartbeat_query(engine, run_id))
    _commit(engine, run_id, batch, heartbeat, bars)
    return sum(len(rows) for _sql, rows in batch)


class Recorder:
    """Buffers recorded messages and writes finished bars in one transaction per flush."""

    def __init__(
        self,
        engine: Engine,
        run_id: int,
        bus: Bus,
        *,
        flush_every_bars: int = 10_000,
        tables: dict[type[Message], TableSpec] | None = None,
        writer: WriterProcess | None = None,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._bus = bus
        self.run_id = run_id
        # With a writer process a flush costs this process only the encoding, so it
        # sends at most WRITER_FLUSH_BARS bars at a time: the run then waits at its end
        # only for the last small batch.
        self.flush_every_bars = (
            flush_every_bars if writer is None else min(flush_every_bars, WRITER_FLUSH_BARS)
        )
        self._specs: dict[type[Message], TableSpec] = {}
        self._bound: dict[type[Message], tuple[Table, str, Callable[[Any], Any]]] = {}
        self._buffers: dict[type[Message], list[Any]] = {}
        self._bar_seq = 0
        self._bars_since_flush = 0
        self._bars_seen = 0
        self._heartbeat_sql = heartbeat_statement(engine, run_id)
        self._heartbeat_check = heartbeat_query(engine, run_id)
        self.heartbeat_seconds = heartbeat_seconds
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.flushes = 0
        for message_type, spec in (DEFAULT_TABLES if tables is None else tables).items():
            self.add_table(message_type, spec)

    def add_table(self, message_type: type[Message], spec: TableSpec) -> None:
        """Persist another message type (call before :meth:`subscribe`)."""
        columns, convert = spec.bind(message_type)
        sql = _insert_sql(self._engine, self.run_id, spec.table, columns)
        self._specs[message_type] = spec
        self._bound[message_type] = (spec.table, sql, convert)
        self._buffers[message_type] = []

    def subscribe(self) -> None:
        """Subscribe; call before any other handler subscribes to ``Bar``."""
        self._bus.subscribe(Bar, self.on_bar)
        self._bus.subscribe(RunFinished, self.on_run_finished)
        for message_type, buffer in self._buffers.items():
            self._bus.subscribe(message_type, buffer.append)

    def on_bar(self, bar: Bar) -> None:
        # Everything buffered so far belongs to finished bars.
        self._bar_seq = bar.seq
        self._bars_seen += 1
        self._bars_since_flush += 1
        if self._bars_since_flush > self.flush_every_bars or (
            not self._bars_since_flush & 127
            and time.monotonic() - self._last_flush > self.heartbeat_seconds
        ):
            self.flush(bars=self._bars_seen - 1)
            self._bars_since_flush = 1

    def flush(
        self, also: Callable[[Connection], None] | None = None, *, bars: int | None = None
    ) -> int:
        """Write everything buffered in one transaction; return the rows written.

        Called by the recorder itself at bar boundaries; call it from outside
        only between bars. ``also(connection)``, when given, runs inside the same
        transaction after the rows (paper trading stores its bar and state with them).
        ``bars`` is the count of finished bars the flush completes (default: every bar
        seen); it goes to the run row with a fresh heartbeat.
        """
        finished = self._bars_seen if bars is None else bars
        self._last_flush = time.monotonic()
        if self._writer is not None:
            if also is not None:
                raise ValueError("a recorder with a writer process cannot run `also`")
            return self._submit(finished)
        batch = []
        count = 0
        for message_type, buffer in self._buffers.items():
            if buffer:
                _table, sql, convert = self._bound[message_type]
                batch.append((sql, list(map(convert, buffer))))
                count += len(buffer)
        if not batch and also is None:
            return 0
        heartbeat = (self._heartbeat_sql, self._heartbeat_check)
        _commit(self._engine, self.run_id, batch, heartbeat, finished, also)
        for buffer in self._buffers.values():
            buffer.clear()
        self.rows_written += count
        self.flushes += 1
        return count

    def _submit(self, finished: int) -> int:
        writer = self._writer
        assert writer is not None
        tables = []
        count = 0
        for message_type, buffer in self._buffers.items():
            if buffer:
                _table, sql, convert = self._bound[message_type]
                if convert is _astuple:  # the row is the message's fields: send the structs
                    tables.append((sql, True, buffer))
                else:
                    tables.append((sql, False, list(map(convert, buffer))))
                count += len(buffer)
        if not tables:
            return 0
        heartbeat = time.time_ns()
        tables.append((self._heartbeat_sql, False, [(heartbeat, finished)]))
        writer.submit(f"run {self.run_id}", tables, (self._heartbeat_check, heartbeat))
        for buffer in self._buffers.values():
            buffer.clear()
        self.flushes += 1
        return count

    def wait(self) -> None:
        """Return once every flush is committed (a no-op without a writer process).

        Raises :class:`~engine.core.errors.StorageError` if the writer process failed.
        """
        if self._writer is not None:
            try:
                self._writer.wait()
            finally:
                self.rows_written = self._writer.rows_written

    def on_run_finished(self, _event: RunFinished) -> None:
        self.flush()
        self.wait()

    def refresh_statistics(self) -> bool:
        """On PostgreSQL, once the run has stored :data:`ANALYZE_AFTER_ROWS` rows or more,
        ANALYZE the tables it writes, so that the queries that read it next are planned
        with its rows counted; returns whether it did.

        Autovacuum would, but it may be off, or not yet awake when the run is read: with
        the statistics of empty tables PostgreSQL sorted a 200,000-bar run's Shapley
        values and valuations whole for three totals (1.6 s instead of 0.2 s), and its
        report took 11 s instead of 6. ANALYZE samples a bounded number of rows, so it
        costs a fraction of a second whatever the tables hold.
        """
        if self._engine.dialect.name != "postgresql" or self.rows_written < ANALYZE_AFTER_ROWS:
            return False
        preparer = self._engine.dialect.identifier_preparer
        tables = sorted(
            {preparer.format_table(table) for table, _sql, _conv in self._bound.values()}
        )
        with (
            storage_errors(f"run {self.run_id}: refreshing the statistics of its tables"),
            self._engine.begin() as connection,
        ):
            connection.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
        return True

    def write(self, messages: Iterable[Message]) -> int:
        """Store messages recorded elsewhere in one flush (through the writer process, if
        any); :func:`write_messages` does the same without a recorder.

        Types this recorder does not persist are skipped, as on the bus.
        """
        return self.flush(bars=_sort_into(messages, self._buffers))

    def discard(self) -> None:
        """Drop everything buffered without writing it (a resumed run re-driving stored bars)."""
        for buffer in self._buffers.values():
            buffer.clear()

    def abort(self) -> int:
        """Drop the unfinished bar's messages and write the rest."""
        try:
            for buffer in self._buffers.values():
                buffer[:] = [m for m in buffer if m.seq < self._bar_seq]
            count = self.flush(bars=max(self._bars_seen - 1, 0))
            self.wait()
            return count
        finally:
            for buffer in self._buffers.values():
                buffer.clear()
