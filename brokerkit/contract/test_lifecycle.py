"""Contract: connect, disconnect, reconnect and the not-connected errors."""

from __future__ import annotations

import pytest

from brokerkit.contract._support import contract
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import NotConnectedError
from brokerkit.core.registry import connect
from brokerkit.testing.helpers import Collector
from brokerkit.testing.pytest_plugin import MakeBroker


async def _round_trip(broker: Broker, topic: str, body: bytes) -> None:
    collector = Collector()
    subscription = await broker.subscribe(topic, collector)
    await broker.publish(topic, body)
    (delivery,) = await collector.wait_for(1)
    assert delivery.message.body == body
    await subscription.unsubscribe()


@contract()
async def test_connect_is_idempotent(make_broker: MakeBroker, topic: str) -> None:
    broker = await make_broker()
    await broker.connect()
    await broker.connect()
    assert broker.connected
    await _round_trip(broker, topic, b"still works")


@contract()
async def test_disconnect_is_idempotent(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    broker = await connect(broker_url)
    await broker.disconnect()
    await broker.disconnect()
    assert not broker.connected
    with pytest.raises(NotConnectedError):
        await broker.publish(topic, b"x")


@contract()
async def test_publish_and_subscribe_before_connect_raise(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    broker = connect(broker_url)
    with pytest.raises(NotConnectedError, match="connect"):
        await broker.publish(topic, b"x")
    with pytest.raises(NotConnectedError, match="connect"):
        await broker.subscribe(topic, Collector())


@contract()
async def test_subscribe_after_disconnect_raises(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    broker = await connect(broker_url)
    await broker.disconnect()
    with pytest.raises(NotConnectedError):
        await broker.subscribe(topic, Collector())


@contract()
async def test_reconnect_after_disconnect_starts_afresh(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    broker = await connect(broker_url)
    try:
        old = await broker.subscribe(topic, Collector())
        await broker.disconnect()
        assert not old.active, "disconnect must end the broker's subscriptions"
        await broker.connect()
        assert broker.connected
        await _round_trip(broker, topic, b"after reconnect")
    finally:
        await broker.disconnect()


@contract()
async def test_async_with_connects_and_disconnects(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    async with connect(broker_url) as broker:
        assert broker.connected
        await _round_trip(broker, topic, b"inside async with")
    assert not broker.connected


@contract()
async def test_await_connect_returns_a_connected_broker(
    broker_url: str, broker_capabilities: frozenset[Capability], topic: str
) -> None:
    broker = await connect(broker_url)
    try:
        assert broker.connected
        await _round_trip(broker, topic, b"awaited")
    finally:
        await broker.disconnect()


@contract()
async def test_disconnect_ends_subscriptions(make_broker: MakeBroker, topic: str) -> None:
    broker = await make_broker()
    subscription = await broker.subscribe(topic, Collector())
    assert subscription.active
    await broker.disconnect()
    assert not subscription.active
    await subscription.unsubscribe()  # still idempotent afterwards
