"""Contract: bodies, headers, ids, keys and timestamps survive the round trip."""

from __future__ import annotations

import os

from brokerkit.contract._support import ARRIVE, contract, numbered
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.message import Delivery, Message
from brokerkit.testing.helpers import Collector
from brokerkit.testing.pytest_plugin import MakeBroker


async def _one(broker: Broker, topic: str, message: Message | bytes) -> Delivery:
    collector = Collector()
    await broker.subscribe(topic, collector)
    await broker.publish(topic, message)
    (delivery,) = await collector.wait_for(1, ARRIVE)
    return delivery


@contract()
async def test_body_round_trip(broker: Broker, topic: str) -> None:
    delivery = await _one(broker, topic, b"hello, broker")
    assert delivery.message.body == b"hello, broker"
    assert delivery.topic == topic
    assert delivery.attempt == 1


@contract()
async def test_empty_body(broker: Broker, topic: str) -> None:
    delivery = await _one(broker, topic, b"")
    assert delivery.message.body == b""


@contract()
async def test_binary_body_with_every_byte_value(broker: Broker, topic: str) -> None:
    body = bytes(range(256)) * 4
    delivery = await _one(broker, topic, body)
    assert delivery.message.body == body


@contract()
async def test_one_mebibyte_body(broker: Broker, topic: str) -> None:
    body = os.urandom(1024 * 1024)
    delivery = await _one(broker, topic, body)
    assert len(delivery.message.body) == len(body)
    assert delivery.message.body == body


@contract(Capability.HEADERS)
async def test_headers_round_trip_including_non_ascii(broker: Broker, topic: str) -> None:
    headers = {
        "content-type": "application/json",
        "x-greeting": "grüß dich — こんにちは ✓",
        "x-empty": "",
        "X-Mixed-Case": "Value",
    }
    delivery = await _one(broker, topic, Message(b"{}", headers))
    assert delivery.message.headers == headers


@contract()
async def test_message_without_headers_arrives_without_headers(broker: Broker, topic: str) -> None:
    delivery = await _one(broker, topic, b"plain")
    assert delivery.message.headers == {}


@contract()
async def test_id_and_timestamp_round_trip(broker: Broker, topic: str) -> None:
    sent = Message(b"x", id="order-42-created", timestamp=1_700_000_000.25)
    delivery = await _one(broker, topic, sent)
    assert delivery.message.id == "order-42-created"
    assert abs(delivery.message.timestamp - 1_700_000_000.25) < 0.002


@contract(Capability.ORDERING_PER_KEY)
async def test_key_round_trip(broker: Broker, topic: str) -> None:
    delivery = await _one(broker, topic, Message(b"x", key="customer-7"))
    assert delivery.message.key == "customer-7"


@contract()
async def test_generated_ids_are_unique_and_preserved(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(topic, collector)
    sent = [Message(body) for body in numbered(50)]
    for message in sent:
        await broker.publish(topic, message)
    received = await collector.wait_for(50, ARRIVE)
    assert len({m.id for m in sent}) == 50
    assert {d.message.id for d in received} == {m.id for m in sent}
    by_id = {d.message.id: d.message.body for d in received}
    assert all(by_id[m.id] == m.body for m in sent)


@contract()
async def test_thousand_messages_all_arrive(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(topic, collector)
    bodies = numbered(1000)
    for body in bodies:
        await broker.publish(topic, body)
    await collector.wait_for(1000, ARRIVE * 2)
    await collector.assert_no_more(1000, within=0.2)
    assert sorted(collector.bodies) == sorted(bodies)


@contract()
async def test_publish_many_delivers_every_message(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(topic, collector)
    bodies = numbered(200)
    await broker.publish_many(topic, bodies)
    await collector.wait_for(200, ARRIVE)
    assert sorted(collector.bodies) == sorted(bodies)


@contract()
async def test_subscriber_on_another_connection_receives(
    make_broker: MakeBroker, topic: str
) -> None:
    publisher = await make_broker()
    subscriber = await make_broker()
    delivery = await _one_across(publisher, subscriber, topic, b"across connections")
    assert delivery.message.body == b"across connections"


async def _one_across(publisher: Broker, subscriber: Broker, topic: str, body: bytes) -> Delivery:
    collector = Collector()
    await subscriber.subscribe(topic, collector)
    await publisher.publish(topic, body)
    (delivery,) = await collector.wait_for(1, ARRIVE)
    return delivery
