"""NATS through nats-py: ``nats://`` (NATS core) and ``nats+jetstream://`` (JetStream).

URLs::

    nats://[user:password@]host[:4222][,host2[:4222]...][?option=value&...]
    nats://token@host                     a user name without a password is a token
    nats+jetstream://host:4222?storage=memory&max_age=3600

Connection options (both schemes): ``token`` (secret), ``tls`` (true: TLS with the
system's CA store), ``tls_ca`` / ``tls_cert`` / ``tls_key`` (PEM files; any of them
implies TLS), ``tls_hostname``, ``name`` (client name shown by the server),
``reconnect``, ``max_reconnect_attempts``, ``reconnect_time_wait``. Several hosts in one
URL are tried in order and used for reconnects.

Message mapping (both schemes). Topics are NATS subjects as they are: brokerkit's
grammar and wildcards (``*`` one token, ``>`` the rest) are NATS's own. A message
travels as the NATS payload plus headers:

* one header, ``Brokerkit-Env: <id> <timestamp>[ <key>]``, carries :attr:`Message.id`,
  the timestamp and the key (id and key percent-encoded if they hold a space, ``%`` or
  a character NATS would alter). On JetStream ``Nats-Msg-Id: <id>:<topic>`` comes
  first, which JetStream uses to drop a retried publish within the stream's duplicate
  window (two minutes by default). Both are removed from the headers a handler sees.
  Messages with the envelope are rebuilt without re-validation; messages without it
  (other NATS clients) are validated, take ``Nats-Msg-Id`` as their id if they have
  one (else the stream sequence on JetStream, else a new id) and the receipt time.
  Messages of older brokerkit versions (``Nats-Msg-Id``, ``Brokerkit-Key``,
  ``Brokerkit-Ts``) still decode with their id, key and timestamp;
* user headers travel as NATS headers. Names that are not HTTP tokens, or that start
  with ``Nats-`` or ``Brokerkit-`` (reserved), are sent escaped as
  ``Brokerkit-N-<percent-encoded name>``; values that NATS would trim (leading or
  trailing white space) are percent-encoded and listed in ``Brokerkit-Enc``. Every
  header therefore survives the round trip exactly.

A message larger than the server's ``max_payload`` (body plus headers; 1 MB by
default on nats-server) is refused with :class:`PublishError` naming the limit; raise
``max_payload`` in the server configuration to carry bigger messages.

``nats://`` — NATS core, **at most once**. ``publish`` returns once the message is
written to the client's outgoing buffer (flushed by nats-py's flusher right after); a
connection lost at that moment loses it. ``subscribe`` returns after a round trip to
the server, so the subscription is live. ``queue`` is a NATS queue subscription. Order
is kept per subject from one publisher (one connection), hence per key. No ack,
durable, replay or dead letter: asking for them raises :class:`CapabilityError`.

``nats+jetstream://`` — JetStream, **at least once**, every capability:

* ``publish`` returns once the stream stored the message (the JetStream PubAck),
  awaited for at most ``publish_timeout`` (default 10 s; then :class:`PublishError`).
* Streams. Each topic belongs to a stream. With the ``stream`` option, every topic
  uses that one stream (created with ``stream_subjects`` if it does not exist).
  Otherwise a stream that already covers the topic is used as it is; if none does, a
  stream ``<stream_prefix><first token>`` (``BK_orders`` for ``orders.created``) with
  the subjects ``<token>`` and ``<token>.>`` is created, with ``storage``, ``max_msgs``,
  ``max_bytes`` and ``max_age`` (defaults: file storage, 1,000,000 messages, no byte
  limit, 24 hours; the oldest are discarded). A pattern whose first token is a
  wildcard (``*.created``) needs the ``stream`` option. A stream whose subjects overlap
  the default one is never changed: that raises an error asking for ``stream``.
* Consumers are pull consumers with explicit ack on the topic's stream, filtered by the
  topic or pattern: an ephemeral one per plain subscription (deleted on unsubscribe),
  one shared durable consumer per ``(topic, queue, durable)`` for ``queue`` and for
  ``durable`` (kept on unsubscribe; ``start`` applies when it is first created).
  ``nack`` is a NAK without delay (redelivered at once); ``attempt`` is the server's
  delivery count. ``max_deliver`` is applied by brokerkit (the consumer's own limit is
  unlimited). Unsubscribe and disconnect NAK every message the subscription received
  but did not settle, so they are redelivered at once; after a crash the server
  redelivers them after ``ack_wait``.
* ``prefetch`` (1 to 10,000, default 100): a subscription pulls
  ``max(prefetch, max_in_flight)`` messages per pull request and asks for the next
  batch when half of it is handed out, so handlers never wait a round trip; handler
  concurrency stays bounded by ``max_in_flight``. The trade-off: one subscription
  holds up to that many delivered, unacked messages (the consumer's ``max_ack_pending``
  is at least twice the batch) that competing members of a ``queue`` group cannot take
  until it handles them, gives them back on unsubscribe, or crashes and ``ack_wait``
  passes. Prefetched messages given back on unsubscribe count as a delivery: their
  ``attempt`` is one higher when they come again. Use ``prefetch=1`` for slow handlers
  shared by many consumers.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import logging
import re
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.capabilities import ALL_CAPABILITIES, Capability
from brokerkit.core.errors import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerkitError,
    InvalidOptionError,
    PublishError,
    SubscribeError,
)
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import (
    OptionSpec,
    SubscribeOptions,
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_str,
)
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.url import BrokerURL, scrub

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription as NatsSubscription
    from nats.js.client import JetStreamContext

log = logging.getLogger("brokerkit.nats")

ID_HEADER = "Nats-Msg-Id"
ENV_HEADER = "Brokerkit-Env"
KEY_HEADER = "Brokerkit-Key"  # before the envelope header: still decoded
TS_HEADER = "Brokerkit-Ts"  # before the envelope header: still decoded
ENC_HEADER = "Brokerkit-Enc"
NAME_PREFIX = "Brokerkit-N-"
_RESERVED_PREFIXES = ("nats-", "brokerkit-")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # what nats-py accepts as a name
_NAME_SAFE = "!#$&'*+^`|~"  # token characters quote() would escape, except '%'
_STATUS = "Status"
_PULL_EXPIRES = 5.0  # seconds a pull request waits on the server
_PULL_GRACE = 1.0  # seconds a pull request's end may be reported early or late
_API_TIMEOUT = 10  # seconds (nats-py wants an int for flush)


# --- message <-> NATS headers -------------------------------------------------------------


def _env_token(text: str) -> str:
    # An id or key inside the envelope header: percent-encoded if it holds a space (the
    # field separator), '%' (the escape) or anything NATS would alter in a value.
    if " " in text or "%" in text or not text.isprintable():
        return quote(text, safe="")
    return text


def encode_headers(message: Message, scope: str | None = None) -> dict[str, str]:
    """The NATS headers carrying ``message``'s id, key, timestamp and headers. Pure.

    The envelope is one header, ``Brokerkit-Env: <id> <timestamp>[ <key>]`` (id and key
    percent-encoded when they hold a space, ``%`` or a character NATS would alter).
    With ``scope`` (the topic, on JetStream) ``Nats-Msg-Id: <id>:<topic>`` comes first,
    so that JetStream's de-duplication, which is per stream, drops a retried publish but
    not the same message published to another topic of the stream.
    """
    msg_id = _env_token(message.id)
    key = message.key
    if key is None:
        env = f"{msg_id} {message.timestamp!r}"
    else:
        env = f"{msg_id} {message.timestamp!r} {_env_token(key)}"
    # Our own headers come first: nats-server finds a header by its first occurrence.
    out = {ENV_HEADER: env} if scope is None else {ID_HEADER: f"{msg_id}:{scope}", ENV_HEADER: env}
    if message.headers:
        encoded: list[str] = []
        for name, value in message.headers.items():
            sent = name
            if not _TOKEN.fullmatch(name) or name.lower().startswith(_RESERVED_PREFIXES):
                sent = NAME_PREFIX + quote(name, safe=_NAME_SAFE)
            if value != value.strip() or not value.isprintable():  # NATS would alter it
                out[sent] = quote(value, safe="")
                encoded.append(sent)
            else:
                out[sent] = value
        if encoded:
            out[ENC_HEADER] = " ".join(encoded)
    return out


def decode_message(
    subject: str, data: bytes, headers: dict[str, str] | None, default_id: str | None = None
) -> Message:
    """Rebuild a :class:`Message` received on ``subject`` from a NATS payload and headers.

    Pure. A message with brokerkit's envelope header is rebuilt without re-validating
    what brokerkit validated on publish (:meth:`Message.trusted`). Messages without it
    (other NATS clients) go through the validating constructor: their id is
    ``Nats-Msg-Id``, else ``default_id``, else a new one; their timestamp the current
    time; headers brokerkit does not accept are dropped.
    """
    if headers:
        env = headers.get(ENV_HEADER)
        if env is not None:
            fields = env.split(" ")
            count = len(fields)
            if count in (2, 3):
                try:
                    timestamp = float(fields[1])
                except ValueError:
                    pass
                else:
                    msg_id = fields[0]
                    if "%" in msg_id:
                        msg_id = unquote(msg_id)
                    key = fields[2] if count == 3 else None
                    if key is not None and "%" in key:
                        key = unquote(key)
                    if msg_id and key != "":
                        size = len(headers)
                        if size == 1 or (size == 2 and ID_HEADER in headers):
                            return Message.trusted(data, {}, msg_id, key, timestamp)
                        return _enveloped(headers, data, msg_id, key, timestamp)
    return _foreign(subject, data, headers, default_id)


def _enveloped(
    headers: dict[str, str], data: bytes, msg_id: str, key: str | None, timestamp: float
) -> Message:
    user: dict[str, str] = {}
    for name, value in headers.items():
        if name.lower().startswith(_RESERVED_PREFIXES):
            if name == ENC_HEADER or name.startswith(NAME_PREFIX):
                break  # escaped names or values: the general path below
            continue
        user[name] = value
    else:
        return Message.trusted(data, user, msg_id, key, timestamp)
    try:
        return Message(data, _user_headers(headers), id=msg_id, key=key, timestamp=timestamp)
    except BrokerkitError:  # not what brokerkit would have sent
        return Message(data, None, id=msg_id, key=key, timestamp=timestamp)


def _user_headers(headers: dict[str, str]) -> dict[str, str]:
    # The user headers, escaped names and percent-encoded values decoded; brokerkit's
    # own and other reserved headers left out.
    encoded = set(headers.get(ENC_HEADER, "").split())
    user: dict[str, str] = {}
    for name, sent in headers.items():
        value = unquote(sent) if name in encoded else sent
        if name.startswith(NAME_PREFIX):
            user[unquote(name[len(NAME_PREFIX) :])] = value
        elif not name.lower().startswith(_RESERVED_PREFIXES):
            user[name] = value
    return user


def _foreign(
    subject: str, data: bytes, headers: dict[str, str] | None, default_id: str | None
) -> Message:
    # Without brokerkit's envelope: from another NATS client, or stored by an older
    # brokerkit (Nats-Msg-Id, Brokerkit-Key and Brokerkit-Ts, still understood).
    raw = {n: v for n, v in headers.items() if n != _STATUS} if headers else {}
    encoded = set(raw.get(ENC_HEADER, "").split())

    def take(name: str) -> str | None:
        value = raw.get(name)
        if value is not None and name in encoded:
            value = unquote(value)
        return value

    msg_id = take(ID_HEADER)
    if msg_id is not None and msg_id.endswith(":" + subject):
        msg_id = msg_id[: -len(subject) - 1]
    msg_id = msg_id or default_id
    key = take(KEY_HEADER) or None
    timestamp: float | None = None
    ts_text = take(TS_HEADER)
    if ts_text is not None:
        try:
            timestamp = float(ts_text)
        except ValueError:
            timestamp = None
    try:
        return Message(data, _user_headers(raw), id=msg_id or None, key=key, timestamp=timestamp)
    except BrokerkitError:  # a foreign message with headers brokerkit does not accept
        try:
            return Message(data, None, id=msg_id or None, key=key, timestamp=timestamp)
        except BrokerkitError:  # nor its id
            return Message(data, None, id=default_id, key=key, timestamp=timestamp)


def _encoded_size(payload: bytes, headers: dict[str, str]) -> int:
    # "NATS/1.0\r\n" + "name: value\r\n" per header + "\r\n"
    size = 12 + len(payload)
    for name, value in headers.items():
        size += len(name) + len(value.encode("utf-8", "surrogatepass")) + 4
    return size


# --- the common connection ----------------------------------------------------------------


def _is_auth_error(exc: BaseException) -> bool:
    from nats import errors

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, errors.AuthorizationError):
            return True
        text = str(current).lower()
        if "authorization" in text or "authentication" in text:
            return True
        current = current.__cause__ or current.__context__
    return False


class _NatsBroker(Broker):
    """The connection handling shared by both NATS schemes."""

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        if options.get("token") is not None and url.username is not None:
            raise InvalidOptionError(
                f"{url.redacted()}: give either a token or user:password, not both"
            )
        self._nc: Client | None = None
        self._auth_failed = False

    def _tls_context(self) -> Any:
        import ssl

        ca, cert, key = (self.options.get(n) for n in ("tls_ca", "tls_cert", "tls_key"))
        if not (self.options.get("tls") or ca or cert or key):
            return None
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert:
            context.load_cert_chain(str(cert), str(key) if key else None)
        return context

    async def _connect(self) -> None:
        from nats.aio.client import Client

        tls = self._tls_context()
        scheme = "tls" if tls is not None else "nats"
        servers = [f"{scheme}://{host}:{port}" for host, port in self.url.host_ports()]
        user, password, token = self.url.username, self.url.password, self.options.get("token")
        if user is not None and password is None:  # nats://token@host
            user, token = None, user
        self._auth_failed = False

        nc = Client()
        connecting: asyncio.Future[None] | None = None

        async def on_error(exc: Exception) -> None:
            if _is_auth_error(exc):
                self._auth_failed = True
                # nats-py would retry refused credentials until connect_timeout.
                if connecting is not None and not connecting.done():
                    connecting.cancel()
            log.warning("nats %s: %s", self.url.redacted(), scrub(str(exc), self.url))

        async def on_disconnected() -> None:
            log.info("nats %s: disconnected", self.url.redacted())

        async def on_reconnected() -> None:
            log.info("nats %s: reconnected", self.url.redacted())

        kwargs: dict[str, Any] = {
            "servers": servers,
            "name": self.options["name"],
            "allow_reconnect": self.options["reconnect"],
            "max_reconnect_attempts": self.options["max_reconnect_attempts"],
            "reconnect_time_wait": self.options["reconnect_time_wait"],
            "connect_timeout": self.options["connect_timeout"],
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
            "user": user,
            "password": password,
            "token": token,
            "pending_size": 64 * 1024 * 1024,
        }
        if tls is not None:
            kwargs["tls"] = tls
            if self.options.get("tls_hostname"):
                kwargs["tls_hostname"] = self.options["tls_hostname"]
        failure: BrokerkitError | None = None
        connecting = asyncio.ensure_future(nc.connect(**kwargs))
        try:
            await asyncio.wait({connecting})
        except asyncio.CancelledError:  # connect_timeout, or the caller gave up
            connecting.cancel()
            await nc.close()
            raise
        if connecting.cancelled() or connecting.exception() is not None:
            await nc.close()
        try:
            connecting.result()
            self._nc = nc
        except asyncio.CancelledError:
            failure = AuthenticationError(
                f"connect to {self.url.redacted()} failed: the server refused the "
                "credentials (authorization violation)"
            )
        except Exception as exc:
            if self._auth_failed or _is_auth_error(exc):
                failure = AuthenticationError(
                    f"connect to {self.url.redacted()} failed: the server refused the "
                    "credentials (authorization violation)"
                )
            else:
                failure = self.error(BrokerConnectionError, "connect", exc)
        # Raised outside the except block so that no client exception is chained.
        if failure is not None:
            raise failure

    async def _disconnect(self) -> None:
        nc, self._nc = self._nc, None
        if nc is None:
            return
        try:
            if nc.is_connected:
                await nc.flush(timeout=2)
        except Exception as exc:
            log.debug("flush before close failed: %s", scrub(str(exc), self.url))
        finally:
            await nc.close()

    def _client(self) -> Client:
        if self._nc is None:
            raise BrokerConnectionError(f"{self.url.redacted()}: the connection is closed")
        return self._nc

    _scoped_ids = False
    _extra_header_size = 0  # bytes of headers nats-py adds to ours (JetStream)
    _size_slack = 128  # header names, separators and timestamp, plus the above

    def _headers_for(self, topic: str, message: Message) -> dict[str, str]:
        headers = encode_headers(message, topic if self._scoped_ids else None)
        limit = self._client().max_payload
        # The exact size only near the limit. Without user headers, the envelope is at
        # most 12 bytes per character of id (percent-encoded 4-byte UTF-8; twice on
        # JetStream), key and topic, plus header names and the timestamp (slack).
        if (
            not message.headers
            and len(message.body)
            + 24 * (len(message.id) + len(message.key or "") + len(topic))
            + self._size_slack
            <= limit
        ):
            return headers
        size = _encoded_size(message.body, headers) + self._extra_header_size
        if size > limit:
            raise PublishError(
                f"publish to {topic!r} on {self.url.redacted()} refused: the message is "
                f"{size} bytes (body and headers) but the server's max_payload is {limit} "
                "bytes; raise max_payload in the nats-server configuration"
            )
        return headers


# --- NATS core ------------------------------------------------------------------------------


class _CoreSubscription(Subscription):
    def __init__(
        self, broker: NatsBroker, topic: str, handler: Handler, options: SubscribeOptions
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._sub: NatsSubscription | None = None

    async def start(self, nc: Client) -> None:
        self._sub = await nc.subscribe(self.topic, queue=self.options.queue or "", cb=self._on_msg)
        await nc.flush(timeout=_API_TIMEOUT)  # the server has the subscription

    async def _on_msg(self, msg: Msg) -> None:
        delivery = Delivery(msg.subject, decode_message(msg.subject, msg.data, msg.headers))
        await self.dispatch(delivery)  # at most once: a closing subscription drops it

    async def _close(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception as exc:
                # A closed connection has no subscription left to remove.
                log.debug("unsubscribe: %s", exc)


class NatsBroker(_NatsBroker):
    """``nats://``: NATS core, at most once; see the module docstring.

    ``publish`` returns once the message is in the client's write buffer; ``subscribe``
    once the server confirmed the subscription. Safe for many tasks in one event loop.
    """

    async def _publish(self, topic: str, message: Message) -> None:
        nc = self._client()
        await nc.publish(topic, message.body, headers=self._headers_for(topic, message))

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        subscription = _CoreSubscription(self, topic, handler, options)
        try:
            await subscription.start(self._client())
        except BaseException:
            await subscription.unsubscribe()
            raise
        return subscription


# --- JetStream ------------------------------------------------------------------------------


class _JetStreamDelivery(Delivery):
    __slots__ = ("_msg", "_owner")

    def __init__(
        self, owner: _JetStreamSubscription, msg: Msg, message: Message, attempt: int
    ) -> None:
        super().__init__(msg.subject, message, attempt)
        self._owner = owner
        self._msg = msg

    async def _ack(self) -> None:
        if self._owner.release(self):
            await self._msg.ack()

    async def _nack(self, requeue: bool) -> None:
        if self._owner.release(self):
            if requeue:
                await self._msg.nak()
            else:
                await self._msg.term()


class _JetStreamSubscription(Subscription):
    """Pulls from one consumer through a private inbox and dispatches what arrives.

    Pull requests ask for ``batch`` messages each; the next one goes out as soon as
    fewer than half a batch is still to come, so the handler never waits a round trip.

    Messages are dispatched from nats-py's callback for the inbox (the task nats-py
    runs per subscription), not handed on to a task of ours: that hop cost an event
    loop iteration per message. A handler cancelled by the drain timeout is therefore
    cancelled in nats-py's task; :meth:`_on_msg` absorbs that cancellation while the
    subscription is closing, so nats-py keeps draining the inbox. A small keeper task
    retires pull requests that expired unannounced and asks again when none is left.
    """

    def __init__(
        self,
        broker: JetStreamBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        *,
        stream: str,
        consumer: str,
        ephemeral: bool,
        batch: int,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._js_broker = broker
        self.stream = stream
        self.consumer = consumer
        self.ephemeral = ephemeral
        self.batch = batch
        self._low = batch // 2
        self._request = json.dumps({"batch": batch, "expires": int(_PULL_EXPIRES * 1e9)}).encode()
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"
        # The pull requests the server still serves, oldest first (it serves them in
        # order): [messages still to come, local deadline].
        self._requests: deque[list[float]] = deque()
        self._credit = 0  # messages asked for and not yet received
        self._paused_until = 0.0  # no pull request before (after a failure or a 409)
        self._unsettled: dict[int, _JetStreamDelivery] = {}
        self._leftovers: list[Msg] = []  # messages that arrived while closing
        self._dispatching: asyncio.Task[Any] | None = None  # the task inside dispatch()
        self._sub: NatsSubscription | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._nc: Client | None = None

    def release(self, delivery: _JetStreamDelivery) -> bool:
        """Forget an unsettled delivery; False if it was already given back on close."""
        return self._unsettled.pop(id(delivery), None) is not None

    async def start(self, nc: Client) -> None:
        self._nc = nc
        self._sub = await nc.subscribe(nc.new_inbox(), cb=self._on_msg)
        await nc.flush(timeout=_API_TIMEOUT)
        await self._ask()
        self._keeper = asyncio.create_task(self._keep())
        self._keeper.add_done_callback(self._keeper_ended)

    def _keeper_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%r: stopped asking for messages: %r", self, task.exception())

    async def _ask(self) -> None:
        # One pull request. The bookkeeping is done before the await, so that the
        # callback and the keeper, which both ask, never ask twice for the same need.
        if self._closing or self._nc is None or self._sub is None:
            return
        loop = asyncio.get_running_loop()
        entry = [float(self.batch), loop.time() + _PULL_EXPIRES]
        self._requests.append(entry)
        self._credit += self.batch
        try:
            await self._nc.publish(self._next_subject, self._request, reply=self._sub.subject)
        except Exception as exc:
            log.warning("%r: pull request failed: %s", self, exc)
            try:
                self._requests.remove(entry)
            except ValueError:
                pass
            else:
                self._credit -= int(entry[0])
            self._paused_until = loop.time() + 1.0  # the keeper tries again

    def _short_of_messages(self, now: float) -> bool:
        # Time for the next pull request: half a batch or less still to come, and not
        # pausing after a failure.
        return self._credit <= self._low and now >= self._paused_until

    async def _keep(self) -> None:
        # Retires pull requests that expired without their 408 (lost, or not sent for
        # a partial batch) and asks again when fewer than half a batch is to come.
        loop = asyncio.get_running_loop()
        requests = self._requests
        while True:
            now = loop.time()
            while requests and requests[0][1] + _PULL_GRACE < now:
                self._credit -= int(requests.popleft()[0])
            if self._short_of_messages(now):
                await self._ask()
            # At least once a second: a 409 may have cleared the requests meanwhile.
            wake = requests[0][1] + _PULL_GRACE if requests else self._paused_until
            await asyncio.sleep(min(_PULL_GRACE, max(0.01, wake - loop.time())))

    async def _on_msg(self, msg: Msg) -> None:
        # nats-py's callback for the inbox: runs in nats-py's task for it, one
        # message at a time.
        if not msg.reply:  # a status message about a pull request
            await self._on_status(msg)
            return
        if self._closing:
            self._leftovers.append(msg)  # given back by _close
            return
        delivery = self._delivery(msg)
        self._unsettled[id(delivery)] = delivery
        requests = self._requests
        if requests:
            first = requests[0]
            first[0] -= 1
            if first[0] <= 0:
                requests.popleft()
            self._credit -= 1
        if self._short_of_messages(asyncio.get_running_loop().time()):
            await self._ask()  # before the handler runs
        task = self._dispatching = asyncio.current_task()
        try:
            await self.dispatch(delivery)  # False: closing; the delivery stays unsettled
        except asyncio.CancelledError:
            # The drain timeout cancelled the handler, or _close a blocked dispatch: the
            # subscription is closing. Let nats-py's task live on, so that it drains
            # the inbox; a cancellation by nats-py itself (connection closed) goes on.
            nc = self._nc
            if not self._closing or nc is None or nc.is_closed or task is None:
                raise
            task.uncancel()
        finally:
            self._dispatching = None

    async def _on_status(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        requests = self._requests
        now = asyncio.get_running_loop().time()
        if status in ("404", "408"):  # no messages / the oldest request expired
            if requests and requests[0][1] - _PULL_GRACE <= now:
                self._credit -= int(requests.popleft()[0])
                if self._short_of_messages(now):
                    await self._ask()
        elif status is not None and status != "100":  # 100: idle heartbeat
            # 409 (consumer deleted, too many requests...), 503: back off and start
            # counting afresh; the keeper asks again after the pause.
            log.warning(
                "%r: the server answered a pull with %s %s",
                self,
                status,
                msg.headers.get("Description", "") if msg.headers else "",
            )
            requests.clear()
            self._credit = 0
            self._paused_until = now + 1.0

    def _delivery(self, msg: Msg) -> _JetStreamDelivery:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        # or, with a domain: $JS.ACK.<domain>.<account hash>.<stream>.<consumer>...
        tokens = msg.reply.split(".")
        at = 2 if len(tokens) == 9 else 4
        try:
            attempt = max(1, int(tokens[at + 2]))
            default_id = f"{tokens[at]}:{tokens[at + 3]}"
        except (IndexError, ValueError):
            attempt, default_id = 1, None
        message = decode_message(msg.subject, msg.data, msg.headers, default_id)
        return _JetStreamDelivery(self, msg, message, attempt)

    async def _close(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
        blocked = self._dispatching
        if blocked is not None and blocked is not asyncio.current_task():
            # A dispatch still waiting for a worker the drain timeout cancelled: free
            # nats-py's task (the delivery stays unsettled and is given back below).
            blocked.cancel()
        nc = self._nc
        sub, self._sub = self._sub, None
        if nc is None or nc.is_closed:
            return
        if sub is not None:
            try:
                # UNSUB, then a round trip: whatever the server sent before reaches
                # the callback (filed as leftovers), and nothing comes after.
                await sub.drain()  # type: ignore[no-untyped-call]
            except Exception as exc:
                log.debug("%r: drain failed: %s", self, exc)
        # Give back what this subscription received but did not settle.
        leftovers: list[Msg] = [d._msg for d in self._unsettled.values()]
        self._unsettled.clear()
        leftovers.extend(self._leftovers)
        self._leftovers.clear()
        for msg in leftovers:
            await msg.nak()
        if self.ephemeral:
            try:
                await self._js_broker.jetstream().delete_consumer(self.stream, self.consumer)
            except Exception as exc:
                log.debug("%r: deleting the ephemeral consumer failed: %s", self, exc)
        await nc.flush(timeout=_API_TIMEOUT)


class JetStreamBroker(_NatsBroker):
    """``nats+jetstream://``: NATS JetStream, at least once; see the module docstring.

    ``publish`` returns once the stream stored the message; ``subscribe`` once the
    consumer exists and its first pull request is on its way. Safe for many tasks in
    one event loop.
    """

    _scoped_ids = True

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        if options.get("stream_subjects") is not None and options.get("stream") is None:
            raise InvalidOptionError(
                "the stream_subjects option needs stream=NAME (the stream to create)"
            )
        self._js: JetStreamContext | None = None
        self._streams: dict[str, str] = {}  # subject or pattern -> stream
        self._token_streams: dict[str, str] = {}  # first token -> default stream
        self._stream_lock = asyncio.Lock()
        # Read once here rather than per publish.
        self._publish_timeout = float(options["publish_timeout"])  # type: ignore[arg-type]
        fixed = options.get("stream")
        self._expected_stream = str(fixed) if fixed is not None else None
        if self._expected_stream is not None:  # js.publish adds Nats-Expected-Stream
            self._extra_header_size = len("Nats-Expected-Stream") + len(self._expected_stream) + 4
            self._size_slack = 128 + self._extra_header_size
        self._prefetch = int(options["prefetch"])  # type: ignore[call-overload]
        # PubAcks come to one subscription, "<inbox>.<token>", as nats-py's own request
        # does; see _stored.
        self._ack_prefix = ""
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_tokens = itertools.count(1)
        self._timeout_error: type[Exception] = TimeoutError  # nats-py's once connected

    async def _connect(self) -> None:
        from nats.errors import TimeoutError as NatsTimeoutError

        self._timeout_error = NatsTimeoutError
        await super()._connect()
        nc = self._client()
        self._js = nc.jetstream(timeout=_API_TIMEOUT)
        self._streams.clear()
        self._token_streams.clear()
        self._ack_prefix = nc.new_inbox() + "."
        self._acks = {}
        # Ordered before any publish on the connection, so no flush is needed.
        await nc.subscribe(self._ack_prefix + "*", cb=self._on_pub_ack)

    async def _disconnect(self) -> None:
        self._js = None
        try:
            await super()._disconnect()
        finally:
            acks, self._acks = self._acks, {}
            for future in acks.values():
                if not future.done():
                    future.set_exception(
                        BrokerConnectionError(
                            f"{self.url.redacted()}: the connection closed before the "
                            "stream acknowledged the message"
                        )
                    )

    def jetstream(self) -> JetStreamContext:
        """The nats-py JetStream context of the live connection."""
        if self._js is None:
            raise BrokerConnectionError(f"{self.url.redacted()}: the connection is closed")
        return self._js

    # --- streams ------------------------------------------------------------------------

    def _stream_config(self, name: str, subjects: list[str]) -> Any:
        from nats.js.api import DiscardPolicy, StorageType, StreamConfig

        max_age = float(self.options["max_age"])  # type: ignore[arg-type]
        max_msgs = int(self.options["max_msgs"])  # type: ignore[call-overload]
        max_bytes = int(self.options["max_bytes"])  # type: ignore[call-overload]
        return StreamConfig(
            name=name,
            subjects=subjects,
            storage=StorageType(self.options["storage"]),
            max_age=max_age or None,
            max_msgs=max_msgs or -1,
            max_bytes=max_bytes or -1,
            discard=DiscardPolicy.OLD,
        )

    async def stream_for(self, subject: str, error: type[BrokerkitError]) -> str:
        """The stream that holds ``subject`` (a topic or pattern), creating it if needed.

        Follows the mapping in the module docstring. Raises ``error`` (PublishError or
        SubscribeError) if no stream can hold it. Concurrency-safe; cached per
        connection.
        """
        fixed = self.options.get("stream")
        if fixed is not None:
            name = str(fixed)
            if name not in self._token_streams.values():
                await self._ensure_fixed_stream(name, error)
            return name
        first = subject.split(".", 1)[0]
        found = self._token_streams.get(first) or self._streams.get(subject)
        if found is not None:
            return found
        if first in ("*", ">"):
            raise error(
                f"{subject!r} on {self.url.redacted()}: a pattern that starts with a "
                "wildcard cannot pick a stream by its first token; give the stream option "
                "(stream=NAME, and stream_subjects=... to create it)"
            )
        async with self._stream_lock:
            from nats.js.errors import NotFoundError

            js = self.jetstream()
            try:
                found = await js.find_stream_name_by_subject(subject)
            except NotFoundError:
                found = None
            if found is not None:
                self._streams[subject] = found
                return found
            name = f"{self.options['stream_prefix']}{first}"
            await self._create_stream(name, [first, f"{first}.>"], error)
            self._token_streams[first] = name
            return name

    async def _ensure_fixed_stream(self, name: str, error: type[BrokerkitError]) -> None:
        from nats.js.errors import NotFoundError

        async with self._stream_lock:
            if name in self._token_streams.values():
                return
            try:
                await self.jetstream().stream_info(name)
            except NotFoundError:
                subjects = self.options.get("stream_subjects")
                if subjects is None:
                    raise error(
                        f"the stream {name!r} does not exist on {self.url.redacted()}; "
                        "create it, or give stream_subjects to have it created"
                    ) from None
                await self._create_stream(
                    name, [s.strip() for s in str(subjects).split(",") if s.strip()], error
                )
            self._token_streams[f"\0{name}"] = name

    async def _create_stream(
        self, name: str, subjects: list[str], error: type[BrokerkitError]
    ) -> None:
        from nats.js.errors import APIError

        js = self.jetstream()
        failure: BrokerkitError | None = None
        try:
            await js.add_stream(self._stream_config(name, subjects))
            return
        except APIError as exc:
            code = exc.err_code
            if code == 10058:  # the name exists with another configuration: use it
                info = await js.stream_info(name)
                if set(subjects) <= set(info.config.subjects or ()):
                    return
                failure = error(
                    f"the stream {name!r} on {self.url.redacted()} exists with subjects "
                    f"{info.config.subjects}, not {subjects}; give the stream option"
                )
            elif code == 10065:
                failure = error(
                    f"cannot create the stream {name!r} for {subjects} on "
                    f"{self.url.redacted()}: its subjects overlap an existing stream; give "
                    "the stream option to use that stream"
                )
            else:
                failure = self.error(error, f"create the stream {name!r}", exc)
        raise failure

    # --- publish ------------------------------------------------------------------------

    async def _on_pub_ack(self, msg: Msg) -> None:
        future = self._acks.get(msg.subject[len(self._ack_prefix) :])
        if future is not None and not future.done():
            future.set_result(msg)

    def _time_out(self, future: asyncio.Future[Msg]) -> None:
        if not future.done():
            future.set_exception(self._timeout_error())

    async def _stored(self, nc: Client, topic: str, body: bytes, headers: dict[str, str]) -> bool:
        """Publish one message and wait for the stream's PubAck: True once stored.

        False if no stream listens on ``topic`` (the server's no-responders status).
        Raises nats-py's ``APIError`` for a refusal and ``TimeoutError`` after
        ``publish_timeout``, as ``js.publish`` does. The request is made by hand rather
        than through ``js.publish``: its ``asyncio.wait_for`` costs an extra event
        loop iteration per message, and its reply token a ``getrandom`` system call.
        """
        if self._expected_stream is not None:  # what js.publish(stream=...) adds
            headers["Nats-Expected-Stream"] = self._expected_stream
        token = str(next(self._ack_tokens))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Msg] = loop.create_future()
        acks = self._acks
        acks[token] = future
        timer = loop.call_later(self._publish_timeout, self._time_out, future)
        try:
            await nc.publish(topic, body, reply=self._ack_prefix + token, headers=headers)
            reply = await future
        finally:
            timer.cancel()
            acks.pop(token, None)
        if reply.headers and reply.headers.get(_STATUS) == "503":  # no responders
            return False
        data = reply.data
        if b'"error"' in data:
            from nats.js.errors import APIError

            response = json.loads(data)
            if "error" in response:
                raise APIError.from_error(response["error"])
        return True

    async def _publish(self, topic: str, message: Message) -> None:
        nc = self._nc
        if nc is None or self._js is None:
            raise BrokerConnectionError(f"{self.url.redacted()}: the connection is closed")
        headers = self._headers_for(topic, message)
        if await self._stored(nc, topic, message.body, headers):
            return
        # No stream holds the topic yet: create (or find) it, then once more.
        await self.stream_for(topic, PublishError)
        if await self._stored(nc, topic, message.body, headers):
            return
        raise PublishError(
            f"publish to {topic!r} on {self.url.redacted()}: no JetStream stream holds this subject"
        )

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        if not messages:
            return
        # The first publish makes sure the stream exists; the rest are pipelined and
        # their acks awaited together (publishes leave one connection in order).
        await self._publish(topic, messages[0])
        js = self.jetstream()
        expected = self._expected_stream
        headers_for = self._headers_for
        publish_async = js.publish_async
        futures = [
            await publish_async(topic, m.body, stream=expected, headers=headers_for(topic, m))
            for m in messages[1:]
        ]
        await asyncio.wait_for(
            asyncio.gather(*futures), self._publish_timeout + 0.01 * len(futures)
        )

    # --- subscribe ----------------------------------------------------------------------

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import APIError, NotFoundError

        js = self.jetstream()
        stream = await self.stream_for(topic, SubscribeError)
        batch = max(self._prefetch, options.max_in_flight)
        shared = options.queue is not None or options.durable is not None
        digest = hashlib.sha256(
            f"{topic}\0{options.queue}\0{options.durable}".encode()
        ).hexdigest()[:12]
        if shared:
            label = options.durable if options.durable is not None else options.queue
            consumer = f"bk_{label}_{digest}"
        else:
            consumer = f"bk_{self._client()._nuid.next().decode()}"
        config = ConsumerConfig(
            name=consumer,
            durable_name=consumer if shared else None,
            deliver_policy=DeliverPolicy.ALL if options.start == "earliest" else DeliverPolicy.NEW,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=float(self.options["ack_wait"]),  # type: ignore[arg-type]
            max_deliver=-1,
            filter_subject=topic,
            # Room for the pull requests' messages and those the handlers hold.
            max_ack_pending=max(1000, 2 * batch),
            inactive_threshold=None if shared else 60.0,
        )
        exists = False
        if shared:
            try:
                await js.consumer_info(stream, consumer)
                exists = True
            except NotFoundError:
                pass
        if not exists:
            failure: BrokerkitError | None = None
            try:
                await js.add_consumer(stream, config)
            except APIError as exc:
                if exc.err_code == 10093:
                    failure = SubscribeError(
                        f"subscribe to {topic!r} on {self.url.redacted()}: the stream "
                        f"{stream!r} holds some but not all subjects matching the pattern; "
                        "give the stream option naming a stream that covers it"
                    )
                # Created concurrently by another member, with another start: use it.
                elif not shared or exc.err_code not in (10013, 10148, 10105):
                    failure = self.error(SubscribeError, f"subscribe to {topic!r}", exc)
            if failure is not None:
                raise failure
        subscription = _JetStreamSubscription(
            self,
            topic,
            handler,
            options,
            stream=stream,
            consumer=consumer,
            ephemeral=not shared,
            batch=batch,
        )
        try:
            await subscription.start(self._client())
        except BaseException:
            await subscription.unsubscribe()
            raise
        return subscription


# --- registration -----------------------------------------------------------------------


_CONNECTION_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("token", as_str, None, "authentication token (or nats://TOKEN@host)", secret=True),
    OptionSpec("tls", as_bool, False, "connect with TLS (implied by tls_ca/tls_cert/tls_key)"),
    OptionSpec("tls_ca", as_str, None, "PEM file of the CA that signed the server certificate"),
    OptionSpec("tls_cert", as_str, None, "PEM client certificate file (mutual TLS)"),
    OptionSpec("tls_key", as_str, None, "PEM private key file of tls_cert"),
    OptionSpec("tls_hostname", as_str, None, "host name expected in the server certificate"),
    OptionSpec("name", as_str, "brokerkit", "client connection name shown by the server"),
    OptionSpec("reconnect", as_bool, True, "reconnect after a lost connection"),
    OptionSpec(
        "max_reconnect_attempts", as_int(-1), 60, "reconnect attempts per server; -1: forever"
    ),
    OptionSpec("reconnect_time_wait", as_float(0.0), 2.0, "seconds between reconnect attempts"),
)

_JETSTREAM_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("stream", as_str, None, "one stream for every topic (else one per first token)"),
    OptionSpec(
        "stream_subjects",
        as_str,
        None,
        "comma-separated subjects to create the 'stream' with if it does not exist",
    ),
    OptionSpec("stream_prefix", as_str, "BK_", "name prefix of the streams created per token"),
    OptionSpec("storage", as_choice("file", "memory"), "file", "storage of created streams"),
    OptionSpec("max_msgs", as_int(0), 1_000_000, "messages kept per created stream; 0: no limit"),
    OptionSpec("max_bytes", as_int(0), 0, "bytes kept per created stream; 0: no limit"),
    OptionSpec("max_age", as_float(0.0), 86_400.0, "seconds messages are kept; 0: no limit"),
    OptionSpec(
        "ack_wait",
        as_float(0.1),
        30.0,
        "seconds before an unacked message is redelivered (crashed consumers)",
    ),
    OptionSpec("publish_timeout", as_float(0.001), 10.0, "seconds to wait for a publish ack"),
    OptionSpec(
        "prefetch",
        as_int(1, 10_000),
        100,
        "messages a subscription pulls ahead of its handlers: max(prefetch, max_in_flight)",
    ),
)

_CORE_CAPABILITIES = frozenset(
    {
        Capability.HEADERS,
        Capability.QUEUE_GROUPS,
        Capability.WILDCARDS,
        Capability.ORDERING_PER_KEY,
    }
)

NATS = SchemeSpec(
    scheme="nats",
    factory=NatsBroker,
    capabilities=_CORE_CAPABILITIES,
    description="NATS core: at most once, queue groups, wildcards",
    options=_CONNECTION_OPTIONS,
    requires=("nats",),
    extra="nats",
    default_port=4222,
)

NATS_JETSTREAM = SchemeSpec(
    scheme="nats+jetstream",
    factory=JetStreamBroker,
    capabilities=ALL_CAPABILITIES,
    description="NATS JetStream: at least once, durable consumers, replay",
    options=_CONNECTION_OPTIONS + _JETSTREAM_OPTIONS,
    requires=("nats",),
    extra="nats",
    default_port=4222,
)


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The ``nats://`` and ``nats+jetstream://`` schemes."""
    return [NATS, NATS_JETSTREAM]
