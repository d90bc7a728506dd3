"""Fixtures for the paper-trading tests: a private broker, the demo bars, scenarios."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import service_unavailable
from tests.paper.broker import Mosquitto

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
DEMO = SCENARIOS / "weichai_sma.toml"


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    """A private Mosquitto on a free port (unlimited queues, persistence on)."""
    if not Mosquitto.available():
        service_unavailable("the mosquitto binary is not installed")
    broker = Mosquitto(tmp_path / "mosquitto", persistence=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def system_broker_url() -> str:
    import os

    return os.environ.get("EMARL_MQTT_URL", "mqtt://127.0.0.1:1883")


@pytest.fixture
def system_broker() -> str:
    """The shared broker (EMARL_MQTT_URL, default mqtt://127.0.0.1:1883)."""
    from urllib.parse import urlsplit

    url = system_broker_url()
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 1883), timeout=1):
            pass
    except OSError as exc:
        service_unavailable(f"MQTT broker not reachable at {url}: {exc}")
    return url


def demo_subset(
    weichai_path: Path, folder: Path, bars: int, db_url: str, source: Path = DEMO
) -> Path:
    """A shipped Weichai scenario (the SMA one by default) on its first ``bars`` bars,
    storing into ``db_url``."""
    import pandas as pd

    data = folder / f"weichai_{bars}.parquet"
    pd.read_parquet(weichai_path).head(bars).to_parquet(data, index=False)
    text = source.read_text(encoding="utf-8")
    text = text.replace('path = "../data/weichai_30m.parquet"', f'path = "{data}"')
    text = text.replace('url = "sqlite:///runs/emarl.db"', f'url = "{db_url}"')
    checkpoint = SCENARIOS.parent / "checkpoints"
    text = text.replace('"../checkpoints/', f'"{checkpoint}/')
    assert str(data) in text and db_url in text
    scenario = folder / f"{source.stem}_{bars}.toml"
    scenario.write_text(text, encoding="utf-8")
    return scenario


def universe_subset(weichai_path: Path, folder: Path, bars: int, db_url: str) -> Path:
    """The SMA reference on a universe of two symbols, ``bars`` bar-events in all, in one
    long file: A is Weichai's first ``bars / 2`` bars, B its next ``bars / 2`` bars' prices
    stamped with A's times (so every time slice holds both)."""
    import pandas as pd

    half = bars // 2
    frame = pd.read_parquet(weichai_path)
    a = frame.iloc[:half].assign(symbol="A")
    b = frame.iloc[half : 2 * half].assign(symbol="B", timestamp=a["timestamp"].to_numpy())
    data = folder / f"universe_{bars}.parquet"
    pd.concat([a, b], ignore_index=True).to_parquet(data, index=False)
    text = DEMO.read_text(encoding="utf-8")
    text = text.replace(
        'path = "../data/weichai_30m.parquet"', f'path = "{data}"\nsymbol_column = "symbol"'
    )
    text = text.replace('url = "sqlite:///runs/emarl.db"', f'url = "{db_url}"')
    instrument = '[instrument]\nsymbol = "000338.SZ"\nlot_size = 100\n'
    assert instrument in text
    text = text.replace(
        instrument, "".join(f'[[instruments]]\nsymbol = "{s}"\nlot_size = 100\n' for s in "AB")
    )
    text = text.replace('name = "weichai-sma"', 'name = "weichai-sma-universe"')
    scenario = folder / f"universe_{bars}.toml"
    scenario.write_text(text, encoding="utf-8")
    return scenario


def flat_bar(feed: str, symbol: str, seq: int) -> bytes:
    """Bar ``seq`` of ``feed`` on the wire: 30 minutes long, ending ``seq`` half hours
    after the epoch, the same prices every time."""
    from engine.core.events import Bar
    from engine.core.wire import pack

    message = Bar(ts_event=seq * 1_800_000_000_000, ts_init=0, seq=seq, symbol=symbol,
                  open=10.0, high=11.0, low=9.0, close=10.5, volume=5.0)  # fmt: skip
    return pack(feed, seq, message)


async def started_paper(config: Any, settings: Any, options: Any, db_url: str) -> Any:
    """A paper run in this process (a task), once it listens."""
    import asyncio

    from engine.app.paper import run_paper_async

    ready = asyncio.Event()
    task = asyncio.create_task(
        run_paper_async(config, settings, options, db_url=db_url, on_ready=ready.set)
    )
    await asyncio.wait_for(ready.wait(), 30)
    return task
