"""``redis://`` and ``rediss://``: Redis Streams, at least once.

Mapping (documented in the package docstring):

* topic ``a.b`` -> stream key ``PREFIX + "a.b"`` (``prefix`` option, default ``bk:``);
* a message is one stream entry with the fields ``m`` (``"<timestamp> <id>"``: the
  repr of the float timestamp, one space, the message id), ``k`` (key, if any), ``h``
  (headers as one JSON object, if any) and ``b`` (body), added with
  ``XADD ... MAXLEN ~ maxlen``. The ``m`` field marks an entry written by brokerkit.
  Entries without it are read leniently (other programs, or earlier brokerkit versions, which
  wrote ``id`` and ``ts`` fields): ``id`` and ``ts`` are used when present, else the
  entry id and the entry's time; a missing body is ``b""``;
* every subscription reads through a consumer group, under its own consumer name (a
  random UUID): ``queue=Q`` -> group ``queue.Q``; ``durable=D`` -> group ``durable.D``
  (``durable.D.queue.Q`` with both); both kinds persist in Redis. A plain subscription
  gets a private group ``sub.<uuid>``, destroyed when it closes;
* a new group is created at ``$`` (``start="new"``) or ``0`` (``start="earliest"``);
* one ``XREADGROUP`` reads up to ``max(prefetch, max_in_flight)`` entries (URL option
  ``prefetch``, 1 to 10000, default 100). Those entries belong to this consumer until
  handled: a larger ``prefetch`` means fewer round trips (throughput), a smaller one
  leaves more entries to the other members of a ``queue`` group, which cannot take
  what one member prefetched until it is handled or handed back. Entries prefetched
  but not handed to the handler when the subscription closes are handed back (see
  below), never acked;
* ack is ``XACK``, **batched**: :meth:`Delivery.ack` records the ack and queues the
  entry; queued entries are acknowledged with one ``XACK`` sent together with the next
  ``XREADGROUP`` (one pipeline), or at most a few milliseconds later by a flush,
  whichever comes first. ``ack()`` returns once the entry is queued, like AMQP's and
  JetStream's acks (fire and forget to the server). ``unsubscribe()`` and
  ``disconnect()`` send every queued ``XACK`` before they return. If an ``XACK`` fails
  (connection trouble is retried), the entry stays pending and is delivered again
  (claimed by a member of the group, or handed back when the subscription closes):
  at least once holds, and the failure is logged (without the password). An entry
  whose ``XACK`` is queued is never claimed back or handed back by this subscription;
* a nacked message is claimed back at once (``XCLAIM``) and redelivered; ``attempt``
  is the entry's delivery counter. On close, unsettled entries are marked long idle
  (with their counter reset to the deliveries a handler really saw), so the next
  member of the group, or the durable's next subscription, claims them at once;
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
    send_pipelined,
    translate,
)

log = logging.getLogger("brokerkit.redis")

_F_META = b"m"
_F_ID = b"id"  # written by earlier brokerkit versions; still read
_F_TS = b"ts"  # written by earlier brokerkit versions; still read
_F_KEY = b"k"
_F_HEADERS = b"h"
_F_BODY = b"b"
_LONG_IDLE_MS = 10**11  # "idle for years": claimable by anyone at once
_PAGE = 1000
_ACK_DELAY = 0.003  # seconds a queued XACK waits for the next XREADGROUP at most
_ACK_RETRY_DELAY = 0.5  # seconds before a failed XACK flush is tried again
_HEADS_CACHE = 4096  # topics whose XADD arguments are cached


def encode_fields(message: Message) -> list[bytes | str]:
    """The stream-entry fields of ``message`` as a flat ``[field, value, ...]`` list, as
    ``XADD`` takes them (see the module docstring). Pure."""
    fields: list[bytes | str] = [_F_META, f"{message.timestamp!r} {message.id}"]
    if message.key is not None:
        fields += (_F_KEY, message.key)
    if message.headers:
        fields += (
            _F_HEADERS,
            json.dumps(message.headers, ensure_ascii=False, separators=(",", ":")),
        )
    fields += (_F_BODY, message.body)
    return fields


def decode_fields(entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
    """The message stored in one stream entry.

    Entries written by brokerkit (with the ``m`` field) are decoded without validation
    (:meth:`Message.trusted`). Others are read leniently and validated: the ``id`` and
    ``ts`` fields if present, else the entry id and the entry's time; a missing body
    becomes ``b""``. Raises ``ValueError`` (or another ``Exception``) for an entry that
    cannot be read.
    """
    meta = fields.get(_F_META)
    raw_key = fields.get(_F_KEY)
    raw_headers = fields.get(_F_HEADERS)
    if meta is not None:
        meta_ts, _, meta_id = meta.partition(b" ")
        if meta_id:
            return Message.trusted(
                fields.get(_F_BODY, b""),
                json.loads(raw_headers) if raw_headers else {},
                meta_id.decode(),
                raw_key.decode() if raw_key else None,
                float(meta_ts),
            )
    raw_id = fields.get(_F_ID)
    raw_ts = fields.get(_F_TS)
    if raw_ts is None:  # not written by brokerkit: use the entry's time
        raw_ts = str(int(entry_id.split(b"-", 1)[0]) / 1000.0).encode()
    return Message(
        fields.get(_F_BODY, b""),
        json.loads(raw_headers) if raw_headers else None,
        id=raw_id.decode() if raw_id else entry_id.decode(),
        key=raw_key.decode() if raw_key else None,
        timestamp=float(raw_ts),
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
    """A delivery of one stream entry.

    ``ack()`` (and ``nack(requeue=False)``, and the ack after dead-lettering) records
    the ack and queues the entry's ``XACK``; it returns without waiting for Redis. The
    subscription sends queued ``XACK`` s in one pipeline with its next ``XREADGROUP``,
    or a few milliseconds later, and always before its ``unsubscribe()`` (or the
    broker's ``disconnect()``) returns. An ``XACK`` that fails leaves the entry pending,
    to be delivered again (at least once); the failure is logged. Once the subscription
    has closed, ``ack()`` sends the ``XACK`` itself and raises if Redis fails.
    ``nack()`` (requeue) has the entry claimed back and redelivered at once.
    """

    __slots__ = ("_entry_id", "_sub")

    def __init__(
        self, sub: _StreamSubscription, entry_id: bytes, message: Message, attempt: int
    ) -> None:
        super().__init__(sub.topic, message, attempt)
        self._sub = sub
        self._entry_id = entry_id

    async def _ack(self) -> None:
        sub = self._sub
        if sub.acks_direct:
            await sub.ack_entry(self._entry_id)
        else:
            sub.queue_ack(self._entry_id)

    async def _nack(self, requeue: bool) -> None:
        if requeue:
            self._sub.retry_entry(self._entry_id, self.attempt)
        else:
            await self._ack()


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
        self._loop = asyncio.get_running_loop()
        self.key = broker.stream_key(topic)
        self.group = group
        self.private = private
        self.consumer = uuid.uuid4().hex
        #: XREADGROUP COUNT: max(prefetch, max_in_flight).
        self.count = max(broker.prefetch, options.max_in_flight)
        # Entries in this consumer's pending list that we know of -> deliveries so far.
        self._attempts: dict[bytes, int] = {}
        # Entries whose latest delivery a handler has seen (their counter is honest).
        self._seen: set[bytes] = set()
        self._retry: dict[bytes, int] = {}
        self._buffer: deque[tuple[bytes, dict[bytes, bytes], int]] = deque()
        # Batched acks: entries whose XACK is queued (not sent yet), and entries whose
        # XACK is queued or sent but not yet confirmed by Redis (a superset).
        self._ack_queue: list[bytes] = []
        self._acking: set[bytes] = set()
        self._ack_timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        #: True once closing: ``ack()`` then sends its XACK itself and awaits it.
        self.acks_direct = False
        # The orphan sweep runs when this flag is set, by a timer (not checked per entry).
        self._sweep_due = True
        self._sweep_every = min(broker.claim_idle / 2, 1.0)
        self._sweep_timer: asyncio.TimerHandle | None = None
        # Tasks stop at this flag rather than by cancellation: redis-py 8.1 was seen to
        # swallow a cancellation during a blocking XREADGROUP and then wait forever.
        self._stop = asyncio.Event()
        self._loop_task = asyncio.create_task(self._consume())
        self._keeper_task = asyncio.create_task(self._keep_fresh())

    # --- settling (called from handler tasks) --------------------------------------------

    async def ack_entry(self, entry_id: bytes) -> None:
        """XACK one entry now: the group will not deliver it again. Idempotent; raises
        :class:`SubscribeError` or :class:`BrokerConnectionError` if Redis fails."""
        self._attempts.pop(entry_id, None)
        self._seen.discard(entry_id)
        try:
            await self._client.xack(self.key, self.group, entry_id)
        except Exception as exc:
            raise translate(self._redis, SubscribeError, f"ack on {self.topic!r}", exc) from None

    def queue_ack(self, entry_id: bytes) -> None:
        """Record the ack of one entry and queue its XACK (see the module docstring).
        Idempotent; never raises; does not wait for Redis."""
        self._attempts.pop(entry_id, None)
        self._seen.discard(entry_id)
        self._retry.pop(entry_id, None)
        acking = self._acking
        if entry_id in acking:
            return
        acking.add(entry_id)
        self._ack_queue.append(entry_id)
        if self._ack_timer is None:
            self._ack_timer = self._loop.call_later(_ACK_DELAY, self._flush_later)

    def retry_entry(self, entry_id: bytes, attempt: int) -> None:
        """Queue a nacked entry (delivered ``attempt`` times) for prompt redelivery; the
        read loop claims it back before reading anything new. An entry whose ack is
        queued stays acked. Never raises."""
        if entry_id not in self._acking:
            self._retry[entry_id] = attempt

    def _take_acks(self) -> list[bytes]:
        """The queued XACKs, removed from the queue (they stay in ``_acking`` until
        Redis confirmed them); cancels the flush timer."""
        ids = self._ack_queue
        self._ack_queue = []
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        return ids

    def _flush_later(self) -> None:
        self._ack_timer = None
        if self._ack_queue:
            task = asyncio.create_task(self._flush_acks(self._take_acks()))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush_acks(self, ids: list[bytes]) -> None:
        """Send one XACK for ``ids`` through the shared client. Never raises."""
        if not ids:
            return
        try:
            await self._client.execute_command("XACK", self.key, self.group, *ids)
        except Exception as exc:
            self._acks_failed(ids, exc)
        else:
            self._acking.difference_update(ids)

    def _acks_failed(self, ids: list[bytes], exc: Exception) -> None:
        """An XACK of ``ids`` failed: retry later on connection trouble (unless
        closing), else give up: the entries stay pending and are delivered again."""
        from redis import exceptions as rexc

        error = translate(self._redis, SubscribeError, f"ack on {self.topic!r}", exc)
        retry = (
            not self.acks_direct
            and not self._stop.is_set()
            and isinstance(exc, (rexc.ConnectionError, rexc.TimeoutError, OSError))
        )
        log.warning(
            "acknowledging %d entries of %s for %r failed (%s): %s",
            len(ids),
            self.key.decode(errors="replace"),
            self.topic,
            "will retry" if retry else "they stay pending and will be delivered again",
            error,
        )
        if retry:
            self._ack_queue[:0] = ids
            if self._ack_timer is None:
                self._ack_timer = self._loop.call_later(_ACK_RETRY_DELAY, self._flush_later)
        else:
            # Pending they stay; a handler saw them, so their delivery counter is honest
            # (a redelivery shows the next attempt).
            self._acking.difference_update(ids)
            self._seen.update(ids)

    async def _flush_all_acks(self) -> None:
        """Wait for flushes in progress, then XACK everything not confirmed yet (XACK is
        idempotent). Called on close, after the read loop stopped. Never raises."""
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)
        self._take_acks()
        ids = list(self._acking)
        for start in range(0, len(ids), _PAGE):
            await self._flush_acks(ids[start : start + _PAGE])
        self._acking.clear()

    # --- the read loop --------------------------------------------------------------------

    def _mark_sweep(self) -> None:
        self._sweep_timer = None
        self._sweep_due = True

    async def _consume(self) -> None:
        broker = self._redis
        buffer = self._buffer
        seen = self._seen
        dispatch = self.dispatch
        while not self._stop.is_set():
            try:
                if self._retry:
                    await self._claim_retries()
                elif self._sweep_due:
                    self._sweep_due = False
                    await self._claim_orphans()
                    self._sweep_timer = self._loop.call_later(self._sweep_every, self._mark_sweep)
                if not buffer:
                    await self._read()
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
                    self.key.decode(errors="replace"),
                    self.topic,
                    translate(broker, SubscribeError, "read", exc),
                )
                await self._pause(1.0)
                continue
            while buffer and not self._retry:
                entry_id, fields, attempt = buffer.popleft()
                try:
                    message = decode_fields(entry_id, fields)
                except Exception as exc:
                    log.warning("dropping unreadable entry %s of %s: %s", entry_id, self.key, exc)
                    self.queue_ack(entry_id)
                    continue
                seen.add(entry_id)
                if not await dispatch(_StreamDelivery(self, entry_id, message, attempt)):
                    seen.discard(entry_id)
                    return

    async def _read(self) -> None:
        """XREADGROUP up to ``count`` new entries into the buffer; queued XACKs go in
        the same pipeline, ahead of it."""
        ids = self._take_acks() if self._ack_queue else None
        if ids:
            pipe = self._reader.pipeline(transaction=False)
            pipe.execute_command("XACK", self.key, self.group, *ids)
            pipe.xreadgroup(
                self.group,
                self.consumer,
                {self.key: ">"},
                count=self.count,
                block=self._redis.block_ms,
            )
            try:
                acked, result = await pipe.execute(raise_on_error=False)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    self._acks_failed(ids, exc)
                else:  # cancelled: the close flushes what is unconfirmed
                    self._ack_queue[:0] = ids
                raise
            if isinstance(acked, Exception):
                self._acks_failed(ids, acked)
            else:
                self._acking.difference_update(ids)
            if isinstance(result, Exception):
                raise result
        else:
            result = await self._reader.xreadgroup(
                self.group,
                self.consumer,
                {self.key: ">"},
                count=self.count,
                block=self._redis.block_ms,
            )
        attempts = self._attempts
        append = self._buffer.append
        for _stream, entries in result or ():
            for entry_id, fields in entries:
                attempts[entry_id] = 1
                if fields is not None:
                    append((entry_id, fields, 1))

    async def _claim_retries(self) -> None:
        retry = dict(self._retry)
        ids = sorted((e for e in retry if e not in self._acking), key=_id_order)
        claimed = (
            await self._client.xclaim(self.key, self.group, self.consumer, 0, ids) if ids else []
        )
        for entry_id in retry:  # only once Redis answered: a failed claim is tried again
            self._retry.pop(entry_id, None)
        entries: list[tuple[bytes, dict[bytes, bytes], int]] = []
        for entry_id, fields in claimed:
            if entry_id in self._acking:  # acked meanwhile: acked it stays
                continue
            self._seen.discard(entry_id)
            attempt = retry.get(entry_id, self._attempts.get(entry_id, 1)) + 1
            self._attempts[entry_id] = attempt
            if fields is not None:
                entries.append((entry_id, fields, attempt))
        returned = {entry[0] for entry in entries}
        for entry_id in ids:
            if entry_id not in returned and entry_id not in self._acking:
                # trimmed away (or deleted) meanwhile
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
        acking = self._acking
        counts = {
            p["message_id"]: int(p["times_delivered"])
            for p in pending
            if p["consumer"].decode() != self.consumer and p["message_id"] not in acking
        }
        if counts:
            ids = sorted(counts, key=_id_order)
            claimed = await self._client.xclaim(self.key, self.group, self.consumer, idle_ms, ids)
            for entry_id, fields in claimed:
                if fields is None:  # trimmed away while pending: nothing to deliver
                    await self._client.xack(self.key, self.group, entry_id)
                    continue
                if entry_id in acking:  # acked meanwhile: acked it stays
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
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        tasks = (self._loop_task, self._keeper_task)
        _done, late = await asyncio.wait(tasks, timeout=self._redis.block_ms / 1000 + 5.0)
        for task in late:  # Redis stopped answering: give up on these commands
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await close_client(self._reader)
        # From here on an ack (a late manual one) is sent at once, not queued.
        self.acks_direct = True
        if not self._redis.connected_client():
            self._take_acks()
            return
        await self._flush_all_acks()
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

    Publish returns once Redis has appended the entry (``XADD`` replied);
    ``publish_many`` sends one pipeline per 1,000 messages. Subscribe returns once the
    consumer group exists, so every later publish reaches it. Acks are batched (see the
    module docstring). Safe for any number of tasks in one event loop; not thread-safe.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self._kwargs = client_kwargs(url, options)
        self.prefix = str(options["prefix"])
        self.maxlen = int(options["maxlen"])  # type: ignore[call-overload]
        self.approximate = options["trim"] == "approximate"
        self.block_ms = int(options["block_ms"])  # type: ignore[call-overload]
        self.claim_idle = float(options["claim_idle"])  # type: ignore[arg-type]
        batch = options.get("batch")
        prefetch = options["prefetch"] if batch is None else batch
        #: Entries one XREADGROUP may read ahead of the handlers (``prefetch`` option;
        #: the deprecated ``batch`` option, when given, takes its place).
        self.prefetch = int(prefetch)  # type: ignore[call-overload]
        self._client: Any = None
        # b"XADD", key, [b"MAXLEN", b"~", b"n",] b"*": the fixed head of a topic's XADD.
        self._trim: tuple[Any, ...] = ()
        if self.maxlen:
            self._trim = (b"MAXLEN", b"~") if self.approximate else (b"MAXLEN",)
            self._trim += (str(self.maxlen).encode(),)
        self._heads: dict[str, tuple[Any, ...]] = {}

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

    def _head(self, topic: str) -> tuple[Any, ...]:
        """``(b"XADD", key, [b"MAXLEN", b"~", b"n",] b"*")`` for ``topic``, cached per topic.

        All bytes: redis-py encodes a str or int argument again for every command."""
        head = self._heads.get(topic)
        if head is None:
            if len(self._heads) >= _HEADS_CACHE:
                self._heads.clear()
            head = self._heads[topic] = (b"XADD", self.stream_key(topic), *self._trim, b"*")
        return head

    async def _connect(self) -> None:
        self._client = await open_client(self, self._kwargs)

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await close_client(client)

    async def _publish(self, topic: str, message: Message) -> None:
        try:
            await self._client.execute_command(*self._head(topic), *encode_fields(message))
        except Exception as exc:
            error = translate(self, PublishError, f"publish to {topic!r}", exc)
        else:
            return
        raise error

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        head = self._head(topic)
        try:
            await send_pipelined(self._client, ((*head, *encode_fields(m)) for m in messages))
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
