"""Tests of the Redis plugins beyond the contract suite: auth, TLS, key mapping, trimming,
options, consumer-group housekeeping and the Pub/Sub envelope.

They run against a private ``redis-server`` (started here on free ports, with a password,
a TLS port that requires client certificates, and no persistence), never the shared one.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

import brokerkit
from brokerkit import AuthenticationError, BrokerConnectionError, Delivery, Message
from brokerkit.plugins.redis import _streams
from brokerkit.plugins.redis._pubsub import decode_envelope, decode_payload, encode_envelope
from brokerkit.testing.helpers import Collector, wait_until

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("openssl") is None,
    reason="needs the redis-server and openssl binaries",
)

PASSWORD = "s3cret-" + uuid.uuid4().hex
WRONG = "wrong-" + uuid.uuid4().hex
ACL_USER = "alice"
ACL_PASSWORD = "alice-" + uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certificates(directory: Path) -> None:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=brokerkit test CA", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
        extra = ("-extfile", "san.ext") if name == "server" else ()
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *extra,
                 cwd=directory)  # fmt: skip


class PrivateRedis:
    """A redis-server of our own: ``port`` (password) and ``tls_port`` (mutual TLS)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = _free_port()
        self.tls_port = _free_port()
        _make_certificates(directory)
        config = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "requirepass": PASSWORD,
            "save": "",
            "appendonly": "no",
            "dir": str(directory),
            "tls-port": str(self.tls_port),
            "tls-cert-file": str(directory / "server.crt"),
            "tls-key-file": str(directory / "server.key"),
            "tls-ca-cert-file": str(directory / "ca.crt"),
            "tls-auth-clients": "yes",
        }
        self.process = subprocess.Popen(
            [
                "redis-server",
                *(part for name, value in config.items() for part in (f"--{name}", value)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise RuntimeError("the private redis-server did not start") from None
                time.sleep(0.02)

    def url(self, scheme: str = "redis", auth: str = f":{PASSWORD}@", db: int = 0) -> str:
        port = self.tls_port if scheme.startswith("rediss") else self.port
        return f"{scheme}://{auth}127.0.0.1:{port}/{db}"

    def tls_query(self, *, client_cert: bool = True) -> str:
        query = f"tls_ca={self.dir / 'ca.crt'}"
        if client_cert:
            query += f"&tls_cert={self.dir / 'client.crt'}&tls_key={self.dir / 'client.key'}"
        return query

    def raw(self, db: int = 0) -> redis.asyncio.Redis:
        return redis.asyncio.Redis(port=self.port, password=PASSWORD, db=db, protocol=2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    private = PrivateRedis(tmp_path_factory.mktemp("redis"))
    try:
        yield private
    finally:
        private.stop()


@pytest.fixture
async def raw(server: PrivateRedis) -> AsyncIterator[redis.asyncio.Redis]:
    client = server.raw()
    yield client
    await client.aclose()


def _texts(exc: BaseException) -> list[str]:
    """str, repr and args of ``exc`` and of every exception chained to it."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        todo += [current.__cause__, current.__context__]
    return texts


# --- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
async def test_right_password_round_trips(server: PrivateRedis, scheme: str) -> None:
    async with brokerkit.connect(server.url(scheme)) as broker:
        collector = Collector()
        await broker.subscribe("auth.ok", collector)
        await broker.publish("auth.ok", b"hi", headers={"h": "v"})
        (delivery,) = await collector.wait_for(1)
        assert (delivery.message.body, delivery.message.headers) == (b"hi", {"h": "v"})


async def test_acl_user_and_password(server: PrivateRedis, raw: redis.asyncio.Redis) -> None:
    await raw.execute_command(
        "ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}", "~bk:*", "&*", "+@all"
    )
    async with brokerkit.connect(server.url(auth=f"{ACL_USER}:{ACL_PASSWORD}@")) as broker:
        collector = Collector()
        await broker.subscribe("acl.ok", collector)
        await broker.publish("acl.ok", b"x")
        await collector.wait_for(1)


@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
@pytest.mark.parametrize(
    "auth",
    [f":{WRONG}@", f"default:{WRONG}@", f"{ACL_USER}:{WRONG}@", ""],
    ids=["password", "default-user", "acl-user", "no-password"],
)
async def test_wrong_password_raises_authentication_error_without_the_password(
    server: PrivateRedis, scheme: str, auth: str
) -> None:
    broker = brokerkit.connect(server.url(scheme, auth=auth))
    with pytest.raises(AuthenticationError) as info:
        await broker.connect()
    assert not broker.connected
    texts = [*_texts(info.value), repr(broker), str(broker.url)]
    for secret in (WRONG, PASSWORD):
        assert not any(secret in text for text in texts), texts


async def test_unreachable_server_is_a_connection_error() -> None:
    broker = brokerkit.connect(f"redis://127.0.0.1:{_free_port()}", connect_timeout=5)
    with pytest.raises(BrokerConnectionError) as info:
        await broker.connect()
    assert not isinstance(info.value, AuthenticationError)


# --- TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["rediss", "rediss+pubsub"])
async def test_tls_with_ca_and_client_certificate(server: PrivateRedis, scheme: str) -> None:
    url = f"{server.url(scheme)}?{server.tls_query()}"
    async with brokerkit.connect(url) as broker:
        collector = Collector()
        await broker.subscribe("tls.ok", collector)
        await broker.publish("tls.ok", b"secure")
        (delivery,) = await collector.wait_for(1)
        assert delivery.message.body == b"secure"


async def test_tls_without_client_certificate_is_refused(server: PrivateRedis) -> None:
    url = f"{server.url('rediss')}?{server.tls_query(client_cert=False)}"
    with pytest.raises(BrokerConnectionError) as info:
        await brokerkit.connect(url, connect_timeout=5).connect()
    assert not any(PASSWORD in text for text in _texts(info.value))


async def test_tls_with_an_unknown_ca_is_refused(server: PrivateRedis) -> None:
    # Without tls_ca the system CAs are used, which did not sign the server's certificate.
    url = f"{server.url('rediss')}?tls_cert={server.dir / 'client.crt'}"
    url += f"&tls_key={server.dir / 'client.key'}"
    with pytest.raises(BrokerConnectionError):
        await brokerkit.connect(url, connect_timeout=5).connect()


# --- URL and options ---------------------------------------------------------------------


def test_unknown_option_is_refused_and_known_ones_listed() -> None:
    with pytest.raises(brokerkit.InvalidOptionError) as info:
        brokerkit.connect("redis://127.0.0.1:6379/0?maxlenn=5")
    assert "maxlenn" in str(info.value) and "maxlen" in str(info.value).split("known")[1]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis://127.0.0.1/zero", brokerkit.InvalidURLError),
        ("redis+pubsub://a:6379,b:6379", brokerkit.InvalidURLError),
        ("redis://127.0.0.1?tls_ca=/x.pem", brokerkit.InvalidOptionError),
        ("redis://127.0.0.1?maxlen=-1", brokerkit.InvalidOptionError),
        ("redis://127.0.0.1?trim=sometimes", brokerkit.InvalidOptionError),
        ("redis+pubsub://127.0.0.1?maxlen=5", brokerkit.InvalidOptionError),
    ],
)
def test_bad_urls_and_options_are_refused_before_connecting(
    url: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        brokerkit.connect(url)


# --- streams: mapping, trimming, housekeeping ----------------------------------------------


async def test_topic_maps_to_prefixed_stream_with_documented_fields(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    prefix = f"bk-{uuid.uuid4().hex[:8]}:"
    async with brokerkit.connect(server.url(), prefix=prefix) as broker:
        message = Message(b"\x00body\xff", {"h": "ü"}, key="k-1", timestamp=1234.5)
        await broker.publish("orders.created", message)
        await broker.publish("orders.created", b"plain")
    entries = await raw.xrange(f"{prefix}orders.created")
    assert [fields for _id, fields in entries] == [
        {
            b"m": f"1234.5 {message.id}".encode(),
            b"k": b"k-1",
            b"h": '{"h":"ü"}'.encode(),
            b"b": b"\x00body\xff",
        },
        {b"m": entries[1][1][b"m"], b"b": b"plain"},
    ]
    timestamp, _, message_id = entries[1][1][b"m"].partition(b" ")
    assert abs(float(timestamp) - time.time()) < 60 and len(message_id) == 32


async def test_database_number_comes_from_the_path(server: PrivateRedis) -> None:
    prefix = f"bk-{uuid.uuid4().hex[:8]}:"
    async with brokerkit.connect(server.url(db=3), prefix=prefix) as broker:
        await broker.publish("db.check", b"x")
    db0, db3 = server.raw(0), server.raw(3)
    try:
        assert await db3.xlen(f"{prefix}db.check") == 1
        assert await db0.exists(f"{prefix}db.check") == 0
    finally:
        await db0.aclose()
        await db3.aclose()


async def test_maxlen_exact_trimming_keeps_exactly_maxlen(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url(), maxlen=5, trim="exact") as broker:
        for index in range(12):
            await broker.publish("trim.exact", str(index).encode())
        await broker.publish_many("trim.exact", [b"12", b"13"])
    entries = await raw.xrange("bk:trim.exact")
    assert [fields[b"b"] for _id, fields in entries] == [b"9", b"10", b"11", b"12", b"13"]


async def test_maxlen_approximate_trimming_bounds_the_stream(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url(), maxlen=10) as broker:
        await broker.publish_many("trim.approx", [b"x"] * 1000)
    length = await raw.xlen("bk:trim.approx")
    # "~" trims whole radix-tree nodes (100 entries by default), never below maxlen.
    assert 10 <= length <= 200


async def test_private_group_is_destroyed_and_shared_groups_persist(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url()) as broker:
        plain = await broker.subscribe("groups.t", Collector())
        queued = await broker.subscribe("groups.t", Collector(), queue="workers")
        durable = await broker.subscribe("groups.t", Collector(), durable="keeper")
        names = {g["name"] for g in await raw.xinfo_groups("bk:groups.t")}
        assert b"queue.workers" in names and b"durable.keeper" in names and len(names) == 3
        for subscription in (plain, queued, durable):
            await subscription.unsubscribe()
    groups = {g["name"]: g for g in await raw.xinfo_groups("bk:groups.t")}
    assert set(groups) == {b"queue.workers", b"durable.keeper"}
    # Consumers with nothing pending are removed when they leave.
    assert all(g["consumers"] == 0 for g in groups.values())


async def test_entries_of_a_vanished_consumer_are_claimed_after_claim_idle(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url(), claim_idle=0.3) as broker:
        first = await broker.subscribe("crash.t", Collector(), durable="d1")
        await first.unsubscribe()
        await broker.publish("crash.t", b"lost?")
        # A consumer that read the entry and then died without a word (a crash).
        read = await raw.xreadgroup("durable.d1", "ghost", {"bk:crash.t": ">"}, count=10)
        assert read and len(read[0][1]) == 1
        collector = Collector()
        await broker.subscribe("crash.t", collector, durable="d1")
        (delivery,) = await collector.wait_for(1)
        assert (delivery.message.body, delivery.attempt) == (b"lost?", 2)
        await wait_until(lambda: delivery.settled)
    assert (await raw.xpending("bk:crash.t", "durable.d1"))["pending"] == 0


async def test_entries_written_by_other_programs_are_read(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url()) as broker:
        collector = Collector()
        await broker.subscribe("foreign.t", collector)
        entry_id = await raw.xadd("bk:foreign.t", {"b": b"from elsewhere", "other": b"1"})
        (delivery,) = await collector.wait_for(1)
    assert delivery.message.body == b"from elsewhere"
    assert delivery.message.id == entry_id.decode()
    assert delivery.message.timestamp == int(entry_id.split(b"-")[0]) / 1000


# --- Pub/Sub -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Message(b""),
        Message(bytes(range(256)), {"a": "é ü 日本", "b": ""}, key="ключ", timestamp=0.25),
        Message(b"x" * 100_000, id="custom-id"),
    ],
    ids=["empty", "binary-headers-key", "large"],
)
def test_pubsub_envelope_round_trips(message: Message) -> None:
    assert decode_envelope(encode_envelope(message)) == message


def test_pubsub_envelope_starts_with_the_magic() -> None:
    assert encode_envelope(Message(b"x")).startswith(b"\x00BK\x02")
    assert encode_envelope(Message(b"x", {"a": "b"}, key="k")).startswith(b"\x00BK\x02")


def test_pubsub_envelope_of_earlier_versions_is_still_decoded() -> None:
    legacy = struct.pack("!BdHHI", 1, 12.5, 3, 2, 9) + b"abck" + b'{"a":"b"}' + b"body"
    assert decode_payload(legacy) == Message(b"body", {"a": "b"}, id="abc", key="k", timestamp=12.5)


def test_pubsub_envelope_refuses_other_payloads() -> None:
    with pytest.raises(ValueError):
        decode_envelope(b"\x02" + encode_envelope(Message(b"x"))[1:])
    with pytest.raises(Exception):  # noqa: B017 - struct.error or ValueError
        decode_envelope(b"short")


async def test_pubsub_prefix_is_escaped_in_patterns(server: PrivateRedis) -> None:
    # A prefix with glob characters must match only itself: "x*:" must not see "xy:".
    async with (
        brokerkit.connect(server.url("redis+pubsub"), prefix="x*:") as star,
        brokerkit.connect(server.url("redis+pubsub"), prefix="xy:") as other,
    ):
        collector = Collector()
        await star.subscribe("p.*", collector)
        await other.publish("p.a", b"other prefix")
        await star.publish("p.b", b"own prefix")
        (delivery,) = await collector.wait_for(1)
        assert (delivery.topic, delivery.message.body) == ("p.b", b"own prefix")
        await collector.assert_no_more(1, within=0.2)


async def test_a_deleted_stream_is_recreated_and_read_again(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url(), block_ms=50) as broker:
        collector = Collector()
        await broker.subscribe("deleted.t", collector, durable="d")
        await broker.publish("deleted.t", b"before")
        await collector.wait_for(1)
        await raw.delete("bk:deleted.t")  # drops the stream and its consumer groups
        await broker.publish("deleted.t", b"after")
        deliveries = await collector.wait_for(2)
    assert [d.message.body for d in deliveries] == [b"before", b"after"]


@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
async def test_subscription_survives_the_server_dropping_its_connections(
    server: PrivateRedis, raw: redis.asyncio.Redis, scheme: str
) -> None:
    async with brokerkit.connect(server.url(scheme)) as broker:
        collector = Collector()
        await broker.subscribe("dropped.t", collector)
        await broker.publish("dropped.t", b"before")
        await collector.wait_for(1)
        killed = await raw.execute_command("CLIENT", "KILL", "SKIPME", "yes")
        assert int(killed) >= 1
        # Pub/Sub is at most once: messages sent while it reconnects may be lost, so
        # publish until one arrives. Streams lose nothing: the first one must arrive.
        for attempt in range(200):
            await broker.publish("dropped.t", f"after-{attempt}".encode())
            if scheme == "redis" or len(collector) > 1:
                break
            await asyncio.sleep(0.05)
        deliveries = await collector.wait_for(2)
    assert deliveries[1].message.body.startswith(b"after-")
    if scheme == "redis":
        assert deliveries[1].message.body == b"after-0"


# --- streams: prefetch ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("prefetch=0", "prefetch='0'"),
        ("prefetch=10001", "prefetch='10001'"),
        ("prefetch=many", "prefetch='many'"),
        ("batch=0", "batch='0'"),
    ],
)
def test_bad_prefetch_is_refused_with_the_accepted_range(query: str, needle: str) -> None:
    with pytest.raises(brokerkit.InvalidOptionError) as info:
        brokerkit.connect(f"redis://127.0.0.1:6379/0?{query}")
    assert needle in str(info.value)
    if "many" not in query:
        assert ">= 1 and <= 10000" in str(info.value)


def test_prefetch_is_a_streams_option_only() -> None:
    with pytest.raises(brokerkit.InvalidOptionError):
        brokerkit.connect("redis+pubsub://127.0.0.1:6379/0?prefetch=5")


async def _pending_while_the_handler_is_busy(
    server: PrivateRedis,
    raw: redis.asyncio.Redis,
    topic: str,
    published: int,
    max_in_flight: int = 1,
    **options: object,
) -> int:
    """Publish, subscribe with a handler that blocks; how many entries the consumer holds."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def busy(delivery: Delivery) -> None:
        started.set()
        await release.wait()

    async with brokerkit.connect(server.url(), **options) as broker:
        await broker.publish_many(topic, [b"x"] * published)
        await broker.subscribe(
            topic, busy, durable="d", start="earliest", max_in_flight=max_in_flight
        )
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.sleep(0.2)  # a further read would show by now
        pending = int((await raw.xpending(f"bk:{topic}", "durable.d"))["pending"])
        release.set()
    return pending


@pytest.mark.parametrize(
    ("options", "max_in_flight", "expected"),
    [({"prefetch": 7}, 1, 7), ({}, 1, 100), ({"batch": 5}, 1, 5), ({"prefetch": 1}, 3, 3)],
    ids=["prefetch-7", "default-100", "deprecated-batch", "max-in-flight-wins"],
)
async def test_prefetch_is_the_xreadgroup_count(
    server: PrivateRedis,
    raw: redis.asyncio.Redis,
    options: dict[str, object],
    max_in_flight: int,
    expected: int,
) -> None:
    topic = f"prefetch.{uuid.uuid4().hex[:8]}"
    pending = await _pending_while_the_handler_is_busy(
        server, raw, topic, 150, max_in_flight, **options
    )
    if max_in_flight == 1:
        assert pending == expected
    else:
        # The handlers take max_in_flight entries, each worker queues one more, and the
        # read loop holds one: reads of COUNT 3 continue until every slot is full.
        assert expected <= pending < 150


async def test_prefetched_entries_not_handled_are_redelivered_after_unsubscribe(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    topic = f"prefetch.back.{uuid.uuid4().hex[:8]}"
    async with brokerkit.connect(server.url(), prefetch=50) as broker:
        first_seen = asyncio.Event()

        async def slow(delivery: Delivery) -> None:
            first_seen.set()
            await asyncio.sleep(0.3)

        await broker.publish_many(topic, [str(i).encode() for i in range(20)])
        sub = await broker.subscribe(topic, slow, durable="back", start="earliest")
        await asyncio.wait_for(first_seen.wait(), 10)
        await sub.unsubscribe()  # holds 20 entries, handled 1
        handled_first = 1
        collector = Collector()
        await broker.subscribe(topic, collector, durable="back")
        deliveries = await collector.wait_for(20 - handled_first)
        assert [d.message.body for d in deliveries] == [str(i).encode() for i in range(1, 20)]
        # Never handed to a handler: the delivery counter was not raised for them.
        assert all(d.attempt == 1 for d in deliveries)
        await wait_until(lambda: all(d.settled for d in deliveries))
    assert (await raw.xpending(f"bk:{topic}", "durable.back"))["pending"] == 0


# --- streams: batched acks -------------------------------------------------------------------


@pytest.mark.parametrize("close", ["unsubscribe", "disconnect"])
async def test_acks_queued_are_sent_before_unsubscribe_and_disconnect_return(
    server: PrivateRedis, raw: redis.asyncio.Redis, close: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No timed flush, and the reader blocked in XREADGROUP when the acks are queued:
    # only the flush on close can send them (the read loop stops without reading again).
    monkeypatch.setattr(_streams, "_ACK_DELAY", 60.0)
    topic = f"acks.{close}.{uuid.uuid4().hex[:8]}"
    broker = await brokerkit.connect(server.url(), block_ms=2000)
    try:
        collector = Collector()
        await broker.publish_many(topic, [b"x"] * 50)
        sub = await broker.subscribe(
            topic, collector, durable="d", start="earliest", ack="manual", max_in_flight=4
        )
        deliveries = await collector.wait_for(50)
        await asyncio.sleep(0.05)  # the read loop is blocked in its next XREADGROUP
        for delivery in deliveries:
            await delivery.ack()
        assert (await raw.xpending(f"bk:{topic}", "durable.d"))["pending"] == 50
        if close == "unsubscribe":
            await sub.unsubscribe()
        else:
            await broker.disconnect()
        assert (await raw.xpending(f"bk:{topic}", "durable.d"))["pending"] == 0
        # Nothing comes back to the next member of the group.
        async with brokerkit.connect(server.url()) as again:
            collector = Collector()
            await again.subscribe(topic, collector, durable="d")
            await collector.assert_no_more(0, within=0.5)
    finally:
        await broker.disconnect()


async def test_a_queued_ack_is_sent_within_milliseconds_while_the_reader_blocks(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    topic = f"acks.soon.{uuid.uuid4().hex[:8]}"
    async with brokerkit.connect(server.url(), block_ms=10_000) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector, durable="d", ack="manual")
        await broker.publish(topic, b"x")
        (delivery,) = await collector.wait_for(1)
        await asyncio.sleep(0.05)  # the read loop is blocked in its next XREADGROUP
        await delivery.ack()
        started = time.monotonic()
        while (await raw.xpending(f"bk:{topic}", "durable.d"))["pending"]:
            assert time.monotonic() - started < 1.0, "the XACK waited for the next read"
            await asyncio.sleep(0.002)


async def test_a_queued_ack_is_never_resurrected_by_a_nack_or_a_claim(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    topic = f"acks.order.{uuid.uuid4().hex[:8]}"
    subscription: Any = None

    async def ack_then_stale_nack(delivery: Delivery) -> None:
        await delivery.ack()
        # A stale nack of the same entry (as a second delivery of it would send) while
        # its XACK is still queued: the entry must stay acked, not be claimed back.
        subscription.retry_entry(delivery._entry_id, delivery.attempt)  # type: ignore[attr-defined]

    async with brokerkit.connect(server.url(), block_ms=5000) as broker:
        collector = Collector(ack_then_stale_nack)
        subscription = await broker.subscribe(topic, collector, durable="d", ack="manual")
        await broker.publish_many(topic, [b"a", b"b", b"c"])
        await collector.wait_for(3)
        await collector.assert_no_more(3, within=0.5)
        await subscription.unsubscribe()
        assert (await raw.xpending(f"bk:{topic}", "durable.d"))["pending"] == 0


async def test_a_failed_xack_is_logged_without_the_password_and_redelivered(
    server: PrivateRedis, raw: redis.asyncio.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    user, password = "noack", "noack-" + uuid.uuid4().hex
    await raw.execute_command(
        "ACL", "SETUSER", user, "on", f">{password}", "~bk:*", "&*", "+@all", "-xack"
    )
    topic = f"acks.failed.{uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.WARNING, logger="brokerkit.redis")
    async with brokerkit.connect(server.url(auth=f"{user}:{password}@")) as broker:
        collector = Collector()
        sub = await broker.subscribe(topic, collector, durable="d")
        await broker.publish(topic, b"once")
        (delivery,) = await collector.wait_for(1)
        await wait_until(lambda: "acknowledging" in caplog.text)
        await sub.unsubscribe()
    assert password not in caplog.text
    assert "NOPERM" in caplog.text or "permission" in caplog.text.lower()
    # The entry stayed pending and went back to the group: delivered again.
    async with brokerkit.connect(server.url()) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector, durable="d")
        (again,) = await collector.wait_for(1)
        assert (again.message.id, again.attempt) == (delivery.message.id, 2)
        await wait_until(lambda: again.settled)
    assert (await raw.xpending(f"bk:{topic}", "durable.d"))["pending"] == 0


async def test_nack_still_redelivers_with_batched_acks(server: PrivateRedis) -> None:
    async def nack_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            await delivery.nack()
        else:
            await delivery.ack()

    async with brokerkit.connect(server.url()) as broker:
        collector = Collector(nack_first)
        topic = f"acks.nack.{uuid.uuid4().hex[:8]}"
        await broker.subscribe(topic, collector, ack="manual")
        await broker.publish_many(topic, [b"a", b"b", b"c"])
        deliveries = await collector.wait_for(6)
        assert sorted((d.message.body, d.attempt) for d in deliveries) == sorted(
            (body, attempt) for body in (b"a", b"b", b"c") for attempt in (1, 2)
        )
        await collector.assert_no_more(6, within=0.3)


# --- streams: entries of earlier versions, publish_many --------------------------------------


async def test_entries_of_earlier_brokerkit_versions_are_read(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url()) as broker:
        collector = Collector()
        await broker.subscribe("legacy.t", collector)
        await raw.xadd(
            "bk:legacy.t",
            {"id": "old-id", "ts": "12.5", "k": "key", "h": '{"a":"b"}', "b": b"old"},
        )
        (delivery,) = await collector.wait_for(1)
    assert delivery.message == Message(b"old", {"a": "b"}, id="old-id", key="key", timestamp=12.5)


@pytest.mark.parametrize("scheme", ["redis", "redis+pubsub"])
async def test_publish_many_keeps_order_across_pipelines(server: PrivateRedis, scheme: str) -> None:
    topic = f"many.{uuid.uuid4().hex[:8]}"
    messages = [
        Message(str(i).encode(), {"i": str(i)} if i % 3 == 0 else None, key="k" if i % 5 else None)
        for i in range(2500)
    ]
    async with brokerkit.connect(server.url(scheme)) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector)
        await broker.publish_many(topic, messages)
        deliveries = await collector.wait_for(2500)
    assert [d.message for d in deliveries] == messages


# --- Pub/Sub: payloads of other programs -----------------------------------------------------


async def test_pubsub_payloads_of_other_programs_are_delivered_as_the_body(
    server: PrivateRedis, raw: redis.asyncio.Redis
) -> None:
    async with brokerkit.connect(server.url("redis+pubsub")) as broker:
        collector = Collector()
        await broker.subscribe("foreign.p", collector)
        before = time.time()
        await raw.publish("bk:foreign.p", b"from elsewhere")
        (delivery,) = await collector.wait_for(1)
    message = delivery.message
    assert (message.body, message.headers, message.key) == (b"from elsewhere", {}, None)
    assert len(message.id) == 32 and before - 1 <= message.timestamp <= time.time() + 1


# --- Streams: large entries ----------------------------------------------------------------


async def test_large_entries_round_trip_through_publish_many_and_publish(
    server: PrivateRedis,
) -> None:
    topic = f"large.{uuid.uuid4().hex[:8]}"
    messages = [
        Message(bytes([i]) * size, {"h": "é" * i}, key=f"k{i}")
        for i, size in enumerate((0, 1, 65_536, 1_000_000, 3))
    ]
    async with brokerkit.connect(server.url("redis") + "?prefetch=2") as broker:
        collector = Collector()
        sub = await broker.subscribe(topic, collector)
        await broker.publish_many(topic, messages)
        await broker.publish(topic, messages[3])
        deliveries = await collector.wait_for(6)
        assert isinstance(sub, _streams._StreamSubscription)
    assert [d.message for d in deliveries] == [*messages, messages[3]]
