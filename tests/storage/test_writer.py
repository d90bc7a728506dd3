"""The writer process: the same rows as writing in-process, in order, errors not lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from engine.app.backtest import run_backtest
from engine.app.scenario import load_scenario
from engine.core.errors import HandlerError, StorageError
from engine.core.events import Bar
from engine.feeds.bars import load_bars
from storage.db import connect
from storage.recorder import WRITER_FLUSH_BARS, Recorder
from storage.runs import create_run
from storage.writer import WriterProcess
from tests.conftest import synthetic_scenario

TABLES = (
    "orders",
    "order_events",
    "fills",
    "portfolio_snapshots",
    "agent_actions",
    "shapley_values",
    "valuations",
)


def _rows(engine, run_id: int, table: str) -> list[tuple]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(f"SELECT * FROM {table} WHERE run_id = :r ORDER BY seq"), {"r": run_id}
        ).all()
    return [tuple(row)[1:] for row in rows]  # without run_id


def test_writer_process_stores_exactly_the_rows_written_in_process(db_url: str) -> None:
    config = synthetic_scenario(
        2 * WRITER_FLUSH_BARS + 123,
        strategy='kind = "sma_cross"\nfast = 5\nslow = 20',
        storage="flush_every_bars = 700",
    )
    inline = run_backtest(config, db_url=db_url, writer_process=False)
    process = run_backtest(config, db_url=db_url, writer_process=True)
    assert process.summary == inline.summary
    assert process.rows_written == inline.rows_written > 2 * WRITER_FLUSH_BARS
    engine = connect(db_url)
    compared = 0
    for table in TABLES:
        a = _rows(engine, inline.run_id, table)
        b = _rows(engine, process.run_id, table)
        assert a == b, table
        compared += len(a)
    assert compared == inline.rows_written
    with engine.connect() as connection:
        status = connection.execute(
            text("SELECT status FROM runs WHERE id = :r"), {"r": process.run_id}
        ).scalar()
    assert status == "completed"


def test_learned_demo_rows_equal_with_and_without_writer_process(
    sqlite_url: str, weichai_path: Path
) -> None:
    config = load_scenario(Path(__file__).parents[2] / "scenarios" / "demo.toml")
    data = load_bars(config.data, config.instrument.symbol, path=config.data_path())
    data = data.slice(0, 2_500)
    inline = run_backtest(config, db_url=sqlite_url, data=data, writer_process=False)
    process = run_backtest(config, db_url=sqlite_url, data=data, writer_process=True)
    engine = connect(sqlite_url)
    for table in ("agent_actions", "shapley_values", "valuations", "fills"):
        assert _rows(engine, inline.run_id, table) == _rows(engine, process.run_id, table)
    assert process.rows_written == inline.rows_written


def test_handler_error_with_writer_process_keeps_finished_bars_and_marks_failed(
    tmp_path: Path,
) -> None:
    config = synthetic_scenario(1_500, storage="flush_every_bars = 200")

    def tap(bus) -> None:
        seen = []

        def explode(bar: Bar) -> None:
            seen.append(bar.seq)
            if len(seen) == 1_234:
                raise RuntimeError("boom")

        bus.subscribe(Bar, explode)

    stored = {}
    for writer_process in (False, True):
        url = f"sqlite:///{tmp_path / f'{writer_process}.db'}"
        with pytest.raises(HandlerError, match="boom"):
            run_backtest(config, db_url=url, tap=tap, writer_process=writer_process)
        engine = connect(url)
        with engine.connect() as connection:
            status, error = connection.execute(text("SELECT status, error FROM runs")).one()
            assert status == "failed" and "boom" in error
        stored[writer_process] = {table: _rows(engine, 1, table) for table in TABLES}
    assert stored[True] == stored[False]
    snapshots = stored[True]["portfolio_snapshots"]
    # whole bars only, none after the failing one
    assert 1_200 < len(snapshots) <= 1_233
    assert [row[0] for row in snapshots] == sorted(row[0] for row in snapshots)


def _recorder(url: str):
    """A stored run and a recorder on a writer process started after the database exists
    (as run_backtest does: the child opens the database without creating it)."""
    from engine.core.bus import MessageBus

    engine = connect(url)
    run_id = create_run(
        engine,
        name="w",
        kind="backtest",
        scenario="",
        symbol="X",
        config={},
        config_hash="0",
        seed=0,
        code_version="test",
        bars=0,
        bar_gaps=0,
        first_bar_ns=None,
        last_bar_ns=None,
    )
    bus = MessageBus()
    writer = WriterProcess(url)
    return engine, run_id, bus, Recorder(engine, run_id, bus, writer=writer), writer


def _stored_seqs(engine, run_id: int) -> list[int]:
    with engine.connect() as connection:
        return list(
            connection.execute(
                text("SELECT seq FROM portfolio_snapshots WHERE run_id = :r ORDER BY seq"),
                {"r": run_id},
            ).scalars()
        )


def _snapshot(seq: int):
    from engine.core.events import PortfolioSnapshot

    return PortfolioSnapshot(
        ts_event=seq,
        ts_init=seq,
        seq=seq,
        symbol="X",
        position=0.0,
        avg_price=0.0,
        mark_price=1.0,
        cash=1.0,
        realised_pnl=0.0,
        unrealised_pnl=0.0,
        equity=1.0,
        exposure=0.0,
        fees=0.0,
        turnover=0.0,
    )


def test_writer_error_is_raised_and_nothing_after_it_is_written(sqlite_url: str) -> None:
    engine, run_id, _bus, recorder, writer = _recorder(sqlite_url)
    try:
        assert recorder.write([_snapshot(1), _snapshot(2)]) == 2
        recorder.write([_snapshot(3), _snapshot(2)])  # a duplicate key: this flush fails
        with pytest.raises(StorageError, match="UNIQUE|unique|duplicate"):
            recorder.wait()
        with pytest.raises(StorageError):  # the writer refuses every later flush
            recorder.write([_snapshot(4)])
    finally:
        writer.stop()
    assert _stored_seqs(engine, run_id) == [
        1,
        2,
    ]  # the first flush, whole; not the failed one, not 4


def _write_and_wait(recorder: Recorder, seq: int) -> None:
    recorder.write([_snapshot(seq)])
    recorder.wait()


@pytest.mark.parametrize("idle", [False, True])
def test_writer_process_killed_is_reported_not_ignored(sqlite_url: str, idle: bool) -> None:
    _engine, _run_id, _bus, recorder, writer = _recorder(sqlite_url)
    try:
        if idle:  # killed after answering everything it was sent
            _write_and_wait(recorder, 1)
        writer._proc.kill()
        writer._proc.wait()
        with pytest.raises(StorageError, match="writer process exited"):
            _write_and_wait(recorder, 2)
    finally:
        writer.stop()


def test_recorder_with_writer_refuses_an_also_callback(sqlite_url: str) -> None:
    _engine, _run_id, _bus, recorder, writer = _recorder(sqlite_url)
    try:
        with pytest.raises(ValueError, match="writer process"):
            recorder.flush(also=lambda connection: None)
    finally:
        writer.stop()


def test_in_memory_sqlite_writes_in_process() -> None:
    result = run_backtest(synthetic_scenario(400), db_url="sqlite://")
    assert result.rows_written > 400


def test_writer_holds_back_when_flushes_pile_up_and_keeps_their_order(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import storage.writer

    monkeypatch.setattr(storage.writer, "MAX_IN_FLIGHT", 1)
    engine, run_id, _bus, recorder, writer = _recorder(sqlite_url)
    try:
        for flush in range(6):
            recorder.write([_snapshot(10 * flush + i) for i in range(1, 4)])
            assert writer._sent - writer._answered <= 1
        recorder.wait()
        assert recorder.rows_written == 18
    finally:
        writer.stop()
    assert _stored_seqs(engine, run_id) == [10 * f + i for f in range(6) for i in range(1, 4)]


def test_writer_that_cannot_open_the_database_says_why(tmp_path) -> None:
    import sqlite3

    path = tmp_path / "foreign.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE runs (x INTEGER)")  # not made by emarl
    writer = WriterProcess(f"sqlite:///{path}")
    try:
        writer.submit(
            "run 1", [("INSERT INTO runs (x) VALUES (?)", False, [(1,)])], ("SELECT 1", 1)
        )
        with pytest.raises(StorageError, match="not made by emarl"):
            writer.wait()
        with pytest.raises(StorageError, match="not made by emarl"):  # and stays refused
            writer.submit(
                "run 1", [("INSERT INTO runs (x) VALUES (?)", False, [(2,)])], ("SELECT 1", 1)
            )
    finally:
        writer.stop()
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (0,)
