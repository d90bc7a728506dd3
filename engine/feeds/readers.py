"""A feed's readers and how far each has got, so that a fast replay never outruns them.

A paper run acknowledges a bar only after committing it, so the bars a replay sends
faster than the run stores them wait at the broker, and a broker keeps only so many
for one subscriber: Mosquitto drops every bar past ``max_queued_messages`` (1,000 by
default), and the run then halts at a gap. So every paper run says how far it has got:

* it publishes its position, the feed number of the last bar it has read in the
  stream's order (a new bar, or an old one sent again), on
  ``emarl/<feed>/reader/<client id>`` (retained, QoS 1): as it connects (the last bar
  it stored; 0 for a new run), after the first message it reads and every
  :data:`PROGRESS_EVERY` messages after that. A new run reads from wherever the
  stream is, so a replay takes its 0 for the number it had reached when it heard it;
* a run that stops clears that message (an empty retained one); when its connection is
  lost, the broker replaces it with :data:`DOWN` (the connection's will);
* ``emarl publish`` follows the messages (:class:`Readers`) and never sends a bar more
  than ``max_lead`` (:data:`MAX_LEAD`) numbers past the slowest reader's.

A reader that goes down while a replay follows it keeps its place: the replay waits
for it to come back, as it waits for a reader that says nothing, for at most
``stall_seconds`` (:data:`STALL_SECONDS`) after its last report, then passes it by with
a warning until it reports again (the broker then queues what it can for the run).
A reader already down when the replay starts is not waited for. The messages are not
signed: a forged one can at most make a replay wait that long, or not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import aiomqtt

__all__ = ["DOWN", "MAX_LEAD", "PROGRESS_EVERY", "Readers", "progress", "reader_topic"]

log = logging.getLogger("emarl.mqtt")

#: a reader reports its position every this many messages read
PROGRESS_EVERY = 25
#: how many feed numbers a publisher may run ahead of its slowest reader (Mosquitto
#: queues 1,000 unacknowledged messages per subscriber by default)
MAX_LEAD = 500
#: how long a silent (or fallen) reader holds a publisher up before it is passed by
STALL_SECONDS = 30.0
#: what the broker publishes for a reader whose connection was lost
DOWN = b"down"


def reader_topic(feed: str, client_id: str) -> str:
    """Where the reader ``client_id`` of ``feed`` reports its progress."""
    return f"emarl/{feed}/reader/{client_id}"


def progress(seq: int) -> bytes:
    """A progress message: a reader's position (a feed number), in decimal."""
    return str(seq).encode()


class Readers:
    """What a publisher knows of a feed's readers: each one's last reported number."""

    def __init__(
        self, feed: str, max_lead: int = MAX_LEAD, stall_seconds: float = STALL_SECONDS
    ) -> None:
        if max_lead < 1:
            raise ValueError(f"max_lead must be at least 1, got {max_lead}")
        self.topic = reader_topic(feed, "+")
        self.max_lead = max_lead
        self.stall_seconds = stall_seconds
        self.seqs: dict[str, int] = {}
        self.heard: dict[str, float] = {}
        self.passed: set[str] = set()
        #: the replay's own position (a new reader starts there)
        self.sent = 0
        #: seconds spent waiting for readers
        self.waited = 0.0
        self._changed = asyncio.Event()

    def on_message(self, topic: str, payload: bytes) -> None:
        """A reader's progress, its departure (empty), or its fall (:data:`DOWN`)."""
        name = topic.rsplit("/", 1)[-1]
        if payload == DOWN:  # its last report stands: the stall clock runs from there
            return
        self.passed.discard(name)
        if not payload:
            self.seqs.pop(name, None)
            self.heard.pop(name, None)
        else:
            try:
                self.seqs[name] = int(payload) or self.sent
            except ValueError:
                log.debug("ignoring reader message %r on %s", payload[:40], topic)
                return
            self.heard[name] = time.monotonic()
        self._changed.set()

    def limit(self) -> int | None:
        """The highest number that may be sent now (None: no reader holds it back)."""
        behind = [seq for name, seq in self.seqs.items() if name not in self.passed]
        return min(behind) + self.max_lead if behind else None

    async def wait_until(self, seq: int) -> None:
        """Return once number ``seq`` may be sent (every reader not passed by is within
        ``max_lead`` of it)."""
        began = time.monotonic()
        try:
            while True:
                limit = self.limit()
                if limit is None or seq <= limit:
                    return
                slowest = min(
                    (n for n in self.seqs if n not in self.passed), key=lambda n: self.seqs[n]
                )
                left = self.heard[slowest] + self.stall_seconds - time.monotonic()
                if left <= 0:
                    log.warning(
                        "reader %s has reported nothing for %.0f s (at feed seq %d); "
                        "publishing on without it (the broker may drop bars it has not read)",
                        slowest,
                        self.stall_seconds,
                        self.seqs[slowest],
                    )
                    self.passed.add(slowest)
                    continue
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout=left)
        finally:
            self.waited += time.monotonic() - began

    async def follow(self, client: aiomqtt.Client) -> None:
        """Keep up with the reports of a client subscribed to :attr:`topic` until
        cancelled or disconnected (a broker sends the retained ones first)."""
        self.seqs.clear()
        self.heard.clear()
        try:
            async for message in client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes) else str(payload or "").encode()
                self.on_message(str(message.topic), data)
        except aiomqtt.MqttError:
            return
