"""The MQTT side of the bus: connection settings, the MQTT bus, and the bar publisher.

* :class:`MqttSettings` comes from a URL (``mqtt://user:password@host:1883``,
  ``mqtts://host:8883`` for TLS) plus options (CA file, client certificate,
  skipping host name checks). Clients use QoS 1 and, for a paper run, a
  persistent session (``clean_session=False``) under a client id that is
  stable for the run, so the broker queues bars while the run is down.
* :class:`MqttBus` is the in-process :class:`~engine.core.bus.MessageBus` (same
  synchronous dispatch, so the same handlers run unchanged) that also mirrors
  what it publishes onto ``emarl/<run>/<event>/<symbol>``: the messages wait
  in :attr:`MqttBus.outbox` until the asyncio shell sends them, after the bar
  that produced them is committed.
* :mod:`engine.feeds.replay` holds the market-data simulator behind ``emarl publish``.
* :func:`backoff_delays` gives the jittered exponential reconnection delays.

Every aiomqtt or paho exception is translated into :class:`BusError` here or
in :mod:`engine.app.paper`; handlers never see one. A lost connection is reported by
emarl's own one-line warnings: paho's socket errors go to the debug log
(:data:`PAHO_LOG`), and the error a client kept about its lost connection is read
when the client is closed, so asyncio never prints it as "Future exception was
never retrieved".
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import re
import socket
import ssl
from collections.abc import Awaitable, Collection, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import unquote, urlsplit

import aiomqtt

from engine.core.bus import ANY, MessageBus, topic
from engine.core.errors import BusError, ConfigError
from engine.core.events import Bar, Message
from engine.core.wire import pack

if TYPE_CHECKING:
    import aiomqtt


__all__ = [
    "DEFAULT_URL",
    "MqttBus",
    "MqttSettings",
    "backoff_delays",
    "connect_client",
]

log = logging.getLogger("emarl.mqtt")
T = TypeVar("T")
#: paho-mqtt's own messages, every one at DEBUG ("failed to receive on socket" and the
#: like are the lost connections that emarl reports once, with what it does next)
PAHO_LOG = "emarl.mqtt.paho"


class _DebugOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that files every message at DEBUG."""

    def log(self, level: int, msg: object, *args: object, **kwargs: object) -> None:
        super().log(logging.DEBUG, msg, *args, **kwargs)  # type: ignore[arg-type]


DEFAULT_URL = "mqtt://127.0.0.1:1883"
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


def check_name(kind: str, name: str) -> str:
    """A run or feed name is one MQTT topic level: letters, digits, ``._-``."""
    if not _NAME.match(name):
        raise ConfigError(
            f"{kind} name {name!r} cannot be an MQTT topic level; use 1-100 letters, "
            "digits, '.', '_' or '-'"
        )
    return name


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    keepalive: int = 30

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        tls_insecure: bool = False,
    ) -> MqttSettings:
        """Settings from ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...``.

        Options given separately override the URL's user and password.
        """
        parts = urlsplit(url)
        shown = _without_password(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(
                f"--bus {shown!r}: expected mqtt://host:port or mqtts://host:port "
                "(for example mqtt://127.0.0.1:1883)"
            )
        tls = parts.scheme in ("mqtts", "ssl") or ca_file is not None
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(
                f"--bus {shown!r}: the port is not a number (a password with '@', ':' or '/' "
                "must be percent-encoded, or given with --password)"
            ) from None
        if not parts.hostname:
            raise ConfigError(f"--bus {shown!r}: no host name")
        return cls(
            host=parts.hostname,
            port=port,
            username=username or (unquote(parts.username) if parts.username else None),
            password=password or (unquote(parts.password) if parts.password else None),
            tls=tls,
            ca_file=ca_file,
            cert_file=cert_file,
            key_file=key_file,
            tls_insecure=tls_insecure,
        )

    def describe(self) -> str:
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.cert_file:
                context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"TLS settings for {self.describe()}: {exc}") from None
        if self.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        context.sslsocket_class = _ClosingSSLSocket
        return context


class _ClosingSSLSocket(ssl.SSLSocket):
    """Closes itself when its handshake fails (an unknown CA, another host name).

    paho-mqtt drops such a socket without closing it, leaving a file descriptor to
    the garbage collector; a paper run retrying a broker would pile them up.
    """

    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def _without_password(url: str) -> str:
    """``url`` for messages: everything between ``://`` and the last ``@`` becomes the
    user name alone (``user:***``)."""
    scheme, separator, rest = url.partition("://")
    credentials, at, location = rest.rpartition("@")
    if not separator or not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{location}" if ":" in credentials else url


def make_client(
    settings: MqttSettings,
    *,
    client_id: str | None = None,
    persistent: bool = False,
    manual_ack: bool = False,
    will: aiomqtt.Will | None = None,
) -> aiomqtt.Client:
    """An aiomqtt client (not yet connected).

    With ``manual_ack`` a received QoS 1 message is acknowledged only when
    :func:`ack` is called, after the bar it carries is committed: a process
    killed before that gets the message again from the broker. aiomqtt has no
    public switch for this, so it is set on the paho client it wraps. ``will`` is what
    the broker publishes when the connection is lost.
    """

    client = aiomqtt.Client(
        settings.host,
        settings.port,
        username=settings.username,
        password=settings.password,
        identifier=client_id,
        clean_session=not persistent,
        will=will,
        keepalive=settings.keepalive,
        tls_context=settings.tls_context(),
        tls_insecure=settings.tls_insecure if settings.tls else None,
        timeout=10.0,
        # Small packets (acknowledgements, one bar) go out at once, not after a delayed ACK.
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        logger=_DebugOnly(logging.getLogger(PAHO_LOG), {}),  # type: ignore[arg-type]
    )
    # Many QoS 1 publishes in flight are normal here; aiomqtt warns above 10.
    client.pending_calls_threshold = 1_000_000
    _fail_connect_on_close(client)
    if manual_ack:
        paho = getattr(client, "_client", None)
        if paho is None or not hasattr(paho, "manual_ack_set"):
            raise BusError("this aiomqtt version does not expose manual acknowledgements")
        paho.manual_ack_set(True)
    return client


def _fail_connect_on_close(client: aiomqtt.Client) -> None:
    """End a connection attempt as soon as the broker closes the socket before its CONNACK.

    aiomqtt ignores a disconnect before the CONNACK and waits out its timeout (10 s):
    a plain client on a TLS port would hang, then report "Operation timed out".
    """

    paho = getattr(client, "_client", None)
    loop = getattr(client, "_loop", None)
    if paho is None or loop is None or not hasattr(client, "_connected"):
        return
    forward = paho.on_disconnect

    def fail() -> None:
        connected = client._connected
        # only while a connection attempt waits for its CONNACK (it holds the lock)
        if client._lock.locked() and not connected.done():
            connected.set_exception(
                aiomqtt.MqttError("the broker closed the connection before accepting it")
            )

    def on_disconnect(*args: object) -> None:
        if not loop.is_closed():
            loop.call_soon_threadsafe(fail)
        if forward is not None:
            forward(*args)

    paho.on_disconnect = on_disconnect


def _hint(message: str, settings: MqttSettings) -> str:
    """What to check for the common ways a first connection fails."""
    lowered = message.lower()
    if "not authorized" in lowered or "bad user name or password" in lowered:
        if settings.username:
            return f"; the broker refused user {settings.username!r}: check the user and password"
        return "; the broker wants a user name and password (mqtt://user:password@host:port)"
    if "hostname mismatch" in lowered:
        return f"; the broker's certificate is not issued for {settings.host!r}: use a name it has"
    if "certificate verify failed" in lowered:
        return (
            "; pass --ca-file with the CA that signed the broker's certificate"
            " (or --tls-insecure to skip the check)"
        )
    if "before accepting it" in lowered and not settings.tls:
        return "; if this is a TLS port, use mqtts:// (and --ca-file)"
    if ("wrong version number" in lowered or "timed out" in lowered) and settings.tls:
        return "; if this port is not TLS, use mqtt://"
    return ""


def ack(client: aiomqtt.Client, mid: int) -> None:
    """Acknowledge a QoS 1 message received with ``manual_ack``."""
    paho = client._client
    paho.ack(mid, 1)


async def connect_client(client: aiomqtt.Client, settings: MqttSettings) -> None:
    """Connect, translating failures into :class:`BusError`."""

    try:
        await client.__aenter__()
    except aiomqtt.MqttError as exc:
        message = str(exc)
        raise BusError(
            f"cannot connect to {settings.describe()}: {message}{_hint(message, settings)}"
        ) from None


async def close_client(client: aiomqtt.Client) -> None:
    """Disconnect (if still connected) and read what the client kept about a lost
    connection, so asyncio does not report it as never retrieved."""

    try:
        await client.__aexit__(None, None, None)
    except (aiomqtt.MqttError, OSError, RuntimeError) as exc:
        log.debug("closing the MQTT connection: %s", exc)
    disconnected = getattr(client, "_disconnected", None)
    if (
        isinstance(disconnected, asyncio.Future)
        and disconnected.done()
        and not disconnected.cancelled()
        and disconnected.exception() is not None
    ):
        log.debug("the connection had ended with: %s", disconnected.exception())


def quiet_socket_races() -> None:
    """Keep the running loop from printing tracebacks for races of a closing socket.

    When the broker goes away while paho is sending, aiomqtt may ask the loop to watch
    a socket that paho closed meanwhile ("Exception in callback ... add_writer ...:
    Bad file descriptor"); emarl reports the lost connection itself and reconnects.
    Other errors reach the loop's handler unchanged. Installed only on a loop that has
    no handler of its own.
    """
    loop = asyncio.get_running_loop()
    if loop.get_exception_handler() is not None:
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        error = context.get("exception")
        handle = repr(context.get("handle", ""))
        if (
            isinstance(error, OSError)
            and error.errno == errno.EBADF
            and ("add_writer" in handle or "add_reader" in handle)
        ):
            log.debug("the socket closed before the loop watched it: %s", error)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


async def until_disconnected(client: aiomqtt.Client, awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``, or raise :class:`aiomqtt.MqttError` as soon as the client loses
    its connection (aiomqtt leaves pending publishes waiting for their 10 s timeout)."""

    task = asyncio.ensure_future(awaitable)
    disconnected = getattr(client, "_disconnected", None)
    if not isinstance(disconnected, asyncio.Future):
        return await task
    done, _ = await asyncio.wait({task, disconnected}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
        await task
    raise aiomqtt.MqttError("the broker closed the connection")


def backoff_delays(
    first: float = 0.2, factor: float = 2.0, cap: float = 10.0, rng: random.Random | None = None
) -> Iterator[float]:
    """Reconnection delays: exponential up to ``cap``, each drawn from [d/2, d]."""
    draw = rng or random.Random()
    delay = first
    while True:
        yield draw.uniform(delay / 2.0, delay)
        delay = min(delay * factor, cap)


class MqttBus(MessageBus):
    """The in-process bus whose published messages are also sent to MQTT.

    Dispatch is the in-process bus's: synchronous, in subscription order. Each
    published message of an exported type is packed (:func:`engine.core.wire.pack`)
    into :attr:`outbox` as ``(topic, payload)``; the asyncio shell sends the
    outbox with QoS 1 and clears it. ``export`` limits the types sent
    (default: every type except :class:`~engine.core.events.Bar`, which the feed
    already carries).
    """

    def __init__(
        self,
        run: str,
        *,
        export: Collection[type[Message]] | None = None,
        first_seq: int = 1,
    ) -> None:
        super().__init__(first_seq)
        self.run = run
        self.outbox: list[tuple[str, bytes]] = []
        self._export = None if export is None else frozenset(export)
        self._topics: dict[tuple[type[Message], str], str] = {}
        self.subscribe(ANY, self._mirror)

    def _mirror(self, message: Message) -> None:
        message_type = type(message)
        if self._export is None:
            if message_type is Bar:
                return
        elif message_type not in self._export:
            return
        symbol: str = getattr(message, "symbol", "all")
        key = (message_type, symbol)
        name = self._topics.get(key)
        if name is None:
            name = self._topics[key] = topic(self.run, message_type, symbol)
        self.outbox.append((name, pack(self.run, message.seq, message)))
