"""A hostile or lossy feed against a real Mosquitto: the paper ledger stays the backtest's.

``emarl paper`` runs as its own process on the SMA scenario's first bars, while the
test publishes the real bars with forged ones mixed in, as an attacker on the topic
would: a bar numbered 10^9, bars priced 1000 or 1e308 at the next sequence number
(the real ones follow), a bar stamped a day ahead, a bar too soon after the last,
and an end marker numbered 10^9. Each is quarantined and the run's fills and
snapshots equal the backtest's. With a feed key, forged bars that would pass every
plausibility check (a 5% move) are dropped because they are not signed with it.
A stretch of 297 bars that never arrives halts the run (exit 1, the gap shown by
``emarl status``); started again with ``--on-gap continue`` it trades on, and its
ledger equals the backtest of the bars it received.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from engine.app.scenario import load_scenario
from engine.core.events import Bar, RunFinished
from engine.core.wire import pack
from engine.feeds.bars import load_bars
from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client
from storage.db import connect
from tests.paper.broker import Mosquitto
from tests.paper.conftest import DEMO
from tests.paper.test_mqtt import (
    FILLS,
    SNAPSHOTS,
    backtest_ledger,
    emarl,
    finish,
    paper_run_id,
    rows,
    wait_for,
)

pytestmark = pytest.mark.service

BARS = 400
FEED = "market"
KEY = "a shared key of the feed, 32 bytes"
DAY_NS = 86_400_000_000_000


def scenario_of(weichai: Path, folder: Path, keep: list[int], url: str, name: str) -> Path:
    """The SMA scenario on the Weichai bars at positions ``keep``, storing into ``url``."""
    data = folder / f"{name}.parquet"
    pd.read_parquet(weichai).iloc[keep].to_parquet(data, index=False)
    text_ = DEMO.read_text(encoding="utf-8")
    text_ = text_.replace('path = "../data/weichai_30m.parquet"', f'path = "{data}"')
    text_ = text_.replace('url = "sqlite:///runs/emarl.db"', f'url = "{url}"')
    assert str(data) in text_ and url in text_
    path = folder / f"{name}.toml"
    path.write_text(text_, encoding="utf-8")
    return path


def real_bars(scenario: Path) -> list[Bar]:
    config = load_scenario(scenario)
    data = load_bars(config.data, config.instrument.symbol, path=config.data_path())
    return [
        Bar(ts_event=int(data.ts[i]), ts_init=0, seq=i + 1, symbol=data.symbol,
            open=float(data.open[i]), high=float(data.high[i]), low=float(data.low[i]),
            close=float(data.close[i]), volume=float(data.volume[i]))
        for i in range(len(data))
    ]  # fmt: skip


def forge(bar: Bar, seq: int, **changes: float | int) -> Bar:
    fields = {name: getattr(bar, name) for name in bar.__struct_fields__}
    fields.update(seq=seq, **changes)
    return Bar(**fields)


def send(url: str, messages: list[tuple[str, bytes]]) -> None:
    """Publish in order with QoS 1, each acknowledged by the broker before the next."""

    async def run() -> None:
        settings = MqttSettings.from_url(url)
        client = make_client(settings)
        await connect_client(client, settings)
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1)
        await close_client(client)

    asyncio.run(run())


def bar_topic(symbol: str) -> str:
    return f"emarl/{FEED}/bar/{symbol}"


def end_topic(symbol: str) -> str:
    return f"emarl/{FEED}/run_finished/{symbol}"


def end_marker(seq: int, key: bytes | None = None) -> bytes:
    marker = RunFinished(ts_event=0, ts_init=0, seq=seq, bars=seq - 1)
    return pack(FEED, seq, marker) if key is None else pack(FEED, seq, marker, key)


def start_paper(scenario: Path, url: str, name: str, log: Path, *options: str):
    paper = emarl("paper", str(scenario), "--bus", url, "--run", name, *options, log=log)
    wait_for(log, "listening on", paper)
    return paper


def assert_backtest_ledger(scenario: Path, db: str, name: str) -> None:
    fills, snapshots = backtest_ledger(scenario, db)
    run_id = paper_run_id(db, name)
    assert len(fills) > 5
    assert rows(db, FILLS, run_id) == fills
    assert rows(db, SNAPSHOTS, run_id) == snapshots


def test_forged_bars_are_quarantined_and_the_ledger_is_the_backtests(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'attacks.db'}"
    scenario = scenario_of(weichai_path, tmp_path, list(range(BARS)), db, "attacks")
    bars = real_bars(scenario)
    topic = bar_topic(bars[0].symbol)
    future = time.time_ns() + DAY_NS
    attacks = {  # forged message sent just before the real bar at this position
        100: (topic, forge(bars[100], 10**9)),  # sequence jump far beyond --max-gap
        150: (topic, forge(bars[150], 151, open=1000.0, high=1000.0, low=1000.0, close=1000.0)),
        200: (topic, forge(bars[200], 201, high=1e308, close=1e308)),
        250: (topic, forge(bars[250], 251, ts_event=future)),  # a day ahead of the clock
        300: (topic, forge(bars[300], 301, ts_event=bars[299].ts_event + 60_000_000_000)),
    }
    messages = []
    for i, bar in enumerate(bars):
        if i in attacks:
            name, forged = attacks[i]
            messages.append((name, pack(FEED, forged.seq, forged)))
        if i == 350:
            messages.append((end_topic(bar.symbol), end_marker(10**9)))
        messages.append((topic, pack(FEED, bar.seq, bar)))
    messages.append((end_topic(bars[0].symbol), end_marker(BARS + 1)))
    log = tmp_path / "paper.log"
    paper = start_paper(scenario, mosquitto.url, "attacked", log)
    send(mosquitto.url, messages)
    finish(paper, log)
    logged = log.read_text()
    assert f"feed ended after {BARS} new bars" in logged
    quarantined = [line for line in logged.splitlines() if "quarantined bar:" in line]
    assert len(quarantined) == 6, quarantined
    for needle in (
        "seq 1000000000: sequence number",
        "seq 151: open 1000.0 jumps from the last accepted close",
        "seq 201: high 1e+308 above data.max_price",
        "seq 251: bar time is 1,4",  # about 1,440 min ahead of the wall clock
        "seq 301: bar time does not fit its sequence number",
        "seq 1000000000: end of feed",
    ):
        assert any(needle in line for line in quarantined), needle
    run_id = paper_run_id(db, "attacked")
    feed_seqs = rows(db, "SELECT feed_seq FROM paper_bars WHERE run_id = :r ORDER BY 1", run_id)
    assert [s for (s,) in feed_seqs] == list(range(1, BARS + 1))
    state = rows(db, "SELECT last_feed_seq, quarantined FROM paper_state WHERE run_id = :r", run_id)
    assert state == [(BARS, 6)]
    assert_backtest_ledger(scenario, db, "attacked")


def test_a_feed_key_drops_unsigned_and_badly_signed_messages(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'signed.db'}"
    scenario = scenario_of(weichai_path, tmp_path, list(range(BARS)), db, "signed")
    bars = real_bars(scenario)
    topic = bar_topic(bars[0].symbol)
    key = KEY.encode()
    plausible = {"close": 0.0}  # a forged 5% move passes every plausibility check

    def moved(bar: Bar) -> Bar:
        plausible["close"] = bar.close * 1.05
        return forge(bar, bar.seq, close=plausible["close"], high=max(bar.high, plausible["close"]))

    messages = []
    for i, bar in enumerate(bars):
        if i == 120:
            messages.append((topic, pack(FEED, bar.seq, moved(bar))))  # unsigned
        if i == 220:
            wrong = b"another key of the same length!!!"
            messages.append((topic, pack(FEED, bar.seq, moved(bar), wrong)))
        if i == 320:
            messages.append((end_topic(bar.symbol), end_marker(bar.seq)))  # an early end
        messages.append((topic, pack(FEED, bar.seq, bar, key)))
        if i == 330:
            messages.append((topic, pack(FEED, 5, bars[4], key)))  # a signed bar replayed
    messages.append((end_topic(bars[0].symbol), end_marker(BARS + 1, key)))
    log = tmp_path / "paper.log"
    paper = start_paper(scenario, mosquitto.url, "signed", log, "--feed-key", KEY)
    send(mosquitto.url, messages)
    finish(paper, log)
    logged = log.read_text()
    assert f"feed ended after {BARS} new bars" in logged
    dropped = [line for line in logged.splitlines() if "dropped message:" in line]
    assert len(dropped) == 4, dropped
    assert sum("unsigned message" in line for line in dropped) == 2
    assert sum("bad signature" in line for line in dropped) == 1
    assert sum("seq 5: duplicate" in line for line in dropped) == 1
    assert_backtest_ledger(scenario, db, "signed")


def test_a_lost_stretch_halts_the_run_and_continue_trades_on_the_bars_received(
    mosquitto: Mosquitto, weichai_path: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'gap.db'}"
    total = 700
    scenario = scenario_of(weichai_path, tmp_path, list(range(total)), db, "whole")
    bars = real_bars(scenario)
    lost = range(100, 397)  # feed seq 101..397: 297 bars
    topic = bar_topic(bars[0].symbol)
    messages = [(topic, pack(FEED, bar.seq, bar)) for i, bar in enumerate(bars) if i not in lost]
    messages.append((end_topic(bars[0].symbol), end_marker(total + 1)))
    log = tmp_path / "paper.log"
    paper = start_paper(scenario, mosquitto.url, "gappy", log)
    send(mosquitto.url, messages)
    code = paper.wait(timeout=60)
    logged = log.read_text()
    assert code == 1, logged
    halt = "halted: feed gap: 297 bar(s) never received (feed seq 101..397) before seq 398"
    assert halt in logged
    # it says what gets the run going: republishing cannot, bar 398 is redelivered first
    assert "start it with --on-gap continue to trade on without them" in logged
    run_id = paper_run_id(db, "gappy")
    engine = connect(db)
    with engine.connect() as connection:
        status = connection.execute(
            text("SELECT status, error FROM runs WHERE id = :r"), {"r": run_id}
        ).one()
    assert status[0] == "halted" and "297 bar(s) never received" in status[1]
    shown = emarl_json("status", "gappy", "--db", db)
    assert shown["status"] == "halted" and shown["feed"]["bars"] == 100
    assert [(g["first_seq"], g["last_seq"], g["bars"], g["action"])
            for g in shown["feed"]["gaps"]] == [(101, 397, 297, "halted")]  # fmt: skip
    # what it traded is the backtest's first 100 bars
    fills, snapshots = backtest_ledger(scenario, db)
    last_ts = bars[99].ts_event
    assert rows(db, SNAPSHOTS, run_id) == [s for s in snapshots if s[1] <= last_ts]
    assert rows(db, FILLS, run_id) == [f for f in fills if f[1] <= last_ts]

    # started again, trading on: the unacknowledged bar 398 comes first
    again = emarl("paper", str(scenario), "--bus", mosquitto.url, "--run", "gappy",
                  "--on-gap", "continue", log=log)  # fmt: skip
    finish(again, log)
    assert "feed gap: 297 bar(s) never received (feed seq 101..397) before seq 398" in (
        log.read_text()
    )
    shown = emarl_json("status", "gappy", "--db", db)
    assert shown["status"] == "completed"
    assert [(g["first_seq"], g["last_seq"], g["action"]) for g in shown["feed"]["gaps"]] == [
        (101, 397, "skipped")
    ]
    assert shown["feed"]["missing_bars"] == 297
    received = scenario_of(
        weichai_path, tmp_path, [i for i in range(total) if i not in lost], db, "received"
    )
    assert_backtest_ledger(received, db, "gappy")
    page = tmp_path / "gappy.html"
    report = emarl("report", "gappy", "--db", db, "-o", str(page), log=tmp_path / "report.log")
    finish(report, tmp_path / "report.log")
    assert "297 bar(s) never received and traded without" in page.read_text()


def emarl_json(*args: str) -> dict:
    from typer.testing import CliRunner

    from engine.app.cli import app

    result = CliRunner().invoke(app, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)
