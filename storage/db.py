"""Opening databases and bringing their schema up to date with Alembic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from engine.errors import StorageError

__all__ = ["DEFAULT_URL", "connect", "migrate", "storage_errors"]

DEFAULT_URL = "sqlite:///runs/emarl.db"
# The newest migration; a test checks it against the migrations folder. A database
# already there is used without importing Alembic (which keeps commands quick).
HEAD_REVISION = "0007"
MIGRATIONS = Path(__file__).parent / "migrations"
_ENGINES: dict[str, Engine] = {}


@contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Translate database exceptions into :class:`StorageError` naming ``what``."""
    try:
        yield
    except StorageError:
        raise
    except SQLAlchemyError as exc:
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise StorageError(f"{what}: {detail}") from exc


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


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
    is_sqlite = parsed.drivername.startswith("sqlite")
    if is_sqlite and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            if not create:
                raise StorageError(f"no database at {path} (run a backtest first, or pass --db)")
            path.parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, future=True)
    except Exception as exc:
        raise StorageError(f"cannot open database {url!r}: {exc}") from exc
    if is_sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    _ENGINES[url] = engine
    return engine


def _current_revision(engine: Engine) -> str | None:
    with storage_errors(f"cannot open database {engine.url.render_as_string()}"):
        if not inspect(engine).has_table("alembic_version"):
            return None
        with engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def migrate(engine: Engine) -> None:
    """Run every Alembic migration the database lacks (a no-op when up to date)."""
    if _current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with storage_errors(f"cannot open database {engine.url.render_as_string()}"):
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        script = ScriptDirectory.from_config(config)
        if current == script.get_current_head():
            return
        if current is None and inspect(engine).has_table("runs"):
            raise StorageError(
                f"{engine.url.render_as_string()}: has a 'runs' table but no migration "
                "history; it was not made by emarl"
            )
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")


def dispose_all() -> None:
    """Close every cached engine (tests and long-lived processes)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()
