"""The in-process bus: order of dispatch, topics, errors; events round-trip as bytes."""

from __future__ import annotations

import msgspec
import pytest

from engine.core.bus import MessageBus, topic
from engine.core.errors import BusError, HandlerError
from engine.core.events import Bar, OrderFilled, SubmitOrder, decode, encode


def bar(bus: MessageBus, symbol: str = "A", close: float = 1.0) -> Bar:
    return Bar(
        ts_event=1,
        ts_init=1,
        seq=bus.next_seq(),
        symbol=symbol,
        open=1.0,
        high=1.0,
        low=1.0,
        close=close,
        volume=0.0,
    )


def test_publish_calls_handlers_in_subscription_order_depth_first() -> None:
    bus = MessageBus()
    calls: list[str] = []

    def first(message: Bar) -> None:
        calls.append(f"first:{message.close}")
        if message.close == 1.0:
            bus.publish(bar(bus, close=2.0))

    bus.subscribe(Bar, first)
    bus.subscribe(Bar, lambda m: calls.append(f"second:{m.close}"))
    bus.publish(bar(bus))
    assert calls == ["first:1.0", "first:2.0", "second:2.0", "second:1.0"]


def test_subscribe_symbol_and_wildcard_filter_messages() -> None:
    bus = MessageBus()
    only_a: list[Bar] = []
    everything: list[object] = []
    bus.subscribe(Bar, only_a.append, "A")
    bus.subscribe("*", everything.append)
    bus.publish(bar(bus, "A"))
    bus.publish(bar(bus, "B"))
    assert [m.symbol for m in only_a] == ["A"]
    assert len(everything) == 2
    bus.subscribe(Bar, only_a.append, "B")  # subscribing later updates the routes
    bus.publish(bar(bus, "B"))
    assert [m.symbol for m in only_a] == ["A", "B"]


def test_handler_error_names_handler_event_and_sequence() -> None:
    bus = MessageBus()

    def broken(_message: Bar) -> None:
        raise ZeroDivisionError("boom")

    bus.subscribe(Bar, broken)
    with pytest.raises(HandlerError, match=r"broken raised ZeroDivisionError on bar seq=1"):
        bus.publish(bar(bus))


def test_subscribe_rejects_bad_arguments() -> None:
    bus = MessageBus()
    with pytest.raises(BusError):
        bus.subscribe("bars", print)
    with pytest.raises(BusError):
        bus.subscribe(Bar, "not callable")  # type: ignore[arg-type]


def test_sequence_numbers_increase_and_resume() -> None:
    bus = MessageBus()
    assert [bus.next_seq() for _ in range(3)] == [1, 2, 3]
    bus.reset_sequence(100)
    assert bus.next_seq() == 100


def test_events_round_trip_through_bytes_and_are_immutable() -> None:
    bus = MessageBus()
    messages = [
        bar(bus),
        SubmitOrder(
            ts_event=1,
            ts_init=2,
            seq=3,
            order_id="o",
            strategy_id="s",
            symbol="A",
            side="buy",
            quantity=5,
            order_type="stop_limit",
            limit_price=2.0,
            stop_price=1.5,
            time_in_force="day",
        ),
        OrderFilled(
            ts_event=1,
            ts_init=1,
            seq=4,
            order_id="o",
            fill_id="F1",
            strategy_id="s",
            symbol="A",
            side="sell",
            quantity=1,
            price=2,
            commission=0.1,
            slippage=0,
            filled_quantity=1,
            leaves_quantity=0,
        ),
    ]
    for message in messages:
        assert decode(encode(message)) == message
        with pytest.raises(AttributeError):
            message.seq = 0  # type: ignore[misc]
    with pytest.raises(msgspec.DecodeError):
        decode(b"\x93garbage")
    assert topic("run1", OrderFilled, "A") == "emarl/run1/order_filled/A"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"quantity": 0}, "quantity must be a positive finite number"),
        ({"quantity": float("nan")}, "quantity must be a positive finite number"),
        ({"order_type": "limit"}, "a limit order needs a positive finite limit_price"),
        ({"order_type": "stop", "stop_price": -1.0}, "needs a positive finite stop_price"),
        ({"limit_price": 1.0}, "a market order takes no limit_price"),
    ],
)
def test_submit_order_invalid_fields_raise(fields: dict, message: str) -> None:
    base = {
        "ts_event": 1,
        "ts_init": 1,
        "seq": 1,
        "order_id": "o",
        "strategy_id": "s",
        "symbol": "A",
        "side": "buy",
        "quantity": 1.0,
    }
    with pytest.raises(ValueError, match=message):
        SubmitOrder(**{**base, **fields})
