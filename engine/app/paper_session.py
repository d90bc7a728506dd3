"""The asyncio shell of a paper run: its MQTT connection(s) around :class:`PaperTrader`,
and :class:`PaperOptions`, how it reads its feed.

:class:`PaperSession` subscribes to the feed with a persistent session under a client
id stable for the run, hands each message to the synchronous core
(:meth:`engine.app.paper.PaperTrader.on_message`), sends what a bar produced in the
background once the bar is committed, and acknowledges a message only after that: a
process killed at any point gets its unacknowledged bars again. A held end marker is
acknowledged with the end of the feed; a halt (see :mod:`engine.feeds.guard`) is not
acknowledged, so a restart reads that bar first. As it connects, and every 25 messages
after that, it reports how far it has read, so that a replay does not outrun it
(:mod:`engine.feeds.readers`); it clears the report when it stops, and its connection's
will marks it down when the connection is lost. Lost connections are retried with
jittered exponential backoff. A watchdog logs a stale feed and refreshes the run's
heartbeat while it waits for bars.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiomqtt

from engine.app.scenario import ScenarioConfig
from engine.core.bus import topic
from engine.core.errors import BusError, ConfigError, StorageError
from engine.core.events import Bar, RunFinished
from engine.core.wire import DEFAULT_MAX_MESSAGE_BYTES, END, HALT, HOLD, PROCESS
from engine.feeds.guard import (
    DEFAULT_MAX_GAP,
    DEFAULT_MAX_JUMP,
    FeedLimits,
    GapPolicy,
    ImplausiblePolicy,
)
from engine.feeds.mqtt import (
    MqttSettings,
    ack,
    backoff_delays,
    check_name,
    close_client,
    connect_client,
    make_client,
)
from engine.feeds.readers import DOWN, PROGRESS_EVERY, progress, reader_topic
from storage.runs import HEARTBEAT_SECONDS, touch_run

if TYPE_CHECKING:
    import aiomqtt

    from engine.app.paper import PaperTrader

__all__ = ["PaperOptions", "PaperSession"]

log = logging.getLogger("emarl.paper")

NS_PER_MINUTE = 60_000_000_000
#: how long the feed may be idle while bars the broker's newest one follows are missing
#: before the run says so
MISSING_AFTER_SECONDS = 5.0


@dataclass(frozen=True)
class PaperOptions:
    """How a paper run reads its feed (the scenario says what it trades)."""

    run_name: str
    feed: str = "market"
    stale_after_bars: float = 3.0
    max_bars: int | None = None
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    new: bool = False
    export: bool = True
    max_gap: int = DEFAULT_MAX_GAP
    max_jump: float = DEFAULT_MAX_JUMP
    on_gap: GapPolicy = "halt"
    on_implausible: ImplausiblePolicy = "drop"
    #: shared key of a signed feed (engine.core.wire): unsigned or badly signed messages drop
    feed_key: bytes | None = None

    def limits(self, config: ScenarioConfig) -> FeedLimits:
        return FeedLimits(
            bar_ns=config.data.bar_minutes * NS_PER_MINUTE,
            max_gap=self.max_gap,
            max_jump=self.max_jump,
            on_gap=self.on_gap,
            on_implausible=self.on_implausible,
            max_price=config.data.max_price,
            max_volume=config.data.max_volume,
        )

    def check(self) -> None:
        check_name("run", self.run_name)
        check_name("feed", self.feed)
        if not (self.stale_after_bars > 0 and math.isfinite(self.stale_after_bars)):
            raise ConfigError(
                f"--stale-after must be a positive number of bars, got {self.stale_after_bars}"
            )
        if self.max_bars is not None and self.max_bars < 1:
            raise ConfigError(f"--max-bars must be at least 1, got {self.max_bars}")
        if self.max_message_bytes < 256:
            raise ConfigError(
                f"--max-message-bytes must be at least 256, got {self.max_message_bytes}"
            )
        FeedLimits(bar_ns=1, max_gap=self.max_gap, max_jump=self.max_jump, on_gap=self.on_gap,
                   on_implausible=self.on_implausible).check()  # fmt: skip


class PaperSession:
    """One paper run's MQTT connection(s): receive, process, send, acknowledge."""

    def __init__(
        self,
        trader: PaperTrader,
        settings: MqttSettings,
        client_id: str,
        options: PaperOptions,
        stop: asyncio.Event,
        on_ready: Callable[[], None] | None,
    ) -> None:
        self.trader = trader
        self.settings = settings
        self.client_id = client_id
        self.options = options
        self.stop = stop
        self.on_ready = on_ready
        feed = options.feed
        # every symbol's bars and end marker (a universe's symbols share one feed sequence)
        self.topics = [
            (topic(feed, kind, symbol), 1)
            for symbol in trader.symbols
            for kind in (Bar, RunFinished)
        ]
        outbox = getattr(trader.bus, "outbox", None)
        self.outbox: list[tuple[str, bytes]] | None = outbox
        # Messages to send again after a reconnect: those whose sending failed, and after
        # a resume those of the last stored bars (receivers drop what they already have).
        self.unsent: list[tuple[int, list[tuple[str, bytes]]]] = [
            (0, [m for bar in trader.replayed_outputs for m in bar])
        ]
        if outbox:
            outbox.clear()
        self.sending: set[asyncio.Task[None]] = set()
        # how far it has read, for publishers that must not outrun it (engine.feeds.readers)
        self.progress_topic = reader_topic(feed, client_id)
        #: the feed number of the last message read in the stream's order (a new bar or an
        #: old one again); at first the last stored bar's (0: a new run)
        self.position = trader.gate.last_seq
        self.read = 0
        self.sent_batches = 0
        self.reconnects = 0
        #: whether the broker ever took the connection (a first refusal ends the run)
        self.connected_once = False
        self.accepted = 0
        self.stale = False
        self.missing_warned = 0
        self.bar_ns = trader.config.data.bar_minutes * NS_PER_MINUTE
        self.stale_ns = int(options.stale_after_bars * self.bar_ns)

    async def run(self) -> str:

        delays = backoff_delays()
        watchdog = asyncio.create_task(self._watch())
        try:
            while not self.stop.is_set():
                client = make_client(
                    self.settings,
                    client_id=self.client_id,
                    persistent=True,
                    manual_ack=True,
                    will=aiomqtt.Will(self.progress_topic, DOWN, qos=1, retain=True),
                )
                try:
                    await connect_client(client, self.settings)
                except BusError as exc:
                    if not self.connected_once:
                        raise
                    self.reconnects += 1
                    delay = next(delays)
                    log.warning("%s; retrying in %.1f s", exc, delay)
                    await self._sleep(delay)
                    continue
                self.connected_once = True
                delays = backoff_delays()
                try:
                    await client.subscribe(self.topics)
                    # known to a replay before it sends (engine.feeds.readers)
                    position = [(self.progress_topic, progress(self.position))]
                    await self._send(client, position, retain=True)
                    log.info(
                        "run %s (id %d): listening on %s at %s as %s",
                        self.options.run_name,
                        self.trader.run_id,
                        self.topics[0][0],
                        self.settings.describe(),
                        self.client_id,
                    )
                    if self.on_ready is not None:
                        self.trader.last_received_ns = time.time_ns()
                        self.on_ready()
                        self.on_ready = None
                    unsent, self.unsent = sorted(self.unsent, key=lambda item: item[0]), []
                    for _, batch in unsent:
                        await self._send(client, batch)
                    outcome = await self._consume_until_stopped(client)
                    await self._drain()
                    with contextlib.suppress(aiomqtt.MqttError):  # lost: the will marks it down
                        await self._send(client, [(self.progress_topic, b"")], retain=True)
                    await close_client(client)
                    return outcome
                except aiomqtt.MqttError as exc:
                    self.reconnects += 1
                    delay = next(delays)
                    log.warning(
                        "connection to %s lost (%s); reconnecting in %.1f s",
                        self.settings.describe(),
                        exc,
                        delay,
                    )
                    await close_client(client)
                    await self._sleep(delay)
            return "stopped"
        finally:
            watchdog.cancel()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    async def _send(
        self, client: aiomqtt.Client, messages: list[tuple[str, bytes]], retain: bool = False
    ) -> None:
        results = await asyncio.gather(
            *(client.publish(name, payload, qos=1, retain=retain) for name, payload in messages),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _post(self, client: aiomqtt.Client, messages: list[tuple[str, bytes]]) -> None:
        """Send a bar's messages in the background (in order: paho queues them as called)."""
        self.sent_batches += 1
        number = self.sent_batches

        async def send() -> None:
            try:
                await self._send(client, messages)
            except Exception as exc:
                log.debug("sending %d messages failed (%s); will resend", len(messages), exc)
                self.unsent.append((number, messages))

        self._background(send())

    def _report(self, client: aiomqtt.Client) -> None:
        """Say how far the run has read, in the background (a lost report is replaced by
        the next one)."""
        message = [(self.progress_topic, progress(self.position))]

        async def send() -> None:
            with contextlib.suppress(Exception):
                await self._send(client, message, retain=True)

        self._background(send())

    def _background(self, send: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(send)
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _drain(self) -> None:
        if self.sending:
            await asyncio.wait(set(self.sending), timeout=10.0)

    async def _consume(self, client: aiomqtt.Client) -> str:
        trader = self.trader
        held: int | None = None
        async for message in client.messages:
            payload = message.payload
            data = payload if isinstance(payload, bytes) else str(payload).encode()
            verdict = trader.on_message(str(message.topic), data, retained=message.retain)
            if verdict.action in (PROCESS, END) and self.outbox:
                self._post(client, list(self.outbox))
                self.outbox.clear()
            if verdict.action == HOLD:
                held = message.mid
                continue
            if verdict.action == HALT:  # not acknowledged: a restart reads it first
                return "halted"
            ack(client, message.mid)
            self.read += 1
            if 0 < verdict.seq <= trader.gate.last_seq:  # not a bar ahead, nor the end marker
                self.position = verdict.seq
            if self.read % PROGRESS_EVERY == 1:  # the first message, then every 25th
                self._report(client)
            if verdict.action == PROCESS:
                self.accepted += 1
                if self.stale:
                    log.info("feed is live again")
                    self.stale = False
            if verdict.action == END:
                if held is not None:
                    ack(client, held)
                log.info("end of feed at seq %d", verdict.seq)
                return "end"
            if self.options.max_bars is not None and self.accepted >= self.options.max_bars:
                return "max_bars"
        return "stopped"

    async def _consume_until_stopped(self, client: aiomqtt.Client) -> str:
        """Consume until the feed ends or ``stop`` is set.

        A stop cancels the consumer where it waits (for a message or a send), never
        inside a bar: processing and storing a bar has no await in it.
        """
        consume = asyncio.create_task(self._consume(client))
        stopper = asyncio.create_task(self.stop.wait())
        try:
            done, _ = await asyncio.wait({consume, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if consume in done:
            return consume.result()
        consume.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consume
        return "stopped"

    async def _watch(self) -> None:
        """Log a stale feed, and refresh the run's heartbeat while it waits for bars."""

        check = min(max(self.stale_ns / 1e9 / 4, 0.05), 5.0)
        touched = time.monotonic()
        while True:
            await asyncio.sleep(check)
            if time.monotonic() - touched > HEARTBEAT_SECONDS:
                touched = time.monotonic()
                try:
                    touch_run(self.trader.engine, self.trader.run_id)
                except StorageError as exc:  # the next bar's transaction reports it too
                    log.warning("%s", exc)
            idle = time.time_ns() - self.trader.last_received_ns
            due = self.trader.gate.due()
            if due and idle > MISSING_AFTER_SECONDS * 1e9 and due.stop != self.missing_warned:
                self.missing_warned = due.stop
                log.warning(
                    "feed seq %d..%d have not arrived, though the broker holds seq %d (the "
                    "feed's newest bar): it may have dropped them while the run was down "
                    "(a queue limit such as Mosquitto's max_queued_messages); publish them "
                    "again, or the next bar brings the gap (--on-gap)",
                    due.start,
                    due.stop - 1,
                    due.stop,
                )
            if idle > self.stale_ns and not self.stale:
                self.stale = True
                log.warning(
                    "stale feed: no bar for %.1f s (over %g bar lengths of %d min)",
                    idle / 1e9,
                    self.options.stale_after_bars,
                    self.trader.config.data.bar_minutes,
                )
