"""The two sides every benchmark compares: brokerkit, and the raw client library.

Each side offers the same four operations, doing the same work with the same delivery
guarantee, so that ``run.py`` can time them with one piece of code:

* ``publish(topic, bodies)``: publish one message at a time, each awaited as far as the
  delivery guarantee needs (NATS core: written, one flush at the end; JetStream: publish
  ack; Kafka: acks=all; RabbitMQ: publisher confirm; Redis: the command's reply);
* ``publish_batch(topic, bodies)``: the client's batched/pipelined path (brokerkit:
  ``publish_many`` in chunks of ``BATCH``; raw: the analogous pipeline or concurrent
  futures), with the same guarantee once it returns;
* ``subscribe(topic, on_message)``: a live subscription calling ``on_message(body)`` once
  per message *after* the message was acknowledged to the broker (where the broker has
  acks); returns an async ``unsubscribe``;
* ``open()`` / ``close()``: connect and release, not timed.

Client libraries are imported inside the methods, so a missing one only skips its kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import brokerkit
from brokerkit.core.broker import Broker

#: Messages per publish_many call (brokerkit) / per pipeline or window of futures (raw).
BATCH = 1000
#: Redis Streams trimming, as brokerkit's default (``maxlen=100000``, approximate).
MAXLEN = 100_000

OnMessage = Callable[[bytes], None]
Unsubscribe = Callable[[], Awaitable[None]]


def report_crash(task: asyncio.Task[None]) -> None:
    """Done-callback of a consumer task: say why it stopped (else a run just times out)."""
    if not task.cancelled() and task.exception() is not None:
        print(f"    (raw consumer stopped: {task.exception()!r})", file=sys.stderr)


def chunks(items: list[bytes], size: int = BATCH) -> list[list[bytes]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Side:
    """Base of both sides; ``has_batch`` says whether ``publish_batch`` is a real path."""

    label = "?"
    has_batch = False

    def topic(self, name: str) -> str:
        """A fresh topic (or subject / routing key / stream) name for one measurement."""
        return f"bench.{self.label}.{name}.{uuid.uuid4().hex[:10]}"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        raise NotImplementedError

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        await self.publish(topic, bodies)

    async def publish_one(self, topic: str, body: bytes) -> None:
        """One message, for the latency loop."""
        await self.publish(topic, [body])

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        raise NotImplementedError


# --- brokerkit ---------------------------------------------------------------------------


class BrokerkitSide(Side):
    """brokerkit through its public API; the handler acks explicitly, then counts."""

    label = "bk"

    def __init__(self, url: str, max_in_flight: int = 1) -> None:
        self.url = url
        self.max_in_flight = max_in_flight
        # Kafka: a plain subscription reads by assignment and commits nothing; a durable
        # one is a consumer group committing acked offsets, as the raw side does.
        self.durable = url.startswith("kafka")
        self.broker: Broker = brokerkit.connect(url)
        self.has_batch = type(self.broker)._publish_many is not Broker._publish_many

    async def open(self) -> None:
        await self.broker.connect()

    async def close(self) -> None:
        await self.broker.disconnect()

    async def publish_one(self, topic: str, body: bytes) -> None:
        await self.broker.publish(topic, body)

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.broker.publish
        for body in bodies:
            await publish(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        for chunk in chunks(bodies):
            await self.broker.publish_many(topic, chunk)

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        async def handler(delivery: brokerkit.Delivery) -> None:
            await delivery.ack()
            on_message(delivery.message.body)

        if self.durable:
            name = f"bench-{uuid.uuid4().hex[:10]}"
            sub = await self.broker.subscribe(
                topic, handler, max_in_flight=self.max_in_flight, durable=name
            )
        else:
            sub = await self.broker.subscribe(topic, handler, max_in_flight=self.max_in_flight)
        return sub.unsubscribe


# --- memory: a plain asyncio.Queue pipeline is the floor ----------------------------------


class RawMemory(Side):
    """The baseline for ``memory://``: one bounded asyncio.Queue and a task per subscriber."""

    label = "raw"

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self.queues: dict[str, list[asyncio.Queue[bytes]]] = {}

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        for body in bodies:
            for queue in self.queues.get(topic, ()):
                await queue.put(body)

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        queue: asyncio.Queue[bytes] = asyncio.Queue(self.maxsize)
        self.queues.setdefault(topic, []).append(queue)

        async def consume() -> None:
            while True:
                body = await queue.get()
                on_message(body)

        task = asyncio.create_task(consume())
        task.add_done_callback(report_crash)

        async def unsubscribe() -> None:
            self.queues[topic].remove(queue)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        return unsubscribe


# --- NATS core and JetStream --------------------------------------------------------------


class RawNats(Side):
    """nats-py core: publish (buffered by the client) and one flush at the end."""

    label = "raw"

    def __init__(self, url: str) -> None:
        self.server = url.split("://", 1)[1].split("?", 1)[0]
        self.nc: Any = None

    async def open(self) -> None:
        import nats

        self.nc = await nats.connect(f"nats://{self.server}", connect_timeout=5)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.nc.publish
        for body in bodies:
            await publish(topic, body)
        await self.nc.flush()

    async def publish_one(self, topic: str, body: bytes) -> None:
        # No flush: the client's flusher sends it at once; receiving it proves it went.
        await self.nc.publish(topic, body)

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        async def cb(msg: Any) -> None:
            on_message(msg.data)

        sub = await self.nc.subscribe(topic, cb=cb)
        await self.nc.flush()  # the SUB reached the server: the subscription is live
        return sub.unsubscribe  # type: ignore[no-any-return]


class RawNatsWithEnvelope(RawNats):
    """nats-py core carrying what brokerkit's envelope carries: one header with a new id
    and the timestamp per message (``benchmarks/nats_envelope.py`` compares it)."""

    label = "raw+env"

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        from brokerkit.core.message import new_id

        publish = self.nc.publish
        now = time.time
        for body in bodies:
            await publish(topic, body, headers={"Brokerkit-Env": f"{new_id()} {now()!r}"})
        await self.nc.flush()


class RawJetStream(RawNats):
    """nats-py JetStream: publish awaits the PubAck; a push consumer acks every message.

    The batch path keeps up to ``BATCH`` publishes in flight at once (concurrent
    ``js.publish`` futures), each still awaiting its PubAck.
    """

    has_batch = True
    stream = "RAWBENCH"

    def topic(self, name: str) -> str:
        return f"rawbench.{name}.{uuid.uuid4().hex[:10]}"

    async def open(self) -> None:
        await super().open()
        self.js = self.nc.jetstream()
        with contextlib.suppress(Exception):
            await self.js.delete_stream(self.stream)
        await self.js.add_stream(name=self.stream, subjects=["rawbench.>"])

    async def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.js.delete_stream(self.stream)
        await super().close()

    async def publish_one(self, topic: str, body: bytes) -> None:
        await self.js.publish(topic, body)

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.js.publish
        for body in bodies:
            await publish(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.js.publish
        for chunk in chunks(bodies):
            await asyncio.gather(*(publish(topic, body) for body in chunk))

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        from nats.js.api import DeliverPolicy

        async def cb(msg: Any) -> None:
            await msg.ack()
            on_message(msg.data)

        sub = await self.js.subscribe(
            topic, cb=cb, manual_ack=True, deliver_policy=DeliverPolicy.NEW
        )
        return sub.unsubscribe  # type: ignore[no-any-return]


# --- Redis Streams and Pub/Sub ------------------------------------------------------------


class RawRedisPubSub(Side):
    """redis-py Pub/Sub: PUBLISH awaited per message; the batch path pipelines them."""

    label = "raw"
    has_batch = True

    def __init__(self, url: str) -> None:
        self.url = "redis://" + url.split("://", 1)[1]
        self.r: Any = None

    async def open(self) -> None:
        import redis.asyncio

        self.r = redis.asyncio.Redis.from_url(self.url)
        await self.r.ping()

    async def close(self) -> None:
        if self.r is not None:
            await self.r.aclose()

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.r.publish
        for body in bodies:
            await publish(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        for chunk in chunks(bodies):
            pipe = self.r.pipeline(transaction=False)
            for body in chunk:
                pipe.publish(topic, body)
            await pipe.execute()

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        pubsub = self.r.pubsub()
        await pubsub.subscribe(topic)
        # subscribe() returns before the server confirms; wait for the confirmation.
        while (await pubsub.get_message(timeout=1.0)) is None:
            pass

        async def listen() -> None:
            async for msg in pubsub.listen():
                if msg["type"] == "message":
                    on_message(msg["data"])

        task = asyncio.create_task(listen())

        async def unsubscribe() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pubsub.aclose()

        return unsubscribe


class RawRedisStreams(RawRedisPubSub):
    """redis-py Streams: XADD per message; XREADGROUP (COUNT 100), then one XACK per read batch.

    XADD trims with ``MAXLEN ~ 100000``, as brokerkit's default ``maxlen`` does: the same
    retention work on both sides.
    """

    def topic(self, name: str) -> str:
        return f"rawbench:{name}:{uuid.uuid4().hex[:10]}"

    async def close(self) -> None:
        if self.r is not None:
            keys = [key async for key in self.r.scan_iter(match="rawbench:*")]
            if keys:
                await self.r.delete(*keys)
        await super().close()

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        xadd = self.r.xadd
        for body in bodies:
            await xadd(topic, {"body": body}, maxlen=MAXLEN, approximate=True)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        for chunk in chunks(bodies):
            pipe = self.r.pipeline(transaction=False)
            for body in chunk:
                pipe.xadd(topic, {"body": body}, maxlen=MAXLEN, approximate=True)
            await pipe.execute()

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        group = "g"
        await self.r.xgroup_create(topic, group, id="$", mkstream=True)
        stop = asyncio.Event()

        async def consume() -> None:
            while not stop.is_set():
                # A short BLOCK so that unsubscribe never has to cancel a blocked read.
                resp = await self.r.xreadgroup(group, "c1", {topic: ">"}, count=100, block=100)
                for _stream, entries in resp or ():
                    # One XACK for the whole read batch, as a careful redis-py user would
                    # (brokerkit batches its XACKs too); messages count once it returned.
                    await self.r.xack(topic, group, *[entry_id for entry_id, _ in entries])
                    for _entry_id, fields in entries:
                        on_message(fields[b"body"])

        task = asyncio.create_task(consume())
        task.add_done_callback(report_crash)

        async def unsubscribe() -> None:
            stop.set()
            await task

        return unsubscribe


# --- RabbitMQ -----------------------------------------------------------------------------


class RawRabbit(Side):
    """aio-pika with publisher confirms (each publish awaits its confirm) and consumer acks.

    Topology as brokerkit's plugin has it: one durable topic exchange, persistent
    messages published with ``mandatory=False`` (aio-pika's default ``True`` makes
    RabbitMQ return every unroutable message), a queue per subscription bound by
    routing key; prefetch
    ``PREFETCH``. The batch path keeps up to ``BATCH`` confirms outstanding at once.
    """

    label = "raw"
    has_batch = True
    exchange_name = "rawbench"
    PREFETCH = 100

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None

    async def open(self) -> None:
        import aio_pika

        self.conn = await aio_pika.connect(self.url, timeout=5)
        self.channel = await self.conn.channel(publisher_confirms=True)
        await self.channel.set_qos(prefetch_count=self.PREFETCH)
        self.exchange = await self.channel.declare_exchange(
            self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
        )

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()

    def _message(self, body: bytes) -> Any:
        import aio_pika

        return aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.exchange.publish
        make = self._message
        for body in bodies:
            await publish(make(body), routing_key=topic, mandatory=False)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        publish = self.exchange.publish
        make = self._message
        for chunk in chunks(bodies):
            await asyncio.gather(
                *(publish(make(body), routing_key=topic, mandatory=False) for body in chunk)
            )

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        queue = await self.channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.exchange, routing_key=topic)

        async def cb(msg: Any) -> None:
            await msg.ack()
            on_message(msg.body)

        tag = await queue.consume(cb)

        async def unsubscribe() -> None:
            await queue.cancel(tag)
            await queue.delete(if_unused=False, if_empty=False)

        return unsubscribe


# --- Kafka --------------------------------------------------------------------------------


class RawKafka(Side):
    """aiokafka: producer acks=all (send_and_wait per message; the batch path gathers
    ``send()`` futures); a consumer committing the offsets it handled every
    ``COMMIT_INTERVAL`` seconds (brokerkit's ``commit_interval_ms`` default) and at the end.
    """

    COMMIT_INTERVAL = 0.1

    label = "raw"
    has_batch = True

    def __init__(self, url: str) -> None:
        rest = url.split("://", 1)[1]
        self.bootstrap = rest.split("?", 1)[0].rstrip("/")
        self.producer: Any = None
        self.admin: Any = None

    async def open(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient

        # The same batch size as brokerkit's default batch_bytes, so that both sides
        # send equally large requests (aiokafka's own default is 16 KiB).
        self.producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", max_batch_size=65536
        )
        await self.producer.start()
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await self.admin.start()

    async def close(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
        if self.admin is not None:
            await self.admin.close()

    def topic(self, name: str) -> str:
        return f"rawbench.{name}.{uuid.uuid4().hex[:10]}"

    async def _ensure_topic(self, topic: str) -> None:
        from aiokafka.admin import NewTopic

        with contextlib.suppress(Exception):
            await self.admin.create_topics([NewTopic(topic, 1, 1)])

    async def publish(self, topic: str, bodies: list[bytes]) -> None:
        await self._ensure_topic(topic)
        send = self.producer.send_and_wait
        for body in bodies:
            await send(topic, body)

    async def publish_batch(self, topic: str, bodies: list[bytes]) -> None:
        await self._ensure_topic(topic)
        send = self.producer.send
        for chunk in chunks(bodies):
            futures = [await send(topic, body) for body in chunk]
            await asyncio.gather(*futures)

    async def subscribe(self, topic: str, on_message: OnMessage) -> Unsubscribe:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        await self._ensure_topic(topic)
        # A consumer group, as brokerkit's durable subscription (short group timings:
        # Tansu completes a join after about half the session timeout). Known issue
        # (Tansu 0.6, memory storage): when this consumer lags behind 15-20k single-record
        # batches, fetches at one offset below the high watermark come back empty for
        # good, so the one-at-a-time e2e run can end in "timeout".
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=self.bootstrap,
            group_id=f"rawbench-{uuid.uuid4().hex[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",  # the topic is new: its first message
            fetch_max_wait_ms=10,
            session_timeout_ms=1000,
            heartbeat_interval_ms=100,
            rebalance_timeout_ms=1000,
            max_partition_fetch_bytes=1024 * 1024 + 65536,
            max_poll_interval_ms=300_000,
        )
        await consumer.start()
        while not consumer.assignment():  # noqa: ASYNC110  # joined: partition assigned
            await asyncio.sleep(0.05)
        partition = TopicPartition(topic, 0)
        await consumer.position(partition)  # resolve the position: live from here on
        await consumer.commit({partition: await consumer.position(partition)})

        loop = asyncio.get_running_loop()
        handled: dict[Any, int] = {}

        async def consume() -> None:
            next_commit = loop.time() + self.COMMIT_INTERVAL
            while True:
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                for tp, records in batches.items():
                    for record in records:
                        on_message(record.value)
                    handled[tp] = records[-1].offset + 1
                if handled and loop.time() >= next_commit:
                    await consumer.commit(dict(handled))
                    handled.clear()
                    next_commit = loop.time() + self.COMMIT_INTERVAL

        task = asyncio.create_task(consume())
        task.add_done_callback(report_crash)

        async def unsubscribe() -> None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if handled:
                await consumer.commit(dict(handled))
            await consumer.stop()

        return unsubscribe


def raw_side(url: str) -> Side:
    """The raw-client side for ``url``'s scheme."""
    scheme = url.split("://", 1)[0]
    if scheme == "memory":
        return RawMemory()
    if scheme == "nats":
        return RawNats(url)
    if scheme == "nats+jetstream":
        return RawJetStream(url)
    if scheme in ("redis", "rediss"):
        return RawRedisStreams(url)
    if scheme == "redis+pubsub":
        return RawRedisPubSub(url)
    if scheme in ("amqp", "amqps"):
        return RawRabbit(url)
    if scheme == "kafka":
        return RawKafka(url)
    raise ValueError(f"no raw baseline for {scheme}://")
