"""Paper trading over a real MQTT broker: parity, crash safety, broker restarts, bad input.

``emarl paper`` and ``emarl publish`` run as separate processes, as in production.
The tests that kill processes or stop the broker use their own ``mosquitto``
on a free port (unlimited queues); the bad-input test uses the shared broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from engine.app.backtest import run_backtest
from engine.app.scenario import load_scenario
from storage.db import connect
from tests import golden
from tests.paper.broker import Mosquitto
from tests.paper.conftest import SCENARIOS, demo_subset, flat_bar, started_paper, universe_subset

pytestmark = pytest.mark.service

ROOT = Path(__file__).resolve().parents[2]


def emarl(*args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.app.cli", *args], cwd=ROOT, stdout=out, stderr=out
        )


def wait_for(log: Path, needle: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and needle in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()}")
        time.sleep(0.01)
    raise AssertionError(f"{needle!r} not seen in {timeout} s:\n{log.read_text()}")


def paper_then_replay(
    scenario: Path, broker: str, run: str, folder: Path, bars: int, *publish_args: str
) -> tuple[subprocess.Popen[bytes], Path, subprocess.Popen[bytes], Path]:
    """``emarl paper`` of ``scenario`` as ``run``, once it listens, then ``emarl publish`` of
    its ``bars`` bars (``publish_args`` added), once it publishes: each process with its
    log (``paper.log``, ``publish.log`` in ``folder``)."""
    log = folder / "paper.log"
    paper = emarl("paper", str(scenario), "--bus", broker, "--run", run, log=log)
    wait_for(log, "listening on", paper)
    published = folder / "publish.log"
    publish = emarl("publish", str(scenario), "--bus", broker, *publish_args, log=published)
    wait_for(published, f"publishing {bars} bars", publish)
    return paper, log, publish, published


def finish(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise AssertionError(f"still running after {timeout} s:\n{log.read_text()}") from None
    assert code == 0, log.read_text()


def rows(url: str, sql: str, run_id: int) -> list[tuple]:
    with connect(url).connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql), {"r": run_id}).all()]


FILLS = (
    "SELECT seq, ts_event, ts_init, fill_id, order_id, strategy_id, symbol, side, quantity, "
    "price, commission, slippage, filled_quantity, leaves_quantity FROM fills "
    "WHERE run_id = :r ORDER BY seq"
)
SNAPSHOTS = (
    "SELECT seq, ts_event, position, avg_price, mark_price, cash, realised_pnl, equity, fees "
    "FROM portfolio_snapshots WHERE run_id = :r ORDER BY seq"
)


def paper_run_id(url: str, name: str) -> int:
    with connect(url).connect() as connection:
        return int(
            connection.execute(
                text("SELECT max(id) FROM runs WHERE kind = 'paper' AND name = :n"), {"n": name}
            ).scalar_one()
        )


def backtest_ledger(scenario: Path, url: str) -> tuple[list[tuple], list[tuple]]:
    result = run_backtest(load_scenario(scenario), db_url=url)
    assert result.run_id is not None
    return rows(url, FILLS, result.run_id), rows(url, SNAPSHOTS, result.run_id)


@pytest.mark.parametrize(
    ("source", "bars"), [("weichai_sma.toml", 1_000), ("demo.toml", 1_500)], ids=["sma", "learned"]
)
def test_replay_into_paper_gives_the_backtest_fills(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path, source: str, bars: int
) -> None:
    # EMARL_PARITY_BARS=N replays the first N bars instead (0: every bar of the data set)
    wanted = int(os.environ.get("EMARL_PARITY_BARS", bars))
    if wanted == 0:
        import pandas as pd

        wanted = len(pd.read_parquet(weichai_path, columns=["close"]))
    bars = wanted
    url = f"sqlite:///{tmp_path / 'parity.db'}"
    scenario = demo_subset(weichai_path, tmp_path, bars, url, SCENARIOS / source)
    log = tmp_path / "paper.log"
    paper = emarl("paper", str(scenario), "--bus", mosquitto.url, "--run", "parity", log=log)
    wait_for(log, "listening on", paper)
    publish = emarl("publish", str(scenario), "--bus", mosquitto.url, "--speed", "max",
                    log=tmp_path / "publish.log")  # fmt: skip
    timeout = max(60.0, bars / 50)
    finish(publish, tmp_path / "publish.log", timeout)
    finish(paper, log, timeout)
    fills, snapshots = backtest_ledger(scenario, url)
    run_id = paper_run_id(url, "parity")
    assert len(fills) > 5
    assert rows(url, FILLS, run_id) == fills
    assert rows(url, SNAPSHOTS, run_id) == snapshots
    assert f"feed ended after {bars} new bars" in log.read_text()
    if source == "demo.toml" and bars == 1_500:  # the golden paper replay
        golden.check("paper_replay_demo_1500", golden.ledger(url, run_id))
    with connect(url).connect() as connection:
        status = connection.execute(text("SELECT status FROM runs WHERE id = :r"), {"r": run_id})
        assert status.scalar_one() == "completed"
        # the paper run records the checkpoint it trades with, as the backtest does
        marks = connection.execute(
            text("SELECT kind, checkpoint_fingerprint, trained_last_ns FROM runs ORDER BY id")
        ).all()
    assert len({(fingerprint, last) for _kind, fingerprint, last in marks}) == 1
    assert (marks[0][1] is not None) == (source == "demo.toml")


def test_a_universe_replayed_into_paper_gives_the_backtest_ledger_and_status_by_symbol(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    bars = 1_200  # bar-events: 600 time slices of A and B, each bar on its symbol's topic
    url = f"sqlite:///{tmp_path / 'universe.db'}"
    scenario = universe_subset(weichai_path, tmp_path, bars, url)
    log = tmp_path / "paper.log"
    paper = emarl("paper", str(scenario), "--bus", mosquitto.url, "--run", "two", log=log)
    wait_for(log, "listening on", paper)
    publish = emarl("publish", str(scenario), "--bus", mosquitto.url, "--speed", "max",
                    log=tmp_path / "publish.log")  # fmt: skip
    finish(publish, tmp_path / "publish.log")
    finish(paper, log)
    assert "published 1,200 bars of A B" in (tmp_path / "publish.log").read_text()
    fills, snapshots = backtest_ledger(scenario, url)
    run_id = paper_run_id(url, "two")
    stored = rows(url, FILLS, run_id)
    assert stored == fills and {fill[6] for fill in fills} == {"A", "B"}
    assert rows(url, SNAPSHOTS, run_id) == snapshots
    symbols = rows(url, "SELECT DISTINCT symbol FROM paper_bars WHERE run_id = :r", run_id)
    assert sorted(symbols) == [("A",), ("B",)]
    # emarl status: a row per symbol, each at its own latest snapshot
    done = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "status", str(run_id), "--db", url,
         "--format", "json"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    status = json.loads(done.stdout)
    expected = {}
    for symbol in ("A", "B"):
        (position,) = rows(
            url,
            "SELECT position FROM portfolio_snapshots WHERE run_id = :r AND symbol = "
            f"'{symbol}' ORDER BY seq DESC LIMIT 1",
            run_id,
        )[0:1]
        expected[symbol] = position[0]
    assert {r["symbol"]: r["position"] for r in status["symbols"]} == expected
    assert status["feed"]["bars"] == bars and status["feed"]["last_feed_seq"] == bars
    table = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "status", str(run_id), "--db", url],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "positions by symbol" in table


@pytest.mark.parametrize("symbols", [1, 2], ids=["one-symbol", "two-symbols"])
def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path, symbols: int
) -> None:
    bars = 1_000  # bar-events: with two symbols, 500 time slices of both
    path = tmp_path / "crash.db"
    url = f"sqlite:///{path}"
    subset = demo_subset if symbols == 1 else universe_subset
    scenario = subset(weichai_path, tmp_path, bars, url)
    seed = int(os.environ.get("EMARL_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    args = ("paper", str(scenario), "--bus", mosquitto.url, "--run", "crash")
    log = tmp_path / "paper.log"
    paper = emarl(*args, log=log)
    wait_for(log, "listening on", paper)
    publish = emarl("publish", str(scenario), "--bus", mosquitto.url, log=tmp_path / "pub.log")

    def processed() -> int:
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                row = db.execute("SELECT max(last_feed_seq) FROM paper_state").fetchone()
        except sqlite3.OperationalError:
            return 0
        return int(row[0] or 0)

    # first a clean stop (SIGTERM) between bars, early in the replay
    while processed() < 30 and paper.poll() is None:
        time.sleep(0.002)
    paper.send_signal(signal.SIGTERM)
    finish(paper, log)
    assert "stopped after" in log.read_text()
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("SELECT status FROM runs WHERE name = 'crash'").fetchone()[0] == "stopped"
    # kill points: bars processed (spread over the replay), and some at random moments
    # right after a restart (while the run re-drives its stored bars)
    targets = sorted(rng.sample(range(processed() + 10, bars - 150), 8))
    plan = [("bars", t) for t in targets]
    for _ in range(2):
        plan.insert(rng.randrange(1, len(plan)), ("seconds", rng.uniform(0.3, 1.5)))
    kills = 0
    for kind, point in plan:
        paper = emarl(*args, log=log)
        deadline = time.monotonic() + 60
        if kind == "bars":
            # let this restart re-drive the stored bars first (a fast earlier restart may
            # have passed this point already), then go on to the point
            resumed = log.read_text().count("resumed; re-drove")
            while (
                log.read_text().count("resumed; re-drove") == resumed
                and paper.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
            while processed() < point and paper.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
        else:  # a random moment, but before the end of the feed
            until = time.monotonic() + point
            while time.monotonic() < until and processed() < bars - 100 and paper.poll() is None:
                time.sleep(0.002)
        assert paper.poll() is None, f"seed {seed}: paper exited early:\n{log.read_text()}"
        paper.send_signal(signal.SIGKILL)
        paper.wait()
        kills += 1
    assert kills >= 10
    finish(publish, tmp_path / "pub.log")
    assert processed() < bars, f"seed {seed}: the feed ended before the last interruption"
    # then the run to the end of the feed
    paper = emarl(*args, log=log)
    finish(paper, log)

    fills, snapshots = backtest_ledger(scenario, url)
    run_id = paper_run_id(url, "crash")
    assert rows(url, FILLS, run_id) == fills, f"seed {seed}"
    stored = rows(url, SNAPSHOTS, run_id)
    assert stored == snapshots, f"seed {seed}"
    # the account identity: equity = cash + every symbol's position at its latest mark
    held: dict[str, float] = {}
    identity = "SELECT symbol, position, mark_price, cash, equity FROM portfolio_snapshots "
    for symbol, position, mark, cash, equity in rows(url, identity + "WHERE run_id = :r "
                                                     "ORDER BY seq", run_id):  # fmt: skip
        held[symbol] = position * mark
        assert math.isclose(cash + sum(held.values()), equity, rel_tol=1e-12, abs_tol=1e-6)
    assert len(held) == symbols
    feed_seqs = rows(url, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in feed_seqs] == list(range(1, bars + 1))
    text_log = log.read_text()
    # every restart that went on to process bars had re-driven the stored ones first
    assert text_log.count("resumed; re-drove") >= len(targets)
    assert "feed gap" not in text_log


def test_broker_restarts_mid_replay_lose_no_bar_and_log_one_line_each(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    bars = 800
    url = f"sqlite:///{tmp_path / 'restart.db'}"
    scenario = demo_subset(weichai_path, tmp_path, bars, url)
    # about 4 s of replay: 800 bars cover some 200 calendar days
    paper, log, publish, publish_log = paper_then_replay(
        scenario, mosquitto.url, "restart", tmp_path, bars, "--speed", "4000000x"
    )
    path = tmp_path / "restart.db"

    def processed() -> int:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            row = db.execute("SELECT max(last_feed_seq) FROM paper_state").fetchone()
        return int(row[0] or 0)

    for point in (50, 150):  # twice: some bars through, most still to come
        deadline = time.monotonic() + 30
        while processed() < point and time.monotonic() < deadline:
            time.sleep(0.01)
        assert publish.poll() is None, "the replay ended before the broker stopped"
        mosquitto.stop()
        time.sleep(1.0)
        mosquitto.start()
    finish(publish, publish_log)
    finish(paper, log)
    text_log = log.read_text()
    assert "connection to" in text_log and "lost" in text_log  # it did reconnect
    assert "reconnects" in publish_log.read_text()
    assert "feed gap" not in text_log
    # each loss is told in emarl's own words: no asyncio or paho tracebacks or errors
    for logged in (text_log, publish_log.read_text()):
        for noise in ("Traceback", "Future exception was never retrieved", "Bad file descriptor",
                      " ERROR "):  # fmt: skip
            assert noise not in logged, logged
    run_id = paper_run_id(url, "restart")
    feed_seqs = rows(url, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in feed_seqs] == list(range(1, bars + 1))
    fills, snapshots = backtest_ledger(scenario, url)
    assert rows(url, FILLS, run_id) == fills
    assert rows(url, SNAPSHOTS, run_id) == snapshots


def test_bad_input_on_the_wire_is_dropped_with_a_reason(
    system_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import msgspec

    from engine.app.paper import PaperOptions, run_paper_async
    from engine.core.events import Bar, PortfolioSnapshot, RunFinished
    from engine.core.wire import Envelope, pack
    from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
    from tests.conftest import synthetic_scenario

    tag = f"bad{os.getpid()}{random.randrange(1 << 20)}"
    url = f"sqlite:///{tmp_path / 'bad.db'}"
    config = synthetic_scenario(10)
    symbol = config.instrument.symbol
    bar_topic, end_topic = f"emarl/{tag}/bar/{symbol}", f"emarl/{tag}/run_finished/{symbol}"
    settings = MqttSettings.from_url(system_broker)

    def bar(seq: int, ts_seq: int | None = None, **changes: float | str) -> Bar:
        fields: dict = {"ts_event": (ts_seq or seq) * 1_800_000_000_000, "ts_init": 0, "seq": seq,
                        "symbol": symbol, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5,
                        "volume": 5.0}  # fmt: skip
        fields.update(changes)
        return Bar(**fields)

    snapshot = PortfolioSnapshot(ts_event=1, ts_init=1, seq=3, symbol=symbol, position=0.0,
                                 avg_price=0.0, mark_price=1.0, cash=1.0, realised_pnl=0.0,
                                 unrealised_pnl=0.0, equity=1.0, exposure=0.0, fees=0.0,
                                 turnover=0.0)  # fmt: skip
    sends = [
        (bar_topic, pack(tag, 1, bar(1)), None),
        (bar_topic, b"\x00\xffnot msgpack", "malformed envelope"),
        (bar_topic, msgspec.msgpack.encode(Envelope(9, tag, 2, b"")), "unknown schema version 9"),
        (bar_topic, pack("another-run", 2, bar(2)), "message for 'another-run'"),
        (bar_topic, pack(tag, 2, bar(2, volume=1.0)) + b"\x00" * 2_000, "oversized message"),
        (bar_topic, pack(tag, 1, bar(1)), "duplicate of an accepted bar"),
        (bar_topic, pack(tag, 2, bar(2)), None),
        (bar_topic, pack(tag, 3, bar(3, high=8.0)), "inconsistent range"),
        (bar_topic, pack(tag, 3, snapshot), "portfolio_snapshot is not a bar"),
        (bar_topic, pack(tag, 3, bar(3, symbol="OTHER")), "bar for 'OTHER'"),
        (bar_topic, pack(tag, 3, bar(3, ts_seq=2)), "out of order"),
        (bar_topic, pack(tag, 4, bar(4)), None),
        (bar_topic, pack(tag, 3, bar(3)), "seq 3: late"),
        (end_topic, pack(tag, 5, RunFinished(ts_event=0, ts_init=0, seq=5, bars=4)), None),
    ]

    async def scenario() -> object:
        ready = asyncio.Event()
        # seq 3 is never received: this run trades on (a paper run halts by default)
        options = PaperOptions(run_name=tag, feed=tag, max_message_bytes=1_024, on_gap="continue")
        task = asyncio.create_task(
            run_paper_async(config, settings, options, db_url=url, on_ready=ready.set)
        )
        await asyncio.wait_for(ready.wait(), 30)
        client = make_client(settings)
        await connect_client(client, settings)
        for topic_name, payload, _reason in sends:
            await client.publish(topic_name, payload, qos=1)
        await close_client(client)
        return await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="emarl"):
        result = asyncio.run(scenario())
    assert result.outcome == "end" and result.bars == 3  # type: ignore[attr-defined]
    reasons = [m for r in caplog.records if (m := r.getMessage()).startswith("dropped message:")]
    expected = [reason for _, _, reason in sends if reason]
    assert len(reasons) == len(expected)
    for reason, message in zip(expected, reasons, strict=True):
        assert reason in message
    gap = "feed gap: 1 bar(s) never received (feed seq 3) before seq 4"
    assert any(gap in r.getMessage() for r in caplog.records)
    run_id = paper_run_id(url, tag)
    feed_seqs = rows(url, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in feed_seqs] == [1, 2, 4]
    state = rows(url, "SELECT dropped, last_drop FROM paper_state WHERE run_id = :r", run_id)
    assert state[0][0] == len(expected) and "seq 3: late" in state[0][1]


def test_a_silent_feed_is_logged_as_stale_and_then_live(
    system_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from engine.app.paper import PaperOptions
    from engine.core.events import RunFinished
    from engine.core.wire import pack
    from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
    from tests.conftest import synthetic_scenario

    tag = f"stale{os.getpid()}{random.randrange(1 << 20)}"
    config = synthetic_scenario(10)
    symbol = config.instrument.symbol
    settings = MqttSettings.from_url(system_broker)

    async def scenario() -> object:
        # 30-minute bars: 0.4 s of silence is 1/4500 of a bar length
        options = PaperOptions(run_name=tag, feed=tag, stale_after_bars=1 / 4500)
        task = await started_paper(config, settings, options, f"sqlite:///{tmp_path / 's.db'}")
        client = make_client(settings)
        await connect_client(client, settings)
        await client.publish(f"emarl/{tag}/bar/{symbol}", flat_bar(tag, symbol, 1), qos=1)
        await asyncio.sleep(1.2)
        await client.publish(f"emarl/{tag}/bar/{symbol}", flat_bar(tag, symbol, 2), qos=1)
        marker = RunFinished(ts_event=0, ts_init=0, seq=3, bars=2)
        await client.publish(f"emarl/{tag}/run_finished/{symbol}", pack(tag, 3, marker), qos=1)
        await close_client(client)
        return await asyncio.wait_for(task, 30)

    with caplog.at_level(logging.INFO, logger="emarl"):
        result = asyncio.run(scenario())
    assert result.bars == 2  # type: ignore[attr-defined]
    messages = [r.getMessage() for r in caplog.records]
    stale = [i for i, m in enumerate(messages) if m.startswith("stale feed: no bar for")]
    live = [i for i, m in enumerate(messages) if m == "feed is live again"]
    # the 1.2 s of silence between the bars is reported, then the feed's return
    assert stale and live and stale[-1] < live[-1]


@pytest.mark.service
def test_a_stopped_paper_run_refreshes_the_statistics_of_its_tables(
    system_broker: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A paper run that stops (here at --max-bars) ANALYZEs its tables on PostgreSQL, as a
    completed run does, once it stored ANALYZE_AFTER_ROWS rows (lowered to 1 here)."""
    from engine.app.paper import PaperOptions
    from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
    from storage import recorder
    from tests.conftest import synthetic_scenario

    monkeypatch.setattr(recorder, "ANALYZE_AFTER_ROWS", 1)
    tag = f"analyze{os.getpid()}{random.randrange(1 << 20)}"
    config = synthetic_scenario(10)
    symbol = config.instrument.symbol
    settings = MqttSettings.from_url(system_broker)

    async def scenario() -> object:
        options = PaperOptions(run_name=tag, feed=tag, max_bars=2)
        task = await started_paper(config, settings, options, postgres_url)
        client = make_client(settings)
        await connect_client(client, settings)
        for seq in (1, 2):
            await client.publish(f"emarl/{tag}/bar/{symbol}", flat_bar(tag, symbol, seq), qos=1)
        await close_client(client)
        return await asyncio.wait_for(task, 30)

    result = asyncio.run(scenario())
    assert result.outcome == "max_bars" and result.bars == 2  # type: ignore[attr-defined]
    with connect(postgres_url).connect() as connection:
        analyzed = connection.execute(
            text(
                "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'portfolio_snapshots'"
            )
        ).scalar_one()
    assert analyzed is True
