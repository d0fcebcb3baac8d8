"""``amqp://`` and ``amqps://``: RabbitMQ through aio-pika (at least once, durable queues).

URL: ``amqp://user:password@host:5672/vhost?option=value`` (``amqps://`` for TLS, port
5671 by default). The user name and password are taken from the URL (``guest``/``guest``
when neither is given; an empty password when only a user is given). The path is the
virtual host, percent-decoded: an empty path means the default vhost ``/``, and
``%2F`` is ``/`` as well. With several hosts (``amqp://a,b``) they are tried in order
until one accepts the connection; a refused password stops the search at once.

How brokerkit maps onto RabbitMQ:

* **Routing.** Every message is published to one durable *topic exchange* (option
  ``exchange``, default ``brokerkit``) with the brokerkit topic as routing key.
  Subscribe patterns become binding keys: ``*`` stays ``*`` and ``a.>`` becomes
  ``a.*.#`` (AMQP's ``#`` alone would also match zero tokens).
* **Publishing.** The publishing channel uses publisher confirms: :meth:`publish`
  returns once RabbitMQ confirmed the message, which it does after the message is
  stored in every queue it was routed to (persistent delivery mode, so durable queues
  keep it across a broker restart). A message that **no queue is bound for is dropped
  by RabbitMQ** (``mandatory=False``) and the publish still succeeds: that is the
  topic-exchange semantics, and why ``start="earliest"`` (REPLAY) is not offered.
* **Subscriptions.** Each subscription has its own channel, with a prefetch
  (``basic.qos``) equal to ``max_in_flight``, and one queue:

  - a plain subscription: a server-named, exclusive, auto-delete classic queue, deleted
    on unsubscribe;
  - ``queue=NAME``: a shared *quorum* queue named ``queue:NAME:<pattern>@<exchange>``
    that all members consume from (each message to exactly one member). Being
    non-durable in brokerkit's sense, it expires (``x-expires``) ``queue_expires``
    seconds after its last member left;
  - ``durable=NAME`` (optionally with ``queue``): a durable quorum queue named
    ``durable:NAME[:queue:Q]:<pattern>@<exchange>`` that stays bound while nobody
    consumes, so it collects what is published meanwhile; it never expires unless the
    ``durable_expires`` option says so. Delete it with RabbitMQ tools when it is no
    longer wanted (:func:`queue_name` gives its name).

* **Attempts.** Quorum queues count returned deliveries in ``x-delivery-count``:
  ``attempt`` is that plus one, so it counts nacks *and* consumers that went away
  before acking (a message prefetched but not yet handed to the handler when the
  subscription closes counts too). An exclusive queue has only one consumer, this
  subscription, which therefore counts redeliveries itself (the ``redelivered`` flag
  marks them). ``nack`` requeues (RabbitMQ puts the message back in its place);
  ``max_deliver`` and ``dead_letter`` are applied by brokerkit's core, not by
  ``x-delivery-limit``.
* **Message fields.** ``id`` is the AMQP ``message_id``, ``timestamp`` the AMQP
  ``timestamp`` (whole seconds, for other clients) plus the exact float in the header
  ``x-bk-ts``, ``key`` the header ``x-bk-key``; the body is carried as is. User headers
  are AMQP headers of the same name, except names starting with ``x-bk-`` or used by
  RabbitMQ itself (``x-delivery-count``, ``x-death``...), which travel as
  ``x-bk-h-<name>`` so they come back unchanged.
* **Unsubscribe / disconnect** cancel the consumer and close its channel: RabbitMQ
  returns every unacked message to its queue. The connection is not re-established
  automatically if it is lost; publishes then fail with :class:`PublishError` and
  subscriptions stop receiving (a warning is logged). The same happens to one
  subscription whose delivery stays unacked longer than RabbitMQ's
  ``consumer_timeout`` (30 minutes by default): RabbitMQ closes its channel.

Options: ``exchange``, ``queue_expires``, ``durable_expires``, ``publish_timeout``,
``heartbeat``, and for ``amqps://`` ``ssl_ca``, ``ssl_cert``, ``ssl_key``,
``ssl_verify`` (see :data:`OPTIONS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import (
    AuthenticationError,
    BrokerConnectionError,
    InvalidOptionError,
    SubscribeError,
)
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import OptionSpec, SubscribeOptions, as_bool, as_float, as_int
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.topics import pattern_to_amqp
from brokerkit.core.url import BrokerURL

if TYPE_CHECKING:
    import ssl

    from aio_pika.abc import (
        AbstractChannel,
        AbstractConnection,
        AbstractExchange,
        AbstractIncomingMessage,
        AbstractQueue,
    )

log = logging.getLogger("brokerkit.rabbitmq")

#: Header carrying the message key.
KEY_HEADER = "x-bk-key"
#: Header carrying the exact float timestamp (the AMQP property has whole seconds).
TIMESTAMP_HEADER = "x-bk-ts"
#: Header carrying a message id too long for the AMQP ``message_id`` property.
ID_HEADER = "x-bk-id"
#: Prefix of user headers whose own name is reserved (by brokerkit or RabbitMQ).
ESCAPED_PREFIX = "x-bk-h-"
_INTERNAL_PREFIX = "x-bk-"
#: Headers RabbitMQ adds itself; user headers of these names are escaped.
RABBITMQ_HEADERS = frozenset(
    {
        "x-delivery-count",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "x-received-from",
        "x-stream-offset",
    }
)
_MAX_SHORTSTR = 255
_PUBLISH_WINDOW = 500  # publishes awaiting a confirm at once in publish_many


_AMQP_NAME = re.compile(r"[A-Za-z0-9_.:@#,/+-]{1,127}")


def _exchange_name(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    if not _AMQP_NAME.fullmatch(value):
        raise ValueError("expected 1 to 127 ASCII letters, digits or any of _ . : @ # , / + -")
    return value


def _path(value: object) -> object:
    if not isinstance(value, str) or not value:
        raise TypeError("expected a file path")
    return value


_COMMON_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "exchange",
        _exchange_name,
        "brokerkit",
        "the durable topic exchange every topic is published to",
    ),
    OptionSpec(
        "queue_expires",
        as_float(0.001),
        60.0,
        "seconds a shared (queue=) quorum queue lives on after its last member left",
    ),
    OptionSpec(
        "durable_expires",
        as_float(0.0),
        0.0,
        "seconds a durable queue lives on unused before RabbitMQ deletes it (0: forever)",
    ),
    OptionSpec(
        "publish_timeout",
        as_float(0.001),
        30.0,
        "seconds a publish waits for RabbitMQ's confirm before PublishError",
    ),
    OptionSpec("heartbeat", as_int(0, 65535), 60, "AMQP heartbeat in seconds (0: off)"),
)

_TLS_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("ssl_ca", _path, None, "CA bundle (PEM) that verifies the server"),
    OptionSpec("ssl_cert", _path, None, "client certificate (PEM) for mutual TLS"),
    OptionSpec("ssl_key", _path, None, "private key (PEM) of ssl_cert"),
    OptionSpec("ssl_verify", as_bool, True, "verify the server certificate and host name"),
)

#: Options of ``amqps://`` (``amqp://`` has all but the ``ssl_*`` ones).
OPTIONS = _COMMON_OPTIONS + _TLS_OPTIONS


def vhost_of(url: BrokerURL) -> str:
    """The virtual host a URL names: its decoded path, ``/`` when the path is empty.

    ``amqp://h/`` and ``amqp://h`` give ``/``; ``amqp://h/%2F`` gives ``/``;
    ``amqp://h/prod`` gives ``prod``. Pure.
    """
    return url.path or "/"


def queue_name(
    exchange: str, pattern: str, *, queue: str | None = None, durable: str | None = None
) -> str:
    """The RabbitMQ queue name used for a ``queue`` and/or ``durable`` subscription.

    ``durable:NAME[:queue:Q]:<pattern>@<exchange>`` or ``queue:Q:<pattern>@<exchange>``,
    where the pattern's ``*`` is written ``+`` and ``>`` is written ``#`` (AMQP queue
    names may not contain ``*`` or ``>``). A name longer than RabbitMQ's 255 bytes is
    shortened with a hash suffix. Pure. Raises ``ValueError`` if neither ``queue`` nor
    ``durable`` is given.
    """
    if queue is None and durable is None:
        raise ValueError("a plain subscription uses a server-named exclusive queue")
    parts: list[str] = []
    if durable is not None:
        parts += ["durable", durable]
    if queue is not None:
        parts += ["queue", queue]
    written = ".".join(
        "+" if token == "*" else "#" if token == ">" else token for token in pattern.split(".")
    )
    name = ":".join([*parts, written]) + "@" + exchange
    if len(name) > _MAX_SHORTSTR:
        digest = hashlib.sha256(name.encode()).hexdigest()[:24]
        name = f"{name[: _MAX_SHORTSTR - 25]},{digest}"
    return name


# --- message encoding ----------------------------------------------------------------


def _user_header_name(name: str) -> str:
    if name.startswith(_INTERNAL_PREFIX) or name in RABBITMQ_HEADERS:
        return ESCAPED_PREFIX + name
    return name


def _encode_headers(message: Message) -> dict[str, Any]:
    headers: dict[str, Any] = {_user_header_name(k): v for k, v in message.headers.items()}
    headers[TIMESTAMP_HEADER] = repr(message.timestamp)
    if message.key is not None:
        headers[KEY_HEADER] = message.key
    if len(message.id.encode()) > _MAX_SHORTSTR:
        headers[ID_HEADER] = message.id
    return headers


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _decode(incoming: AbstractIncomingMessage) -> tuple[Message, int | None]:
    """The brokerkit message in ``incoming`` and its ``x-delivery-count`` (if any)."""
    raw: Mapping[str, Any] = incoming.headers or {}
    headers: dict[str, str] = {}
    key: str | None = None
    timestamp: float | None = None
    message_id = incoming.message_id or None
    delivery_count: int | None = None
    for name, value in raw.items():
        if name.startswith(ESCAPED_PREFIX):
            headers[name[len(ESCAPED_PREFIX) :]] = _as_text(value)
        elif name == KEY_HEADER:
            key = _as_text(value) or None
        elif name == TIMESTAMP_HEADER:
            try:
                timestamp = float(_as_text(value))
            except ValueError:
                timestamp = None
        elif name == ID_HEADER:
            message_id = _as_text(value) or message_id
        elif name == "x-delivery-count":
            if isinstance(value, int) and not isinstance(value, bool):
                delivery_count = value
        elif name.startswith(_INTERNAL_PREFIX) or name in RABBITMQ_HEADERS:
            continue
        else:
            text = _as_text(value)
            headers[name] = text.replace("\r", " ").replace("\n", " ").replace("\x00", "")
    if timestamp is None and incoming.timestamp is not None:
        timestamp = incoming.timestamp.timestamp()
    if message_id is not None and not message_id.isprintable():
        message_id = None
    try:
        message = Message(incoming.body, headers, id=message_id, key=key, timestamp=timestamp)
    except Exception:  # a foreign publisher's odd headers: keep the body, drop the rest
        message = Message(incoming.body, None, id=message_id, key=key, timestamp=timestamp)
    return message, delivery_count


# --- deliveries and subscriptions ------------------------------------------------------


class RabbitMQDelivery(Delivery):
    """A delivery from a RabbitMQ queue; ack and nack are ``basic.ack`` / ``basic.nack``.

    ``nack(requeue=True)`` returns the message to its queue for redelivery with
    ``attempt`` + 1. Settling raises :class:`BrokerConnectionError` if the channel is
    gone (RabbitMQ then redelivers the message anyway).
    """

    __slots__ = ("_incoming", "_owner")

    def __init__(
        self,
        owner: RabbitMQSubscription,
        topic: str,
        message: Message,
        attempt: int,
        incoming: AbstractIncomingMessage,
    ) -> None:
        super().__init__(topic, message, attempt)
        self._owner = owner
        self._incoming = incoming

    async def _ack(self) -> None:
        self._owner._forget(self)
        try:
            await self._incoming.ack()
        except Exception as exc:
            raise self._owner.broker.error(BrokerConnectionError, "ack", exc) from None

    async def _nack(self, requeue: bool) -> None:
        if not requeue:
            self._owner._forget(self)
        try:
            await self._incoming.nack(requeue=requeue)
        except Exception as exc:
            raise self._owner.broker.error(BrokerConnectionError, "nack", exc) from None


class RabbitMQSubscription(Subscription):
    """A consumer on one queue, on its own channel; see the module docstring.

    Messages are handed to :meth:`dispatch` one by one, in queue order, by one task.
    """

    def __init__(
        self,
        broker: RabbitMQBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        *,
        channel: AbstractChannel,
        queue: AbstractQueue,
        exclusive: bool,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._channel = channel
        self._queue = queue
        self._exclusive = exclusive
        self._consumer_tag: str | None = None
        self._inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        # Exclusive (classic) queues have no delivery count: this subscription is their
        # only consumer, so it counts redeliveries itself.
        self._attempts: dict[tuple[str, int], int] = {}
        self._task = asyncio.create_task(self._consume())

    @property
    def queue_name(self) -> str:
        """The name of the RabbitMQ queue this subscription consumes."""
        return self._queue.name

    async def _start(self) -> None:
        self._channel.close_callbacks.add(self._on_channel_closed)
        self._consumer_tag = await self._queue.consume(self._on_message)

    def _on_channel_closed(self, _sender: object, exc: BaseException | None = None) -> None:
        if self.active:
            log.warning(
                "the channel of %r was closed by the broker (%s); it receives no more "
                "messages, unacked ones return to the queue",
                self,
                type(exc).__name__ if exc is not None else "connection closed",
            )

    async def _on_message(self, incoming: AbstractIncomingMessage) -> None:
        # No await before the put: aiormq starts one task per message in arrival order,
        # so the inbox keeps queue order.
        self._inbox.put_nowait(incoming)

    def _attempt_of(
        self, message: Message, incoming: AbstractIncomingMessage, count: int | None
    ) -> int:
        if not self._exclusive:
            if count is not None:
                return count + 1
            return 2 if incoming.redelivered else 1
        ident = (message.id, hash(message.body))
        attempt = self._attempts.get(ident, 1) + 1 if incoming.redelivered else 1
        self._attempts[ident] = attempt
        return attempt

    def _forget(self, delivery: Delivery) -> None:
        if self._exclusive:
            self._attempts.pop((delivery.message.id, hash(delivery.message.body)), None)

    async def _consume(self) -> None:
        while True:
            incoming = await self._inbox.get()
            message, count = _decode(incoming)
            topic = incoming.routing_key or self.topic
            delivery = RabbitMQDelivery(
                self, topic, message, self._attempt_of(message, incoming, count), incoming
            )
            if not await self.dispatch(delivery):
                # Closing: leave it unacked; closing the channel returns it to the queue.
                return

    async def _close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        channel = self._channel
        try:
            if not channel.is_closed:
                if self._consumer_tag is not None:
                    await self._queue.cancel(self._consumer_tag)
                if self._exclusive:
                    await self._queue.delete(if_unused=False, if_empty=False)
        finally:
            # Closing the channel returns every unacked message to its queue.
            if not channel.is_closed:
                await channel.close()
            self._attempts.clear()


# --- the broker -------------------------------------------------------------------------


class RabbitMQBroker(Broker):
    """A RabbitMQ connection (aio-pika): one confirming publish channel, one channel
    per subscription. See the module docstring for the mapping and options.

    Publishing and subscribing are safe from many tasks at once; publishes from one
    task reach the exchange in order. Raises :class:`AuthenticationError` when RabbitMQ
    refuses the credentials (the password is never shown).
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._channel_lock = asyncio.Lock()
        self._closing_connection = False
        if options.get("ssl_key") is not None and options.get("ssl_cert") is None:
            raise InvalidOptionError("option ssl_key for amqps:// needs ssl_cert as well")

    @property
    def exchange_name(self) -> str:
        """The topic exchange messages are published to."""
        return str(self.options["exchange"])

    def _ssl_context(self) -> ssl.SSLContext:
        import ssl

        context = ssl.create_default_context(cafile=self.options.get("ssl_ca"))  # type: ignore[arg-type]
        cert = self.options.get("ssl_cert")
        if cert is not None:
            context.load_cert_chain(str(cert), self.options.get("ssl_key"))  # type: ignore[arg-type]
        if not self.options.get("ssl_verify", True):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _connect(self) -> None:
        import aio_pika
        import aiormq.exceptions

        tls = self.url.scheme == "amqps"
        username = self.url.username
        password = self.url.password
        if username is None and password is None:
            username, password = "guest", "guest"
        failure: BrokerConnectionError | None = None
        self._closing_connection = False
        for host, port in self.url.host_ports():
            try:
                connection = await aio_pika.connect(
                    host=host,
                    port=port,
                    login=username or "",
                    password=password or "",
                    virtualhost=vhost_of(self.url),
                    ssl=tls,
                    ssl_context=self._ssl_context() if tls else None,
                    heartbeat=int(self.options["heartbeat"]),  # type: ignore[call-overload]
                    client_properties={"connection_name": "brokerkit"},
                )
            except (
                aiormq.exceptions.AuthenticationError,
                aiormq.exceptions.ProbableAuthenticationError,
            ) as exc:
                failure = self.error(AuthenticationError, f"authenticate as {username!r}", exc)
                break
            except (
                aiormq.exceptions.ConnectionNotAllowed,
                aiormq.exceptions.InvalidFrameError,
            ) as exc:
                if isinstance(exc, aiormq.exceptions.InvalidFrameError) and (
                    "OpenOk" not in str(exc)
                ):
                    failure = self.error(BrokerConnectionError, f"connect to {host}:{port}", exc)
                    continue
                # RabbitMQ answers connection.open with connection.close: the vhost is
                # unknown or the user may not use it. Every node would say the same.
                failure = BrokerConnectionError(
                    f"connect to {self.url.redacted()} failed: RabbitMQ refused to open the "
                    f"virtual host {vhost_of(self.url)!r} (it does not exist, or the user "
                    f"{username!r} has no access to it)"
                )
                break
            except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
                failure = self.error(BrokerConnectionError, f"connect to {host}:{port}", exc)
                continue
            self._connection = connection
            failure = None
            break
        if failure is not None:
            # Raised outside the except blocks so no client exception is chained.
            raise failure
        assert self._connection is not None
        self._connection.close_callbacks.add(self._on_connection_closed)
        await self._open_publish_channel()

    def _on_connection_closed(self, _sender: object, exc: BaseException | None = None) -> None:
        if not self._closing_connection:
            log.warning(
                "the connection to %s was lost; subscriptions stop receiving and "
                "publishes fail until the broker is reconnected",
                self.url.redacted(),
            )

    async def _open_publish_channel(self) -> AbstractExchange:
        import aio_pika

        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=False)
        try:
            exchange = await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            if not channel.is_closed:
                await channel.close()
            raise
        self._channel, self._exchange = channel, exchange
        return exchange

    async def _live_exchange(self) -> AbstractExchange:
        exchange, channel = self._exchange, self._channel
        if exchange is not None and channel is not None and not channel.is_closed:
            return exchange
        async with self._channel_lock:
            if self._channel is not None and not self._channel.is_closed:
                assert self._exchange is not None
                return self._exchange
            if self._connection is None or self._connection.is_closed:
                raise BrokerConnectionError(
                    f"the connection to {self.url.redacted()} is closed; reconnect the broker"
                )
            return await self._open_publish_channel()

    async def _disconnect(self) -> None:
        self._closing_connection = True
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def _amqp_message(self, message: Message) -> Any:
        import aio_pika

        return aio_pika.Message(
            message.body,
            headers=_encode_headers(message),
            message_id=message.id if len(message.id.encode()) <= _MAX_SHORTSTR else None,
            timestamp=message.timestamp,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def _publish(self, topic: str, message: Message) -> None:
        exchange = await self._live_exchange()
        await exchange.publish(
            self._amqp_message(message),
            routing_key=topic,
            mandatory=False,
            timeout=float(self.options["publish_timeout"]),  # type: ignore[arg-type]
        )

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        exchange = await self._live_exchange()
        timeout = float(self.options["publish_timeout"])  # type: ignore[arg-type]
        # One channel writes frames in the order the publishes start, so concurrent
        # publishes keep their order; confirms are awaited a window at a time.
        for start in range(0, len(messages), _PUBLISH_WINDOW):
            window = messages[start : start + _PUBLISH_WINDOW]
            results = await asyncio.gather(
                *(
                    exchange.publish(
                        self._amqp_message(m), routing_key=topic, mandatory=False, timeout=timeout
                    )
                    for m in window
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        if self._connection is None or self._connection.is_closed:
            raise BrokerConnectionError(
                f"the connection to {self.url.redacted()} is closed; reconnect the broker"
            )
        channel = await self._connection.channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=options.max_in_flight)
            exchange = await channel.declare_exchange(self.exchange_name, "topic", durable=True)
            exclusive = options.queue is None and options.durable is None
            if exclusive:
                queue = await channel.declare_queue(
                    None, durable=False, exclusive=True, auto_delete=True
                )
            else:
                arguments: dict[str, Any] = {"x-queue-type": "quorum"}
                if options.durable is None:
                    expires = float(self.options["queue_expires"])  # type: ignore[arg-type]
                else:
                    expires = float(self.options["durable_expires"])  # type: ignore[arg-type]
                if expires > 0:
                    arguments["x-expires"] = max(1, round(expires * 1000))
                name = queue_name(
                    self.exchange_name, topic, queue=options.queue, durable=options.durable
                )
                queue = await channel.declare_queue(
                    name, durable=True, exclusive=False, auto_delete=False, arguments=arguments
                )
            await queue.bind(exchange, routing_key=pattern_to_amqp(topic))
            subscription = RabbitMQSubscription(
                self, topic, handler, options, channel=channel, queue=queue, exclusive=exclusive
            )
        except BaseException as exc:
            if not channel.is_closed:
                try:
                    await channel.close()
                except Exception:
                    log.debug("closing a failed subscription's channel raised", exc_info=True)
            if isinstance(exc, Exception) and not isinstance(exc, SubscribeError):
                raise self.error(SubscribeError, f"subscribe to {topic!r}", exc) from None
            raise
        try:
            await subscription._start()
        except BaseException as exc:
            # Stops its tasks and closes the channel (deleting an exclusive queue).
            try:
                await subscription.unsubscribe()
            except Exception:
                log.debug("closing a failed subscription raised", exc_info=True)
            if isinstance(exc, Exception):
                raise self.error(SubscribeError, f"subscribe to {topic!r}", exc) from None
            raise
        return subscription


# PERSISTENT: a durable quorum queue keeps (on disk) what is published while its
# subscriber is away, which is what durable resume rests on. A message no queue is bound
# for is still dropped, hence no REPLAY.
_CAPABILITIES = frozenset(
    {
        Capability.PERSISTENT,
        Capability.QUEUE_GROUPS,
        Capability.ACK,
        Capability.DURABLE,
        Capability.DEAD_LETTER,
        Capability.ORDERING_PER_KEY,
        Capability.HEADERS,
        Capability.WILDCARDS,
    }
)

AMQP = SchemeSpec(
    scheme="amqp",
    factory=RabbitMQBroker,
    capabilities=_CAPABILITIES,
    description="RabbitMQ via aio-pika: topic exchange, at least once, durable quorum queues",
    options=_COMMON_OPTIONS,
    requires=("aio_pika",),
    extra="rabbitmq",
    default_port=5672,
)

AMQPS = SchemeSpec(
    scheme="amqps",
    factory=RabbitMQBroker,
    capabilities=_CAPABILITIES,
    description="RabbitMQ over TLS via aio-pika",
    options=OPTIONS,
    requires=("aio_pika",),
    extra="rabbitmq",
    default_port=5671,
)


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The ``amqp://`` and ``amqps://`` schemes."""
    return [AMQP, AMQPS]
