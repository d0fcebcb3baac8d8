"""Contract: start="earliest" replays what the broker retains."""

from __future__ import annotations

from brokerkit.contract._support import ARRIVE, QUIET, contract, group_name, numbered
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.testing.helpers import Collector


@contract(Capability.REPLAY, Capability.PERSISTENT)
async def test_earliest_replays_messages_published_before_subscribing(
    broker: Broker, topic: str
) -> None:
    earlier = numbered(5, "early")
    for body in earlier:
        await broker.publish(topic, body)
    collector = Collector()
    await broker.subscribe(topic, collector, start="earliest")
    await collector.wait_for(5, ARRIVE)
    await broker.publish(topic, b"live")
    await collector.wait_for(6, ARRIVE)
    await collector.assert_no_more(6, within=QUIET)
    assert sorted(collector.bodies[:5]) == sorted(earlier)
    assert collector.bodies[5] == b"live"


@contract(Capability.REPLAY, Capability.ORDERING_PER_KEY)
async def test_replay_keeps_order_per_key(broker: Broker, topic: str) -> None:
    bodies = numbered(30)
    for body in bodies:
        await broker.publish(topic, body, key="k")
    collector = Collector()
    await broker.subscribe(topic, collector, start="earliest")
    await collector.wait_for(30, ARRIVE)
    assert collector.bodies == bodies


@contract(Capability.REPLAY, Capability.DURABLE)
async def test_durable_start_applies_only_on_first_use(broker: Broker, topic: str) -> None:
    await broker.publish(topic, b"old")
    first = Collector()
    subscription = await broker.subscribe(
        topic, first, durable=group_name(topic, "replayer"), start="earliest"
    )
    await first.wait_for(1, ARRIVE)
    await subscription.unsubscribe()
    second = Collector()
    await broker.subscribe(topic, second, durable=group_name(topic, "replayer"), start="earliest")
    await broker.publish(topic, b"new")
    await second.wait_for(1, ARRIVE)
    await second.assert_no_more(1, within=QUIET)
    assert second.bodies == [b"new"]
