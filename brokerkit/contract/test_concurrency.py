"""Contract: concurrent publishers and subscribers; max_in_flight; draining."""

from __future__ import annotations

import asyncio

from brokerkit.contract._support import ARRIVE, contract, numbered
from brokerkit.core.broker import Broker
from brokerkit.core.message import Delivery
from brokerkit.testing.helpers import Collector, wait_until
from brokerkit.testing.pytest_plugin import MakeBroker


@contract()
async def test_concurrent_publishers_lose_nothing(make_broker: MakeBroker, topic: str) -> None:
    subscriber = await make_broker()
    collector = Collector()
    await subscriber.subscribe(topic, collector)
    publishers = [await make_broker(), await make_broker()]

    async def publish(index: int) -> None:
        broker = publishers[index % 2]
        for body in numbered(100, f"p{index}"):
            await broker.publish(topic, body)

    await asyncio.gather(*(publish(i) for i in range(5)))
    await collector.wait_for(500, ARRIVE)
    await collector.assert_no_more(500, within=0.2)
    expected = [b for i in range(5) for b in numbered(100, f"p{i}")]
    assert sorted(collector.bodies) == sorted(expected)


@contract()
async def test_concurrent_subscribes_each_receive_their_topic(broker: Broker, topic: str) -> None:
    topics = [f"{topic}.t{i}" for i in range(10)]
    collectors = [Collector() for _ in topics]
    await asyncio.gather(*(broker.subscribe(t, c) for t, c in zip(topics, collectors, strict=True)))
    await asyncio.gather(*(broker.publish(t, t.encode()) for t in topics))
    for each_topic, collector in zip(topics, collectors, strict=True):
        (delivery,) = await collector.wait_for(1, ARRIVE)
        assert delivery.message.body == each_topic.encode()


async def _peak_concurrency(broker: Broker, topic: str, max_in_flight: int) -> int:
    running = 0
    peak = 0
    done = 0

    async def slow(delivery: Delivery) -> None:
        nonlocal running, peak, done
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1
        done += 1

    await broker.subscribe(topic, slow, max_in_flight=max_in_flight)
    for body in numbered(12):
        await broker.publish(topic, body)
    await wait_until(lambda: done >= 12, ARRIVE)
    return peak


@contract()
async def test_max_in_flight_bounds_concurrent_handlers(broker: Broker, topic: str) -> None:
    peak = await _peak_concurrency(broker, topic, 3)
    assert 2 <= peak <= 3, f"peak concurrency {peak}, expected up to 3 and more than 1"


@contract()
async def test_max_in_flight_one_runs_handlers_one_at_a_time(broker: Broker, topic: str) -> None:
    assert await _peak_concurrency(broker, topic, 1) == 1


@contract()
async def test_disconnect_waits_for_running_handlers(make_broker: MakeBroker, topic: str) -> None:
    broker = await make_broker()
    started = asyncio.Event()
    finished: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(delivery.message.body)

    await broker.subscribe(topic, slow)
    await broker.publish(topic, b"in flight")
    await asyncio.wait_for(started.wait(), ARRIVE)
    await broker.disconnect()
    assert finished == [b"in flight"], "disconnect returned before the handler finished"


@contract()
async def test_unsubscribe_waits_for_running_handlers(broker: Broker, topic: str) -> None:
    started = asyncio.Event()
    finished: list[bytes] = []

    async def slow(delivery: Delivery) -> None:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(delivery.message.body)

    subscription = await broker.subscribe(topic, slow, max_in_flight=2)
    await broker.publish(topic, b"in flight")
    await asyncio.wait_for(started.wait(), ARRIVE)
    await subscription.unsubscribe()
    assert finished == [b"in flight"]


@contract()
async def test_drain_timeout_cancels_stuck_handlers(make_broker: MakeBroker, topic: str) -> None:
    broker = await make_broker(drain_timeout=0.2)
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def stuck(delivery: Delivery) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    await broker.subscribe(topic, stuck)
    await broker.publish(topic, b"stuck")
    await asyncio.wait_for(started.wait(), ARRIVE)
    await asyncio.wait_for(broker.disconnect(), 10)
    assert cancelled == [True]
