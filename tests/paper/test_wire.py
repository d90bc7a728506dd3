"""The wire format and the feed gate: every bad message is dropped with its reason."""

from __future__ import annotations

import msgspec
import pytest

from engine.core.errors import ConfigError
from engine.core.events import Bar, PortfolioSnapshot, RunFinished
from engine.core.wire import DROP, END, HOLD, PROCESS, Envelope, FeedGate, WireError, pack, unpack
from engine.feeds.mqtt import MqttSettings, backoff_delays
from engine.feeds.replay import parse_speed

BAR_TOPIC = "emarl/feed/bar/SYM"
END_TOPIC = "emarl/feed/run_finished/SYM"


def bar(seq: int, ts: int | None = None, **changes: float | str) -> Bar:
    fields: dict = {
        "ts_event": ts if ts is not None else seq * 1_800_000_000_000,
        "ts_init": 0,
        "seq": seq,
        "symbol": "SYM",
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 100.0,
    }
    fields.update(changes)
    return Bar(**fields)


def test_pack_unpack_round_trip_keeps_envelope_and_event() -> None:
    data = pack("feed", 7, bar(7))
    envelope, message = unpack(data)
    assert (envelope.version, envelope.source, envelope.seq) == (1, "feed", 7)
    assert message == bar(7)


def test_unpack_names_each_problem() -> None:
    with pytest.raises(WireError, match="oversized message: 5,000 bytes"):
        unpack(b"x" * 5_000, max_bytes=1_024)
    with pytest.raises(WireError, match="malformed envelope"):
        unpack(b"\xc1not msgpack")
    future = msgspec.msgpack.encode([2, "feed", 1, b"", "a new field"])
    with pytest.raises(WireError, match="unknown schema version 2"):
        unpack(future)
    same_shape = msgspec.msgpack.encode(Envelope(3, "feed", 1, b""))
    with pytest.raises(WireError, match="unknown schema version 3"):
        unpack(same_shape)
    bad_payload = msgspec.msgpack.encode(Envelope(1, "feed", 1, b"\x93\x01\x02"))
    with pytest.raises(WireError, match="malformed payload"):
        unpack(bad_payload)


def test_gate_accepts_bars_in_order_and_drops_duplicates_and_late_ones() -> None:
    gate = FeedGate("feed", "SYM")
    first = gate.check(BAR_TOPIC, pack("feed", 1, bar(1)))
    assert first.action == PROCESS and first.bar == bar(1) and first.gap == 0
    gate.accepted(1, bar(1).ts_event)
    duplicate = gate.check(BAR_TOPIC, pack("feed", 1, bar(1)))
    assert duplicate.action == DROP and "duplicate" in duplicate.reason
    ahead = gate.check(BAR_TOPIC, pack("feed", 3, bar(3)))
    assert ahead.action == PROCESS and ahead.gap == 1
    gate.accepted(3, bar(3).ts_event)
    late = gate.check(BAR_TOPIC, pack("feed", 2, bar(2)))
    assert late.action == DROP and "seq 2: late" in late.reason
    again = gate.check(BAR_TOPIC, pack("feed", 2, bar(2)))
    assert again.action == DROP and "duplicate" in again.reason
    back_in_time = gate.check(BAR_TOPIC, pack("feed", 4, bar(4, ts=bar(2).ts_event)))
    assert back_in_time.action == DROP and "out of order" in back_in_time.reason


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("emarl/other/bar/SYM", pack("feed", 1, bar(1)), "unexpected topic"),
        (BAR_TOPIC, pack("another-run", 1, bar(1)), "message for 'another-run'"),
        (BAR_TOPIC, pack("feed", 1, bar(1, symbol="XYZ")), "bar for 'XYZ'"),
        (BAR_TOPIC, pack("feed", 1, bar(1, high=8.0)), "inconsistent range"),
        (BAR_TOPIC, pack("feed", 1, bar(1, open=float("nan"))), "positive and finite"),
        (BAR_TOPIC, pack("feed", 1, bar(1, volume=-1.0)), "volume"),
        (BAR_TOPIC, b"\x00\x01garbage", "malformed envelope"),
        (BAR_TOPIC, b"\x00" * 70_000, "oversized"),
    ],
)
def test_gate_drops_bad_messages_with_a_reason(topic: str, payload: bytes, reason: str) -> None:
    verdict = FeedGate("feed", "SYM").check(topic, payload)
    assert verdict.action == DROP
    assert reason in verdict.reason


def test_gate_drops_an_event_that_is_not_a_bar() -> None:
    snapshot = PortfolioSnapshot(
        ts_event=1, ts_init=1, seq=1, symbol="SYM", position=0.0, avg_price=0.0,
        mark_price=1.0, cash=1.0, realised_pnl=0.0, unrealised_pnl=0.0, equity=1.0,
        exposure=0.0, fees=0.0, turnover=0.0,
    )  # fmt: skip
    verdict = FeedGate("feed", "SYM").check(BAR_TOPIC, pack("feed", 1, snapshot))
    assert verdict.action == DROP and "portfolio_snapshot is not a bar" in verdict.reason


def test_gate_takes_a_retained_bar_only_when_it_is_the_next_one() -> None:
    gate = FeedGate("feed", "SYM", last_seq=5, last_ts=bar(5).ts_event)
    ahead = gate.check(BAR_TOPIC, pack("feed", 9, bar(9)), retained=True)
    assert ahead.action == DROP and "retained bar ahead" in ahead.reason
    assert gate.check(BAR_TOPIC, pack("feed", 6, bar(6)), retained=True).action == PROCESS


def test_gate_holds_an_early_end_marker_until_the_missing_bars_arrive() -> None:
    gate = FeedGate("feed", "SYM")
    marker = RunFinished(ts_event=0, ts_init=0, seq=3, bars=2)
    held = gate.check(END_TOPIC, pack("feed", 3, marker))
    assert held.action == HOLD
    assert gate.accepted(1, bar(1).ts_event) is None
    ended = gate.accepted(2, bar(2).ts_event)
    assert ended is not None and ended.action == END and ended.seq == 3
    assert gate.check(BAR_TOPIC, pack("feed", 3, bar(3))).action == DROP


def test_mqtt_settings_from_url_and_options() -> None:
    plain = MqttSettings.from_url("mqtt://127.0.0.1:1883")
    assert (plain.host, plain.port, plain.tls, plain.username) == ("127.0.0.1", 1883, False, None)
    secure = MqttSettings.from_url("mqtts://alice:s%40cret@broker.example", tls_insecure=True)
    assert (secure.port, secure.tls, secure.username, secure.password) == (
        8883,
        True,
        "alice",
        "s@cret",
    )
    assert MqttSettings.from_url("mqtt://h", username="bob", password="pw").username == "bob"
    with pytest.raises(ConfigError, match="expected mqtt://host:port"):
        MqttSettings.from_url("http://127.0.0.1:1883")
    with pytest.raises(ConfigError, match="port is not a number"):
        MqttSettings.from_url("mqtt://127.0.0.1:port")


def test_speed_and_backoff() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60x") == 60.0
    with pytest.raises(ConfigError, match="--speed 'fast'"):
        parse_speed("fast")
    import random

    delays = backoff_delays(first=0.1, factor=2.0, cap=1.0, rng=random.Random(1))
    values = [next(delays) for _ in range(8)]
    caps = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    assert all(cap / 2 <= value <= cap for value, cap in zip(values, caps, strict=True))
    assert len(set(values)) == len(values)  # jittered


def test_signed_envelopes_need_the_key_and_unsigned_ones_are_refused_with_it() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    signed = pack("feed", 7, bar(7), key)
    envelope, message = unpack(signed, key=key)
    assert message == bar(7) and len(envelope.mac) == 32
    assert unpack(signed)[1] == bar(7)  # a receiver without the key reads it as before
    with pytest.raises(WireError, match="unsigned message \\(seq 7\\)"):
        unpack(pack("feed", 7, bar(7)), key=key)
    with pytest.raises(WireError, match="bad signature \\(seq 7\\)"):
        unpack(pack("feed", 7, bar(7), b"another key, also 32 bytes long!"), key=key)
    # the MAC covers the sequence number: a signed bar cannot be renumbered
    tampered = msgspec.msgpack.decode(signed)
    tampered[2] = 8
    with pytest.raises(WireError, match="bad signature"):
        unpack(msgspec.msgpack.encode(tampered), key=key)
    gate = FeedGate("feed", "SYM", key=key)
    assert gate.check(BAR_TOPIC, signed).action == PROCESS
    unsigned = gate.check(BAR_TOPIC, pack("feed", 7, bar(7)))
    assert unsigned.action == DROP and "unsigned message" in unsigned.reason


def test_feed_keys_shorter_than_16_bytes_are_refused() -> None:
    from engine.core.wire import feed_key

    assert feed_key(None) is None and feed_key("x" * 16) == b"x" * 16
    with pytest.raises(ConfigError, match="at least 16 bytes"):
        feed_key("short")


def test_a_universe_gate_takes_every_symbols_bar_of_a_time_slice_once() -> None:
    gate = FeedGate("feed", ["A", "B"])
    assert {"emarl/feed/bar/A", "emarl/feed/bar/B", "emarl/feed/run_finished/B"} <= gate.topics

    def send(seq: int, symbol: str, ts: int) -> str:
        verdict = gate.check(f"emarl/feed/bar/{symbol}", pack("feed", seq, bar(seq, ts,
                             symbol=symbol)))  # fmt: skip
        if verdict.action == PROCESS:
            gate.accepted(seq, ts, symbol)
        return verdict.action + " " + verdict.reason

    slice_ns = 1_800_000_000_000
    assert send(1, "A", slice_ns).startswith(PROCESS)
    assert send(2, "B", slice_ns).startswith(PROCESS)  # the same time, another symbol
    again = send(3, "B", slice_ns)  # B's bar of that time a second time
    assert again.startswith(DROP) and "not after its symbol's last" in again
    older = send(3, "A", slice_ns // 2)
    assert older.startswith(DROP) and "before the last accepted bar's" in older
    unknown = gate.check("emarl/feed/bar/A", pack("feed", 3, bar(3, 2 * slice_ns, symbol="C")))
    assert unknown.action == DROP and "bar for 'C', this run trades 'A B'" in unknown.reason
    assert send(3, "A", 2 * slice_ns).startswith(PROCESS)
    assert gate.last_ts_of == {"A": 2 * slice_ns, "B": slice_ns}
