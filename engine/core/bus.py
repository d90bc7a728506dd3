"""The message bus: topic subscriptions with synchronous, deterministic dispatch.

A handler subscribes to a message type (or ``"*"`` for every type) and,
optionally, one symbol. :meth:`MessageBus.publish` calls the matching handlers
at once, in the order they subscribed, before it returns: a handler that
publishes in turn has its message delivered (depth first) before the next
handler of the outer message runs. There is no task switch per message; the
asyncio shell (:mod:`engine.app.backtest`) only moves messages in and out.

Topics are ``emarl/<run>/<event>/<symbol>`` (see :func:`topic`); the MQTT
bus implements the same interface over a broker.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from engine.core.errors import BusError, HandlerError
from engine.core.events import Message, event_name

__all__ = ["ANY", "Bus", "Handler", "MessageBus", "topic"]

ANY = "*"
Handler = Callable[[Any], None]


def topic(run: str, message_type: type[Message], symbol: str) -> str:
    """The MQTT-style topic of a message: ``emarl/<run>/<event>/<symbol>``."""
    return f"emarl/{run}/{event_name(message_type)}/{symbol}"


class Bus(Protocol):
    """What handlers may rely on, whatever carries the messages."""

    def subscribe(
        self, message_type: type[Message] | str, handler: Handler, symbol: str = ANY
    ) -> None: ...

    def publish(self, message: Message) -> None: ...

    def next_seq(self) -> int: ...


class MessageBus:
    """In-process bus. Deterministic: same subscriptions, same publishes, same calls."""

    def __init__(self, first_seq: int = 1) -> None:
        self._subscriptions: list[tuple[type[Message] | str, str, Handler]] = []
        # type -> handlers, or type -> {symbol: handlers} when a subscription names a symbol
        self._routes: dict[type[Message], Any] = {}
        self._counter = itertools.count(first_seq)
        self.next_seq: Callable[[], int] = self._counter.__next__

    def subscribe(
        self, message_type: type[Message] | str, handler: Handler, symbol: str = ANY
    ) -> None:
        """Call ``handler(message)`` for every published message of that type and symbol."""
        if not callable(handler):
            raise BusError(f"handler for {message_type!r} is not callable: {handler!r}")
        if isinstance(message_type, str) and message_type != ANY:
            raise BusError(f"subscribe takes a message type or {ANY!r}, got {message_type!r}")
        self._subscriptions.append((message_type, symbol, handler))
        self._routes.clear()

    def unsubscribe(self, handler: Handler) -> None:
        """Remove every subscription of ``handler``."""
        self._subscriptions = [s for s in self._subscriptions if s[2] != handler]
        self._routes.clear()

    def _handlers(self, message_type: type[Message], symbol: str) -> tuple[Handler, ...]:
        return tuple(
            handler
            for sub_type, sub_symbol, handler in self._subscriptions
            if (sub_type is message_type or sub_type == ANY) and sub_symbol in (ANY, symbol)
        )

    def _route(self, message: Message) -> tuple[Handler, ...]:
        message_type = type(message)
        route = self._routes.get(message_type)
        if route is None:
            by_symbol = any(
                (sub_type is message_type or sub_type == ANY) and sub_symbol != ANY
                for sub_type, sub_symbol, _ in self._subscriptions
            )
            route = {} if by_symbol else self._handlers(message_type, ANY)
            self._routes[message_type] = route
        if isinstance(route, dict):
            symbol: str = getattr(message, "symbol", ANY)
            handlers: tuple[Handler, ...] | None = route.get(symbol)
            if handlers is None:
                handlers = route[symbol] = self._handlers(message_type, symbol)
            return handlers
        return tuple(route)

    def publish(self, message: Message) -> None:
        """Deliver ``message`` to its subscribers now, in subscription order."""
        route = self._routes.get(type(message))
        if route.__class__ is not tuple:
            route = (route.get(message.symbol) if route else None) or self._route(message)  # type: ignore[attr-defined]
        for handler in route:
            try:
                handler(message)
            except HandlerError:
                raise
            except Exception as exc:
                name = getattr(handler, "__qualname__", repr(handler))
                raise HandlerError(
                    f"{name} raised {type(exc).__name__} on {event_name(type(message))} "
                    f"seq={message.seq} ts_event={message.ts_event}: {exc}"
                ) from exc

    def reset_sequence(self, next_seq: int) -> None:
        """Continue numbering at ``next_seq`` (used when a run resumes)."""
        self._counter = itertools.count(next_seq)
        self.next_seq = self._counter.__next__
