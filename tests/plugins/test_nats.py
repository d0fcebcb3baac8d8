"""NATS-specific tests for ``nats://`` and ``nats+jetstream://`` against real servers.

The shared server is ``BROKERKIT_NATS_URL`` (default ``nats://127.0.0.1:4222``; JetStream
on). Authentication and the max_payload limit are tested on a private ``nats-server``
started here on a free port. Where the server or binary is missing the tests are
skipped, except with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import nats
import pytest

import brokerkit
from brokerkit import (
    AuthenticationError,
    CapabilityError,
    Delivery,
    InvalidOptionError,
    Message,
    PublishError,
    SubscribeError,
    Subscription,
)
from brokerkit.plugins.nats import decode_message, encode_headers
from brokerkit.testing.helpers import Collector, wait_until

NATS_URL = os.environ.get("BROKERKIT_NATS_URL", "nats://127.0.0.1:4222")
JS_URL = NATS_URL.replace("nats://", "nats+jetstream://", 1)
PASSWORD = "pw-7f3a-secret"  # a value that would stand out in any error text
IN_CI = os.environ.get("CI", "").lower() == "true"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing backend is a failure)")
    pytest.skip(reason)


def _info(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            return sock.recv(5) == b"INFO "
    except OSError:
        return False


@pytest.fixture(scope="module")
def shared_server() -> str:
    port = brokerkit.parse_url(NATS_URL).hosts[0][1] or 4222
    if not _info(port):
        _unavailable(f"no NATS server answers at {NATS_URL}")
    return NATS_URL


@pytest.fixture(scope="module")
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A nats-server with user alice / PASSWORD and the default max_payload (1 MB)."""
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not os.access(binary, os.X_OK):
        _unavailable("no nats-server binary")
    directory = tmp_path_factory.mktemp("nats-auth")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = directory / "nats.conf"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\n"
        f'authorization {{\n  user: alice\n  password: "{PASSWORD}"\n}}\n'
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _info(port):
            assert process.poll() is None, "the private nats-server exited"
            assert time.monotonic() < deadline, "the private nats-server did not start"
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _token() -> str:
    return "bkt" + uuid.uuid4().hex[:10]


async def _delete_consumer(server: str, subscription: Subscription) -> None:
    """Remove a durable test subscription's JetStream consumer from the stream BK_bk."""
    nc = await nats.connect(server)
    try:
        await nc.jetstream().delete_consumer("BK_bk", subscription.consumer)  # type: ignore[attr-defined]
    finally:
        await nc.close()


# --- authentication --------------------------------------------------------------------------


async def test_right_password_connects_and_round_trips(private_server: int) -> None:
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{private_server}"
    async with brokerkit.connect(url) as broker:
        assert PASSWORD not in repr(broker)
        collector = Collector()
        await broker.subscribe("auth.ok", collector)
        await broker.publish("auth.ok", b"in")
        (delivery,) = await collector.wait_for(1)
        assert delivery.message.body == b"in"


@pytest.mark.parametrize("scheme", ["nats", "nats+jetstream"])
async def test_wrong_password_raises_authentication_error_without_the_password(
    private_server: int, scheme: str
) -> None:
    wrong = PASSWORD + "-wrong"
    broker = brokerkit.connect(f"{scheme}://alice:{wrong}@127.0.0.1:{private_server}")
    with pytest.raises(AuthenticationError) as info:
        await broker.connect()
    assert not broker.connected
    for exc in _chain(info.value):
        for text in (str(exc), repr(exc), str(exc.args)):
            assert wrong not in text
            assert PASSWORD not in text
    assert wrong not in repr(broker)


async def test_missing_credentials_raise_authentication_error(private_server: int) -> None:
    with pytest.raises(AuthenticationError):
        await brokerkit.connect(f"nats://127.0.0.1:{private_server}").connect()


async def test_unreachable_server_raises_connection_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    broker = brokerkit.connect(f"nats://127.0.0.1:{port}", connect_timeout=2, reconnect=False)
    with pytest.raises(brokerkit.BrokerConnectionError) as info:
        await broker.connect()
    assert not isinstance(info.value, AuthenticationError)


# --- limits ------------------------------------------------------------------------------------


async def test_message_over_max_payload_is_refused_naming_the_limit(private_server: int) -> None:
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{private_server}"
    async with brokerkit.connect(url) as broker:
        with pytest.raises(PublishError, match="max_payload is 1048576 bytes"):
            await broker.publish("limits.big", bytes(1024 * 1024))
        # The connection survives (the server never saw the message).
        collector = Collector()
        await broker.subscribe("limits.small", collector)
        await broker.publish("limits.small", bytes(1000 * 1000))
        (delivery,) = await collector.wait_for(1)
        assert len(delivery.message.body) == 1000 * 1000


async def test_small_body_with_big_headers_or_key_is_refused_too(private_server: int) -> None:
    # The exact size is computed only near the limit: headers and key count towards it.
    url = f"nats://alice:{PASSWORD}@127.0.0.1:{private_server}"
    async with brokerkit.connect(url) as broker:
        with pytest.raises(PublishError, match="max_payload is 1048576 bytes"):
            await broker.publish("limits.headers", b"small", headers={"big": "x" * 1_048_576})
        with pytest.raises(PublishError, match="max_payload is 1048576 bytes"):
            await broker.publish("limits.key", bytes(600_000), key="k" * 500_000)
        with pytest.raises(PublishError, match="max_payload is 1048576 bytes"):
            # Percent-encoded in the envelope: 12 bytes per character.
            await broker.publish("limits.key", bytes(400_000), key="%" + "\U0001f600" * 60_000)
        collector = Collector()
        await broker.subscribe("limits.fits", collector)
        await broker.publish("limits.fits", bytes(1_040_000), headers={"h": "v" * 4000})
        (delivery,) = await collector.wait_for(1)
        assert len(delivery.message.body) == 1_040_000


# --- options -----------------------------------------------------------------------------------


def test_unknown_option_is_refused_listing_known_ones() -> None:
    with pytest.raises(InvalidOptionError, match=r"'bogus'.*known options:.*reconnect"):
        brokerkit.connect("nats://127.0.0.1:4222?bogus=1")
    with pytest.raises(InvalidOptionError, match="ack_wait"):
        brokerkit.connect("nats://127.0.0.1:4222?ack_wait=3")  # a JetStream-only option


def test_bad_option_values_are_refused() -> None:
    with pytest.raises(InvalidOptionError, match="storage"):
        brokerkit.connect("nats+jetstream://127.0.0.1?storage=tape")
    with pytest.raises(InvalidOptionError, match="stream_subjects"):
        brokerkit.connect("nats+jetstream://127.0.0.1?stream_subjects=a.>")
    with pytest.raises(InvalidOptionError, match="token"):
        brokerkit.connect("nats://alice:pw@127.0.0.1?token=t0k3n")
    with pytest.raises(InvalidOptionError) as info:
        brokerkit.connect("nats://127.0.0.1?token=", reconnect="maybe")
    assert "maybe" in str(info.value) or "token" in str(info.value)


def test_prefetch_option_is_validated_and_jetstream_only() -> None:
    for bad in ("0", "10001", "-3", "many"):
        with pytest.raises(InvalidOptionError, match=r"prefetch.*>= 1 and <= 10000|prefetch"):
            brokerkit.connect(f"nats+jetstream://127.0.0.1?prefetch={bad}")
    with pytest.raises(InvalidOptionError, match=r"prefetch=0 .*>= 1 and <= 10000"):
        brokerkit.connect("nats+jetstream://127.0.0.1", prefetch=0)
    with pytest.raises(InvalidOptionError, match="'prefetch'"):  # NATS core has no prefetch
        brokerkit.connect("nats://127.0.0.1?prefetch=10")
    assert brokerkit.connect("nats+jetstream://127.0.0.1").options["prefetch"] == 100
    assert brokerkit.connect("nats+jetstream://127.0.0.1?prefetch=10000").options["prefetch"] == (
        10000
    )


def test_declared_capabilities() -> None:
    core = brokerkit.connect("nats://127.0.0.1").capabilities
    assert {c.value for c in core} == {"headers", "queue_groups", "wildcards", "ordering_per_key"}
    assert (
        brokerkit.connect("nats+jetstream://127.0.0.1").capabilities == brokerkit.ALL_CAPABILITIES
    )
    assert brokerkit.connect("nats://h1,h2:4223").url.hosts == (("h1", 4222), ("h2", 4223))


async def test_core_refuses_durable_with_a_capability_error(shared_server: str) -> None:
    async with brokerkit.connect(shared_server) as broker:
        with pytest.raises(CapabilityError, match="durable"):
            await broker.subscribe("x.y", Collector(), durable="d")


# --- header mapping ------------------------------------------------------------------------------

TRICKY = Message(
    b"\x00\xff",
    {
        "plain": "v",
        "empty": "",
        "spaces": "  both ends ",
        "a/b;c": "x",  # not an HTTP token
        "a(b)": "ü — ✓",
        "Nats-Msg-Id": "user's own",
        "Nats-Expected-Stream": "not for the server",
        "brokerkit-key": "reserved name",
        "Brokerkit-N-x": "looks escaped",
        "percent": "100% %41",
        "ctl": "a\tb\x0bc",
    },
    id=" id with spaces ",
    key="key\nwith newline",
    timestamp=1234567890.123456789,
)


def test_header_mapping_round_trips_pure() -> None:
    headers = encode_headers(TRICKY, "a.b")
    assert next(iter(headers)) == "Nats-Msg-Id"  # the server reads the first occurrence
    assert "Nats-Expected-Stream" not in headers
    decoded = decode_message("a.b", TRICKY.body, headers)
    assert decoded == TRICKY


def test_envelope_is_one_header_and_plain_ids_are_sent_as_they_are() -> None:
    message = Message(b"x", id="abc", key="k", timestamp=12.5)
    assert encode_headers(message) == {"Brokerkit-Env": "abc 12.5 k"}
    assert encode_headers(Message(b"x", id="abc", timestamp=1.0)) == {"Brokerkit-Env": "abc 1.0"}
    assert encode_headers(message, "t.x") == {
        "Nats-Msg-Id": "abc:t.x",
        "Brokerkit-Env": "abc 12.5 k",
    }
    # Spaces, '%' and what NATS would alter are percent-encoded inside the envelope.
    odd = Message(b"", id="a b%", key=" k\t", timestamp=2.0)
    assert encode_headers(odd) == {"Brokerkit-Env": "a%20b%25 2.0 %20k%09"}
    assert decode_message("t", b"", encode_headers(odd)) == odd


def test_message_from_an_older_brokerkit_still_decodes() -> None:
    legacy = {"Nats-Msg-Id": "old-1:t.x", "Brokerkit-Key": "k", "Brokerkit-Ts": "7.5", "h": "v"}
    decoded = decode_message("t.x", b"body", legacy)
    assert (decoded.id, decoded.key, decoded.timestamp, decoded.headers) == (
        "old-1",
        "k",
        7.5,
        {"h": "v"},
    )


def test_malformed_envelope_is_treated_as_a_foreign_message() -> None:
    for env in ("", "one-field", "a b c d", "id not-a-number"):
        decoded = decode_message("t", b"x", {"Brokerkit-Env": env, "h": "v"}, default_id="S:1")
        assert decoded.id == "S:1"
        assert decoded.headers == {"h": "v"}
        assert decoded.key is None


def test_foreign_message_gets_an_id_and_no_reserved_headers() -> None:
    decoded = decode_message("a", b"x", {"Status": "100", "h": "v"}, default_id="S:7")
    assert decoded.id == "S:7"
    assert decoded.headers == {"h": "v"}
    assert decoded.key is None


@pytest.mark.parametrize("scheme", ["nats", "nats+jetstream"])
async def test_tricky_headers_survive_a_real_round_trip(shared_server: str, scheme: str) -> None:
    url = shared_server.replace("nats://", f"{scheme}://", 1)
    topic = f"bk.tricky.{_token()}"
    async with brokerkit.connect(url) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector)
        await broker.publish(topic, TRICKY)
        (delivery,) = await collector.wait_for(1)
        assert delivery.message == TRICKY


@pytest.mark.parametrize("scheme", ["nats", "nats+jetstream"])
async def test_raw_nats_client_sees_one_envelope_header(shared_server: str, scheme: str) -> None:
    url = shared_server.replace("nats://", f"{scheme}://", 1)
    topic = f"bk.wire.{_token()}"
    nc = await nats.connect(shared_server)
    try:
        sub = await nc.subscribe(topic)
        await nc.flush()
        async with brokerkit.connect(url) as broker:
            message = Message(b"w", key="k1", timestamp=3.25)
            await broker.publish(topic, message)
            msg = await sub.next_msg(timeout=5)
        expected = {"Brokerkit-Env": f"{message.id} 3.25 k1"}
        if scheme == "nats+jetstream":
            expected = {"Nats-Msg-Id": f"{message.id}:{topic}", **expected}
        assert msg.headers == expected
    finally:
        await nc.close()


@pytest.mark.parametrize("scheme", ["nats", "nats+jetstream"])
async def test_messages_from_other_nats_clients_are_received(
    shared_server: str, scheme: str
) -> None:
    url = shared_server.replace("nats://", f"{scheme}://", 1)
    topic = f"bk.foreign.{_token()}"
    ext_id = f"ext-{_token()}"  # unique: JetStream drops a repeated Nats-Msg-Id
    nc = await nats.connect(shared_server)
    try:
        async with brokerkit.connect(url) as broker:
            collector = Collector()
            await broker.subscribe(topic, collector)
            if scheme == "nats+jetstream":
                js = nc.jetstream()
                await js.publish(topic, b"plain")
                await js.publish(topic, b"with", headers={"h": "v", "Nats-Msg-Id": ext_id})
            else:
                await nc.publish(topic, b"plain")
                await nc.publish(topic, b"with", headers={"h": "v", "Nats-Msg-Id": ext_id})
            plain, with_headers = await collector.wait_for(2)
        assert (plain.message.body, plain.message.headers, plain.message.key) == (
            b"plain",
            {},
            None,
        )
        assert plain.message.id and plain.message.id != ext_id
        assert with_headers.message.id == ext_id
        assert with_headers.message.headers == {"h": "v"}
    finally:
        await nc.close()


# --- JetStream: streams, consumers, dedupe ------------------------------------------------


@pytest.fixture
async def jsm(shared_server: str) -> AsyncIterator[nats.js.JetStreamContext]:
    nc = await nats.connect(shared_server)
    try:
        yield nc.jetstream()
    finally:
        await nc.close()


async def _delete_stream(jsm: nats.js.JetStreamContext, name: str) -> None:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await jsm.delete_stream(name)


async def test_default_stream_per_first_token(
    shared_server: str, jsm: nats.js.JetStreamContext
) -> None:
    token = _token()
    try:
        async with brokerkit.connect(JS_URL, storage="memory", max_age=600) as broker:
            collector = Collector()
            await broker.subscribe(f"{token}.>", collector, start="earliest")
            await broker.publish(token, b"single-token topic")  # not matched by token.>
            await broker.publish(f"{token}.a.b", b"deep")
            (delivery,) = await collector.wait_for(1)
            assert delivery.topic == f"{token}.a.b"
        info = await jsm.stream_info(f"BK_{token}")
        assert sorted(info.config.subjects or []) == sorted([token, f"{token}.>"])
        assert str(getattr(info.config.storage, "value", info.config.storage)) == "memory"
        assert info.config.max_age == 600
        assert info.state.messages == 2
        # Connecting again finds the stream and uses it as it is.
        async with brokerkit.connect(JS_URL, storage="file") as broker:
            collector = Collector()
            await broker.subscribe(token, collector, start="earliest")
            (delivery,) = await collector.wait_for(1)
            assert delivery.message.body == b"single-token topic"
        info = await jsm.stream_info(f"BK_{token}")
        assert str(getattr(info.config.storage, "value", info.config.storage)) == "memory"
    finally:
        await _delete_stream(jsm, f"BK_{token}")


async def test_existing_stream_covering_the_subject_is_used(
    shared_server: str, jsm: nats.js.JetStreamContext
) -> None:
    token = _token()
    name = f"USER_{token}"
    await jsm.add_stream(name=name, subjects=[f"{token}.orders.>"], storage="memory")
    try:
        async with brokerkit.connect(JS_URL) as broker:
            await broker.publish(f"{token}.orders.new", b"o1")
            collector = Collector()
            await broker.subscribe(f"{token}.orders.*", collector, start="earliest")
            (delivery,) = await collector.wait_for(1)
            assert delivery.message.body == b"o1"
            assert (await jsm.stream_info(name)).state.messages == 1
            # Another subject of that token would need a stream overlapping the user's.
            with pytest.raises(PublishError, match=r"overlap.*stream option"):
                await broker.publish(f"{token}.other", b"x")
        with pytest.raises(nats.js.errors.NotFoundError):
            await jsm.stream_info(f"BK_{token}")
    finally:
        await _delete_stream(jsm, name)


async def test_stream_option_creates_and_uses_one_stream(
    shared_server: str, jsm: nats.js.JetStreamContext
) -> None:
    a, b = _token(), _token()
    name = f"ONE_{a}"
    url = f"{JS_URL}?stream={name}&stream_subjects={a}.>,{b}.>&storage=memory"
    try:
        async with brokerkit.connect(url) as broker:
            collector = Collector()
            await broker.subscribe(f"{a}.x", collector)
            await broker.publish(f"{a}.x", b"1")
            await broker.publish(f"{b}.y", b"2")
            await collector.wait_for(1)
            with pytest.raises(PublishError):
                await broker.publish(f"{_token()}.z", b"not covered")
        info = await jsm.stream_info(name)
        assert info.state.messages == 2
    finally:
        await _delete_stream(jsm, name)
    with pytest.raises(PublishError, match="does not exist"):
        async with brokerkit.connect(f"{JS_URL}?stream=NOPE_{a}") as broker:
            await broker.publish(f"{a}.x", b"1")


async def test_pattern_starting_with_a_wildcard_needs_the_stream_option(
    shared_server: str,
) -> None:
    async with brokerkit.connect(JS_URL) as broker:
        with pytest.raises(SubscribeError, match="stream option"):
            await broker.subscribe(f"*.{_token()}", Collector())


async def test_retried_publish_is_stored_once_but_other_topics_get_it(shared_server: str) -> None:
    topic = f"bk.dedupe.{_token()}"
    message = Message(b"once", id="fixed-" + _token())
    async with brokerkit.connect(JS_URL) as broker:
        await broker.publish(topic + ".a", message)
        await broker.publish(topic + ".a", message)  # a retry: de-duplicated
        await broker.publish(topic + ".b", message)  # another topic: stored
        collector = Collector()
        await broker.subscribe(topic + ".*", collector, start="earliest")
        deliveries = await collector.wait_for(2)
        assert sorted(d.topic for d in deliveries) == [topic + ".a", topic + ".b"]
        assert {d.message.id for d in deliveries} == {message.id}
        await collector.assert_no_more(2, within=0.3)


async def test_ephemeral_consumers_are_deleted_and_durable_ones_kept(
    shared_server: str, jsm: nats.js.JetStreamContext
) -> None:
    topic = f"bk.consumers.{_token()}"
    async with brokerkit.connect(JS_URL) as broker:
        plain = await broker.subscribe(topic, Collector())
        durable = await broker.subscribe(topic, Collector(), durable="keep")
        names = {c.name for c in await jsm.consumers_info("BK_bk")}
        assert {plain.consumer, durable.consumer} <= names  # type: ignore[attr-defined]
        await plain.unsubscribe()
        await durable.unsubscribe()
        names = {c.name for c in await jsm.consumers_info("BK_bk")}
        assert plain.consumer not in names  # type: ignore[attr-defined]
        assert durable.consumer in names  # type: ignore[attr-defined]
        info = await jsm.consumer_info("BK_bk", durable.consumer)  # type: ignore[attr-defined]
        assert info.config.max_deliver == -1
        assert info.config.filter_subject == topic
        await jsm.delete_consumer("BK_bk", durable.consumer)  # type: ignore[attr-defined]


async def test_unsettled_messages_are_redelivered_at_once_after_unsubscribe(
    shared_server: str,
) -> None:
    topic = f"bk.giveback.{_token()}"
    async with brokerkit.connect(JS_URL, ack_wait=60) as broker:
        held = Collector()
        first = await broker.subscribe(topic, held, durable="gb", ack="manual")
        await broker.publish(topic, b"m")
        await held.wait_for(1)
        await first.unsubscribe()  # never acked: given back, not left to ack_wait (60 s)
        again = Collector()
        second = await broker.subscribe(topic, again, durable="gb")
        (delivery,) = await again.wait_for(1, timeout=10)
        assert delivery.message.body == b"m"
        # (nats-server 2.9 may report attempt 1 here: it un-counts the redelivery it
        # first routed to the closed subscription's expired pull request.)
        await second.unsubscribe()
        await _delete_consumer(shared_server, second)


async def _consumer_info(shared_server: str, consumer: str) -> object:
    nc = await nats.connect(shared_server)
    try:
        return await nc.jetstream().consumer_info("BK_bk", consumer)
    finally:
        await nc.close()


@pytest.mark.parametrize(("prefetch", "expected"), [(None, 100), (10, 10)])
async def test_prefetch_is_the_pull_batch(
    shared_server: str, prefetch: int | None, expected: int
) -> None:
    """A subscription holds ``prefetch`` messages ahead of a busy handler, no more."""
    topic = f"bk.prefetch.{_token()}"
    url = JS_URL if prefetch is None else f"{JS_URL}?prefetch={prefetch}"
    gate = asyncio.Event()
    started: list[Delivery] = []

    async def blocked(delivery: Delivery) -> None:
        started.append(delivery)
        await gate.wait()

    async with brokerkit.connect(url, drain_timeout=5) as broker:
        sub = await broker.subscribe(topic, blocked)
        await broker.publish_many(topic, [b"m"] * (expected + 50))
        await wait_until(lambda: len(started) == 1, 10)
        consumer = sub.consumer  # type: ignore[attr-defined]

        async def pending() -> int:
            info = await _consumer_info(shared_server, consumer)
            return int(info.num_ack_pending)  # type: ignore[attr-defined]

        deadline = time.monotonic() + 10
        while await pending() < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # and no more arrive
        assert await pending() == expected
        info = await _consumer_info(shared_server, consumer)
        assert info.config.max_ack_pending >= 2 * expected  # type: ignore[attr-defined]
        gate.set()


async def test_prefetched_messages_are_given_back_at_once_on_unsubscribe(
    shared_server: str,
) -> None:
    """Messages pulled ahead but not handed to the handler are NAKed on unsubscribe."""
    topic = f"bk.prefetched.{_token()}"
    gate = asyncio.Event()
    started: list[Delivery] = []

    async def blocked(delivery: Delivery) -> None:
        started.append(delivery)
        await gate.wait()

    async with brokerkit.connect(JS_URL, ack_wait=60, prefetch=20, drain_timeout=0.2) as broker:
        first = await broker.subscribe(topic, blocked, durable="pf", ack="manual")
        bodies = [str(i).encode() for i in range(40)]
        await broker.publish_many(topic, bodies)
        await wait_until(lambda: len(started) == 1, 10)
        await asyncio.sleep(0.2)  # the rest of the first batch reaches the inbox
        await first.unsubscribe()  # cancels the blocked handler; nothing was acked
        again = Collector()
        second = await broker.subscribe(topic, again, durable="pf")
        # Not left to ack_wait (60 s): every message comes back within seconds.
        await again.wait_for(40, timeout=10)
        assert sorted(again.bodies) == sorted(bodies)
        await again.assert_no_more(40, within=0.3)
        await second.unsubscribe()
        await _delete_consumer(shared_server, second)


async def test_delivery_continues_after_pull_requests_expired(shared_server: str) -> None:
    """A partly served pull request expires after 5 s; the next one takes over."""
    topic = f"bk.idle.{_token()}"
    async with brokerkit.connect(JS_URL) as broker:
        collector = Collector()
        await broker.subscribe(topic, collector)
        await broker.publish_many(topic, [b"before"] * 30)  # part of the first batch
        await collector.wait_for(30)
        await asyncio.sleep(6.5)
        await broker.publish(topic, b"after")
        deliveries = await collector.wait_for(31, timeout=2)
        assert deliveries[-1].message.body == b"after"


async def test_stuck_handlers_with_workers_give_everything_back_on_unsubscribe(
    shared_server: str,
) -> None:
    """Handlers stuck past drain_timeout with max_in_flight > 1, and a delivery waiting
    for a worker: unsubscribe still returns promptly and every message comes back."""
    topic = f"bk.stuckworkers.{_token()}"
    started: list[Delivery] = []

    async def stuck(delivery: Delivery) -> None:
        started.append(delivery)
        await asyncio.sleep(60)

    async with brokerkit.connect(JS_URL, ack_wait=60, prefetch=20, drain_timeout=0.2) as broker:
        first = await broker.subscribe(topic, stuck, durable="sw", max_in_flight=2)
        bodies = [str(i).encode() for i in range(30)]
        await broker.publish_many(topic, bodies)
        await wait_until(lambda: len(started) == 2, 10)
        await asyncio.sleep(0.2)  # the worker queues fill; the next dispatch waits
        await asyncio.wait_for(first.unsubscribe(), 5)
        again = Collector()
        second = await broker.subscribe(topic, again, durable="sw")
        await again.wait_for(30, timeout=10)
        assert sorted(again.bodies) == sorted(bodies)
        await second.unsubscribe()
    await _delete_consumer(shared_server, second)


async def test_handler_cancelled_at_drain_timeout_keeps_the_connection_usable(
    shared_server: str,
) -> None:
    """The drain timeout cancels a handler running in nats-py's callback task; the
    connection's other subscriptions keep receiving."""
    stuck_topic, live_topic = f"bk.stuck.{_token()}", f"bk.live.{_token()}"
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(60)

    async with brokerkit.connect(JS_URL, drain_timeout=0.2) as broker:
        stuck_sub = await broker.subscribe(stuck_topic, stuck)
        live = Collector()
        await broker.subscribe(live_topic, live)
        await broker.publish_many(stuck_topic, [b"a", b"b", b"c"])
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(stuck_sub.unsubscribe(), 5)
        await broker.publish(live_topic, b"still here")
        (delivery,) = await live.wait_for(1)
        assert delivery.message.body == b"still here"


async def test_publish_refused_by_the_stream_raises_publish_error(
    shared_server: str, jsm: nats.js.JetStreamContext
) -> None:
    """A PubAck carrying an error (here: the subject is in another stream than the
    ``stream`` option names) raises PublishError with the server's description."""
    token = _token()
    other, mine = f"BKOTHER_{token}", f"BKMINE_{token}"
    await jsm.add_stream(name=other, subjects=[f"bkother{token}.>"])
    await jsm.add_stream(name=mine, subjects=[f"bkmine{token}.>"])
    try:
        async with brokerkit.connect(f"{JS_URL}?stream={mine}") as broker:
            await broker.publish(f"bkmine{token}.ok", b"stored")
            with pytest.raises(PublishError, match=r"(?i)stream"):
                await broker.publish(f"bkother{token}.x", b"refused")
    finally:
        await _delete_stream(jsm, other)
        await _delete_stream(jsm, mine)


async def test_publish_without_a_pub_ack_times_out(shared_server: str) -> None:
    """A responder that never answers (not a stream): PublishError after
    publish_timeout, not a hang."""
    topic = f"bknoack{_token()}.x"
    nc = await nats.connect(shared_server)
    try:

        async def silent(_msg: object) -> None:
            pass

        await nc.subscribe(topic, cb=silent)
        await nc.flush()
        async with brokerkit.connect(JS_URL, publish_timeout=0.3) as broker:
            start = time.monotonic()
            with pytest.raises(PublishError, match=r"(?i)timeout"):
                await broker.publish(topic, b"nobody stores this")
            assert time.monotonic() - start < 5
            assert broker._acks == {}  # type: ignore[attr-defined]
    finally:
        await nc.close()


async def test_jetstream_publish_many_stores_in_order(shared_server: str) -> None:
    topic = f"bk.many.{_token()}"
    async with brokerkit.connect(JS_URL) as broker:
        await broker.publish_many(topic, [str(i).encode() for i in range(200)])
        collector = Collector()
        await broker.subscribe(topic, collector, start="earliest")
        deliveries = await collector.wait_for(200)
        assert [d.message.body for d in deliveries] == [str(i).encode() for i in range(200)]


def test_no_client_library_imported_by_the_plugin_module() -> None:
    code = (
        "import sys, brokerkit.plugins.nats as m; m.brokerkit_schemes(); "
        "print(any(n == 'nats' or n.startswith('nats.') for n in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
