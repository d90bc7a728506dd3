"""How messages travel over MQTT: a small versioned envelope around an encoded event.

An MQTT payload is the msgpack array ``[version, source, seq, payload]``:

* ``version``: the schema version (:data:`SCHEMA_VERSION`); a receiver drops
  any other version with a logged reason;
* ``source``: the feed or run that sent it (a receiver drops messages for
  another source);
* ``seq``: the sender's sequence number, increasing by one per message;
  receivers drop duplicates and out-of-order messages by it;
* ``payload``: the event, encoded by :func:`engine.core.events.encode`;
* ``mac`` (optional fifth element): with a shared key, HMAC-SHA256 of the
  msgpack encoding of the first four elements. A receiver that holds the key
  drops a message without it, or whose MAC does not match.

:class:`FeedGate` applies those rules to a bar feed, one message at a time,
and says what to do with each: process it as the next bar, end the run, or
drop it with a reason. It is plain synchronous code with no I/O. Whether a
well-formed bar is plausible (its sequence number, time and prices) is judged
after it, by :mod:`engine.feeds.guard`.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import msgspec

from engine.core.errors import ConfigError
from engine.core.events import Bar, Message, RunFinished, decode, encode, event_name

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "Envelope",
    "FeedGate",
    "SignedEnvelope",
    "Verdict",
    "pack",
    "unpack",
]

SCHEMA_VERSION: Final = 1
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
MAX_REMEMBERED: Final = 10_000  # missing sequence numbers kept to name late bars

PROCESS: Final = "process"
END: Final = "end"
DROP: Final = "drop"
HOLD: Final = "hold"
HALT: Final = "halt"  # the feed guard stops the run at this message (not acknowledged)
MIN_KEY_BYTES: Final = 16


class Envelope(msgspec.Struct, frozen=True, array_like=True):
    version: int
    source: str
    seq: int
    payload: bytes


class SignedEnvelope(msgspec.Struct, frozen=True, array_like=True):
    """An envelope read back: ``mac`` is empty when the sender did not sign it."""

    version: int
    source: str
    seq: int
    payload: bytes
    mac: bytes = b""


_envelope_encoder = msgspec.msgpack.Encoder()
_envelope_decoder = msgspec.msgpack.Decoder(SignedEnvelope)


def _mac(key: bytes, unsigned: bytes) -> bytes:
    return hmac.new(key, unsigned, hashlib.sha256).digest()


def feed_key(text: str | None) -> bytes | None:
    """The shared key of ``--feed-key`` as bytes (None: no signing), checked for length."""
    if text is None or text == "":
        return None
    key = text.encode("utf-8")
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"--feed-key must be at least {MIN_KEY_BYTES} bytes long, got {len(key)} "
            "(use a long random string, e.g. from 'openssl rand -hex 32')"
        )
    return key


def pack(source: str, seq: int, message: Message, key: bytes | None = None) -> bytes:
    """The MQTT payload of ``message`` sent by ``source`` as its ``seq``-th message,
    signed with ``key`` when one is given."""
    envelope = Envelope(SCHEMA_VERSION, source, seq, encode(message))
    unsigned = _envelope_encoder.encode(envelope)
    if key is None:
        return unsigned
    return _envelope_encoder.encode(
        SignedEnvelope(SCHEMA_VERSION, source, seq, envelope.payload, _mac(key, unsigned))
    )


class WireError(ValueError):
    """A payload that cannot be read; the message says why."""


def unpack(
    data: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES, key: bytes | None = None
) -> tuple[SignedEnvelope, Message]:
    """The envelope and event in an MQTT payload; raises :class:`WireError` saying why not.

    With ``key`` the envelope must carry a matching MAC (checked before the payload
    is decoded)."""
    if len(data) > max_bytes:
        raise WireError(f"oversized message: {len(data):,} bytes (limit {max_bytes:,})")
    try:
        envelope = _envelope_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # Say "unknown version" rather than "malformed" when only the version differs.
        try:
            raw = msgspec.msgpack.decode(data)
        except msgspec.DecodeError:
            raw = None
        if (
            isinstance(raw, list)
            and raw
            and isinstance(raw[0], int)
            and not isinstance(raw[0], bool)
            and raw[0] != SCHEMA_VERSION
        ):
            raise WireError(
                f"unknown schema version {raw[0]} (this build reads {SCHEMA_VERSION})"
            ) from None
        raise WireError(f"malformed envelope: {exc}") from None
    if envelope.version != SCHEMA_VERSION:
        raise WireError(
            f"unknown schema version {envelope.version} (this build reads {SCHEMA_VERSION})"
        )
    if key is not None:
        if not envelope.mac:
            raise WireError(f"unsigned message (seq {envelope.seq}); this feed is signed")
        unsigned = _envelope_encoder.encode(
            Envelope(envelope.version, envelope.source, envelope.seq, envelope.payload)
        )
        if not hmac.compare_digest(envelope.mac, _mac(key, unsigned)):
            raise WireError(f"bad signature (seq {envelope.seq}): not signed with the feed key")
    try:
        message = decode(envelope.payload)
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
        raise WireError(f"malformed payload (seq {envelope.seq}): {exc}") from None
    return envelope, message


@dataclass(frozen=True)
class Verdict:
    """What to do with one message: ``process`` a bar, ``end`` the run, ``drop`` it, or
    ``hold`` it (an end marker that waits for missing bars; not acknowledged)."""

    action: str
    reason: str = ""
    seq: int = 0
    bar: Bar | None = None
    gap: int = 0
    #: a well-formed message set aside as implausible (engine.feeds.guard), not malformed
    quarantined: bool = False


def _bar_problem(bar: Bar) -> str | None:
    prices = (bar.open, bar.high, bar.low, bar.close)
    if not all(math.isfinite(p) and p > 0.0 for p in prices):
        return f"prices must be positive and finite, got {prices}"
    if not (math.isfinite(bar.volume) and bar.volume >= 0.0):
        return f"volume must be zero or positive, got {bar.volume!r}"
    if bar.high < max(bar.open, bar.close, bar.low) or bar.low > min(bar.open, bar.close):
        return (
            f"inconsistent range: open {bar.open} high {bar.high} low {bar.low} close {bar.close}"
        )
    return None


class FeedGate:
    """Accepts a feed's bars in order, once each; everything else is dropped with a reason.

    ``last_seq`` and ``last_ts`` are the feed sequence number and end time of the
    last accepted bar (0 before the first). A message is dropped when it is
    oversized or unreadable, of another schema version, from another source or
    symbol, not a bar or end marker, an invalid bar, a duplicate (its sequence
    number was accepted already) or out of order (its sequence number or its
    time is not after the last accepted bar's). A gap (a sequence number more
    than one ahead) is accepted and reported in :attr:`Verdict.gap`.

    A retained bar (delivered because we subscribed, not because it was just
    published) is accepted only when it is exactly the next one: after a
    reconnect the broker may send it before the queued bars that precede it.
    An end marker whose sequence number is ahead of the bars waits until the
    missing bars arrive; one more than ``max_gap`` bars ahead is quarantined.
    With ``key``, unsigned or badly signed messages are dropped.

    A universe's feed (``symbol`` a sequence of symbols) carries every symbol's bars on
    the symbol's own topic under one sequence, in time-slice order: the bars of one time
    share a time, so a bar is out of order when its time is before the last accepted
    bar's or not after its own symbol's last one.
    """

    def __init__(
        self,
        source: str,
        symbol: str | Sequence[str],
        *,
        last_seq: int = 0,
        last_ts: int = 0,
        max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        key: bytes | None = None,
        max_gap: int | None = None,
    ) -> None:
        self.source = source
        self.key = key
        self.max_gap = max_gap
        self.symbols = (symbol,) if isinstance(symbol, str) else tuple(symbol)
        self.symbol = self.symbols[0]
        self.universe = len(self.symbols) > 1
        #: a universe's: each symbol's last accepted bar time
        self.last_ts_of: dict[str, int] = {}
        self.last_seq = last_seq
        self.last_ts = last_ts
        self.max_bytes = max_bytes
        self.end_seq: int | None = None
        #: the highest feed number of a retained bar ahead of the stream: the feed has got
        #: that far, so the bars before it are due (see :meth:`due`)
        self.newest = 0
        self.missing: set[int] = set()  # sequence numbers skipped by a gap (the newest)
        self.topics = {
            f"emarl/{source}/{event_name(kind)}/{name}"
            for name in self.symbols
            for kind in (Bar, RunFinished)
        }

    def check(self, topic: str, data: bytes, *, retained: bool = False) -> Verdict:
        if topic not in self.topics:
            return Verdict(DROP, f"unexpected topic {topic!r}")
        try:
            envelope, message = unpack(data, self.max_bytes, self.key)
        except WireError as exc:
            return Verdict(DROP, str(exc))
        seq = envelope.seq
        if envelope.source != self.source:
            return Verdict(
                DROP, f"seq {seq}: message for {envelope.source!r}, this run reads {self.source!r}"
            )
        if isinstance(message, RunFinished):
            return self._end(seq)
        if not isinstance(message, Bar):
            return Verdict(DROP, f"seq {seq}: a {event_name(type(message))} is not a bar")
        if message.symbol not in self.symbols:
            trades = " ".join(self.symbols)
            return Verdict(
                DROP, f"seq {seq}: bar for {message.symbol!r}, this run trades {trades!r}"
            )
        problem = _bar_problem(message)
        if problem is not None:
            return Verdict(DROP, f"seq {seq}: invalid bar: {problem}")
        if seq <= self.last_seq:
            if seq in self.missing:
                self.missing.discard(seq)
                return Verdict(
                    DROP,
                    f"seq {seq}: late: it was reported missing when seq {self.last_seq} or "
                    "an earlier bar was accepted",
                    seq=seq,
                )
            kind = "retained copy of" if retained else "duplicate of"
            return Verdict(
                DROP, f"seq {seq}: {kind} an accepted bar (last accepted {self.last_seq})", seq=seq
            )
        if retained and seq != self.last_seq + 1:
            self.newest = max(self.newest, seq)
            return Verdict(
                DROP,
                f"seq {seq}: retained bar ahead of the stream (expecting {self.last_seq + 1}); "
                "the queued bars come first",
            )
        if self.universe:
            own = self.last_ts_of.get(message.symbol, 0)
            if message.ts_event < self.last_ts or message.ts_event <= own:
                return Verdict(
                    DROP,
                    f"seq {seq}: out of order: bar time {message.ts_event} of "
                    f"{message.symbol} is before the last accepted bar's {self.last_ts} or "
                    f"not after its symbol's last {own}",
                )
        elif message.ts_event <= self.last_ts:
            return Verdict(
                DROP,
                f"seq {seq}: out of order: bar time {message.ts_event} is not after the last "
                f"accepted bar's {self.last_ts}",
            )
        if self.end_seq is not None and seq >= self.end_seq:
            return Verdict(DROP, f"seq {seq}: after the end of the feed (seq {self.end_seq})")
        gap = seq - self.last_seq - 1 if self.last_seq else 0
        return Verdict(PROCESS, seq=seq, bar=message, gap=gap)

    def accepted(self, seq: int, ts: int, symbol: str | None = None) -> Verdict | None:
        """Record an accepted bar (of ``symbol``, by default the first); returns an ``end``
        verdict when the feed is now complete."""
        self.last_ts_of[self.symbol if symbol is None else symbol] = ts
        if self.last_seq and seq > self.last_seq + 1:
            self.missing.update(range(max(self.last_seq + 1, seq - MAX_REMEMBERED), seq))
            if len(self.missing) > MAX_REMEMBERED:
                self.missing = set(sorted(self.missing)[-MAX_REMEMBERED:])
        self.last_seq = seq
        self.last_ts = ts
        if self.end_seq is not None and self.end_seq == seq + 1:
            return Verdict(END, seq=self.end_seq)
        return None

    def due(self) -> range:
        """The feed numbers known to exist (a retained bar ahead of the stream was seen)
        that have not arrived yet."""
        return range(self.last_seq + 1, max(self.newest, self.last_seq + 1))

    def _end(self, seq: int) -> Verdict:
        if seq <= self.last_seq:
            return Verdict(DROP, f"seq {seq}: end of feed before the last accepted bar")
        if self.max_gap is not None and seq - self.last_seq - 1 > self.max_gap:
            return Verdict(
                DROP,
                f"seq {seq}: end of feed {seq - self.last_seq - 1:,} bars ahead of the last "
                f"accepted bar (seq {self.last_seq}; --max-gap {self.max_gap})",
                quarantined=True,
            )
        self.end_seq = seq
        if seq == self.last_seq + 1:
            return Verdict(END, seq=seq)
        return Verdict(
            HOLD,
            f"seq {seq}: end of feed announced; waiting for bars {self.last_seq + 1}..{seq - 1}",
        )
