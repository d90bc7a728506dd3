"""Opening databases and bringing their schema up to date with Alembic.

Creating or migrating a schema holds a lock, so processes that open a new (or
an old) database at the same moment take turns: the first migrates, the others
wait, then find the schema current. On SQLite the lock is an exclusive
transaction (``BEGIN EXCLUSIVE``) that also makes the migration atomic; on
PostgreSQL a transaction-level advisory lock (``pg_advisory_xact_lock``) around
the migration's transaction. Opening a database whose schema is current takes
no lock and does not import Alembic.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    RowMapping,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError

from engine.core.errors import StorageError

__all__ = [
    "DEFAULT_URL",
    "connect",
    "downgrade",
    "engine_of",
    "migrate",
    "read_rows",
    "storage_errors",
    "write_rows",
    "write_statement",
    "write_transaction",
]

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///runs/emarl.db"
# The newest migration; a test checks it against the migrations folder. A database
# already there is used without importing Alembic (which keeps commands quick).
HEAD_REVISION = "0013"
MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key of schema changes: the bytes of "emarl" as a number
_ADVISORY_LOCK_KEY = int.from_bytes(b"emarl", "big")
_ENGINES: dict[str, Engine] = {}
#: seconds waited before each new try of a transaction the database server cut off, or
#: refused (it is restarting): 15.5 s in all
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate database exceptions into :class:`StorageError` naming ``what``."""
    try:
        yield
    except StorageError:
        raise
    except SQLAlchemyError as exc:
        raise StorageError(f"{what}: {_first_line(exc)}") from exc


def _first_line(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def write_transaction(
    engine: Engine,
    what: str,
    work: Callable[[Connection], None],
    committed: Callable[[Connection], bool],
) -> int:
    """Run ``work(connection)`` in one transaction; return how many times it was tried
    again because the database server could not be reached.

    A server that restarts, fails over or is told to (``pg_terminate_backend``) closes
    the connection in the middle of the transaction: nothing of it is committed, unless
    it was lost while the commit itself was under way. So the connection is replaced and
    ``committed`` asked, on the new one, whether the transaction went through; if not,
    ``work`` runs again, whole. A server that refuses connections (it is restarting) is
    tried again the same way. The tries wait :data:`RECONNECT_DELAYS` (15.5 s in all);
    any other failure, or the last, is a :class:`StorageError` naming ``what``. SQLite
    has no server: nothing is retried there.
    """
    lost = 0
    server = engine.dialect.name != "sqlite"
    while True:
        connected = False
        try:
            with engine.connect() as connection:
                connected = True
                if lost:
                    done = committed(connection)
                    connection.rollback()  # the check's own transaction
                    if done:
                        return lost
                with connection.begin():
                    work(connection)
            return lost
        except DBAPIError as exc:
            unreachable = exc.connection_invalidated or (
                not connected and isinstance(exc, OperationalError)
            )
            if not (server and unreachable):
                raise StorageError(f"{what}: {_first_line(exc)}") from exc
            if lost == len(RECONNECT_DELAYS):
                raise StorageError(
                    f"{what}: {_first_line(exc)} (tried {lost + 1} times over "
                    f"{sum(RECONNECT_DELAYS):g} s)"
                ) from exc
            log.warning(
                "%s: the database server cannot be reached (%s); trying again in %g s",
                what,
                _first_line(exc),
                RECONNECT_DELAYS[lost],
            )
            time.sleep(RECONNECT_DELAYS[lost])
            lost += 1
        except SQLAlchemyError as exc:
            raise StorageError(f"{what}: {_first_line(exc)}") from exc


def write_rows(
    engine: Engine,
    what: str,
    batch: Sequence[tuple[str, Sequence[Any]]],
    check: tuple[str, Any],
    also: Callable[[Connection], None] | None = None,
) -> None:
    """Each driver-level ``(sql, rows)`` of ``batch``, then ``also(connection)``, in one
    transaction (:func:`write_transaction`). ``check`` is a query and the value it reads
    once that transaction is committed (a run's flushes each set a new heartbeat): asked
    on a new connection before the batch is written again."""
    check_sql, value = check

    def work(connection: Connection) -> None:
        for sql, rows in batch:
            connection.exec_driver_sql(sql, rows)
        if also is not None:
            also(connection)

    def committed(connection: Connection) -> bool:
        return bool(connection.exec_driver_sql(check_sql).scalar() == value)

    write_transaction(engine, what, work, committed)


def write_statement(engine: Engine, what: str, statement: Executable) -> None:
    """Execute one statement that may run twice with the same effect (an UPDATE that sets
    values) in its own transaction, waiting for a database server cut off or restarting
    as :func:`write_transaction` does."""

    def work(connection: Connection) -> None:
        connection.execute(statement)

    write_transaction(engine, what, work, lambda _connection: False)


def read_rows(engine: Engine, query: Executable, what: str) -> Sequence[RowMapping]:
    """The rows ``query`` selects, as mappings (a failure is a :class:`StorageError`
    naming ``what``)."""
    with storage_errors(what), engine.connect() as connection:
        return connection.execute(query).mappings().all()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    _set_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _set_wal(cursor: Any) -> None:
    """Switch the file to WAL. Another process switching a new file at the same moment
    makes SQLite answer "database is locked" at once (the busy timeout does not apply to
    this pragma), so it is tried again for up to the busy timeout."""

    deadline = time.monotonic() + 10.0
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def connect(url: str = DEFAULT_URL, *, create: bool = True) -> Engine:
    """An engine for ``url`` with its schema migrated (SQLite files get their folder made).

    ``postgresql://`` URLs use psycopg 3. With ``create=False`` a missing SQLite
    file is an error instead of a new empty database.
    """
    cached = _ENGINES.get(url)
    if cached is not None:
        return cached
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StorageError(f"not a database URL: {url!r} ({exc})") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(
            f"{parsed.render_as_string()}: emarl stores runs in SQLite (sqlite:///path/to/file.db) "
            "or PostgreSQL (postgresql://user@host:port/database), not "
            f"{parsed.get_backend_name()}"
        )
    is_sqlite = parsed.drivername.startswith("sqlite")
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            if not create:
                raise StorageError(f"no database at {path} (run a backtest first, or pass --db)")
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # A server may close a pooled connection while it sits idle (a restart, an idle
        # timeout, an administrator): PostgreSQL connections are tested as they are taken
        # from the pool and replaced if dead, instead of failing the next statement.
        engine = create_engine(parsed, future=True, pool_pre_ping=not is_sqlite)
    except Exception as exc:
        raise StorageError(f"cannot open database {url!r}: {exc}") from exc
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    _ENGINES[url] = engine
    return engine


def engine_of(engine: Engine | str) -> Engine:
    """``engine`` itself, or an engine for the existing database at that URL."""
    return connect(engine, create=False) if isinstance(engine, str) else engine


def _current_revision(engine: Engine) -> str | None:
    with storage_errors(f"cannot open database {engine.url.render_as_string()}"):
        if not inspect(engine).has_table("alembic_version"):
            return None
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the schema lock (module docstring).

    Commits when the block ends, rolls back if it raises. On SQLite foreign keys are
    off meanwhile (a migration that rebuilds a table drops it, and with them on the
    drop would delete every row that refers to it) and checked before the commit.
    """
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if sqlite:
            # outside a transaction (pysqlite begins none for a pragma), where it applies
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            # pysqlite begins transactions lazily and never before DDL: begin one here
            connection.exec_driver_sql("BEGIN EXCLUSIVE")
        elif engine.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY}
            )
        try:
            yield connection
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").first()
                if broken is not None:
                    raise StorageError(
                        f"{engine.url.render_as_string()}: the schema change left rows of "
                        f"{broken[0]} without their {broken[2]} row; nothing was changed"
                    )
        except BaseException:
            connection.rollback()
            raise
        finally:
            if sqlite:
                connection.commit()  # a no-op after the rollback
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
        if not sqlite:
            connection.commit()


def migrate(engine: Engine) -> None:
    """Run every Alembic migration the database lacks (a no-op when up to date).

    Holds the schema lock while it reads the revision and migrates, so concurrent
    first opens of one database all succeed.
    """
    if _current_revision(engine) == HEAD_REVISION:
        return
    # alembic (0.2 s to import) loads only to check or migrate the schema
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with (
        storage_errors(f"cannot open database {engine.url.render_as_string()}"),
        _schema_lock(engine) as connection,
    ):
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(config)
        current = MigrationContext.configure(connection).get_current_revision()
        if current == script.get_current_head():
            return
        if current is None and inspect(connection).has_table("runs"):
            raise StorageError(
                f"{engine.url.render_as_string()}: has a 'runs' table but no migration "
                "history; it was not made by emarl"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to ``revision``, under the schema lock (tests of upgrades)."""
    # alembic (0.2 s to import) loads only to check or migrate the schema
    from alembic import command
    from alembic.config import Config

    with (
        storage_errors(f"downgrading {engine.url.render_as_string()}"),
        _schema_lock(engine) as connection,
    ):
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def dispose_all() -> None:
    """Close every cached engine (tests and long-lived processes)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
