"""Contract: queue groups give each message to exactly one member."""

from __future__ import annotations

import asyncio
from collections import Counter

from brokerkit.contract._support import ARRIVE, contract, group_name, numbered
from brokerkit.core.capabilities import Capability
from brokerkit.core.message import Delivery
from brokerkit.testing.helpers import Collector, wait_until
from brokerkit.testing.pytest_plugin import MakeBroker


@contract(Capability.QUEUE_GROUPS)
async def test_each_message_goes_to_exactly_one_member(make_broker: MakeBroker, topic: str) -> None:
    first, second = await make_broker(), await make_broker()
    members = [Collector() for _ in range(3)]
    await first.subscribe(topic, members[0], queue=group_name(topic, "workers"))
    await first.subscribe(topic, members[1], queue=group_name(topic, "workers"))
    await second.subscribe(topic, members[2], queue=group_name(topic, "workers"))
    bodies = numbered(300)
    for body in bodies:
        await first.publish(topic, body)

    def total() -> int:
        return sum(len(m) for m in members)

    await wait_until(lambda: total() >= 300, ARRIVE, message=lambda: f"{total()} of 300 arrived")
    await asyncio.sleep(0.3)
    counts = Counter(body for m in members for body in m.bodies)
    assert set(counts) == set(bodies), "a message was lost"
    assert max(counts.values()) == 1, "a message went to more than one member"


@contract(Capability.QUEUE_GROUPS)
async def test_queue_group_and_plain_subscriber_both_receive(
    make_broker: MakeBroker, topic: str
) -> None:
    broker = await make_broker()
    plain = Collector()
    members = [Collector(), Collector()]
    await broker.subscribe(topic, plain)
    for member in members:
        await broker.subscribe(topic, member, queue=group_name(topic, "mailer"))
    bodies = numbered(40)
    for body in bodies:
        await broker.publish(topic, body)
    await plain.wait_for(40, ARRIVE)
    await wait_until(lambda: sum(len(m) for m in members) >= 40, ARRIVE)
    await asyncio.sleep(0.2)
    assert sorted(plain.bodies) == sorted(bodies)
    assert sorted(b for m in members for b in m.bodies) == sorted(bodies)


@contract(Capability.QUEUE_GROUPS)
async def test_two_queue_groups_each_get_every_message(make_broker: MakeBroker, topic: str) -> None:
    broker = await make_broker()
    groups = {name: [Collector(), Collector()] for name in ("billing", "shipping")}
    for name, members in groups.items():
        for member in members:
            await broker.subscribe(topic, member, queue=group_name(topic, name))
    bodies = numbered(30)
    for body in bodies:
        await broker.publish(topic, body)
    for members in groups.values():
        await wait_until(lambda ms=members: sum(len(m) for m in ms) >= 30, ARRIVE)  # type: ignore[misc]
    await asyncio.sleep(0.2)
    for members in groups.values():
        assert sorted(b for m in members for b in m.bodies) == sorted(bodies)


@contract(Capability.QUEUE_GROUPS, Capability.ACK)
async def test_member_leaving_midway_loses_nothing(make_broker: MakeBroker, topic: str) -> None:
    first, second = await make_broker(), await make_broker()
    handled: set[bytes] = set()

    async def slow(delivery: Delivery) -> None:
        await asyncio.sleep(0.005)
        handled.add(delivery.message.body)

    leaving = await first.subscribe(topic, slow, queue=group_name(topic, "workers"))
    await second.subscribe(topic, slow, queue=group_name(topic, "workers"))
    bodies = numbered(100)
    for body in bodies[:50]:
        await first.publish(topic, body)
    await wait_until(lambda: len(handled) >= 10, ARRIVE)
    await leaving.unsubscribe()
    for body in bodies[50:]:
        await first.publish(topic, body)
    await wait_until(
        lambda: handled >= set(bodies),
        ARRIVE * 2,
        message=lambda: f"{len(set(bodies) - handled)} messages never handled",
    )
