"""The market-data simulator behind ``emarl publish``: bars onto MQTT with sequence
numbers, as fast as the feed's readers take them or paced by the bars' own times.

Bars go to ``emarl/<feed>/bar/<symbol>`` (QoS 1, the newest retained), each a signed or
unsigned envelope (:mod:`engine.core.wire`) with its feed number; an end marker follows.
Lost connections are retried, re-sending what the broker had not acknowledged; the paper
runs reading the feed are never outrun (:mod:`engine.feeds.readers`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt

from engine.core.bus import topic
from engine.core.errors import BusError, ConfigError
from engine.core.events import Bar, RunFinished
from engine.core.wire import pack
from engine.feeds.mqtt import (
    MqttSettings,
    backoff_delays,
    close_client,
    connect_client,
    make_client,
    quiet_socket_races,
    until_disconnected,
)
from engine.feeds.readers import MAX_LEAD, Readers

if TYPE_CHECKING:
    from engine.feeds.bars import BarData
    from engine.feeds.universe import Universe

__all__ = ["PublishReport", "first_bars", "parse_speed", "publish_bars"]

log = logging.getLogger("emarl.mqtt")


def first_bars(data: BarData, count: int) -> BarData:
    """The first ``count`` bars of ``data``."""

    regime = None if data.regime is None else data.regime[:count]
    return dataclasses.replace(
        data,
        ts=data.ts[:count],
        open=data.open[:count],
        high=data.high[:count],
        low=data.low[:count],
        close=data.close[:count],
        volume=data.volume[:count],
        regime=regime,
    )


def parse_speed(speed: str) -> float | None:
    """``max`` -> None (no pacing), ``realtime`` -> 1, ``60x`` -> 60."""
    text = speed.strip().lower()
    if text == "max":
        return None
    if text == "realtime":
        return 1.0
    if text.endswith("x"):
        try:
            factor = float(text[:-1])
        except ValueError:
            factor = -1.0
        if factor > 0.0:
            return factor
    raise ConfigError(f"--speed {speed!r}: use realtime, max, or a factor such as 60x")


@dataclass(frozen=True)
class PublishReport:
    bars: int
    seconds: float
    reconnects: int
    #: seconds spent waiting for the feed's slowest paper run to catch up
    waited: float = 0.0


async def publish_bars(
    data: BarData | Universe,
    settings: MqttSettings,
    *,
    feed: str,
    speed: float | None = None,
    end: bool = True,
    window: int = 200,
    on_published: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
    key: bytes | None = None,
    max_lead: int | None = MAX_LEAD,
) -> PublishReport:
    """Publish ``data`` bar by bar to ``emarl/<feed>/bar/<symbol>`` (QoS 1, retained);
    a universe's bars each to their symbol's topic, in time-slice order, under one
    sequence (the end marker on the first symbol's topic).

    Bars carry feed sequence numbers 1..n; with ``end`` a
    :class:`~engine.core.events.RunFinished` marker follows as number n+1 on
    ``emarl/<feed>/run_finished/<symbol>``. ``speed`` None sends as fast as the
    broker acknowledges (``window`` messages in flight); a factor paces bars by
    their timestamps divided by it. Lost connections are retried with
    jittered backoff, re-sending every bar the broker had not acknowledged.
    ``on_published(seq, monotonic_ns)`` is called as each bar is handed to the
    client (benchmarks use it). With ``key`` every envelope is signed
    (HMAC-SHA256, see :mod:`engine.core.wire`). No bar goes more than ``max_lead``
    numbers past the slowest paper run reading the feed (:mod:`engine.feeds.readers`;
    None: send without waiting for readers).
    """

    quiet_socket_races()
    index = getattr(data, "symbol_index", None)  # a Universe's (pandas loads not here)
    if index is not None:  # each bar on its symbol's topic, one sequence
        names, which = list(data.symbols), index.tolist()  # type: ignore[union-attr]
    else:
        names, which = [data.symbol], None
    bar_topics = [topic(feed, Bar, name) for name in names]
    end_topic = topic(feed, RunFinished, names[0])
    total = len(data)
    ts = data.ts.tolist()
    columns = (
        data.open.tolist(),
        data.high.tolist(),
        data.low.tolist(),
        data.close.tolist(),
        data.volume.tolist(),
    )

    def payload(i: int) -> bytes:
        now = time.time_ns()
        bar = Bar(
            ts_event=ts[i],
            ts_init=now,
            seq=i + 1,
            symbol=names[0 if which is None else which[i]],
            open=columns[0][i],
            high=columns[1][i],
            low=columns[2][i],
            close=columns[3][i],
            volume=columns[4][i],
        )
        return pack(feed, i + 1, bar, key)

    started = time.perf_counter()
    start_wall = time.monotonic()
    confirmed = 0  # bars [0, confirmed) are acknowledged by the broker
    reconnects = 0
    delays = backoff_delays()
    connected_once = False
    readers = None if max_lead is None else Readers(feed, max_lead)
    while True:
        client = make_client(settings)
        try:
            await connect_client(client, settings)
        except BusError as exc:
            if not connected_once:
                raise
            reconnects += 1
            delay = next(delays)
            log.warning("%s; retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            continue
        delays = backoff_delays()
        if not connected_once:
            log.info("publishing %d bars to %s from seq 1", total, " ".join(bar_topics))
        connected_once = True
        following = None
        try:
            if readers is not None:
                await client.subscribe(readers.topic, qos=1)
                following = asyncio.create_task(readers.follow(client))
            while confirmed < total:
                if stop is not None and stop.is_set():
                    return PublishReport(confirmed, time.perf_counter() - started, reconnects)
                if speed is None:
                    stop_at = min(confirmed + window, total)
                else:
                    due = start_wall + (ts[confirmed] - ts[0]) / 1e9 / speed
                    wait = due - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    stop_at = confirmed + 1
                if readers is not None:  # bar i has feed number i + 1
                    readers.sent = confirmed
                    # at full speed, wait until a quarter of the lead is free: fewer wake-ups
                    step = 1 if speed is not None else max(1, readers.max_lead // 4)
                    await until_disconnected(
                        client, readers.wait_until(min(confirmed + step, total))
                    )
                    limit = readers.limit()
                    if limit is not None:
                        stop_at = min(stop_at, limit)
                sends = []
                for i in range(confirmed, stop_at):
                    at = bar_topics[0 if which is None else which[i]]
                    sends.append(client.publish(at, payload(i), qos=1, retain=True))
                    if on_published is not None:
                        on_published(i + 1, time.monotonic_ns())
                results = await until_disconnected(
                    client, asyncio.gather(*sends, return_exceptions=True)
                )
                for result in results:
                    if isinstance(result, BaseException):
                        raise result
                confirmed = stop_at
            if end:
                marker = RunFinished(
                    ts_event=ts[-1] if ts else 0, ts_init=time.time_ns(), seq=total + 1, bars=total
                )
                await client.publish(end_topic, pack(feed, total + 1, marker, key), qos=1)
            await close_client(client)
            waited = 0.0 if readers is None else readers.waited
            return PublishReport(total, time.perf_counter() - started, reconnects, waited)
        except aiomqtt.MqttError as exc:
            reconnects += 1
            delay = next(delays)
            log.warning(
                "connection to %s lost after %d acknowledged bars (%s); retrying in %.1f s",
                settings.describe(),
                confirmed,
                exc,
                delay,
            )
            await close_client(client)
            await asyncio.sleep(delay)
        finally:
            if following is not None:
                following.cancel()
