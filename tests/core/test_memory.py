"""The memory broker's own promises beyond the contract: shared buses, bounds."""

from __future__ import annotations

import asyncio
import uuid

import pytest

import brokerkit
from brokerkit import BackpressureError, Delivery
from brokerkit.plugins.memory import drop_bus
from brokerkit.testing.helpers import Collector


def _bus() -> str:
    return "t" + uuid.uuid4().hex[:8]


async def test_brokers_on_the_same_name_share_a_bus_and_others_do_not() -> None:
    name = _bus()
    async with (
        brokerkit.connect(f"memory://{name}") as orders,
        brokerkit.connect(f"memory://{name}") as mailer,
        brokerkit.connect(f"memory://{_bus()}") as stranger,
    ):
        shared, isolated = Collector(), Collector()
        await mailer.subscribe("order.created", shared)
        await stranger.subscribe("order.created", isolated)
        await orders.publish("order.created", b"o-1")
        await shared.wait_for(1)
        await isolated.assert_no_more(0, within=0.1)
    drop_bus(name)


async def test_slow_consumer_makes_publish_wait_then_raise_without_losing_anything() -> None:
    name = _bus()
    async with brokerkit.connect(f"memory://{name}", max_pending=5, publish_timeout=0.2) as b:
        release = asyncio.Event()
        got: list[bytes] = []

        async def blocked(delivery: Delivery) -> None:
            await release.wait()
            got.append(delivery.message.body)

        await b.subscribe("jobs", blocked)
        # One message is in the handler; five more fill the subscriber's queue.
        for i in range(6):
            await b.publish("jobs", str(i).encode())
        await asyncio.sleep(0.01)
        with pytest.raises(BackpressureError, match="max_pending"):
            await b.publish("jobs", b"overflow")
        release.set()
        await b.publish("jobs", b"6")  # room again: accepted
        for _ in range(200):
            if len(got) == 7:
                break
            await asyncio.sleep(0.01)
        assert got == [str(i).encode() for i in range(7)]
    drop_bus(name)


async def test_publish_waits_for_room_when_the_consumer_catches_up() -> None:
    name = _bus()
    async with brokerkit.connect(f"memory://{name}", max_pending=2, publish_timeout=5) as b:
        collector = Collector()

        async def slow(delivery: Delivery) -> None:
            await asyncio.sleep(0.005)
            await collector(delivery)

        await b.subscribe("jobs", slow)
        for i in range(50):
            await b.publish("jobs", str(i).encode())
        await collector.wait_for(50)
        assert collector.bodies == [str(i).encode() for i in range(50)]
    drop_bus(name)


async def test_retention_bounds_replay() -> None:
    name = _bus()
    async with brokerkit.connect(f"memory://{name}", retention=3) as b:
        for i in range(10):
            await b.publish("history", str(i).encode())
        collector = Collector()
        await b.subscribe("history", collector, start="earliest")
        await collector.wait_for(3)
        await collector.assert_no_more(3, within=0.1)
        assert collector.bodies == [b"7", b"8", b"9"]
    drop_bus(name)


async def test_durable_group_outlives_its_members_until_the_bus_is_dropped() -> None:
    name = _bus()
    async with brokerkit.connect(f"memory://{name}") as b:
        sub = await b.subscribe("t", Collector(), durable="d")
        await sub.unsubscribe()
        await b.publish("t", b"kept")
    async with brokerkit.connect(f"memory://{name}") as b:
        collector = Collector()
        await b.subscribe("t", collector, durable="d")
        await collector.wait_for(1)
    drop_bus(name)
    async with brokerkit.connect(f"memory://{name}") as b:
        collector = Collector()
        await b.subscribe("t", collector, durable="d", start="earliest")
        await collector.assert_no_more(0, within=0.1)
