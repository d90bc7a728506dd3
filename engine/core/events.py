"""Immutable, typed messages that travel on the bus.

Every message carries ``ts_event`` (when the thing happened) and ``ts_init``
(when emarl created the message), both int nanoseconds since the Unix epoch in
UTC, and ``seq``, a number that increases by one with every message of a run
(handed out by :meth:`engine.core.bus.MessageBus.next_seq`).

Commands are imperative (:class:`SubmitOrder`, :class:`CancelOrder`); events
are past tense (:class:`OrderAccepted`, :class:`OrderFilled`, ...). Messages are
``msgspec.Struct`` s: frozen, keyword-only and tagged, so any of them encodes to
compact bytes (:func:`encode`) and decodes back to the same type
(:func:`decode`) without knowing the type in advance. No message holds a
callable or another mutable object.

Side, order type and time in force are plain lower-case strings (the
constants below): cheap to compare on the hot path and readable in SQL.
"""

from __future__ import annotations

import math
from typing import Final, Literal, Union

import msgspec

__all__ = [
    "BEARISH",
    "BULLISH",
    "BUY",
    "DAY",
    "EVENT_TYPES",
    "GTC",
    "LIMIT",
    "MARKET",
    "NEUTRAL",
    "SELL",
    "STOP",
    "STOP_LIMIT",
    "AgentAction",
    "Bar",
    "CancelOrder",
    "Features",
    "Message",
    "OrderAccepted",
    "OrderCanceled",
    "OrderDenied",
    "OrderExpired",
    "OrderFilled",
    "OrderRejected",
    "PortfolioSnapshot",
    "RunFinished",
    "ShapleyRecord",
    "SubmitOrder",
    "TargetPosition",
    "Valuation",
    "decode",
    "encode",
    "event_name",
    "reason_kind",
]

Side = Literal["buy", "sell"]
BUY: Final = "buy"
SELL: Final = "sell"

OrderType = Literal["market", "limit", "stop", "stop_limit"]
MARKET: Final = "market"
LIMIT: Final = "limit"
STOP: Final = "stop"
STOP_LIMIT: Final = "stop_limit"

TimeInForce = Literal["gtc", "day"]
GTC: Final = "gtc"
DAY: Final = "day"

#: an agent's vote (AgentAction.action), also the index of its probability
BEARISH: Final = 0
NEUTRAL: Final = 1
BULLISH: Final = 2


class Message(msgspec.Struct, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """Base of every bus message: timestamps in int ns UTC and a run sequence number."""

    ts_event: int
    ts_init: int
    seq: int


class Bar(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """One OHLCV bar; ``ts_event`` is the bar's close (the end of its interval)."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class SubmitOrder(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """Command: place an order with the broker.

    ``parent_order_id`` makes the order an exit of a bracket: it works only for what
    that entry order has filled, and the exits of one entry are one-cancels-the-other
    (the rules are in :mod:`brokers.simulated`).
    """

    order_id: str
    strategy_id: str
    symbol: str
    side: Side
    quantity: float
    order_type: OrderType = "market"
    limit_price: float | None = None
    stop_price: float | None = None
    time_in_force: TimeInForce = "gtc"
    parent_order_id: str | None = None

    def __post_init__(self) -> None:
        if not (self.quantity > 0 and math.isfinite(self.quantity)):
            raise ValueError(
                f"order {self.order_id}: quantity must be a positive finite number, "
                f"got {self.quantity!r}"
            )
        needs_limit = self.order_type in (LIMIT, STOP_LIMIT)
        needs_stop = self.order_type in (STOP, STOP_LIMIT)
        _check_price(self.order_id, "limit_price", self.limit_price, needs_limit, self.order_type)
        _check_price(self.order_id, "stop_price", self.stop_price, needs_stop, self.order_type)


def _check_price(
    order_id: str, name: str, value: float | None, required: bool, order_type: str
) -> None:
    if required:
        if value is None or not (value > 0 and math.isfinite(value)):
            raise ValueError(
                f"order {order_id}: a {order_type} order needs a positive finite {name}, "
                f"got {value!r}"
            )
    elif value is not None:
        raise ValueError(f"order {order_id}: a {order_type} order takes no {name}")


class CancelOrder(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """Command: cancel an open order."""

    order_id: str
    strategy_id: str
    symbol: str


class OrderAccepted(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The broker accepted the order; it now works until filled, cancelled or expired."""

    order_id: str
    strategy_id: str
    symbol: str


def reason_kind(reason: str) -> str:
    """The kind of a denial or rejection: reasons read ``"kind: details"`` (``"margin: ..."``);
    a reason without a colon is its own kind. Runs count refusals by kind."""
    head, colon, _ = reason.partition(":")
    return head.strip() if colon else reason.strip()


class OrderDenied(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """A pre-trade risk check refused the order before it reached the market.
    ``reason`` reads ``"kind: details"`` (:func:`reason_kind`)."""

    order_id: str
    strategy_id: str
    symbol: str
    reason: str


class OrderRejected(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The broker refused the order (or a cancel request for it); ``reason`` reads
    ``"kind: details"``."""

    order_id: str
    strategy_id: str
    symbol: str
    reason: str


class OrderCanceled(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The order was cancelled; the unfilled remainder is gone."""

    order_id: str
    strategy_id: str
    symbol: str
    reason: str = "requested"


class OrderExpired(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """A DAY order reached the end of its trading day unfilled (or partly filled)."""

    order_id: str
    strategy_id: str
    symbol: str


class OrderFilled(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """A (partial) fill.

    ``quantity`` and ``price`` are this fill's; ``filled_quantity`` and
    ``leaves_quantity`` the order's totals after it. ``commission`` is in
    account currency; ``slippage`` is the price difference, in account
    currency, between the reference price and the fill price times quantity
    (positive when it cost the account).
    """

    order_id: str
    fill_id: str
    strategy_id: str
    symbol: str
    side: Side
    quantity: float
    price: float
    commission: float
    slippage: float
    filled_quantity: float
    leaves_quantity: float


class PortfolioSnapshot(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The account after a bar: one per bar per symbol, marked at the bar's close.

    ``cash + position * mark_price == equity`` holds for every snapshot.
    ``fees`` (commissions), ``turnover``, ``borrow_fees`` (on short positions) and
    ``financing`` (interest on negative cash) are cumulative over the run.
    """

    symbol: str
    position: float
    avg_price: float
    mark_price: float
    cash: float
    realised_pnl: float
    unrealised_pnl: float
    equity: float
    exposure: float
    fees: float
    turnover: float
    borrow_fees: float = 0.0
    financing: float = 0.0


class Features(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The 13 features of the bar just closed (``indicators.features.FEATURE_NAMES``).

    ``values`` holds the 13 columns in order; ``mlmi``, ``nwrqk`` and ``regime`` are
    the agents' slices of it (SPEC section 2), with a missing LVN encoded as
    ``LVN_DISTANCE_CAP`` and strength 0 in the NWRQK slice. ``warm`` is true when
    the warm-up is over and every value an agent reads is finite; nothing trades
    on a bar that is not warm. ``ts_event`` is the close of the bar.
    """

    symbol: str
    values: tuple[float, ...]
    mlmi: tuple[float, ...]
    nwrqk: tuple[float, ...]
    regime: tuple[float, ...]
    warm: bool


class AgentAction(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """An agent's vote on the bar just closed: probabilities of bearish/neutral/bullish.

    ``action`` is 0 (bearish), 1 (neutral) or 2 (bullish); ``ts_event`` is the
    close of the bar the vote is about.
    """

    symbol: str
    agent_id: str
    agent_index: int
    bearish: float
    neutral: float
    bullish: float
    action: int
    confidence: float


class TargetPosition(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The ensemble's decision: hold ``target`` units from the next bar's open."""

    symbol: str
    strategy_id: str
    target: float
    confidence: float
    bearish: float
    neutral: float
    bullish: float


class ShapleyRecord(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """One agent's Shapley credit for one decision step.

    ``decision_ts`` is the close of the bar the decision was made on; the record
    is published at the close of the next bar, when that step's P&L is known
    (``ts_event``). ``value_full`` is v(N), the P&L the portfolio made over the
    step; ``value_model`` is v(N) as the counterfactual model computes it.
    """

    symbol: str
    agent_id: str
    agent_index: int
    decision_ts: int
    phi: float
    value_full: float
    value_model: float
    coalitions: int
    method: str
    stderr: float


class Valuation(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """One agent valued as a stock after a step: share price, option value, weight, bubble."""

    symbol: str
    agent_id: str
    agent_index: int
    share_price: float
    volatility: float
    strike: float
    time_to_expiry: float
    option_value: float
    target_weight: float
    weight: float
    bubble: float
    #: how ``option_value`` was priced: "black_scholes", "crr", or "black_scholes_fallback"
    #: (CRR asked for, but the tree's probability fell outside [0, 1])
    pricing: str = "black_scholes"


class RunFinished(Message, frozen=True, kw_only=True, tag=True, gc=False, array_like=True):
    """The data feed is exhausted; handlers flush and stop."""

    bars: int


EVENT_TYPES: tuple[type[Message], ...] = (
    Bar,
    SubmitOrder,
    CancelOrder,
    OrderAccepted,
    OrderDenied,
    OrderRejected,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    PortfolioSnapshot,
    Features,
    AgentAction,
    TargetPosition,
    ShapleyRecord,
    Valuation,
    RunFinished,
)

_NAMES: dict[type[Message], str] = {}


def event_name(event_type: type[Message]) -> str:
    """The snake_case name of a message type, as used in MQTT topics ("order_filled")."""
    name = _NAMES.get(event_type)
    if name is None:
        raw = event_type.__name__
        name = "".join("_" + c.lower() if c.isupper() else c for c in raw).lstrip("_")
        _NAMES[event_type] = name
    return name


_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Message] | None = None


def register(*types: type[Message]) -> None:
    """Make further message types decodable by :func:`decode` (packages add theirs)."""
    global _decoder, EVENT_TYPES
    EVENT_TYPES = tuple(dict.fromkeys(EVENT_TYPES + types))
    _decoder = None


def encode(message: Message) -> bytes:
    """Compact msgpack bytes of a message (its tag first)."""
    return _encoder.encode(message)


def decode(data: bytes) -> Message:
    """The message encoded in ``data``; raises ``msgspec.DecodeError`` or ``ValueError``."""
    global _decoder
    if _decoder is None:
        _decoder = msgspec.msgpack.Decoder(Union[EVENT_TYPES])  # noqa: UP007
    return _decoder.decode(data)
