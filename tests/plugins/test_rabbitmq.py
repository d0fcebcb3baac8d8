"""RabbitMQ-specific tests for ``amqp://`` against the real server on 127.0.0.1:5672.

The contract suite covers the portable behaviour; these tests pin what is particular
to RabbitMQ: credentials and vhosts in the URL, quorum-queue attempt counts, durable
queues that outlive their subscriber, header escaping and queue clean-up. Every queue a
test leaves behind on purpose is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import shutil
import ssl
import subprocess
import uuid
from collections.abc import AsyncIterator

import pytest

import brokerkit
from brokerkit import (
    AuthenticationError,
    Broker,
    BrokerConnectionError,
    Delivery,
    InvalidOptionError,
    PublishError,
)
from brokerkit.core.url import parse_url
from brokerkit.plugins.rabbitmq import RabbitMQSubscription, queue_name, vhost_of
from brokerkit.testing.helpers import Collector
from brokerkit.testing.pytest_plugin import MakeBroker

aio_pika = pytest.importorskip("aio_pika")
aiormq = pytest.importorskip("aiormq")

URL = "amqp://guest:guest@127.0.0.1:5672/"
SECRET = "wrong-s3cret"
ARRIVE = 15.0

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def topic() -> str:
    return f"bk.rabbit.{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def admin() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A raw aio-pika channel, to look at (and clean up) what the plugin created."""
    connection = await aio_pika.connect(URL)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


@pytest.fixture
async def cleanup(
    admin: aio_pika.abc.AbstractChannel, brokers: MakeBroker
) -> AsyncIterator[list[str]]:
    """Queue names to delete after the test (after its brokers disconnected)."""
    names: list[str] = []
    yield names
    for name in names:
        await admin.queue_delete(name)


@pytest.fixture
async def brokers() -> AsyncIterator[MakeBroker]:
    made: list[Broker] = []

    async def make(url: str = URL, **options: object) -> Broker:
        broker = brokerkit.connect(url, **options)
        made.append(broker)
        await broker.connect()
        return broker

    yield make
    for broker in reversed(made):
        await broker.disconnect()


async def queue_exists(admin_connection_url: str, name: str) -> bool:
    # A passive declare of a missing queue closes the channel: use a throwaway one.
    connection = await aio_pika.connect(admin_connection_url)
    try:
        channel = await connection.channel()
        try:
            await channel.declare_queue(name, passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        except aiormq.exceptions.ChannelLockedResource:
            return True  # exclusive to the plugin's connection, so it exists
        return True
    finally:
        await connection.close()


def chain_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        current = current.__cause__ or current.__context__
    return texts


# --- URL, credentials, options -------------------------------------------------------


async def test_wrong_password_raises_authentication_error_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = brokerkit.connect(f"amqp://guest:{SECRET}@127.0.0.1:5672/")
    assert SECRET not in repr(broker) and SECRET not in str(broker.url)
    with pytest.raises(AuthenticationError) as info:
        await broker.connect()
    error = info.value
    assert isinstance(error, BrokerConnectionError)
    assert "127.0.0.1:5672" in str(error)
    assert error.__cause__ is None and error.__context__ is None
    for text in chain_texts(error):
        assert SECRET not in text
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert not broker.connected


def test_vhost_comes_from_the_decoded_path() -> None:
    assert vhost_of(parse_url("amqp://h:5672/")) == "/"
    assert vhost_of(parse_url("amqp://h:5672")) == "/"
    assert vhost_of(parse_url("amqp://h:5672/%2F")) == "/"
    assert vhost_of(parse_url("amqp://h:5672/prod")) == "prod"
    assert vhost_of(parse_url("amqp://h:5672/a%2Fb")) == "a/b"


@pytest.mark.parametrize(
    "url",
    ["amqp://guest:guest@127.0.0.1:5672", URL, "amqp://guest:guest@127.0.0.1/%2F"],
)
async def test_default_vhost_spellings_connect(url: str) -> None:
    async with brokerkit.connect(url) as broker:
        assert broker.connected


async def test_unknown_vhost_is_a_clear_connection_error() -> None:
    broker = brokerkit.connect("amqp://guest:guest@127.0.0.1:5672/no-such-vhost-bk")
    with pytest.raises(BrokerConnectionError) as info:
        await broker.connect()
    assert not isinstance(info.value, AuthenticationError)
    assert "'no-such-vhost-bk'" in str(info.value)
    assert "guest:***@" in str(info.value)


async def test_hosts_are_tried_in_order() -> None:
    async with brokerkit.connect("amqp://guest:guest@127.0.0.1:1,127.0.0.1:5672/") as broker:
        assert broker.connected
    with pytest.raises(BrokerConnectionError, match=r"127\.0\.0\.1:1\b"):
        await brokerkit.connect("amqp://guest:guest@127.0.0.1:1/").connect()


def test_unknown_option_is_refused_listing_known_ones() -> None:
    with pytest.raises(InvalidOptionError) as info:
        brokerkit.connect(URL + "?prefetch_everything=1")
    text = str(info.value)
    assert "'prefetch_everything'" in text
    for known in ("exchange", "queue_expires", "durable_expires", "publish_timeout"):
        assert known in text
    # TLS options belong to amqps:// only.
    with pytest.raises(InvalidOptionError, match="ssl_ca"):
        brokerkit.connect(URL + "?ssl_ca=/tmp/ca.pem")
    with pytest.raises(InvalidOptionError, match="exchange"):
        brokerkit.connect(URL, exchange="bad exchange*")
    with pytest.raises(InvalidOptionError, match="ssl_cert"):
        brokerkit.connect("amqps://guest:guest@127.0.0.1/?ssl_key=/tmp/key.pem")


async def test_amqps_with_a_missing_ca_file_fails_to_connect() -> None:
    broker = brokerkit.connect(
        "amqps://guest:guest@127.0.0.1:5672/?ssl_ca=/nonexistent/ca.pem", connect_timeout=5
    )
    assert broker.url.hosts == (("127.0.0.1", 5672),)
    with pytest.raises(BrokerConnectionError):
        await broker.connect()
    assert brokerkit.connect("amqps://guest:guest@127.0.0.1/").url.hosts == (("127.0.0.1", 5671),)


# --- durability and redelivery -------------------------------------------------------


async def test_durable_subscriber_restarted_after_disconnect_gets_everything(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    cleanup.append(queue_name("brokerkit", topic, durable="restart"))
    publisher: Broker = await brokers()
    consumer: Broker = await brokers()
    first = Collector()
    await consumer.subscribe(topic, first, durable="restart")
    await publisher.publish(topic, b"before")
    await first.wait_for(1, ARRIVE)
    await consumer.disconnect()

    away = [f"away-{i}".encode() for i in range(50)]
    await publisher.publish_many(topic, away)

    restarted: Broker = await brokers()
    second = Collector()
    await restarted.subscribe(topic, second, durable="restart")
    deliveries = await second.wait_for(50, ARRIVE)
    await second.assert_no_more(50, within=0.5)
    assert [d.message.body for d in deliveries] == away  # one queue keeps publish order
    assert {d.attempt for d in deliveries} == {1}


async def test_consumer_disconnecting_before_ack_sees_the_message_again(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    cleanup.append(queue_name("brokerkit", topic, durable="crash"))
    crashing: Broker = await brokers()
    first = Collector()  # manual ack, never acks
    await crashing.subscribe(topic, first, durable="crash", ack="manual")
    await crashing.publish(topic, b"precious", headers={"h": "v"}, key="k")
    (original,) = await first.wait_for(1, ARRIVE)
    assert original.attempt == 1
    await crashing.disconnect()

    restarted: Broker = await brokers()
    second = Collector()
    await restarted.subscribe(topic, second, durable="crash", ack="manual")
    (again,) = await second.wait_for(1, ARRIVE)
    assert again.message == original.message
    assert again.attempt == 2  # quorum queues count the return in x-delivery-count
    await again.ack()
    await second.assert_no_more(1, within=0.5)


async def test_ack_after_unsubscribe_is_a_brokerkit_error_and_the_message_returns(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    cleanup.append(queue_name("brokerkit", topic, queue="late"))
    broker = await brokers()
    first = Collector()  # manual ack, settles nothing
    subscription = await broker.subscribe(topic, first, queue="late", ack="manual")
    await broker.publish(topic, b"late ack")
    (delivery,) = await first.wait_for(1, ARRIVE)
    await subscription.unsubscribe()
    with pytest.raises(BrokerConnectionError, match="ack"):
        await delivery.ack()

    second = Collector()
    await broker.subscribe(topic, second, queue="late")
    (again,) = await second.wait_for(1, ARRIVE)
    assert again.message.id == delivery.message.id and again.attempt == 2


@pytest.mark.parametrize("kind", ["plain", "queue", "durable"])
async def test_nack_counts_attempts_on_every_kind_of_queue(
    brokers: MakeBroker, topic: str, cleanup: list[str], kind: str
) -> None:
    options: dict[str, str] = {}
    if kind != "plain":
        options[kind] = "counting"
        cleanup.append(queue_name("brokerkit", topic, **options))  # type: ignore[arg-type]
    broker: Broker = await brokers()

    async def fail_until_third(delivery: Delivery) -> None:
        if delivery.attempt < 3:
            raise RuntimeError("not yet")

    collector = Collector(fail_until_third)
    await broker.subscribe(topic, collector, **options)  # type: ignore[arg-type]
    await broker.publish(topic, b"a")
    await broker.publish(topic, b"b")
    deliveries = await collector.wait_for(6, ARRIVE)
    await collector.assert_no_more(6, within=0.5)
    for body in (b"a", b"b"):
        assert [d.attempt for d in deliveries if d.message.body == body] == [1, 2, 3]


async def test_reserved_header_names_survive_redelivery(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    cleanup.append(queue_name("brokerkit", topic, durable="headers"))
    broker: Broker = await brokers()
    headers = {"x-delivery-count": "mine", "x-bk-key": "also mine", "x-death": "", "u": "ö ü"}

    async def fail_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            raise RuntimeError("again")

    collector = Collector(fail_first)
    await broker.subscribe(topic, collector, durable="headers")
    sent = brokerkit.Message(b"body", headers, key="the-key", timestamp=1234.5678)
    await broker.publish(topic, sent)
    first, second = await collector.wait_for(2, ARRIVE)
    assert (first.attempt, second.attempt) == (1, 2)
    for delivery in (first, second):
        assert delivery.message == sent


# --- queues on the server -------------------------------------------------------------


async def test_exclusive_queue_is_deleted_and_durable_queue_kept_on_unsubscribe(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    broker: Broker = await brokers()
    plain = await broker.subscribe(topic, Collector())
    durable = await broker.subscribe(f"{topic}.>", Collector(), durable="kept")
    assert isinstance(plain, RabbitMQSubscription) and isinstance(durable, RabbitMQSubscription)
    durable_name = queue_name("brokerkit", f"{topic}.>", durable="kept")
    cleanup.append(durable_name)
    assert durable.queue_name == durable_name
    assert await queue_exists(URL, plain.queue_name)

    await plain.unsubscribe()
    await durable.unsubscribe()
    assert not await queue_exists(URL, plain.queue_name)
    assert await queue_exists(URL, durable_name)


async def test_message_with_no_bound_queue_is_dropped(brokers: MakeBroker, topic: str) -> None:
    broker: Broker = await brokers()
    await broker.publish(topic, b"nobody listens")  # accepted (confirmed), then dropped
    collector = Collector()
    await broker.subscribe(topic, collector)
    await broker.publish(topic, b"heard")
    (delivery,) = await collector.wait_for(1, ARRIVE)
    assert delivery.message.body == b"heard"
    await collector.assert_no_more(1, within=0.3)


async def test_custom_exchange_isolates_brokers(
    brokers: MakeBroker, topic: str, admin: aio_pika.abc.AbstractChannel
) -> None:
    exchange = f"bk-test-{uuid.uuid4().hex[:8]}"
    other: Broker = await brokers(exchange=exchange)
    default: Broker = await brokers()
    try:
        on_other, on_default = Collector(), Collector()
        await other.subscribe(topic, on_other)
        await default.subscribe(topic, on_default)
        await other.publish(topic, b"other")
        await on_other.wait_for(1, ARRIVE)
        await on_default.assert_no_more(0, within=0.3)
    finally:
        await other.disconnect()
        await admin.exchange_delete(exchange)


async def test_prefetch_bounds_handlers_in_flight(brokers: MakeBroker, topic: str) -> None:
    broker: Broker = await brokers()
    running = 0
    most = 0
    release = asyncio.Event()

    async def slow(delivery: Delivery) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1

    collector = Collector(slow)
    await broker.subscribe(topic, collector, max_in_flight=3)
    await broker.publish_many(topic, [b"%d" % i for i in range(10)])
    await collector.wait_for(3, ARRIVE)
    await collector.assert_no_more(3, within=0.3)
    release.set()
    await collector.wait_for(10, ARRIVE)
    assert most == 3


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture
def tls_cert(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate and key for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def tls_proxy(
    tls_cert: tuple[pathlib.Path, pathlib.Path],
) -> AsyncIterator[tuple[int, pathlib.Path]]:
    """A TLS listener (self-signed certificate for 127.0.0.1) forwarding to RabbitMQ.

    RabbitMQ here has no TLS listener; terminating TLS in front of it tests the
    plugin's ``amqps://`` path end to end. Yields the port and the CA (certificate) file.
    """
    cert, key = tls_cert
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        writers.append(client_w)
        up_r, up_w = await asyncio.open_connection("127.0.0.1", 5672)
        writers.append(up_w)
        await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, cert
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_amqps_connects_through_tls_with_the_given_ca(
    tls_proxy: tuple[int, pathlib.Path], topic: str
) -> None:
    port, ca = tls_proxy
    url = f"amqps://guest:guest@127.0.0.1:{port}/?ssl_ca={ca}"
    async with brokerkit.connect(url) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector)
        await broker.publish(topic, b"over tls")
        (delivery,) = await collector.wait_for(1, ARRIVE)
        assert delivery.message.body == b"over tls"


async def test_amqps_refuses_an_unverified_server_unless_told(
    tls_proxy: tuple[int, pathlib.Path],
) -> None:
    port, _ca = tls_proxy
    url = f"amqps://guest:guest@127.0.0.1:{port}/"
    with pytest.raises(BrokerConnectionError):
        await brokerkit.connect(url, connect_timeout=5).connect()
    async with brokerkit.connect(url, ssl_verify=False) as broker:
        assert broker.connected


# --- prefetch, the consumer path and the publish path ---------------------------------


async def ready_count(name: str) -> int:
    """Messages ready in queue ``name`` (delivered-but-unacked ones are not counted)."""
    connection = await aio_pika.connect(URL)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        return int(queue.declaration_result.message_count)
    finally:
        await connection.close()


async def wait_ready(name: str, expected: int, within: float = ARRIVE) -> int:
    """Poll ``ready_count`` until it is ``expected`` (or time runs out); the last count."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        count = await ready_count(name)
        if count == expected or asyncio.get_running_loop().time() > deadline:
            return count
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("value", ["0", "10001", "-3", "many", "1.5"])
def test_prefetch_out_of_range_is_refused_naming_the_option_and_range(value: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        brokerkit.connect(f"{URL}?prefetch={value}")
    text = str(info.value)
    assert "prefetch" in text
    if value in ("0", "10001", "-3"):
        assert ">= 1" in text and "<= 10000" in text
    with pytest.raises(InvalidOptionError, match="prefetch"):
        brokerkit.connect(URL, prefetch=0)


def test_prefetch_accepts_its_range_and_defaults_to_100() -> None:
    assert brokerkit.connect(URL).options["prefetch"] == 100
    assert brokerkit.connect(URL + "?prefetch=1").options["prefetch"] == 1
    assert brokerkit.connect(URL + "?prefetch=10000").options["prefetch"] == 10000
    assert brokerkit.connect(URL, prefetch=7).options["prefetch"] == 7


@pytest.mark.parametrize(("prefetch", "max_in_flight", "expected"), [(5, 1, 5), (2, 4, 4)])
async def test_rabbitmq_sends_max_of_prefetch_and_max_in_flight_ahead(
    brokers: MakeBroker,
    topic: str,
    cleanup: list[str],
    prefetch: int,
    max_in_flight: int,
    expected: int,
) -> None:
    name = queue_name("brokerkit", topic, queue="prefetch")
    cleanup.append(name)
    broker: Broker = await brokers(f"{URL}?prefetch={prefetch}", drain_timeout=0.2)
    release = asyncio.Event()

    async def blocked(delivery: Delivery) -> None:
        await release.wait()

    collector = Collector(blocked)
    subscription = await broker.subscribe(
        topic, collector, queue="prefetch", max_in_flight=max_in_flight
    )
    assert isinstance(subscription, RabbitMQSubscription)
    assert subscription.prefetch_count == expected
    await broker.publish_many(topic, [b"%d" % i for i in range(20)])
    await collector.wait_for(max_in_flight, ARRIVE)
    # RabbitMQ holds back all but prefetch_count messages while none is acked.
    assert await wait_ready(name, 20 - expected) == 20 - expected
    await asyncio.sleep(0.2)
    assert await ready_count(name) == 20 - expected
    assert len(collector.deliveries) == max_in_flight
    release.set()
    await collector.wait_for(20, ARRIVE)
    assert await wait_ready(name, 0) == 0


async def test_prefetched_messages_go_back_unacked_on_unsubscribe(
    brokers: MakeBroker, topic: str, cleanup: list[str]
) -> None:
    name = queue_name("brokerkit", topic, queue="giveback")
    cleanup.append(name)
    broker: Broker = await brokers(f"{URL}?prefetch=10", drain_timeout=0.2)
    stuck = asyncio.Event()

    async def two_then_stuck(delivery: Delivery) -> None:
        if len(first.deliveries) > 2:
            stuck.set()
            await asyncio.Event().wait()  # cancelled by the drain

    first = Collector(two_then_stuck)
    subscription = await broker.subscribe(topic, first, queue="giveback")
    bodies = [b"%d" % i for i in range(20)]
    await broker.publish_many(topic, bodies)
    await asyncio.wait_for(stuck.wait(), ARRIVE)
    # 2 acked; 10 unacked (1 in the handler, 9 prefetched); 8 ready.
    assert await wait_ready(name, 8) == 8
    await subscription.unsubscribe()
    # Nothing prefetched was acked: all but the two handled ones are back.
    assert await wait_ready(name, 18) == 18

    second = Collector()
    await broker.subscribe(topic, second, queue="giveback")
    deliveries = await second.wait_for(18, ARRIVE)
    await second.assert_no_more(18, within=0.3)
    assert sorted(d.message.body for d in deliveries) == sorted(bodies[2:])


async def test_publish_many_beyond_one_confirm_window_keeps_order(
    brokers: MakeBroker, topic: str
) -> None:
    broker: Broker = await brokers()
    collector = Collector()
    await broker.subscribe(topic, collector)
    bodies = [b"%d" % i for i in range(2500)]  # windows of 1000, 1000 and 500
    await broker.publish_many(topic, bodies)
    deliveries = await collector.wait_for(2500, 30)
    assert [d.message.body for d in deliveries] == bodies


@pytest.mark.parametrize(
    "message_id",
    ["a" * 63, "b" * 255, "c" * 256, "\u00e9" * 127, "\u00e9" * 128, "\U0001f600" * 64],
)
async def test_ids_longer_than_a_shortstr_round_trip(
    brokers: MakeBroker, topic: str, message_id: str
) -> None:
    broker: Broker = await brokers()
    collector = Collector()
    await broker.subscribe(topic, collector)
    sent = brokerkit.Message(b"x", {"x-bk-id": "user's", "h": "v"}, id=message_id, key="k")
    await broker.publish(topic, sent)
    (delivery,) = await collector.wait_for(1, ARRIVE)
    assert delivery.message == sent


async def test_messages_from_other_publishers_are_validated(
    brokers: MakeBroker, topic: str, admin: aio_pika.abc.AbstractChannel
) -> None:
    broker: Broker = await brokers()
    collector = Collector()
    await broker.subscribe(topic, collector)
    exchange = await admin.get_exchange("brokerkit")
    # Carries brokerkit's envelope marker but a header brokerkit would never write.
    await exchange.publish(
        aio_pika.Message(b"odd", headers={"x-bk-ts": "12.5", "n": 5, "t": "a\nb"}),
        routing_key=topic,
    )
    # No envelope at all: id and timestamp from the AMQP properties.
    await exchange.publish(
        aio_pika.Message(b"plain", message_id="m-1", timestamp=1700000000),
        routing_key=topic,
    )
    odd, plain = await collector.wait_for(2, ARRIVE)
    assert odd.message.headers == {"n": "5", "t": "a b"}
    assert odd.message.timestamp == 12.5
    assert (plain.message.id, plain.message.timestamp) == ("m-1", 1700000000.0)
    assert plain.message.headers == {}


async def test_publish_many_gives_up_after_publish_timeout_and_the_broker_still_works(
    brokers: MakeBroker, topic: str
) -> None:
    broker: Broker = await brokers(publish_timeout=0.001)
    afters = 0
    three = asyncio.Event()

    async def count_afters(delivery: Delivery) -> None:
        nonlocal afters
        if delivery.message.body == b"after":
            afters += 1
            if afters == 3:
                three.set()

    await broker.subscribe(topic, Collector(count_afters))
    # 3000 confirms cannot all come back within a millisecond.
    with pytest.raises(PublishError, match="publish to"):
        await broker.publish_many(topic, [b"x"] * 3000)
    fine: Broker = await brokers()  # the default 30 s
    await fine.publish_many(topic, [b"after"] * 3)
    await asyncio.wait_for(three.wait(), ARRIVE)
