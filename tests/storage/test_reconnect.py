"""A transaction whose connection the server closes in the middle is written again, once.

PostgreSQL closes a connection mid-transaction when it restarts, fails over, or is told
to (``pg_terminate_backend``). Nothing of that transaction is committed, unless the
connection was lost while the commit itself was under way, and the run's own heartbeat
(a new value each flush) tells the two apart. The server here closes the connection
from a trigger, so the cut lands inside a run's transaction at a chosen row.
"""

from __future__ import annotations

import logging
import threading

import pytest
from sqlalchemy import Connection, create_engine, select, text

import storage.db
from engine.app.backtest import run_backtest
from engine.app.scenario import parse_scenario
from engine.core.errors import StorageError
from storage.db import connect, write_transaction
from storage.models import Run, RunStatus
from tests.conftest import POSTGRES_URL
from tests.storage.test_interrupted import SCENARIO

# The first row of a table whose column is past a value makes the server close the
# connection that inserts it; a sequence (which no rollback undoes) makes that happen once,
# and tells afterwards whether it did.
CUT_ONCE = """
CREATE SEQUENCE cuts;
CREATE FUNCTION cut_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.{column} > {after} THEN
        IF (SELECT NOT is_called FROM cuts) THEN
            PERFORM nextval('cuts');
            PERFORM pg_terminate_backend(pg_backend_pid());
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER cut_once BEFORE {event} ON {table} FOR EACH ROW EXECUTE FUNCTION cut_once();
"""


def _engine(url: str):
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"))


def cut_once(url: str, table: str, column: str, after: int, event: str = "INSERT") -> None:
    """The server closes the connection that inserts (or with ``event = "UPDATE"``,
    updates) the first row of ``table`` whose ``column`` is above ``after``, once in all:
    :func:`cuts` says whether it did."""
    engine = _engine(url)
    sql = CUT_ONCE.format(table=table, column=column, after=int(after), event=event)
    with engine.begin() as connection:
        connection.exec_driver_sql(sql)
    engine.dispose()


def cuts(url: str) -> int:
    engine = _engine(url)
    with engine.connect() as connection:
        cut = connection.execute(text("SELECT is_called FROM cuts")).scalar_one()
    engine.dispose()
    return int(cut)


def _stored(url: str, run_id: int) -> tuple[str, int, int]:
    engine = _engine(url)
    with engine.connect() as connection:
        status, stored = connection.execute(
            select(Run.status, Run.bars_stored).where(Run.id == run_id)
        ).one()
        snapshots = connection.execute(
            text("SELECT count(*) FROM portfolio_snapshots WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    engine.dispose()
    return status, stored, snapshots


@pytest.mark.service
@pytest.mark.parametrize("writer_process", [False, True], ids=["in-process", "writer-process"])
def test_a_flush_cut_mid_transaction_is_written_again(
    postgres_url: str, writer_process: bool, caplog: pytest.LogCaptureFixture, capfd
) -> None:
    """The server closes the connection in the middle of a flush (in the run's process,
    or in its writer process): the flush is written again on a new connection, and the
    run completes with every bar stored once, where it used to fail."""
    config = parse_scenario(SCENARIO.format(name="cut", bars=2_000, url=postgres_url))
    connect(postgres_url)  # the schema, for the trigger
    cut_once(postgres_url, "portfolio_snapshots", "seq", after=5_000)
    with caplog.at_level(logging.WARNING, logger="storage.db"):
        result = run_backtest(config, db_url=postgres_url, writer_process=writer_process)
    assert cuts(postgres_url) == 1
    assert _stored(postgres_url, result.run_id or 0) == (RunStatus.COMPLETED, 2_000, 2_000)
    said = caplog.text + capfd.readouterr().err
    assert f"run {result.run_id}: writing " in said
    # the server's last word ("terminating connection...") may be lost with the connection
    assert "rows: the database server cannot be reached (" in said
    assert "trying again in 0.5 s" in said


@pytest.mark.service
def test_a_transaction_committed_as_its_connection_was_lost_is_not_written_twice(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is lost after the server committed: the check on the new connection
    finds the transaction's mark, and the work does not run again."""
    monkeypatch.setattr(storage.db, "RECONNECT_DELAYS", (0.0,))
    engine = connect(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE marks (mark integer)")
    calls = []

    def work(connection: Connection) -> None:
        calls.append(1)
        connection.exec_driver_sql("INSERT INTO marks VALUES (7)")
        connection.exec_driver_sql("COMMIT")  # the server commits, then the answer is lost
        connection.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    def committed(connection: Connection) -> bool:
        return connection.exec_driver_sql("SELECT count(*) FROM marks").scalar() == 1

    assert write_transaction(engine, "marking", work, committed) == 1
    assert calls == [1]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT mark FROM marks").all() == [(7,)]


def _failing_write(engine, sql: str) -> tuple[str, int]:
    """What writing with ``sql`` raises, and how many times it was tried."""
    calls = []

    def work(connection: Connection) -> None:
        calls.append(1)
        connection.exec_driver_sql(sql)

    with pytest.raises(StorageError) as raised:
        write_transaction(engine, "writing", work, lambda _connection: False)
    return str(raised.value), len(calls)


@pytest.mark.service
def test_a_connection_lost_every_time_fails_after_the_last_try(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage.db, "RECONNECT_DELAYS", (0.0, 0.0))
    said, tries = _failing_write(
        connect(postgres_url), "SELECT pg_terminate_backend(pg_backend_pid())"
    )
    assert said.startswith("writing: terminating connection") and said.endswith(
        "(tried 3 times over 0 s)"
    )
    assert tries == 3


@pytest.mark.service
def test_a_server_that_refuses_connections_for_a_while_is_waited_for(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server closes the run's connection and refuses new ones (as while it restarts)
    for about a second: the write waits for it, then goes through once."""
    monkeypatch.setattr(storage.db, "RECONNECT_DELAYS", (0.25,) * 12)
    engine = connect(postgres_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE marks (mark integer)")
    database = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": database},
        )
    timer = threading.Timer(1.0, _allow, (admin, database))
    timer.start()
    calls = []

    def work(connection: Connection) -> None:
        calls.append(1)
        connection.exec_driver_sql("INSERT INTO marks VALUES (1)")

    try:
        tries = write_transaction(engine, "marking", work, lambda _connection: False)
    finally:
        timer.join()
        admin.dispose()
    assert tries >= 2 and calls == [1]
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM marks").scalar() == 1


def _allow(admin, database: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')


def test_other_failures_are_not_tried_again(sqlite_url: str) -> None:
    """Only a lost connection is tried again: a constraint broken, or SQLite's own errors,
    fail at once with what was being written."""
    said, tries = _failing_write(connect(sqlite_url), "INSERT INTO runs (id) VALUES (NULL, 1)")
    assert said.startswith("writing: ") and tries == 1
