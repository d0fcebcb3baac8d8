"""Contract: fan-out to every subscriber, topic isolation, unsubscribe."""

from __future__ import annotations

import asyncio

from brokerkit.contract._support import ARRIVE, QUIET, contract, numbered
from brokerkit.core.broker import Broker
from brokerkit.testing.helpers import Collector
from brokerkit.testing.pytest_plugin import MakeBroker


@contract()
async def test_fan_out_every_subscriber_gets_every_message(
    make_broker: MakeBroker, topic: str
) -> None:
    first, second = await make_broker(), await make_broker()
    collectors = [Collector() for _ in range(3)]
    await first.subscribe(topic, collectors[0])
    await first.subscribe(topic, collectors[1])
    await second.subscribe(topic, collectors[2])
    bodies = numbered(20)
    for body in bodies:
        await first.publish(topic, body)
    for collector in collectors:
        await collector.wait_for(20, ARRIVE)
    for collector in collectors:
        await collector.assert_no_more(20, within=0.1)
        assert sorted(collector.bodies) == sorted(bodies)


@contract()
async def test_topic_isolation(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(topic, collector)
    sibling = topic[:-1] + ("x" if topic[-1] != "x" else "y")
    parent = topic.rsplit(".", 1)[0]
    for other in (f"{topic}.child", sibling, parent, f"{topic}-suffix"):
        await broker.publish(other, b"not for you")
    await broker.publish(topic, b"for you")
    await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET)
    assert collector.bodies == [b"for you"]


@contract()
async def test_unsubscribe_stops_delivery_to_that_subscription_only(
    broker: Broker, topic: str
) -> None:
    leaving, staying = Collector(), Collector()
    subscription = await broker.subscribe(topic, leaving)
    await broker.subscribe(topic, staying)
    await broker.publish(topic, b"before")
    await leaving.wait_for(1, ARRIVE)
    await subscription.unsubscribe()
    assert not subscription.active
    await broker.publish(topic, b"after")
    await staying.wait_for(2, ARRIVE)
    await leaving.assert_no_more(1, within=QUIET)
    assert staying.bodies == [b"before", b"after"] or sorted(staying.bodies) == [
        b"after",
        b"before",
    ]


@contract()
async def test_unsubscribe_is_idempotent_and_concurrency_safe(broker: Broker, topic: str) -> None:
    subscription = await broker.subscribe(topic, Collector())
    await asyncio.gather(subscription.unsubscribe(), subscription.unsubscribe())
    await subscription.unsubscribe()
    assert not subscription.active


@contract()
async def test_start_new_does_not_deliver_earlier_messages(broker: Broker, topic: str) -> None:
    await broker.publish(topic, b"earlier")
    collector = Collector()
    await broker.subscribe(topic, collector, start="new")
    await broker.publish(topic, b"later")
    await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET)
    assert collector.bodies == [b"later"]
