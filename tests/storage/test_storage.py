"""Schema, migrations, the Recorder and the query API, on SQLite and PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import func, select, text

from engine.app.backtest import run_backtest
from engine.core.errors import ConfigError, RunNotFoundError, StorageError
from storage.db import HEAD_REVISION, MIGRATIONS, connect
from storage.models import Base, Fill, PortfolioSnapshotRow, Run
from storage.query import FILL_COLUMNS, RUN_COLUMNS, list_runs, trade_rows, trades
from storage.recorder import ANALYZE_AFTER_ROWS
from tests.conftest import synthetic_scenario


def test_migrations_on_empty_database_match_models(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = connect(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == HEAD_REVISION
        assert compare_metadata(context, Base.metadata) == []


def test_head_revision_constant_is_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_query_columns_exist_in_models() -> None:
    assert set(RUN_COLUMNS) <= set(Run.__table__.columns.keys())
    assert set(FILL_COLUMNS) <= set(Fill.__table__.columns.keys())


def test_connect_bad_url_raises_storage_error() -> None:
    with pytest.raises(StorageError, match="not a database URL"):
        connect("not a url")


def test_connect_names_the_databases_it_stores_in_for_another_kind() -> None:
    """A MySQL or MariaDB URL (a server on this machine) is refused by name, its password
    hidden, instead of "No module named 'MySQLdb'"."""
    with pytest.raises(StorageError) as raised:
        connect("mariadb://root:secret@127.0.0.1/test")
    assert str(raised.value) == (
        "mariadb://root:***@127.0.0.1/test: emarl stores runs in SQLite "
        "(sqlite:///path/to/file.db) or PostgreSQL (postgresql://user@host:port/database), "
        "not mariadb"
    )


def test_connect_missing_sqlite_without_create_says_so(tmp_path) -> None:
    with pytest.raises(StorageError, match="no database at"):
        connect(f"sqlite:///{tmp_path / 'none.db'}", create=False)


def test_backtest_persists_every_snapshot_and_fill(db_url: str) -> None:
    config = synthetic_scenario(3_000, storage="flush_every_bars = 700")
    result = run_backtest(config, db_url=db_url)
    engine = connect(db_url)
    with engine.connect() as connection:
        snapshots = connection.execute(
            select(func.count()).select_from(PortfolioSnapshotRow)
        ).scalar()
        fills = connection.execute(select(func.count()).select_from(Fill)).scalar()
        run = connection.execute(select(Run)).mappings().one()
    assert snapshots == 3_000
    assert fills == result.fills > 10
    assert run["status"] == "completed"
    assert run["bars"] == 3_000
    assert run["config_hash"] and run["code_version"]


def test_trades_filters_by_side_time_and_symbol(db_url: str) -> None:
    run_backtest(synthetic_scenario(3_000), db_url=db_url)
    engine = connect(db_url)
    every = trade_rows(engine, "latest")
    assert len(every) > 10
    buys = trade_rows(engine, "latest", side="buy")
    assert buys and all(r["side"] == "buy" for r in buys)
    middle = every[len(every) // 2]["time"]
    since = pd.Timestamp(middle, tz="UTC").isoformat()
    later = trade_rows(engine, "latest", since=since)
    assert later and all(r["time"] >= middle for r in later)
    assert len(later) < len(every)
    until = trade_rows(engine, "latest", until=since)
    assert len(until) + len(later) == len(every) + 1  # the boundary fill is in both
    assert trade_rows(engine, "latest", symbol="OTHER") == []
    frame = trades(engine, "latest", side="sell")
    assert list(frame.columns)[:5] == ["run_id", "seq", "time", "symbol", "side"]
    assert str(frame["time"].dt.tz) == "UTC"
    assert (frame["side"] == "sell").all()


def test_trades_unknown_run_and_bad_dates_raise_clear_errors(sqlite_url: str) -> None:
    engine = connect(sqlite_url)
    with pytest.raises(RunNotFoundError, match="holds no runs"):
        trade_rows(engine, "latest")
    run_backtest(synthetic_scenario(500), db_url=sqlite_url)
    with pytest.raises(RunNotFoundError, match="no run with id 99"):
        trade_rows(engine, 99)
    with pytest.raises(RunNotFoundError, match="no run with id or name 'abc'"):
        trade_rows(engine, "abc")
    with pytest.raises(ConfigError, match="--since: cannot read '2020-13-45'"):
        trade_rows(engine, "latest", since="2020-13-45")
    with pytest.raises(ConfigError, match="--until .* is before --since"):
        trade_rows(engine, "latest", since="2021-01-01", until="2020-01-01")
    with pytest.raises(ConfigError, match="--side must be"):
        trade_rows(engine, "latest", side="hold")


def test_list_runs_newest_first_with_summary(sqlite_url: str) -> None:
    run_backtest(synthetic_scenario(400), db_url=sqlite_url)
    run_backtest(synthetic_scenario(400), db_url=sqlite_url)
    rows = list_runs(connect(sqlite_url))
    assert [r["id"] for r in rows] == [2, 1]
    assert rows[0]["status"] == "completed" and rows[0]["trades"] is not None


def test_upgrade_from_0005_keeps_stored_valuations_and_adds_their_pricing(db_url: str) -> None:
    """A database written before valuations stored their pricing keeps every row."""
    from sqlalchemy import text

    from engine.feeds.bars import load_bars
    from storage.db import dispose_all, downgrade
    from storage.models import ValuationRow
    from tests.strategies.test_meta_investor_bus import factory

    config = synthetic_scenario(400)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    run_backtest(config, data=data, db_url=db_url, strategy_factory=factory(data, []))
    engine = connect(db_url)
    with engine.connect() as connection:
        before = connection.execute(
            select(ValuationRow.seq, ValuationRow.option_value).order_by(ValuationRow.seq)
        ).all()
    assert len(before) > 300
    downgrade(engine, "0005")
    with engine.connect() as connection:
        columns = connection.execute(text("SELECT * FROM valuations LIMIT 1")).keys()
    assert "pricing" not in columns
    dispose_all()
    upgraded = connect(db_url)  # migrates to the head on connect
    with upgraded.connect() as connection:
        after = connection.execute(
            select(ValuationRow.seq, ValuationRow.option_value, ValuationRow.pricing).order_by(
                ValuationRow.seq
            )
        ).all()
    assert [(s, v) for s, v, _ in after] == [tuple(r) for r in before]
    assert {p for _, _, p in after} == {"black_scholes"}


def test_upgrade_from_0007_keeps_rows_indexes_valuations_and_counts_stored_bars(
    db_url: str,
) -> None:
    """A database written before migrations 0008-0010 keeps every row; valuations gain
    their lookup index and runs their bars stored (their snapshots) and a heartbeat."""
    from sqlalchemy import inspect, text

    from engine.feeds.bars import load_bars
    from storage.db import dispose_all, downgrade
    from storage.models import ShapleyValueRow, ValuationRow
    from tests.strategies.test_meta_investor_bus import factory

    config = synthetic_scenario(400)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    run_backtest(config, data=data, db_url=db_url, strategy_factory=factory(data, []))
    engine = connect(db_url)
    tables = (ValuationRow, ShapleyValueRow, PortfolioSnapshotRow, Fill)
    with engine.connect() as connection:
        before = {
            model.__tablename__: connection.execute(
                select(model.__table__).order_by(model.seq)
            ).all()
            for model in tables
        }
    assert len(before["valuations"]) > 300
    downgrade(engine, "0007")
    indexes = {index["name"] for index in inspect(engine).get_indexes("valuations")}
    assert "ix_valuations_run_ts_agent" not in indexes
    assert "bars_stored" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    dispose_all()
    upgraded = connect(db_url)  # migrates to the head on connect
    indexes = {index["name"] for index in inspect(upgraded).get_indexes("valuations")}
    assert "ix_valuations_run_ts_agent" in indexes
    with upgraded.connect() as connection:
        for model in tables:
            after = connection.execute(select(model.__table__).order_by(model.seq)).all()
            assert after == before[model.__tablename__], model.__tablename__
        run = connection.execute(select(Run)).mappings().one()
        assert run["bars_stored"] == 400 and run["heartbeat_ns"] == run["started_ns"]
        if upgraded.dialect.name == "sqlite":
            # the listing's join looks valuations up through the index, not by scanning
            from storage._query_shapley import _SHAPLEY_ROWS, _shapley_sql

            query = _shapley_sql(upgraded, _SHAPLEY_ROWS)
            plan = connection.execute(text(f"EXPLAIN QUERY PLAN {query.text}"), {"run_id": 1})
            steps = [str(row[-1]) for row in plan]
            assert any("USING INDEX ix_valuations_run_ts_agent" in step for step in steps), steps


def test_shapley_listing_looks_each_valuation_up_by_bar_and_agent(sqlite_url: str) -> None:
    """Every statement the listing (and its totals) runs finds a Shapley value's valuation
    through an index on (run_id, ts_event, agent_index), never by scanning the run's
    valuations (which made the listing quadratic in the run's length)."""
    from sqlalchemy import event

    from engine.feeds.bars import load_bars
    from storage.query import shapley_count, shapley_rows
    from tests.strategies.test_meta_investor_bus import factory

    config = synthetic_scenario(300)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    run_backtest(config, data=data, db_url=sqlite_url, strategy_factory=factory(data, []))
    engine = connect(sqlite_url)
    statements: list[tuple[str, object]] = []

    def keep(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if "valuations" in statement:
            statements.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        assert len(shapley_rows(engine, "latest")) > 800
        assert len(shapley_rows(engine, "latest", aggregate=True)) == 3
        # the count of a truncated table (its plan went quadratic once: valuations outside)
        assert shapley_count(engine, 1) == len(shapley_rows(engine, "latest"))
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert statements
    with engine.connect() as connection:
        for statement, parameters in statements:
            plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            steps = [str(row[-1]) for row in plan]
            # "SEARCH <table or alias> USING ..." or "SCAN <table or alias>"
            lookups = [step for step in steps if step.split()[1] in ("v", "w", "valuations")]
            assert lookups, steps
            for step in lookups:
                assert step.startswith("SEARCH"), steps
                assert "(run_id=? AND ts_event=? AND agent_index=?)" in step, steps


def test_write_messages_of_a_recorded_run_stores_the_rows_its_recorder_stored(
    db_url: str,
) -> None:
    """A run stored from its messages (a sweep task's) equals the same run recorded on
    the bus, row for row in every table, with its bars counted as stored."""
    from engine.core.events import Bar
    from engine.feeds.bars import load_bars
    from storage.recorder import DEFAULT_TABLES, write_messages
    from storage.runs import create_run
    from tests.strategies.test_meta_investor_bus import factory

    config = synthetic_scenario(300)
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    captured: list[object] = []

    def tap(bus) -> None:
        for message_type in (Bar, *DEFAULT_TABLES):
            bus.subscribe(message_type, captured.append)

    run_backtest(config, data=data, db_url=db_url, strategy_factory=factory(data, []), tap=tap)
    engine = connect(db_url)
    with engine.connect() as connection:
        recorded = connection.execute(select(func.max(Run.id))).scalar_one()
    copied = create_run(
        engine, name="copy", kind="sweep", scenario="", symbol="SYNTH", config={},
        config_hash="h", seed=1, code_version="test", bars=300, bar_gaps=0,
        first_bar_ns=None, last_bar_ns=None,
    )  # fmt: skip
    written = write_messages(engine, copied, captured)
    counts = {}
    with engine.connect() as connection:
        for table in {spec.table for spec in DEFAULT_TABLES.values()}:
            columns = [c for c in table.columns if c.name != "run_id"]
            rows = {
                run_id: connection.execute(
                    select(*columns).where(table.c.run_id == run_id).order_by(table.c.seq)
                ).all()
                for run_id in (recorded, copied)
            }
            assert rows[copied] == rows[recorded], table.name
            counts[table.name] = len(rows[recorded])
        stored = connection.execute(select(Run.bars_stored).where(Run.id == copied)).scalar()
    assert min(counts["fills"], counts["shapley_values"], counts["valuations"]) > 0
    assert written == sum(counts.values())
    assert stored == 300


def _analyzed(url: str) -> dict[str, bool]:
    """Per run table: whether ANALYZE has run on it (PostgreSQL's last_analyze, which
    autovacuum does not set)."""
    with connect(url, create=False).connect() as connection:
        rows = connection.execute(
            text("SELECT relname, last_analyze IS NOT NULL FROM pg_stat_user_tables")
        ).all()
    return {str(row[0]): bool(row[1]) for row in rows}


def _estimated_rows(url: str, table: str, run_id: int) -> float:
    """The planner's estimate of a run's rows in ``table``."""
    with connect(url, create=False).connect() as connection:
        plan = connection.execute(
            text(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table} WHERE run_id = {run_id}")
        ).scalar_one()
    return float(plan[0]["Plan"]["Plan Rows"])


@pytest.mark.service
def test_a_large_run_refreshes_the_postgresql_statistics_of_its_tables(postgres_url: str) -> None:
    """A run of ANALYZE_AFTER_ROWS rows or more analyzes the tables it wrote, so the next
    read is planned with its rows counted; a small run leaves the statistics alone."""
    small = run_backtest(synthetic_scenario(400), db_url=postgres_url)
    assert small.rows_written < ANALYZE_AFTER_ROWS
    assert not any(_analyzed(postgres_url).values())
    ensemble = synthetic_scenario(
        1_500,
        strategy='kind = "scripted_ensemble"\nagents = ["random", "neutral", "random"]\n'
        "max_position = 100",
    )
    large = run_backtest(ensemble, db_url=postgres_url)
    assert large.rows_written >= ANALYZE_AFTER_ROWS
    analyzed = _analyzed(postgres_url)
    for table in ("portfolio_snapshots", "fills", "agent_actions", "shapley_values", "valuations"):
        assert analyzed[table], table
    with connect(postgres_url, create=False).connect() as connection:
        stored = connection.execute(
            text(f"SELECT count(*) FROM shapley_values WHERE run_id = {large.run_id}")
        ).scalar_one()
    assert stored > 3_000
    assert _estimated_rows(postgres_url, "shapley_values", large.run_id) > stored / 2
