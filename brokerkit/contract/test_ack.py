"""Contract: ack, nack, redelivery with attempt counts, and handler failures."""

from __future__ import annotations

import pytest

from brokerkit.contract._support import ARRIVE, QUIET, contract, group_name
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import DeliveryStateError
from brokerkit.core.message import Delivery, DeliveryState
from brokerkit.testing.helpers import Collector, wait_until
from brokerkit.testing.pytest_plugin import MakeBroker


@contract(Capability.ACK)
async def test_handler_error_redelivers_with_growing_attempt(broker: Broker, topic: str) -> None:
    async def fail_twice(delivery: Delivery) -> None:
        if delivery.attempt < 3:
            raise RuntimeError(f"failing attempt {delivery.attempt}")

    collector = Collector(fail_twice)
    await broker.subscribe(topic, collector)
    await broker.publish(topic, b"retry me")
    deliveries = await collector.wait_for(3, ARRIVE)
    await collector.assert_no_more(3, within=QUIET)
    assert [d.attempt for d in deliveries] == [1, 2, 3]
    assert {d.message.body for d in deliveries} == {b"retry me"}
    assert len({d.message.id for d in deliveries}) == 1


@contract()
async def test_subscriber_keeps_working_after_its_handler_raised(
    broker: Broker, topic: str
) -> None:
    async def fail_first(delivery: Delivery) -> None:
        if delivery.message.body == b"bad" and delivery.attempt == 1:
            raise ValueError("handler bug")

    collector = Collector(fail_first)
    subscription = await broker.subscribe(topic, collector)
    await broker.publish(topic, b"bad")
    await broker.publish(topic, b"good")
    await wait_until(lambda: b"good" in collector.bodies, ARRIVE)
    assert subscription.active


@contract(Capability.ACK)
async def test_manual_ack_settles_the_message(broker: Broker, topic: str) -> None:
    async def ack(delivery: Delivery) -> None:
        await delivery.ack()

    collector = Collector(ack)
    await broker.subscribe(topic, collector, ack="manual")
    await broker.publish(topic, b"ack me")
    (delivery,) = await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET * 2)
    assert delivery.state is DeliveryState.ACKED


@contract(Capability.ACK)
async def test_manual_ack_after_the_handler_returned(broker: Broker, topic: str) -> None:
    collector = Collector()  # returns without settling
    await broker.subscribe(topic, collector, ack="manual")
    await broker.publish(topic, b"later")
    (delivery,) = await collector.wait_for(1, ARRIVE)
    assert not delivery.settled
    await delivery.ack()
    await collector.assert_no_more(1, within=QUIET)


@contract(Capability.ACK)
async def test_nack_with_requeue_redelivers(broker: Broker, topic: str) -> None:
    async def nack_first(delivery: Delivery) -> None:
        if delivery.attempt == 1:
            await delivery.nack(requeue=True)
        else:
            await delivery.ack()

    collector = Collector(nack_first)
    await broker.subscribe(topic, collector, ack="manual")
    await broker.publish(topic, b"again")
    deliveries = await collector.wait_for(2, ARRIVE)
    await collector.assert_no_more(2, within=QUIET)
    assert [d.attempt for d in deliveries] == [1, 2]


@contract(Capability.ACK)
async def test_nack_without_requeue_drops_the_message(broker: Broker, topic: str) -> None:
    async def reject(delivery: Delivery) -> None:
        await delivery.nack(requeue=False)

    collector = Collector(reject)
    await broker.subscribe(topic, collector, ack="manual")
    await broker.publish(topic, b"unwanted")
    await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET * 2)


@contract()
async def test_ack_and_nack_are_idempotent_and_exclusive(broker: Broker, topic: str) -> None:
    errors: list[str] = []

    async def settle(delivery: Delivery) -> None:
        if delivery.message.body == b"ack-first":
            await delivery.ack()
            await delivery.ack()
            with pytest.raises(DeliveryStateError):
                await delivery.nack()
        else:
            await delivery.nack(requeue=False)
            await delivery.nack(requeue=False)
            with pytest.raises(DeliveryStateError):
                await delivery.ack()
        errors.append("checked")

    collector = Collector(settle)
    await broker.subscribe(topic, collector)
    await broker.publish(topic, b"ack-first")
    await broker.publish(topic, b"nack-first")
    await wait_until(lambda: len(errors) >= 2, ARRIVE)
    states = {d.message.body: d.state for d in collector.deliveries}
    assert states == {b"ack-first": DeliveryState.ACKED, b"nack-first": DeliveryState.NACKED}


@contract(Capability.ACK, Capability.DURABLE)
async def test_message_unacked_by_a_crashed_consumer_is_delivered_again(
    make_broker: MakeBroker, topic: str
) -> None:
    crashing = await make_broker()
    first = Collector()  # never acks: the consumer "crashes" before acking
    await crashing.subscribe(topic, first, durable=group_name(topic, "crashy"), ack="manual")
    await crashing.publish(topic, b"important")
    await first.wait_for(1, ARRIVE)
    await crashing.disconnect()

    restarted = await make_broker()
    second = Collector()
    await restarted.subscribe(topic, second, durable=group_name(topic, "crashy"), ack="manual")
    (delivery,) = await second.wait_for(1, ARRIVE)
    assert delivery.message.body == b"important"
    assert delivery.message.id == first.deliveries[0].message.id
    await delivery.ack()
