"""A replay never outruns the paper runs reading its feed (engine.feeds.readers).

A broker keeps only so many unacknowledged bars per subscriber and drops the rest; a
paper run acknowledges a bar only after committing it, so a replay at ``--speed max``
used to overflow that queue and halt the run at a gap. The end-to-end tests run
``emarl paper`` and ``emarl publish`` as processes against a private Mosquitto that
queues 100 messages per client.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from engine.app.cli import app
from engine.feeds.readers import DOWN, PROGRESS_EVERY, Readers, progress, reader_topic
from storage.db import connect
from tests.paper.broker import Mosquitto
from tests.paper.conftest import demo_subset, flat_bar, started_paper
from tests.paper.test_mqtt import emarl, finish, paper_run_id, paper_then_replay


def test_a_publisher_waits_for_its_slowest_reader_and_no_longer() -> None:
    async def scenario() -> None:
        readers = Readers("market", max_lead=100, stall_seconds=60.0)
        assert readers.limit() is None  # nobody reads: nothing holds the replay back
        readers.on_message(reader_topic("market", "a"), progress(400))
        readers.on_message(reader_topic("market", "b"), progress(150))
        assert readers.limit() == 250
        await asyncio.wait_for(readers.wait_until(250), 1.0)  # within the lead: no wait
        waiting = asyncio.create_task(readers.wait_until(300))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        readers.on_message(reader_topic("market", "b"), progress(175))  # not yet far enough
        await asyncio.sleep(0.05)
        assert not waiting.done()
        readers.on_message(reader_topic("market", "b"), progress(200))
        await asyncio.wait_for(waiting, 1.0)
        assert readers.waited >= 0.1
        readers.on_message(reader_topic("market", "b"), b"")  # b is gone: a sets the pace
        assert readers.limit() == 500
        readers.on_message(reader_topic("market", "a"), b"not a number")  # ignored
        assert readers.limit() == 500
        readers.on_message(reader_topic("market", "a"), DOWN)  # fallen: its place stands
        assert readers.limit() == 500
        readers.on_message(reader_topic("market", "c"), DOWN)  # down before we met: ignored
        assert readers.limit() == 500 and "c" not in readers.seqs
        readers.sent = 3_000  # a new run (0) reads from where the replay is
        readers.on_message(reader_topic("market", "d"), progress(0))
        assert readers.seqs["d"] == 3_000 and readers.limit() == 500

    asyncio.run(scenario())


def test_a_silent_reader_is_passed_by_with_a_warning_until_it_reports_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        readers = Readers("market", max_lead=10, stall_seconds=0.2)
        readers.on_message(reader_topic("market", "stuck"), progress(5))
        began = time.monotonic()
        await asyncio.wait_for(readers.wait_until(100), 2.0)
        assert 0.15 <= time.monotonic() - began < 1.5
        assert readers.limit() is None
        readers.on_message(reader_topic("market", "stuck"), progress(6))  # back in the count
        assert readers.limit() == 16

    with caplog.at_level("WARNING", logger="emarl.mqtt"):
        asyncio.run(scenario())
    assert any("reader stuck has reported nothing" in r.getMessage() for r in caplog.records)


def test_a_lead_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_lead must be at least 1"):
        Readers("market", max_lead=0)


@pytest.fixture
def small_queue(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private Mosquitto that queues at most 100 messages per client, as a busy
    production broker would (Mosquitto's default is 1,000)."""
    from tests.conftest import service_unavailable

    if not Mosquitto.available():
        service_unavailable("the mosquitto binary is not installed")
    broker = Mosquitto(tmp_path / "mosquitto", max_queued=100)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def run_status(url: str, run_id: int) -> str:
    with connect(url).connect() as connection:
        query = text("SELECT status FROM runs WHERE id = :r")
        return str(connection.execute(query, {"r": run_id}).scalar_one())


@pytest.mark.service
@pytest.mark.parametrize("lead", [120 - PROGRESS_EVERY, 0], ids=["waits", "control"])
def test_a_replay_waits_for_a_stalled_reader_instead_of_overflowing_the_broker_queue(
    small_queue: Mosquitto, weichai_path: Path, tmp_path: Path, lead: int
) -> None:
    """The paper run stops (SIGSTOP) for 2 s while bars come about every 2 ms. A replay that
    waits for it (the broker holds 100 queued and 20 in-flight bars; reports come every
    25 bars) loses nothing; the control, ``--max-lead 0`` (the old behaviour), overflows
    the queue and the run halts at the gap the broker made."""
    bars = 1_500
    url = f"sqlite:///{tmp_path / 'r.db'}"
    scenario = demo_subset(weichai_path, tmp_path, bars, url)
    paper, log, publish, published = paper_then_replay(
        scenario, small_queue.url, "reader", tmp_path, bars,
        "--speed", "8000000x", "--max-lead", str(lead),
    )  # fmt: skip
    time.sleep(0.3)
    paper.send_signal(signal.SIGSTOP)
    try:
        time.sleep(2.0)
    finally:
        paper.send_signal(signal.SIGCONT)
    finish(publish, published, 120)
    run_id = paper_run_id(url, "reader")
    if lead == 0:
        assert paper.wait(timeout=120) == 1, log.read_text()
        assert "halting: feed gap" in log.read_text()
        assert run_status(url, run_id) == "halted"
        return
    finish(paper, log, 120)
    assert f"feed ended after {bars} new bars" in log.read_text()
    assert run_status(url, run_id) == "completed"
    assert "s waiting for readers" in published.read_text()
    status = CliRunner().invoke(app, ["status", "reader", "--db", url])
    assert status.exit_code == 0, status.output
    assert "not read (the run is completed)" in status.output and "live" not in status.output
    # the run cleared its report as it stopped: nothing is left for the next replay
    with subprocess.Popen(
        ["mosquitto_sub", "-h", small_queue.host, "-p", str(small_queue.port),
         "-t", "emarl/+/reader/#", "-v", "-W", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    ) as sub:  # fmt: skip
        left, _ = sub.communicate(timeout=10)
    assert left == b""


@pytest.mark.service
def test_a_reader_killed_and_restarted_mid_replay_is_waited_for_and_loses_no_bar(
    small_queue: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    """SIGKILL: the broker marks the reader down, the replay keeps its place and waits;
    the run, started again within the stall time, resumes and gets every bar."""
    bars = 1_500
    url = f"sqlite:///{tmp_path / 'r.db'}"
    scenario = demo_subset(weichai_path, tmp_path, bars, url)
    paper, _log, publish, published = paper_then_replay(
        scenario, small_queue.url, "phoenix", tmp_path, bars,
        "--speed", "8000000x", "--max-lead", str(120 - PROGRESS_EVERY),
    )  # fmt: skip
    second = tmp_path / "paper2.log"
    args = ("paper", str(scenario), "--bus", small_queue.url, "--run", "phoenix")
    time.sleep(0.5)
    paper.kill()
    paper.wait()
    time.sleep(2.0)
    again = emarl(*args, log=second)
    finish(publish, published, 120)
    finish(again, second, 120)
    run_id = paper_run_id(url, "phoenix")
    assert run_status(url, run_id) == "completed"
    with connect(url).connect() as connection:
        stored = connection.execute(
            text("SELECT count(*), min(feed_seq), max(feed_seq) FROM paper_bars WHERE run_id = :r"),
            {"r": run_id},
        ).one()
        gaps = connection.execute(
            text("SELECT count(*) FROM feed_gaps WHERE run_id = :r"), {"r": run_id}
        ).scalar_one()
    assert tuple(stored) == (bars, 1, bars) and gaps == 0
    assert "resumed; re-drove" in second.read_text()
    assert "s waiting for readers" in published.read_text()


@pytest.mark.service
def test_bars_the_broker_s_newest_bar_follows_are_reported_when_they_do_not_come(
    system_broker: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """After an outage the broker may have dropped bars (a queue limit) and still hold the
    feed's newest one, retained: a run that goes idle short of it says which are missing,
    instead of waiting in silence, and takes them when they are published again."""
    import os
    import random

    import engine.app.paper_session as paper_session
    from engine.app.paper import PaperOptions
    from engine.core.events import RunFinished
    from engine.core.wire import pack
    from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
    from tests.conftest import synthetic_scenario

    monkeypatch.setattr(paper_session, "MISSING_AFTER_SECONDS", 0.3)
    tag = f"due{os.getpid()}{random.randrange(1 << 20)}"
    config = synthetic_scenario(10)
    symbol = config.instrument.symbol
    settings = MqttSettings.from_url(system_broker)
    bar_topic = f"emarl/{tag}/bar/{symbol}"

    async def scenario() -> object:
        client = make_client(settings)
        await connect_client(client, settings)
        newest = flat_bar(tag, symbol, 5)
        await client.publish(bar_topic, newest, qos=1, retain=True)
        try:
            options = PaperOptions(run_name=tag, feed=tag, stale_after_bars=1 / 4500)
            task = await started_paper(config, settings, options, f"sqlite:///{tmp_path / 'd.db'}")
            await asyncio.sleep(1.5)
            for seq in range(1, 6):  # published again
                await client.publish(bar_topic, flat_bar(tag, symbol, seq), qos=1)
            marker = RunFinished(ts_event=0, ts_init=0, seq=6, bars=5)
            await client.publish(f"emarl/{tag}/run_finished/{symbol}", pack(tag, 6, marker),
                                 qos=1)  # fmt: skip
            return await asyncio.wait_for(task, 30)
        finally:
            await client.publish(bar_topic, b"", qos=1, retain=True)  # no retained bar left
            await close_client(client)

    with caplog.at_level(logging.INFO, logger="emarl"):
        result = asyncio.run(scenario())
    assert result.bars == 5  # type: ignore[attr-defined]
    said = "feed seq 1..4 have not arrived, though the broker holds seq 5"
    assert [r.getMessage().startswith(said) for r in caplog.records].count(True) == 1
