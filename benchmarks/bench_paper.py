"""Paper trading over MQTT on loopback: bar-to-fill latency and sustained throughput.

A private Mosquitto (``set_tcp_nodelay true``, Mosquitto's default queue of 1,000
messages per client) runs on a free port; ``emarl paper`` runs as its own process, as
in production.

* Latency: bars are published one every 20 ms; the time from handing bar t to
  the MQTT client until its fill (the order decided on bar t-1, filled at bar
  t's open) arrives on ``emarl/<run>/order_filled/<symbol>`` is measured for
  every fill (SMA(1)/SMA(2) on the synthetic market, so it trades often). Each
  fill is committed to SQLite before it is sent.
* Throughput: the Weichai bars are published at ``--speed max`` (never more than
  500 bars ahead of the run, engine.feeds.readers, so the publisher finishes with
  the run); the rate is taken from the arrival times the run stored with its first
  and last bar (every bar committed in its own transaction), on SQLite and on
  PostgreSQL.

Figures are printed, not asserted.

    python benchmarks/bench_paper.py [--latency-bars 400] [--bars 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.app.scenario import load_scenario, parse_scenario  # noqa: E402
from engine.core.events import OrderFilled  # noqa: E402
from engine.core.wire import unpack  # noqa: E402
from engine.feeds.bars import load_bars  # noqa: E402
from engine.feeds.mqtt import MqttSettings, close_client, connect_client, make_client  # noqa: E402
from engine.feeds.replay import first_bars, publish_bars  # noqa: E402
from tests.paper.broker import Mosquitto  # noqa: E402

if TYPE_CHECKING:
    from sqlalchemy import Engine

POSTGRES_URL = os.environ.get("EMARL_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def start_paper(scenario: Path, url: str, name: str, db: str, log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", "paper", str(scenario), "--bus", url,
         "--run", name, "--db", db, "--feed", name],
        cwd=ROOT, stdout=out, stderr=out,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while "listening on" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"paper did not start:\n{log.read_text()}")
        time.sleep(0.02)
    return process


def latency(broker: Mosquitto, folder: Path, bars: int) -> None:
    scenario = folder / "latency.toml"
    scenario.write_text(
        f'[run]\nname = "latency"\n[data]\nsource = "synthetic"\n[data.synthetic]\nbars = {bars}\n'
        "[strategy]\nfast = 1\nslow = 2\nquantity = 10\n"
    )
    config = parse_scenario(scenario.read_text())
    data = load_bars(config.data, config.instrument.symbol, seed=config.run.seed)
    index = {int(t): i for i, t in enumerate(data.ts)}
    db = f"sqlite:///{folder / 'latency.db'}"
    paper = start_paper(scenario, broker.url, "latency", db, folder / "latency.log")
    settings = MqttSettings.from_url(broker.url)
    published: dict[int, int] = {}
    samples: list[float] = []

    async def run() -> None:
        listener = make_client(settings)
        await connect_client(listener, settings)
        await listener.subscribe(f"emarl/latency/order_filled/{config.instrument.symbol}", qos=1)

        async def receive() -> None:
            async for message in listener.messages:
                now = time.monotonic_ns()
                _, fill = unpack(bytes(message.payload))  # type: ignore[arg-type]
                assert isinstance(fill, OrderFilled)
                seq = index[fill.ts_event] + 1
                samples.append((now - published[seq]) / 1e6)

        task = asyncio.create_task(receive())
        step = 1800 / 0.020  # 30-minute bars, one every 20 ms
        await publish_bars(
            data,
            settings,
            feed="latency",
            speed=step,
            on_published=lambda seq, t: published.__setitem__(seq, t),
        )
        await asyncio.sleep(1.0)
        task.cancel()
        await close_client(listener)

    asyncio.run(run())
    paper.wait(timeout=60)
    if not samples:
        raise SystemExit(f"no fills received:\n{(folder / 'latency.log').read_text()}")
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(0.99 * len(samples)))]
    print(
        f"bar-to-fill latency over MQTT (loopback, SQLite commit included): "
        f"median {statistics.median(samples):.2f} ms, p99 {p99:.2f} ms, "
        f"max {samples[-1]:.2f} ms ({len(samples)} fills)"
    )


def throughput(broker: Mosquitto, folder: Path, bars: int, db: str, label: str) -> None:
    from sqlalchemy import text

    from storage.db import connect

    demo = load_scenario(ROOT / "scenarios" / "demo.toml")
    name = f"tput-{label}"
    scenario = ROOT / "scenarios" / "demo.toml"
    data = first_bars(
        load_bars(demo.data, demo.instrument.symbol, path=demo.data_path(), seed=0), bars
    )
    paper = start_paper(scenario, broker.url, name, db, folder / f"{name}.log")
    settings = MqttSettings.from_url(broker.url)
    started = time.perf_counter()
    report = asyncio.run(publish_bars(data, settings, feed=name, speed=None))
    published = time.perf_counter() - started
    paper.wait(timeout=600)
    with connect(db).connect() as connection:
        first, last, count = connection.execute(
            text(
                "SELECT min(received_ns), max(received_ns), count(*) FROM paper_bars "
                "WHERE run_id = (SELECT max(id) FROM runs WHERE name = :n)"
            ),
            {"n": name},
        ).one()
    rate = (count - 1) / ((last - first) / 1e9)
    print(
        f"max-speed replay, {count:,} of {bars:,} bars stored, each committed ({label}): "
        f"{rate:,.0f} bars/s sustained (publisher done in {published:.2f} s, "
        f"{report.waited:.2f} s of it waiting for the run)"
    )


def postgres_database() -> tuple[str, tuple[Engine, str]] | None:
    import sqlalchemy as sa

    admin = sa.create_engine(
        POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    name = f"emarl_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        print(f"PostgreSQL skipped: not reachable at {POSTGRES_URL} ({type(exc).__name__})")
        admin.dispose()
        return None
    return f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}", (admin, name)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-bars", type=int, default=400)
    parser.add_argument("--bars", type=int, default=5_000)
    args = parser.parse_args()
    if not Mosquitto.available():
        print("skipped: the mosquitto binary is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        broker = Mosquitto(folder / "broker", max_queued=1_000)
        broker.start()
        try:
            latency(broker, folder, args.latency_bars)
            throughput(broker, folder, args.bars, f"sqlite:///{folder / 'tput.db'}", "SQLite")
            pg = postgres_database()
            if pg is not None:
                url, (admin, name) = pg
                try:
                    throughput(broker, folder, args.bars, url, "PostgreSQL")
                finally:
                    from storage.db import dispose_all

                    dispose_all()
                    import sqlalchemy as sa

                    with admin.connect() as connection:
                        connection.execute(
                            sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                        )
                    admin.dispose()
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
