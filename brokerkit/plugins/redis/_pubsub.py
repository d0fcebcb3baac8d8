"""``redis+pubsub://`` and ``rediss+pubsub://``: Redis Pub/Sub, at most once.

Topic ``a.b`` is the channel ``PREFIX + "a.b"``. A pattern subscribes with
``PSUBSCRIBE`` (``*`` and ``>`` both become Redis's ``*``, which also spans dots) and
every message is then checked against the pattern with brokerkit's own rule, so
``user.*`` never delivers ``user.a.b``. Channels are server-wide: the database number
does not separate them, the prefix does.

The payload carries the whole message in a compact binary envelope (see
:func:`encode_envelope`): a 20-byte header starting with 4 magic bytes (zero, ``B``,
``K``, 2), then id, key, headers (JSON, only when there are headers) and body. A
payload without the magic (published by another program) is delivered as it is: its
bytes are the body, with no headers or key, a new id and the time of receipt as
timestamp. (Payloads of earlier brokerkit versions, whose envelope had no magic, are
still decoded.)

Messages published while no subscriber is connected are lost, as are messages in
flight when a subscription closes. Handlers run as messages are read: a subscriber that
stays slower than its publishers lets Redis's Pub/Sub output buffer grow until Redis
drops the connection (``client-output-buffer-limit pubsub``); the subscription then
reconnects and resubscribes, and what was buffered is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from typing import Any

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.errors import BrokerConnectionError, PublishError, SubscribeError
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import SubscribeOptions
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.topics import is_pattern, matches
from brokerkit.core.url import BrokerURL
from brokerkit.plugins.redis._common import (
    client_kwargs,
    close_client,
    glob_escape,
    open_client,
    send_pipelined,
    translate,
)

log = logging.getLogger("brokerkit.redis")

_MAGIC = b"\x00BK\x02"
# magic, timestamp, id length, key length + 1 (0: no key), headers length (0: none)
_HEAD = struct.Struct("!4sdHHI")
_HEAD_SIZE = _HEAD.size
_PACK = _HEAD.pack
_LEGACY_VERSION = 1
# version, timestamp, id length, key length + 1 (0: no key), headers length (0: none)
_LEGACY_HEAD = struct.Struct("!BdHHI")
_MAX_ID = 0xFFFE
_CACHE = 4096  # topics (and received channels) whose names are cached


def encode_envelope(message: Message) -> bytes:
    """The payload of ``message``: the header (magic, timestamp, id length, key length
    plus one or 0, headers length), then id, key, headers (JSON) and body.

    Pure. Raises ``ValueError`` for an id or key longer than 65534 bytes.
    """
    id_bytes = message.id.encode()
    if message.key is None and not message.headers:
        if len(id_bytes) > _MAX_ID:
            raise ValueError("message id and key must be shorter than 65535 bytes")
        return b"".join(
            (_PACK(_MAGIC, message.timestamp, len(id_bytes), 0, 0), id_bytes, message.body)
        )
    key_bytes = b"" if message.key is None else message.key.encode()
    headers = (
        json.dumps(message.headers, ensure_ascii=False, separators=(",", ":")).encode()
        if message.headers
        else b""
    )
    if len(id_bytes) > _MAX_ID or len(key_bytes) > _MAX_ID:
        raise ValueError("message id and key must be shorter than 65535 bytes")
    head = _PACK(
        _MAGIC,
        message.timestamp,
        len(id_bytes),
        0 if message.key is None else len(key_bytes) + 1,
        len(headers),
    )
    return b"".join((head, id_bytes, key_bytes, headers, message.body))


def decode_envelope(payload: bytes) -> Message:
    """The message in a payload made by :func:`encode_envelope` (or by an earlier
    brokerkit version), built without validation (:meth:`Message.trusted`) from the
    magic envelope.

    Pure. Raises ``ValueError`` (or ``struct.error``) for a payload in another format.
    """
    if payload[:4] != _MAGIC:
        return _decode_legacy(payload)
    _magic, timestamp, id_len, key_len, headers_len = _HEAD.unpack_from(payload)
    pos = _HEAD_SIZE + id_len
    message_id = payload[_HEAD_SIZE:pos].decode()
    key: str | None = None
    if key_len:
        key = payload[pos : pos + key_len - 1].decode()
        pos += key_len - 1
    headers: dict[str, str] = {}
    if headers_len:
        headers = json.loads(payload[pos : pos + headers_len])
        pos += headers_len
    if pos > len(payload) or not message_id:
        raise ValueError("truncated envelope")
    return Message.trusted(payload[pos:], headers, message_id, key, timestamp)


def _decode_legacy(payload: bytes) -> Message:
    version, timestamp, id_len, key_len, headers_len = _LEGACY_HEAD.unpack_from(payload)
    if version != _LEGACY_VERSION:
        raise ValueError(f"unknown envelope version {version}")
    pos = _LEGACY_HEAD.size
    message_id = payload[pos : pos + id_len].decode()
    pos += id_len
    key: str | None = None
    if key_len:
        key = payload[pos : pos + key_len - 1].decode()
        pos += key_len - 1
    headers = json.loads(payload[pos : pos + headers_len]) if headers_len else None
    pos += headers_len
    if pos > len(payload):
        raise ValueError("truncated envelope")
    return Message(payload[pos:], headers, id=message_id, key=key, timestamp=timestamp)


def decode_payload(payload: bytes) -> Message:
    """The message of a received payload: :func:`decode_envelope` for brokerkit's
    envelope, else (another program's payload) a message whose body is the payload,
    with a new id and the current time. Pure apart from the id and time."""
    if payload[:4] == _MAGIC:
        return decode_envelope(payload)
    if payload[:1] == b"\x01":
        with contextlib.suppress(Exception):
            return _decode_legacy(payload)
    return Message(payload)


def _glob(prefix: str, pattern: str) -> str:
    tokens = ["*" if token in ("*", ">") else token for token in pattern.split(".")]
    return glob_escape(prefix) + ".".join(tokens)


class _PubSubSubscription(Subscription):
    """One subscription on its own Pub/Sub connection."""

    def __init__(
        self,
        broker: RedisPubSubBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        pubsub: Any,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._pubsub = pubsub
        self._prefix_len = len(broker.prefix.encode())
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        pattern = self.topic if is_pattern(self.topic) else None
        pubsub = self._pubsub
        parse = pubsub.parse_response
        prefix_len = self._prefix_len
        topics: dict[bytes, str] = {}  # channel -> topic ("" if the pattern refuses it)
        dispatch = self.dispatch
        while True:
            try:
                response = await parse(block=True)
                if response is None:
                    continue
                kind = response[0]
                if kind == b"message":
                    channel, data = response[1], response[2]
                elif kind == b"pmessage":
                    channel, data = response[2], response[3]
                else:  # (un)subscribe confirmations, pongs: redis-py's bookkeeping
                    await pubsub.handle_message(response, ignore_subscribe_messages=True)
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "receiving on %r failed, retrying: %s",
                    self.topic,
                    translate(self.broker, SubscribeError, "receive", exc),
                )
                await asyncio.sleep(0.5)
                continue
            topic = topics.get(channel)
            if topic is None:
                topic = channel[prefix_len:].decode(errors="replace")
                if pattern is not None and not matches(pattern, topic):
                    topic = ""
                if len(topics) >= _CACHE:
                    topics.clear()
                topics[channel] = topic
            if not topic:
                continue
            try:
                message = decode_payload(data)
            except Exception as exc:
                log.warning("dropping an unreadable message on %r: %s", topic, exc)
                continue
            if not await dispatch(Delivery(topic, message)):
                return

    async def _close(self) -> None:
        # The connection is discarded afterwards, so cancelling a read in progress is
        # harmless; closing the connection as well ends a read that ignores the cancel.
        self._task.cancel()
        _done, late = await asyncio.wait({self._task}, timeout=1.0)
        try:
            await self._pubsub.aclose()
        except Exception as exc:  # the connection is dropped either way
            log.debug("closing the Pub/Sub connection of %r failed: %s", self.topic, exc)
        if late:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class RedisPubSubBroker(Broker):
    """Redis Pub/Sub (``redis+pubsub://``, ``rediss+pubsub://``): at most once, with
    wildcards; see the module docstring.

    Publish returns once Redis has accepted ``PUBLISH`` (delivered to the subscribers
    connected at that moment); ``publish_many`` sends one pipeline per 1,000 messages.
    Subscribe returns once Redis confirmed the subscription. Safe for any number of
    tasks in one event loop; not thread-safe.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self._kwargs = client_kwargs(url, options)
        self.prefix = str(options["prefix"])
        self._client: Any = None
        self._channels: dict[str, bytes] = {}

    @property
    def client(self) -> Any:
        """The connected ``redis.asyncio.Redis`` client."""
        assert self._client is not None, "connected brokers have a client"
        return self._client

    async def _connect(self) -> None:
        self._client = await open_client(self, self._kwargs)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    def _channel(self, topic: str) -> bytes:
        """The channel of ``topic``, ``prefix + topic`` encoded, cached per topic."""
        channel = self._channels.get(topic)
        if channel is None:
            if len(self._channels) >= _CACHE:
                self._channels.clear()
            channel = self._channels[topic] = (self.prefix + topic).encode()
        return channel

    async def _publish(self, topic: str, message: Message) -> None:
        try:
            await self._client.execute_command(
                "PUBLISH", self._channel(topic), encode_envelope(message)
            )
        except Exception as exc:
            error = translate(self, PublishError, f"publish to {topic!r}", exc)
        else:
            return
        raise error

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        channel = self._channel(topic)
        try:
            await send_pipelined(
                self._client, (("PUBLISH", channel, encode_envelope(m)) for m in messages)
            )
        except Exception as exc:
            error = translate(self, PublishError, f"publish to {topic!r}", exc)
        else:
            return
        raise error

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        pubsub = self.client.pubsub()
        wanted = "psubscribe" if is_pattern(topic) else "subscribe"
        timeout = float(self.options.get("connect_timeout", 10.0))  # type: ignore[arg-type]
        error: Exception | None = None
        try:
            if wanted == "psubscribe":
                await pubsub.psubscribe(_glob(self.prefix, topic))
            else:
                await pubsub.subscribe(self.prefix + topic)
            # Live on return: wait for Redis's confirmation on this connection.
            async with asyncio.timeout(timeout):
                while True:
                    reply = await pubsub.get_message(timeout=timeout)
                    if reply is not None and reply["type"] == wanted:
                        break
        except TimeoutError:
            error = BrokerConnectionError(
                f"subscribe to {topic!r} on {self.url.redacted()}: no confirmation "
                f"from Redis within {timeout}s"
            )
        except Exception as exc:
            error = translate(self, SubscribeError, f"subscribe to {topic!r}", exc)
        if error is not None:
            try:
                await pubsub.aclose()
            except Exception:  # already failing; the original error matters
                log.debug("closing a failed Pub/Sub connection failed", exc_info=True)
            raise error
        return _PubSubSubscription(self, topic, handler, options, pubsub)
