"""``redis://`` and ``rediss://``: Redis Streams, at least once.

Mapping (documented in the package docstring):

* topic ``a.b`` -> stream key ``PREFIX + "a.b"`` (``prefix`` option, default ``bk:``);
* a message is one stream entry with the fields ``id``, ``ts`` (repr of the float
  timestamp), ``k`` (key, if any), ``h`` (headers as one JSON object, if any) and ``b``
  (body), added with ``XADD ... MAXLEN ~ maxlen``;
* every subscription reads through a consumer group, under its own consumer name (a
  random UUID): ``queue=Q`` -> group ``queue.Q``; ``durable=D`` -> group ``durable.D``
  (``durable.D.queue.Q`` with both); both kinds persist in Redis. A plain subscription
  gets a private group ``sub.<uuid>``, destroyed when it closes;
* a new group is created at ``$`` (``start="new"``) or ``0`` (``start="earliest"``);
* ack is ``XACK``. A nacked message is claimed back at once (``XCLAIM``) and redelivered;
  ``attempt`` is the entry's delivery counter. On close, unsettled entries are marked
  long idle (with their counter reset to the deliveries a handler really saw), so the
  next member of the group, or the durable's next subscription, claims them at once;
  entries of consumers that vanished (crash) are claimed after ``claim_idle`` seconds.
  Running handlers keep their entries fresh, so a slow handler is not robbed.
* a process that dies without unsubscribing leaves its private group behind (it holds
  no messages, trimming still applies); ``XGROUP DESTROY`` removes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import deque
from typing import Any

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.errors import PublishError, SubscribeError
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import SubscribeOptions
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.url import BrokerURL
from brokerkit.plugins.redis._common import (
    client_kwargs,
    close_client,
    new_client,
    open_client,
    translate,
)

log = logging.getLogger("brokerkit.redis")

_F_ID = b"id"
_F_TS = b"ts"
_F_KEY = b"k"
_F_HEADERS = b"h"
_F_BODY = b"b"
_LONG_IDLE_MS = 10**11  # "idle for years": claimable by anyone at once
_PAGE = 1000


def encode_fields(message: Message) -> dict[bytes, bytes | str]:
    """The stream-entry fields of ``message`` (see the module docstring). Pure."""
    fields: dict[bytes, bytes | str] = {_F_ID: message.id, _F_TS: repr(message.timestamp)}
    if message.key is not None:
        fields[_F_KEY] = message.key
    if message.headers:
        fields[_F_HEADERS] = json.dumps(message.headers, ensure_ascii=False, separators=(",", ":"))
    fields[_F_BODY] = message.body
    return fields


def decode_fields(entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
    """The message stored in one stream entry. Entries written by other programs are
    read leniently: a missing id becomes the entry id, a missing timestamp the entry's
    time, a missing body ``b""``."""
    raw_id = fields.get(_F_ID)
    raw_ts = fields.get(_F_TS)
    raw_key = fields.get(_F_KEY)
    raw_headers = fields.get(_F_HEADERS)
    if raw_ts is None:  # not written by brokerkit: use the entry's time
        raw_ts = str(int(entry_id.split(b"-", 1)[0]) / 1000.0).encode()
    timestamp = float(raw_ts)
    return Message(
        fields.get(_F_BODY, b""),
        json.loads(raw_headers) if raw_headers else None,
        id=raw_id.decode() if raw_id else entry_id.decode(),
        key=raw_key.decode() if raw_key else None,
        timestamp=timestamp,
    )


def group_name(options: SubscribeOptions) -> str | None:
    """The shared consumer group of a subscription, or None for a private one. Pure."""
    if options.durable is not None:
        name = f"durable.{options.durable}"
        return name if options.queue is None else f"{name}.queue.{options.queue}"
    if options.queue is not None:
        return f"queue.{options.queue}"
    return None


class _StreamDelivery(Delivery):
    __slots__ = ("_entry_id", "_sub")

    def __init__(
        self, sub: _StreamSubscription, entry_id: bytes, message: Message, attempt: int
    ) -> None:
        super().__init__(sub.topic, message, attempt)
        self._sub = sub
        self._entry_id = entry_id

    async def _ack(self) -> None:
        await self._sub.ack_entry(self._entry_id)

    async def _nack(self, requeue: bool) -> None:
        if requeue:
            self._sub.retry_entry(self._entry_id, self.attempt)
        else:
            await self._sub.ack_entry(self._entry_id)


class _StreamSubscription(Subscription):
    """One subscription reading a stream through a consumer group (see module doc)."""

    def __init__(
        self,
        broker: RedisStreamsBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        *,
        group: str,
        private: bool,
        reader: Any,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._redis = broker
        self._client = broker.client
        self._reader = reader  # a dedicated client: blocking reads stall nothing else
        self.key = broker.stream_key(topic)
        self.group = group
        self.private = private
        self.consumer = uuid.uuid4().hex
        # Entries in this consumer's pending list that we know of -> deliveries so far.
        self._attempts: dict[bytes, int] = {}
        # Entries whose latest delivery a handler has seen (their counter is honest).
        self._seen: set[bytes] = set()
        self._retry: dict[bytes, int] = {}
        self._buffer: deque[tuple[bytes, dict[bytes, bytes], int]] = deque()
        # Tasks stop at this flag rather than by cancellation: redis-py 8.1 was seen to
        # swallow a cancellation during a blocking XREADGROUP and then wait forever.
        self._stop = asyncio.Event()
        self._loop_task = asyncio.create_task(self._consume())
        self._keeper_task = asyncio.create_task(self._keep_fresh())

    # --- settling (called from handler tasks) --------------------------------------------

    async def ack_entry(self, entry_id: bytes) -> None:
        """XACK one entry: the group will not deliver it again. Idempotent; raises
        :class:`SubscribeError` or :class:`BrokerConnectionError` if Redis fails."""
        self._attempts.pop(entry_id, None)
        self._seen.discard(entry_id)
        try:
            await self._client.xack(self.key, self.group, entry_id)
        except Exception as exc:
            raise translate(self._redis, SubscribeError, f"ack on {self.topic!r}", exc) from None

    def retry_entry(self, entry_id: bytes, attempt: int) -> None:
        """Queue a nacked entry (delivered ``attempt`` times) for prompt redelivery; the
        read loop claims it back before reading anything new. Never raises."""
        self._retry[entry_id] = attempt

    # --- the read loop --------------------------------------------------------------------

    async def _consume(self) -> None:
        broker = self._redis
        count = max(self.options.max_in_flight, broker.batch)
        sweep_every = min(broker.claim_idle / 2, 1.0)
        next_sweep = 0.0
        while not self._stop.is_set():
            try:
                if self._retry:
                    await self._claim_retries()
                elif time.monotonic() >= next_sweep:
                    await self._claim_orphans()
                    next_sweep = time.monotonic() + sweep_every
                if not self._buffer:
                    await self._read(count)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _stream_deleted(exc):
                    # Someone deleted the stream (and its groups); what exists now is new.
                    log.warning("stream %s was deleted; recreating group %s", self.key, self.group)
                    with contextlib.suppress(Exception):
                        await create_group(self._client, self.key, self.group, "0")
                        continue
                log.warning(
                    "reading %s for %r failed, retrying: %s",
                    self.key.decode(),
                    self.topic,
                    translate(broker, SubscribeError, "read", exc),
                )
                await self._pause(1.0)
                continue
            while self._buffer and not self._retry:
                entry_id, fields, attempt = self._buffer.popleft()
                try:
                    message = decode_fields(entry_id, fields)
                except Exception as exc:
                    log.warning("dropping unreadable entry %s of %s: %s", entry_id, self.key, exc)
                    await self.ack_entry(entry_id)
                    continue
                self._seen.add(entry_id)
                delivery = _StreamDelivery(self, entry_id, message, attempt)
                if not await self.dispatch(delivery):
                    self._seen.discard(entry_id)
                    return

    async def _read(self, count: int) -> None:
        result = await self._reader.xreadgroup(
            self.group, self.consumer, {self.key: ">"}, count=count, block=self._redis.block_ms
        )
        for _stream, entries in result or ():
            for entry_id, fields in entries:
                self._attempts[entry_id] = 1
                if fields is not None:
                    self._buffer.append((entry_id, fields, 1))

    async def _claim_retries(self) -> None:
        retry = dict(self._retry)
        ids = sorted(retry, key=_id_order)
        claimed = await self._client.xclaim(self.key, self.group, self.consumer, 0, ids)
        for entry_id in ids:  # only once Redis answered: a failed claim is tried again
            self._retry.pop(entry_id, None)
        entries: list[tuple[bytes, dict[bytes, bytes], int]] = []
        for entry_id, fields in claimed:
            self._seen.discard(entry_id)
            attempt = retry.get(entry_id, self._attempts.get(entry_id, 1)) + 1
            self._attempts[entry_id] = attempt
            if fields is not None:
                entries.append((entry_id, fields, attempt))
        returned = {entry[0] for entry in entries}
        for entry_id in ids:
            if entry_id not in returned:  # trimmed away (or deleted) meanwhile
                self._attempts.pop(entry_id, None)
                self._seen.discard(entry_id)
        self._buffer.extendleft(reversed(entries))

    async def _claim_orphans(self) -> None:
        """Claim entries other consumers left idle for ``claim_idle``; forget empty ones."""
        broker = self._redis
        idle_ms = int(broker.claim_idle * 1000)
        pending = await self._client.xpending_range(
            self.key, self.group, "-", "+", _PAGE, idle=idle_ms
        )
        counts = {
            p["message_id"]: int(p["times_delivered"])
            for p in pending
            if p["consumer"].decode() != self.consumer
        }
        if counts:
            ids = sorted(counts, key=_id_order)
            claimed = await self._client.xclaim(self.key, self.group, self.consumer, idle_ms, ids)
            for entry_id, fields in claimed:
                if fields is None:  # trimmed away while pending: nothing to deliver
                    await self._client.xack(self.key, self.group, entry_id)
                    continue
                attempt = counts.get(entry_id, 0) + 1
                self._attempts[entry_id] = attempt
                self._buffer.append((entry_id, fields, attempt))
        if not self.private:
            await self._forget_departed(idle_ms)

    async def _forget_departed(self, idle_ms: int) -> None:
        # A consumer with nothing pending that has not read for long is gone (live ones
        # read every block_ms); deleting it loses nothing and keeps the group tidy.
        limit = max(idle_ms, 10 * self._redis.block_ms, 5000)
        for info in await self._client.xinfo_consumers(self.key, self.group):
            name = info["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name != self.consumer and int(info["pending"]) == 0 and int(info["idle"]) > limit:
                await self._client.xgroup_delconsumer(self.key, self.group, name)

    async def _keep_fresh(self) -> None:
        """Reset the idle time of entries we hold so that no other member claims them."""
        interval = max(self._redis.claim_idle / 3, 0.05)
        while not await self._pause(interval):
            held = [e for e in self._attempts if e not in self._retry]
            if not held:
                continue
            try:
                await self._client.xclaim(self.key, self.group, self.consumer, 0, held, justid=True)
            except Exception as exc:
                log.debug("refreshing pending entries of %r failed: %s", self.topic, exc)

    # --- closing ----------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if the subscription is stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _close(self) -> None:
        self._stop.set()
        tasks = (self._loop_task, self._keeper_task)
        _done, late = await asyncio.wait(tasks, timeout=self._redis.block_ms / 1000 + 5.0)
        for task in late:  # Redis stopped answering: give up on these commands
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_client(self._reader)
        if not self._redis.connected_client():
            return
        if self.private:
            await self._client.xgroup_destroy(self.key, self.group)
            return
        await self._release_pending()

    async def _release_pending(self) -> None:
        """Hand our unsettled entries back to the group, claimable at once, with their
        delivery counter set to the deliveries a handler really saw."""
        start: bytes | str = "-"
        released = 0
        while True:
            pending = await self._client.xpending_range(
                self.key, self.group, start, "+", _PAGE, consumername=self.consumer
            )
            if not pending:
                break
            pipe = self._client.pipeline(transaction=False)
            for p in pending:
                entry_id = p["message_id"]
                count = int(p["times_delivered"])
                if entry_id not in self._seen:
                    count = max(count - 1, 0)
                pipe.xclaim(
                    self.key,
                    self.group,
                    self.consumer,
                    0,
                    [entry_id],
                    idle=_LONG_IDLE_MS,
                    retrycount=count,
                    justid=True,
                )
            await pipe.execute()
            released += len(pending)
            if len(pending) < _PAGE:
                break
            start = b"(" + pending[-1]["message_id"]
        if not released:
            await self._client.xgroup_delconsumer(self.key, self.group, self.consumer)


def _stream_deleted(exc: Exception) -> bool:
    text = str(exc)
    return text.startswith("NOGROUP") or text.startswith("UNBLOCKED the stream key")


async def create_group(client: Any, key: bytes, group: str, start: str) -> None:
    """Create consumer group ``group`` of stream ``key`` at ``start`` (creating the
    stream if needed); an existing group is kept as it is. Idempotent."""
    from redis.exceptions import ResponseError

    try:
        await client.xgroup_create(key, group, id=start, mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _id_order(entry_id: bytes) -> tuple[int, int]:
    ms, _, seq = entry_id.partition(b"-")
    return int(ms), int(seq or 0)


class RedisStreamsBroker(Broker):
    """Redis Streams (``redis://``, ``rediss://``): at least once, consumer groups,
    durable resume, replay, dead letter; see the module docstring for the mapping.

    Publish returns once Redis has appended the entry (``XADD`` replied). Subscribe
    returns once the consumer group exists, so every later publish reaches it. Safe for
    any number of tasks in one event loop; not thread-safe.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self._kwargs = client_kwargs(url, options)
        self.prefix = str(options["prefix"])
        self.maxlen = int(options["maxlen"])  # type: ignore[call-overload]
        self.approximate = options["trim"] == "approximate"
        self.block_ms = int(options["block_ms"])  # type: ignore[call-overload]
        self.claim_idle = float(options["claim_idle"])  # type: ignore[arg-type]
        self.batch = int(options["batch"])  # type: ignore[call-overload]
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The connected ``redis.asyncio.Redis`` client (shared connection pool)."""
        assert self._client is not None, "connected brokers have a client"
        return self._client

    def connected_client(self) -> bool:
        """Whether the client is open (it is closed after a disconnect)."""
        return self._client is not None

    def stream_key(self, topic: str) -> bytes:
        """The Redis key of the stream of ``topic``: ``prefix + topic``. Pure."""
        return (self.prefix + topic).encode()

    async def _connect(self) -> None:
        self._client = await open_client(self, self._kwargs)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    def _xadd_args(self, message: Message) -> dict[str, Any]:
        if self.maxlen:
            return {"maxlen": self.maxlen, "approximate": self.approximate}
        return {}

    async def _publish(self, topic: str, message: Message) -> None:
        try:
            await self.client.xadd(
                self.stream_key(topic), encode_fields(message), **self._xadd_args(message)
            )
        except Exception as exc:
            error = translate(self, PublishError, f"publish to {topic!r}", exc)
        else:
            return
        raise error

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        key = self.stream_key(topic)
        try:
            pipe = self.client.pipeline(transaction=False)
            for message in messages:
                pipe.xadd(key, encode_fields(message), **self._xadd_args(message))
            await pipe.execute()
        except Exception as exc:
            error = translate(self, PublishError, f"publish to {topic!r}", exc)
        else:
            return
        raise error

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        key = self.stream_key(topic)
        shared = group_name(options)
        group = shared or f"sub.{uuid.uuid4().hex}"
        start = "0" if options.start == "earliest" else "$"
        try:
            await create_group(self.client, key, group, start)
            reader = new_client(self._kwargs, max_connections=1)
        except Exception as exc:
            error = translate(self, SubscribeError, f"subscribe to {topic!r}", exc)
        else:
            return _StreamSubscription(
                self, topic, handler, options, group=group, private=shared is None, reader=reader
            )
        raise error
