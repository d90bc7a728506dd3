"""Runs whose process died are ``interrupted``, never ``running``; readers say so.

``emarl backtest`` runs as its own process and is SIGKILLed at several points (as
soon as its run row exists, after a few flushes, past the middle), on SQLite and
PostgreSQL. Every read verb then treats the run as interrupted: ``runs`` shows it
with the bars stored beside the bars planned, ``latest`` skips it, reading it
prints one warning line, its report says where it stopped, and ``runs --prune``
deletes it with its rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text, update
from typer.testing import CliRunner

import storage.db
from engine.app.backtest import run_backtest
from engine.app.cli import app
from engine.app.scenario import parse_scenario
from engine.core.errors import HandlerError
from engine.core.events import Bar
from storage.db import connect
from storage.models import Run, RunStatus
from tests.conftest import POSTGRES_URL

ROOT = Path(__file__).resolve().parents[2]
BARS = 40_000
TABLES = ("portfolio_snapshots", "fills", "orders", "agent_actions", "shapley_values", "valuations")

SCENARIO = """
[run]
name = "{name}"
seed = 3
[data]
source = "synthetic"
[data.synthetic]
bars = {bars}
[strategy]
kind = "scripted_ensemble"
agents = ["random", "neutral", "random"]
max_position = 500
confidence_threshold = -2.0
[strategy.meta]
expiry_bars = 48
[storage]
url = "{url}"
flush_every_bars = 500
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def newest(url: str) -> tuple[int, int]:
    """The newest run and its stored bars (its portfolio snapshots, one per bar)."""
    with connect(url).connect() as connection:
        run_id = int(connection.execute(text("SELECT max(id) FROM runs")).scalar_one())
    return run_id, count(url, "portfolio_snapshots", run_id)


def settled(url: str, run_id: int) -> int:
    """Bars stored once the killed run's writer process has committed what it had."""
    previous = -1
    while True:
        stored = count(url, "portfolio_snapshots", run_id)
        if stored == previous:
            return stored
        previous = stored
        time.sleep(0.5)


def count(url: str, table: str, run_id: int) -> int:
    with connect(url).connect() as connection:
        return int(
            connection.execute(
                text(f"SELECT count(*) FROM {table} WHERE run_id = :r"), {"r": run_id}
            ).scalar_one()
        )


def run_row(url: str, name: str) -> dict[str, object]:
    """What :func:`storage.runs.create_run` takes for a 10-bar run of the ensemble."""
    config = parse_scenario(SCENARIO.format(name=name, bars=10, url=url))
    return {
        "name": name,
        "kind": "backtest",
        "scenario": "",
        "symbol": "SYNTH",
        "config": config.to_dict(),
        "config_hash": "x",
        "seed": 0,
        "code_version": "x",
        "bars": 10,
        "bar_gaps": 0,
        "first_bar_ns": None,
        "last_bar_ns": None,
    }


def kill_backtest_at(scenario: Path, url: str, after: int, stored: int) -> int:
    """Start ``emarl backtest``, SIGKILL it once its run row has ``stored`` bars."""
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", "backtest", str(scenario), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            run_id, bars = newest(url)
            if run_id > after and bars >= stored:
                process.send_signal(signal.SIGKILL)
                process.wait()
                return run_id
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.003)
        raise AssertionError(f"no run with {stored} bars stored in 60 s")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_sigkilled_backtest_is_interrupted_for_every_reader(db_url: str, tmp_path: Path) -> None:
    completed = run_backtest(
        parse_scenario(SCENARIO.format(name="done", bars=2_000, url=db_url)), db_url=db_url
    )
    assert completed.run_id == 1
    scenario = tmp_path / "long.toml"
    scenario.write_text(SCENARIO.format(name="long", bars=BARS, url=db_url))
    killed = []
    for point in (0, 4_000, BARS // 2):
        run_id = kill_backtest_at(scenario, db_url, max([1, *killed]), point)
        killed.append(run_id)
        stored = settled(db_url, run_id)
        assert point <= stored < BARS

        listed = invoke("runs", "--db", db_url, "--format", "json")
        assert listed.exit_code == 0, listed.output
        row = next(r for r in json.loads(listed.stdout) if r["id"] == run_id)
        assert (row["status"], row["bars"], row.get("bars_stored")) == ("interrupted", BARS, stored)

        # 'latest' is the newest completed run, read without a warning
        latest = invoke("trades", "--db", db_url, "--format", "json")
        assert latest.exit_code == 0, latest.output
        assert {r["run_id"] for r in json.loads(latest.stdout)} == {1}
        assert latest.stderr == ""
        newest_any = invoke("trades", "--db", db_url, "--include-incomplete", "--format", "json")
        assert {r["run_id"] for r in json.loads(newest_any.stdout or "[]")} <= {run_id}
        assert f"run {run_id} was interrupted" in newest_any.stderr

        # reading the interrupted run: its partial rows and one warning line
        warning = f"warning: run {run_id} was interrupted (its process died) ({stored:,} of"
        for args in (
            ("trades", "--run", str(run_id), "--format", "json"),
            ("shapley", "--run", str(run_id), "--aggregate", "--format", "json"),
        ):
            result = invoke(*args, "--db", db_url)
            assert result.exit_code == (0 if stored else 1), result.output
            lines = result.stderr.strip().splitlines()
            assert lines[0].startswith(warning) and f"{BARS:,} bars stored" in lines[0], lines
            assert len(lines) == (1 if stored else 2), lines
        if stored:
            steps = json.loads(invoke("shapley", "--run", str(run_id), "--aggregate",
                                      "--format", "json", "--db", db_url).stdout)  # fmt: skip
            assert sum(a["steps"] for a in steps) == count(db_url, "shapley_values", run_id)
        report = invoke("report", str(run_id), "--db", db_url, "-o", str(tmp_path / "r.html"))
        assert report.exit_code == 0, report.output
        assert report.stderr.startswith(warning)
        page = (tmp_path / "r.html").read_text()
        assert f"interrupted at bar {stored:,} of {BARS:,}" in page
        status = invoke("status", str(run_id), "--db", db_url)
        assert status.exit_code == 0 and "interrupted" in status.stdout
        assert f"{stored:,} of {BARS:,}" in status.stdout

    before = {table: count(db_url, table, 1) for table in TABLES}
    pruned = invoke("runs", "--prune", "--db", db_url)
    assert pruned.exit_code == 0, pruned.output
    assert f"{len(killed)} interrupted run(s) deleted" in pruned.stdout
    remaining = json.loads(invoke("runs", "--db", db_url, "--format", "json").stdout)
    assert [r["id"] for r in remaining] == [1]
    for table in TABLES:
        assert count(db_url, table, 1) == before[table]
        for run_id in killed:
            assert count(db_url, table, run_id) == 0


def test_running_rows_are_judged_by_process_and_heartbeat(db_url: str) -> None:
    from storage.models import RunStatus
    from storage.runs import create_run, mark_interrupted

    engine = connect(db_url)
    values = run_row(db_url, "row")
    alive = create_run(engine, **values)  # this process, fresh heartbeat
    dead_here = create_run(engine, **values)
    elsewhere_fresh = create_run(engine, **values)
    elsewhere_stale = create_run(engine, **values)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    now = time.time_ns()
    with engine.begin() as connection:
        connection.execute(update(Run).where(Run.id == dead_here).values(pid=int(finished.stdout)))
        connection.execute(
            update(Run)
            .where(Run.id.in_([elsewhere_fresh, elsewhere_stale]))
            .values(host="another-host", pid=os.getpid())
        )
        connection.execute(
            update(Run)
            .where(Run.id == elsewhere_stale)
            .values(heartbeat_ns=now - 121 * 1_000_000_000)
        )
    assert mark_interrupted(engine, now_ns=now) == {dead_here, elsewhere_stale}
    with engine.connect() as connection:
        statuses = dict(connection.execute(select(Run.id, Run.status)).all())
        running = connection.execute(
            select(func.count()).select_from(Run).where(Run.status == RunStatus.RUNNING)
        ).scalar_one()
    assert statuses[alive] == statuses[elsewhere_fresh] == RunStatus.RUNNING and running == 2
    assert statuses[dead_here] == statuses[elsewhere_stale] == RunStatus.INTERRUPTED
    # a tighter bound makes the other host's run stale too; a live process here is running
    later = now + 5 * 1_000_000_000
    assert mark_interrupted(engine, now_ns=later, stale_after=1.0) == {elsewhere_fresh}


def test_shapley_of_a_run_not_yet_stepped_does_not_say_it_has_no_agents(db_url: str) -> None:
    """A running ensemble that has stored no step yet has agents: ``emarl shapley`` says it
    has stored none yet, after the warning; a completed one says what its strategy was."""
    from storage.runs import RunStatus, create_run, finish_run

    engine = connect(db_url)
    values = run_row(db_url, "early")
    running = create_run(engine, **values)  # this process, fresh heartbeat: running
    result = invoke("shapley", "--run", str(running), "--db", db_url)
    assert result.exit_code == 1
    assert f"warning: run {running} is still running" in result.output
    assert f"run {running} has stored no Shapley values yet" in result.output
    assert "no agents" not in result.output
    finished = create_run(engine, **values)
    finish_run(engine, finished, status=RunStatus.COMPLETED, wall_seconds=0.0)
    result = invoke("shapley", "--run", str(finished), "--db", db_url)
    assert result.exit_code == 1 and "warning" not in result.output
    assert (
        f"run {finished} has no Shapley values: its strategy (scripted_ensemble) credited no "
        "agents" in result.output
    )


def test_a_slow_run_flushes_for_its_heartbeat_before_its_batch_is_full(sqlite_url: str) -> None:
    """However large the flush interval, the heartbeat forces a flush (every 128 bars it
    checks the time): bars_stored then counts the bars finished before the flush."""
    from engine.core.bus import MessageBus
    from engine.core.events import Bar, PortfolioSnapshot
    from storage.recorder import Recorder
    from storage.runs import create_run

    engine = connect(sqlite_url)
    config = parse_scenario(SCENARIO.format(name="slow", bars=10, url=sqlite_url))
    run_id = create_run(engine, name="slow", kind="backtest", scenario="", symbol="SYNTH",
                        config=config.to_dict(), config_hash="x", seed=0, code_version="x",
                        bars=300, bar_gaps=0, first_bar_ns=None, last_bar_ns=None)  # fmt: skip
    bus = MessageBus()
    recorder = Recorder(engine, run_id, bus, flush_every_bars=10**9, heartbeat_seconds=0.0)
    recorder.subscribe()
    for i in range(1, 301):
        bus.publish(Bar(ts_event=i, ts_init=i, seq=bus.next_seq(), symbol="SYNTH", open=1.0,
                        high=1.0, low=1.0, close=1.0, volume=1.0))  # fmt: skip
        bus.publish(PortfolioSnapshot(ts_event=i, ts_init=i, seq=bus.next_seq(), symbol="SYNTH",
                                      position=0.0, avg_price=0.0, mark_price=1.0, cash=1.0,
                                      realised_pnl=0.0, unrealised_pnl=0.0, equity=1.0,
                                      exposure=0.0, fees=0.0, turnover=0.0))  # fmt: skip
    with engine.connect() as connection:
        stored = connection.execute(select(Run.bars_stored).where(Run.id == run_id)).scalar_one()
    # flushed as bars 128 and 255 arrived (each after 127 more): the 254 before are stored
    assert stored == 254 == count(sqlite_url, "portfolio_snapshots", run_id)


class DatabaseOutage:
    """At bar ``at`` the database server closes every connection of the run (as a restart
    or an administrator would), and with ``refuse`` it also refuses new ones and the
    strategy then fails; the run's own process goes on."""

    def __init__(self, bus: Any, url: str, at: int, *, refuse: bool = False) -> None:
        self._bus = bus
        self._url = url
        self._at = at
        self._refuse = refuse
        self._bars = 0

    def subscribe(self) -> None:
        self._bus.subscribe(Bar, self.on_bar)

    def on_bar(self, _bar: Bar) -> None:
        self._bars += 1
        if self._bars != self._at:
            return
        database = self._url.rsplit("/", 1)[1]
        if self._refuse:
            _allow_connections(database, False)
        admin = _admin()
        with admin.connect() as connection:
            closed = connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            ).all()
        admin.dispose()
        assert closed, "the run had no connection to close"
        if self._refuse:
            raise RuntimeError("the strategy failed while the database was down")


def _admin() -> Any:
    """An engine on the server's own database (not the run's), committing each statement."""
    return create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )


def _allow_connections(database: str, allowed: bool) -> None:
    admin = _admin()
    with admin.connect() as connection:
        connection.exec_driver_sql(
            f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'
        )
    admin.dispose()


def _outage(url: str, at: int, *, refuse: bool = False) -> Any:
    return lambda _config, bus, _clock: DatabaseOutage(bus, url, at, refuse=refuse)


def _run_row(url: str, run_id: int) -> tuple[str, str | None, int]:
    with connect(url, create=False).connect() as connection:
        row = connection.execute(
            select(Run.status, Run.error, Run.bars_stored).where(Run.id == run_id)
        ).one()
    return row[0], row[1], row[2]


@pytest.mark.service
def test_connections_closed_by_the_server_between_writes_lose_nothing(postgres_url: str) -> None:
    """The server closes the run's connections (the writer process's and the pooled one
    the run opened with) between two flushes: each is found dead as it is taken from its
    pool and replaced, and the run stores every bar."""
    config = parse_scenario(SCENARIO.format(name="outage", bars=3_000, url=postgres_url))
    result = run_backtest(
        config,
        db_url=postgres_url,
        writer_process=True,
        strategy_factory=_outage(postgres_url, 1_200),
    )
    assert _run_row(postgres_url, result.run_id or 0) == (RunStatus.COMPLETED, None, 3_000)
    assert count(postgres_url, "portfolio_snapshots", result.run_id or 0) == 3_000


@pytest.mark.service
def test_a_run_that_fails_while_the_database_is_down_raises_its_own_error(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The strategy fails while the database refuses connections: the run raises the
    strategy's error, not one about storing its last rows or marking it failed (those are
    logged once the database was waited for); its row stays ``running``, for readers to
    judge once the database is back."""
    monkeypatch.setattr(storage.db, "RECONNECT_DELAYS", (0.05, 0.05))
    config = parse_scenario(SCENARIO.format(name="down", bars=3_000, url=postgres_url))
    database = postgres_url.rsplit("/", 1)[1]
    try:
        with pytest.raises(HandlerError, match="the strategy failed while the database"):
            run_backtest(
                config,
                db_url=postgres_url,
                strategy_factory=_outage(postgres_url, 700, refuse=True),
            )
    finally:
        admin = create_engine(
            postgres_url.replace("postgresql://", "postgresql+psycopg://").replace(
                database, "test"
            ),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        admin.dispose()
    status, error, stored = _run_row(postgres_url, 1)
    assert status == RunStatus.RUNNING and error is None and 0 < stored < 700
