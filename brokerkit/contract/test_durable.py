"""Contract: durable subscriptions resume where they left off."""

from __future__ import annotations

from brokerkit.contract._support import ARRIVE, QUIET, contract, group_name
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.testing.helpers import Collector
from brokerkit.testing.pytest_plugin import MakeBroker


@contract(Capability.DURABLE)
async def test_durable_resumes_after_unsubscribe(broker: Broker, topic: str) -> None:
    first = Collector()
    subscription = await broker.subscribe(topic, first, durable=group_name(topic, "reader"))
    await broker.publish(topic, b"one")
    await first.wait_for(1, ARRIVE)
    await subscription.unsubscribe()

    await broker.publish(topic, b"two")
    await broker.publish(topic, b"three")
    second = Collector()
    await broker.subscribe(topic, second, durable=group_name(topic, "reader"))
    await second.wait_for(2, ARRIVE)
    await second.assert_no_more(2, within=QUIET)
    assert sorted(second.bodies) == [b"three", b"two"]


@contract(Capability.DURABLE)
async def test_durable_gets_everything_published_while_it_was_disconnected(
    make_broker: MakeBroker, topic: str
) -> None:
    publisher = await make_broker()
    consumer = await make_broker()
    first = Collector()
    await consumer.subscribe(topic, first, durable=group_name(topic, "mailer"))
    await publisher.publish(topic, b"seen")
    await first.wait_for(1, ARRIVE)
    await consumer.disconnect()

    away = [f"away-{i}".encode() for i in range(25)]
    for body in away:
        await publisher.publish(topic, body)

    restarted = await make_broker()
    second = Collector()
    await restarted.subscribe(topic, second, durable=group_name(topic, "mailer"))
    await second.wait_for(25, ARRIVE)
    await second.assert_no_more(25, within=QUIET)
    assert sorted(second.bodies) == sorted(away)


@contract(Capability.DURABLE)
async def test_different_durable_names_are_independent(broker: Broker, topic: str) -> None:
    first, second = Collector(), Collector()
    await broker.subscribe(topic, first, durable=group_name(topic, "one"))
    await broker.subscribe(topic, second, durable=group_name(topic, "two"))
    await broker.publish(topic, b"both")
    await first.wait_for(1, ARRIVE)
    await second.wait_for(1, ARRIVE)
