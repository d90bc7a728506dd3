"""The base of a strategy, and of an ensemble's agent, on the bus.

A strategy sees bars and its own order events, keeps its own view of its
position (from its fills), and sends commands. It never calls the broker or
the database: everything goes through the bus. An agent (:class:`Agent`) votes; the
ensemble's meta-investor weighs the votes.

:class:`Component` is what the kernel (:mod:`engine.app.kernel`) builds and subscribes:
the broker, the portfolio and every part of a strategy (an SMA crossover; an ensemble's
meta-investor, feature engine, agents and executor) are components, each built on the
bus it talks to and subscribed once, in the kernel's order.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Protocol, Self, runtime_checkable

from engine.core.bus import Bus
from engine.core.clock import Clock
from engine.core.errors import ConfigError
from engine.core.events import (
    BUY,
    GTC,
    LIMIT,
    MARKET,
    SELL,
    STOP,
    AgentAction,
    Bar,
    CancelOrder,
    OrderCanceled,
    OrderDenied,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
)
from strategies.sizing import AccountView

__all__ = ["Agent", "BracketOrders", "Component", "Strategy"]


@runtime_checkable
class Component(Protocol):
    """A part of a run on the bus: built with the bus, subscribed by the kernel."""

    def subscribe(self) -> None:
        """Register this component's handlers on its bus (called once, in order)."""


class Agent:
    """An ensemble's agent on the bus: it votes on its symbol with :class:`AgentAction`
    messages, as agent ``agent_index`` of the panel."""

    def __init__(
        self, bus: Bus, clock: Clock, symbol: str, agent_id: str, agent_index: int
    ) -> None:
        self._bus = bus
        self._clock = clock
        self.symbol = symbol
        self.agent_id = agent_id
        self.agent_index = agent_index

    def publish_vote(
        self,
        ts_event: int,
        bearish: float,
        neutral: float,
        bullish: float,
        action: int,
        confidence: float,
    ) -> None:
        """Publish this agent's vote on the bar or features of ``ts_event``, stamped now."""
        bus = self._bus
        bus.publish(
            AgentAction(
                ts_event=ts_event,
                ts_init=self._clock.now_ns(),
                seq=bus.next_seq(),
                symbol=self.symbol,
                agent_id=self.agent_id,
                agent_index=self.agent_index,
                bearish=bearish,
                neutral=neutral,
                bullish=bullish,
                action=action,
                confidence=confidence,
            )
        )


class BracketOrders(NamedTuple):
    """The order ids of a bracket (:meth:`Strategy.submit_bracket`); None for a leg not
    sent."""

    entry: str
    stop_loss: str | None
    take_profit: str | None


class Strategy:
    """Subclasses implement :meth:`on_bar`; :meth:`submit_order` sends orders.

    A strategy of your own (run with ``emarl.backtest(scenario, strategy=MyStrategy,
    **params)``) declares its parameters as annotated class attributes with defaults,
    reads them as ``self.<name>``, and sets up its state in :meth:`setup`::

        class Breakout(Strategy):
            lookback: int = 20

            def setup(self) -> None:
                self.highs = collections.deque(maxlen=self.lookback)

            def on_bar(self, bar: Bar) -> None: ...

    :meth:`create` builds one: it checks the keyword parameters against the declared
    ones (an unknown name or a value of the wrong type is a :class:`ConfigError` that
    lists them), sets them, then calls :meth:`setup`.
    """

    def __init__(self, strategy_id: str, bus: Bus, symbol: str, clock: Clock) -> None:
        self.strategy_id = strategy_id
        self.symbol = symbol
        self.position = 0.0
        self.open_orders: set[str] = set()
        self.denials = 0
        self._bus = bus
        self._order_count = 0
        self._clock = clock
        #: what :meth:`size` reads when the scenario sizes by the account (set by the
        #: kernel: the run's account view and the instrument's lot size)
        self.account: AccountView | None = None
        self.lot_size = 1.0

    def size(self, price: float, quantity: float) -> float:
        """The units of a new position at ``price``: ``quantity`` with ``units`` sizing,
        else what the scenario's ``[strategy.sizing]`` and ``allocation`` give for this
        symbol (:mod:`strategies.sizing`; 0 while it cannot size yet)."""
        if self.account is None:
            return quantity
        return self.account.units(self.symbol, price, self.lot_size, quantity)

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The declared parameters and their defaults: every annotated, public class
        attribute with a value, of this class and its bases below :class:`Strategy`."""
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            if not issubclass(klass, Strategy) or klass is Strategy:
                continue
            for name in vars(klass).get("__annotations__", {}):
                if not name.startswith("_") and name in vars(klass):
                    found[name] = vars(klass)[name]
        return found

    @classmethod
    def create(
        cls, bus: Bus, clock: Clock, symbol: str, strategy_id: str = "", **params: Any
    ) -> Self:
        """A strategy on ``bus`` for ``symbol`` with ``params`` over the declared defaults
        (see the class docstring), set up and ready to subscribe."""
        declared = cls.parameters()
        unknown = sorted(set(params) - set(declared))
        if unknown:
            known = ", ".join(sorted(declared)) or "none"
            raise ConfigError(
                f"{cls.__name__} has no parameter {', '.join(map(repr, unknown))} "
                f"(its parameters: {known})"
            )
        strategy = cls(strategy_id or cls.__name__.lower(), bus, symbol, clock)
        for name, value in {**declared, **params}.items():
            setattr(strategy, name, _checked(cls.__name__, name, declared[name], value))
        strategy.setup()
        return strategy

    def setup(self) -> None:
        """Set up state from the parameters (called once by :meth:`create`)."""

    def subscribe(self) -> None:
        bus = self._bus
        bus.subscribe(Bar, self.on_bar, self.symbol)
        bus.subscribe(OrderFilled, self.on_order_filled, self.symbol)
        for closing in (OrderCanceled, OrderExpired, OrderDenied, OrderRejected):
            bus.subscribe(closing, self.on_order_closed, self.symbol)

    def on_bar(self, bar: Bar) -> None:
        raise NotImplementedError

    def on_order_filled(self, fill: OrderFilled) -> None:
        if fill.strategy_id != self.strategy_id:
            return
        self.position += fill.quantity if fill.side == BUY else -fill.quantity
        if fill.leaves_quantity <= 0.0:
            self.open_orders.discard(fill.order_id)

    def on_order_closed(
        self, event: OrderCanceled | OrderExpired | OrderDenied | OrderRejected
    ) -> None:
        if event.strategy_id != self.strategy_id:
            return
        self.open_orders.discard(event.order_id)
        if isinstance(event, OrderDenied):
            self.denials += 1

    def submit_order(
        self,
        side: str,
        quantity: float,
        order_type: str = MARKET,
        *,
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: str = GTC,
        parent_order_id: str | None = None,
    ) -> str:
        """Send a :class:`SubmitOrder` for this strategy's symbol; return its order id.
        With ``parent_order_id`` the order is an exit of that entry (see
        :meth:`submit_bracket`)."""
        self._order_count += 1
        order_id = f"{self.strategy_id}-{self._order_count}"
        self.open_orders.add(order_id)
        self._bus.publish(
            SubmitOrder(
                **self._command_fields(order_id),
                side=side,  # type: ignore[arg-type]
                quantity=quantity,
                order_type=order_type,  # type: ignore[arg-type]
                limit_price=limit_price,
                stop_price=stop_price,
                time_in_force=time_in_force,  # type: ignore[arg-type]
                parent_order_id=parent_order_id,
            )
        )
        return order_id

    def submit_bracket(
        self,
        side: str,
        quantity: float,
        *,
        stop_loss: float | None,
        take_profit: float | None,
        order_type: str = MARKET,
        limit_price: float | None = None,
        stop_price: float | None = None,
        time_in_force: str = GTC,
    ) -> BracketOrders:
        """Send an entry order and its exits: a stop-loss (a stop order at ``stop_loss``)
        and a take-profit (a limit order at ``take_profit``) on the other side, either
        may be None. The broker holds them as one bracket (:mod:`brokers.simulated`): the
        exits work only for what the entry has filled, and when one closes the position
        the other is cancelled. For a buy the stop-loss is below the take-profit, for a
        sell above; a bracket without either exit, or with them the wrong way round, is
        a :class:`ValueError`."""
        if stop_loss is None and take_profit is None:
            raise ValueError("submit_bracket: give a stop_loss, a take_profit or both")
        for name, price in (("stop_loss", stop_loss), ("take_profit", take_profit)):
            if price is not None and not (price > 0.0 and math.isfinite(price)):
                raise ValueError(f"submit_bracket: {name} must be a positive price, got {price!r}")
        buy = side == BUY
        if (
            stop_loss is not None
            and take_profit is not None
            and (stop_loss >= take_profit if buy else stop_loss <= take_profit)
        ):
            raise ValueError(
                f"submit_bracket: a {side}'s stop_loss ({stop_loss:g}) must be "
                f"{'below' if buy else 'above'} its take_profit ({take_profit:g})"
            )
        entry = self.submit_order(
            side,
            quantity,
            order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )
        exit_side = SELL if buy else BUY
        loss = profit = None
        if stop_loss is not None:
            loss = self.submit_order(
                exit_side, quantity, STOP, stop_price=stop_loss, parent_order_id=entry
            )
        if take_profit is not None:
            profit = self.submit_order(
                exit_side, quantity, LIMIT, limit_price=take_profit, parent_order_id=entry
            )
        return BracketOrders(entry, loss, profit)

    def cancel_bracket(self, bracket: BracketOrders) -> None:
        """Cancel what of ``bracket`` still works: its exits, then its entry (a strategy
        that closes the position by other orders cancels the bracket first)."""
        for order_id in (bracket.stop_loss, bracket.take_profit, bracket.entry):
            if order_id is not None and order_id in self.open_orders:
                self.cancel_order(order_id)

    def cancel_order(self, order_id: str) -> None:
        """Ask the broker to cancel a working order."""
        self._bus.publish(CancelOrder(**self._command_fields(order_id)))

    def _command_fields(self, order_id: str) -> dict[str, Any]:
        """What every command of this strategy about ``order_id`` carries: stamped now,
        the next sequence number, the order, the strategy and the symbol."""
        now = self._clock.now_ns()
        return {
            "ts_event": now,
            "ts_init": now,
            "seq": self._bus.next_seq(),
            "order_id": order_id,
            "strategy_id": self.strategy_id,
            "symbol": self.symbol,
        }

    def target_position(self, target: float) -> str | None:
        """Send a market order that takes the position to ``target`` (none if already there)."""
        difference = target - self.position
        if difference == 0.0:
            return None
        side = BUY if difference > 0 else SELL
        return self.submit_order(side, abs(difference))


def _checked(owner: str, name: str, default: Any, value: Any) -> Any:
    """``value`` for the parameter ``name`` whose default is ``default``: an int where a
    float is declared becomes a float; another type than the default's is an error."""
    if isinstance(value, bool) != isinstance(default, bool) and default is not None:
        pass  # True is an int to Python, not to a parameter: an error below
    elif default is None or value is None or isinstance(value, type(default)):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(
        f"{owner}.{name} must be a {type(default).__name__} like its default {default!r}, "
        f"got {value!r}"
    )
