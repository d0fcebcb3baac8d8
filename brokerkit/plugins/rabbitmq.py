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
  :meth:`publish_many` sends its messages in order with up to 1000 (``PUBLISH_WINDOW``)
  awaiting their confirm at once, and returns once every one is confirmed.
* **Subscriptions.** Each subscription has its own channel, with a prefetch
  (``basic.qos`` ``prefetch_count``) of ``max(prefetch, max_in_flight)`` (option
  ``prefetch``, 1 to 10000, default 100), and one queue:

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
* **Prefetch.** RabbitMQ sends a subscription up to ``max(prefetch, max_in_flight)``
  messages ahead of their acks; handler concurrency stays bounded by ``max_in_flight``.
  A large prefetch keeps the consumer busy (no round trip to RabbitMQ between one ack
  and the next message), at a price: one consumer holds up to that many unacked
  messages, which the other members of a ``queue=`` group cannot take until it acks
  them or goes away; a message prefetched but not yet handled when the subscription
  closes is returned to the queue (never acked), which a quorum queue counts as an
  attempt; and RabbitMQ's ``consumer_timeout`` runs from the delivery, so prefetch
  times the handler's duration must stay well below it. Use a small ``prefetch``
  (e.g. 1) for slow handlers, above all in a competing group.
* **Unsubscribe / disconnect** cancel the consumer and close its channel: RabbitMQ
  returns every unacked message to its queue, including prefetched ones no handler
  has seen. The connection is not re-established automatically if it is lost;
  publishes then fail with :class:`PublishError` and subscriptions stop receiving (a
  warning is logged). The same happens to one subscription whose delivery stays
  unacked longer than RabbitMQ's ``consumer_timeout`` (30 minutes by default):
  RabbitMQ closes its channel.

Options: ``exchange``, ``queue_expires``, ``durable_expires``, ``publish_timeout``,
``heartbeat``, ``prefetch``, and for ``amqps://`` ``ssl_ca``, ``ssl_cert``, ``ssl_key``,
``ssl_verify`` (see :data:`OPTIONS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

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

    import aiormq
    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractQueue
    from aiormq.abc import DeliveredMessage

log = logging.getLogger("brokerkit.rabbitmq")

#: Header carrying the message key.
KEY_HEADER = "x-bk-key"
#: Header carrying the exact float timestamp (the AMQP property has whole seconds).
TIMESTAMP_HEADER = "x-bk-ts"
#: Header carrying a message id too long for the AMQP ``message_id`` property.
ID_HEADER = "x-bk-id"
#: Prefix of user headers whose own name is reserved (by brokerkit or RabbitMQ).
ESCAPED_PREFIX = "x-bk-h-"
_ESCAPED_LEN = len(ESCAPED_PREFIX)
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
#: Publishes awaiting their confirm at once in ``publish_many`` (as the raw benchmark).
PUBLISH_WINDOW = 1000
#: Default and largest value of the ``prefetch`` option.
DEFAULT_PREFETCH = 100
MAX_PREFETCH = 10000
_PERSISTENT = 2  # AMQP delivery_mode


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
    OptionSpec(
        "prefetch",
        as_int(1, MAX_PREFETCH),
        DEFAULT_PREFETCH,
        "unacked messages RabbitMQ sends a subscription ahead: max(prefetch, max_in_flight)",
    ),
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


def _id_is_long(message_id: str) -> bool:
    """True if ``message_id`` does not fit the AMQP ``message_id`` (a shortstr)."""
    # 63 code points are at most 252 UTF-8 bytes: short ids need no encode.
    return len(message_id) > 63 and len(message_id.encode()) > _MAX_SHORTSTR


def _encode_headers(message: Message, long_id: bool) -> dict[str, Any]:
    """The AMQP headers of ``message``, as one dict built once.

    User headers (reserved names escaped as ``x-bk-h-<name>``), the exact timestamp
    (``x-bk-ts``, the envelope marker), the key (``x-bk-key``) if any and, when
    ``long_id``, the id (``x-bk-id``). Pure.
    """
    user = message.headers
    if user:
        headers: dict[str, Any] = {_user_header_name(k): v for k, v in user.items()}
        headers[TIMESTAMP_HEADER] = repr(message.timestamp)
    else:
        headers = {TIMESTAMP_HEADER: repr(message.timestamp)}
    key = message.key
    if key is not None:
        headers[KEY_HEADER] = key
    if long_id:
        headers[ID_HEADER] = message.id
    return headers


def _as_text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _decode(delivered: DeliveredMessage) -> tuple[Message, int | None]:
    """The brokerkit message in ``delivered`` and its ``x-delivery-count`` (if any).

    A message carrying brokerkit's envelope marker (``x-bk-ts``) was validated when it
    was published and is rebuilt without validation (:meth:`Message.trusted`); anything
    else goes through the validating path, which drops what brokerkit cannot carry.
    """
    properties = delivered.header.properties
    raw = properties.headers
    if raw:
        stamp = raw.get(TIMESTAMP_HEADER)
        if type(stamp) is str:
            own = _decode_own(delivered.body, raw, properties.message_id, stamp)
            if own is not None:
                return own
    return _decode_foreign(delivered.body, raw or {}, properties.message_id, properties.timestamp)


def _decode_own(
    body: bytes, raw: Mapping[str, Any], message_id: str | None, stamp: str
) -> tuple[Message, int | None] | None:
    """Decode brokerkit's own envelope; ``None`` if it is not quite that (then the
    validating path decides)."""
    try:
        timestamp = float(stamp)
    except ValueError:
        return None
    headers: dict[str, str] = {}
    key: str | None = None
    count: int | None = None
    for name, value in raw.items():
        if type(value) is not str:
            if name == "x-delivery-count":
                if type(value) is int:
                    count = value
            elif not (name.startswith(_INTERNAL_PREFIX) or name in RABBITMQ_HEADERS):
                return None  # a user header brokerkit did not write
        elif name.startswith(_INTERNAL_PREFIX):
            if name.startswith(ESCAPED_PREFIX):
                headers[name[_ESCAPED_LEN:]] = value
            elif name == KEY_HEADER:
                key = value or None
            elif name == ID_HEADER:
                message_id = value
        elif name not in RABBITMQ_HEADERS:
            headers[name] = value
    if not message_id or not message_id.isprintable():
        return None
    return Message.trusted(body, headers, message_id, key, timestamp), count


def _decode_foreign(
    body: bytes, raw: Mapping[str, Any], message_id: str | None, stamp: datetime | None
) -> tuple[Message, int | None]:
    headers: dict[str, str] = {}
    key: str | None = None
    timestamp: float | None = None
    message_id = message_id or None
    delivery_count: int | None = None
    for name, value in raw.items():
        if name.startswith(ESCAPED_PREFIX):
            headers[name[_ESCAPED_LEN:]] = _as_text(value)
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
    if timestamp is None and stamp is not None:
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        timestamp = stamp.timestamp()
    if message_id is not None and not message_id.isprintable():
        message_id = None
    try:
        message = Message(body, headers, id=message_id, key=key, timestamp=timestamp)
    except Exception:  # a foreign publisher's odd headers: keep the body, drop the rest
        message = Message(body, None, id=message_id, key=key, timestamp=timestamp)
    return message, delivery_count


# --- deliveries and subscriptions ------------------------------------------------------


class RabbitMQDelivery(Delivery):
    """A delivery from a RabbitMQ queue; ack and nack are ``basic.ack`` / ``basic.nack``
    of its delivery tag on the subscription's channel.

    ``nack(requeue=True)`` returns the message to its queue for redelivery with
    ``attempt`` + 1. The frame is handed to the connection's writer without waiting for
    it to be written (AMQP does not answer acks). Settling raises
    :class:`BrokerConnectionError` if the channel is already closed (RabbitMQ then
    redelivers the message anyway).
    """

    __slots__ = ("_owner", "_tag")

    def __init__(
        self,
        owner: RabbitMQSubscription,
        topic: str,
        message: Message,
        attempt: int,
        tag: int,
    ) -> None:
        super().__init__(topic, message, attempt)
        self._owner = owner
        self._tag = tag

    async def _ack(self) -> None:
        owner = self._owner
        if self.attempt > 1:
            owner._forget(self)
        try:
            # wait=False: queued for the connection's writer, not waited for. AMQP has no
            # reply to an ack either way; an ack lost with the connection means a
            # redelivery, as it would had the handler not finished.
            await owner._raw.basic_ack(self._tag, wait=False)
        except Exception as exc:
            raise owner.broker.error(BrokerConnectionError, "ack", exc) from None

    async def _nack(self, requeue: bool) -> None:
        owner = self._owner
        if not requeue and self.attempt > 1:
            owner._forget(self)
        try:
            await owner._raw.basic_nack(self._tag, requeue=requeue, wait=False)
        except Exception as exc:
            raise owner.broker.error(BrokerConnectionError, "nack", exc) from None


class RabbitMQSubscription(Subscription):
    """A consumer on one queue, on its own channel; see the module docstring.

    RabbitMQ sends up to ``prefetch_count`` (``max(prefetch, max_in_flight)``) messages
    ahead; they are handed to :meth:`dispatch` one by one, in queue order, by one task.
    Those not yet handed over when the subscription closes are never acked: closing the
    channel returns them to the queue.
    """

    def __init__(
        self,
        broker: RabbitMQBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        *,
        channel: AbstractChannel,
        raw: aiormq.Channel,
        queue: AbstractQueue,
        exclusive: bool,
        prefetch_count: int,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._channel = channel
        self._raw = raw
        self._queue = queue
        self._exclusive = exclusive
        self._consumer_tag: str | None = None
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        # Exclusive (classic) queues have no delivery count: this subscription is their
        # only consumer, so it counts redeliveries itself (only those: a message seen
        # for the first time is attempt 1 without a record).
        self._attempts: dict[tuple[str, int], int] = {}
        self.prefetch_count = prefetch_count
        """The ``basic.qos`` prefetch count of this subscription's channel."""
        self._task = asyncio.create_task(self._consume())

    @property
    def queue_name(self) -> str:
        """The name of the RabbitMQ queue this subscription consumes."""
        return self._queue.name

    async def _start(self) -> None:
        self._channel.close_callbacks.add(self._on_channel_closed)
        consume_ok = await self._raw.basic_consume(self._queue.name, self._on_delivered)
        self._consumer_tag = consume_ok.consumer_tag

    def _on_channel_closed(self, _sender: object, exc: BaseException | None = None) -> None:
        if self.active:
            log.warning(
                "the channel of %r was closed by the broker (%s); it receives no more "
                "messages, unacked ones return to the queue",
                self,
                type(exc).__name__ if exc is not None else "connection closed",
            )

    async def _on_delivered(self, delivered: DeliveredMessage) -> None:
        # No await before the put: aiormq starts one task per message in arrival order,
        # so the inbox keeps queue order.
        self._inbox.put_nowait(delivered)

    def _redelivery_attempt(self, message: Message) -> int:
        ident = (message.id, hash(message.body))
        attempt = self._attempts.get(ident, 1) + 1
        self._attempts[ident] = attempt
        return attempt

    def _forget(self, delivery: Delivery) -> None:
        if self._exclusive:
            self._attempts.pop((delivery.message.id, hash(delivery.message.body)), None)

    async def _consume(self) -> None:
        inbox = self._inbox
        exclusive = self._exclusive
        subscribed = self.topic
        dispatch = self.dispatch
        while True:
            delivered = await inbox.get()
            message, count = _decode(delivered)
            frame: Any = delivered.delivery  # a Basic.Deliver
            if exclusive:
                attempt = self._redelivery_attempt(message) if frame.redelivered else 1
            elif count is not None:
                attempt = count + 1
            else:
                attempt = 2 if frame.redelivered else 1
            delivery = RabbitMQDelivery(
                self, frame.routing_key or subscribed, message, attempt, frame.delivery_tag
            )
            if not await dispatch(delivery):
                # Closing: leave it (and whatever is prefetched) unacked; closing the
                # channel returns it to the queue.
                return

    async def _close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        channel = self._channel
        try:
            if not channel.is_closed:
                if self._consumer_tag is not None:
                    await self._raw.basic_cancel(self._consumer_tag)
                if self._exclusive:
                    await self._queue.delete(if_unused=False, if_empty=False)
        finally:
            # Closing the channel returns every unacked message to its queue, including
            # prefetched ones still in the inbox (never acked).
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
        # The publish channel's aiormq channel: publishes go to it directly.
        self._raw_channel: aiormq.Channel | None = None
        self._channel_lock = asyncio.Lock()
        self._exchange_name = str(options["exchange"])
        self._publish_timeout = float(options["publish_timeout"])  # type: ignore[arg-type]
        self._prefetch = int(options["prefetch"])  # type: ignore[call-overload]
        self._properties_type: Any = None  # aiormq.spec.Basic.Properties, set on connect
        self._closing_connection = False
        if options.get("ssl_key") is not None and options.get("ssl_cert") is None:
            raise InvalidOptionError("option ssl_key for amqps:// needs ssl_cert as well")

    @property
    def exchange_name(self) -> str:
        """The topic exchange messages are published to."""
        return self._exchange_name

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
        from pamqp.commands import Basic

        self._properties_type = Basic.Properties

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

    async def _open_publish_channel(self) -> aiormq.Channel:
        import aio_pika

        assert self._connection is not None
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=False)
        try:
            await channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
            raw = cast("aiormq.Channel", await channel.get_underlay_channel())
        except BaseException:
            if not channel.is_closed:
                await channel.close()
            raise
        self._channel, self._raw_channel = channel, raw
        return raw

    async def _live_channel(self) -> aiormq.Channel:
        """The publish channel, reopened if RabbitMQ closed it (the connection is not)."""
        raw = self._raw_channel
        if raw is not None and not raw.is_closed:
            return raw  # the usual case: no lock needed
        async with self._channel_lock:
            raw = self._raw_channel
            if raw is not None and not raw.is_closed:
                return raw
            if self._connection is None or self._connection.is_closed:
                raise BrokerConnectionError(
                    f"the connection to {self.url.redacted()} is closed; reconnect the broker"
                )
            return await self._open_publish_channel()

    async def _disconnect(self) -> None:
        self._closing_connection = True
        connection, self._connection = self._connection, None
        self._channel = self._raw_channel = None
        if connection is not None and not connection.is_closed:
            await connection.close()

    def _properties(self, message: Message) -> Any:
        """The AMQP properties of ``message``: persistent, id, timestamp, headers."""
        long_id = _id_is_long(message.id)
        return self._properties_type(
            delivery_mode=_PERSISTENT,
            headers=_encode_headers(message, long_id),
            # A long id travels in x-bk-id; aiormq then sets a random message_id.
            message_id=None if long_id else message.id,
            timestamp=datetime.fromtimestamp(message.timestamp, UTC),
        )

    async def _publish(self, topic: str, message: Message) -> None:
        raw = await self._live_channel()
        # wait=False: no separate wait for the frames to be written; the confirm,
        # awaited here, comes after that anyway.
        await raw.basic_publish(
            message.body,
            exchange=self._exchange_name,
            routing_key=topic,
            properties=self._properties(message),
            mandatory=False,
            timeout=self._publish_timeout,
            wait=False,
        )

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        raw = await self._live_channel()
        publish = raw.basic_publish
        properties = self._properties
        exchange = self._exchange_name
        timeout = self._publish_timeout
        # One channel writes frames in the order the publishes start, so concurrent
        # publishes keep their order; up to PUBLISH_WINDOW confirms are awaited at once.
        # The publishes of a window start together, so one deadline per window bounds
        # each one's wait as publish_timeout does (without a timer per message).
        for start in range(0, len(messages), PUBLISH_WINDOW):
            async with asyncio.timeout(timeout):
                results = await asyncio.gather(
                    *(
                        publish(
                            m.body,
                            exchange=exchange,
                            routing_key=topic,
                            properties=properties(m),
                            mandatory=False,
                            wait=False,
                        )
                        for m in messages[start : start + PUBLISH_WINDOW]
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
        prefetch_count = max(self._prefetch, options.max_in_flight)
        try:
            await channel.set_qos(prefetch_count=prefetch_count)
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
                self,
                topic,
                handler,
                options,
                channel=channel,
                raw=cast("aiormq.Channel", await channel.get_underlay_channel()),
                queue=queue,
                exclusive=exclusive,
                prefetch_count=prefetch_count,
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
