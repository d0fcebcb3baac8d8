"""Contract: messages with the same key arrive in publish order."""

from __future__ import annotations

import asyncio
import random

from brokerkit.contract._support import ARRIVE, contract
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.message import Delivery, Message
from brokerkit.testing.helpers import wait_until

KEYS = ("alpha", "beta", "gamma")
PER_KEY = 100


async def _publish_interleaved(broker: Broker, topic: str) -> None:
    for index in range(PER_KEY):
        for key in KEYS:
            await broker.publish(topic, Message(str(index).encode(), key=key))


def _check(received: dict[str, list[int]]) -> None:
    for key in KEYS:
        assert received[key] == list(range(PER_KEY)), f"order for key {key!r} broken"


@contract(Capability.ORDERING_PER_KEY)
async def test_order_is_kept_per_key(broker: Broker, topic: str) -> None:
    received: dict[str, list[int]] = {key: [] for key in KEYS}

    async def record(delivery: Delivery) -> None:
        assert delivery.message.key is not None
        received[delivery.message.key].append(int(delivery.message.body))

    await broker.subscribe(topic, record)
    await _publish_interleaved(broker, topic)
    total = PER_KEY * len(KEYS)
    await wait_until(lambda: sum(map(len, received.values())) >= total, ARRIVE)
    _check(received)


@contract(Capability.ORDERING_PER_KEY)
async def test_order_per_key_holds_with_concurrent_handlers(broker: Broker, topic: str) -> None:
    received: dict[str, list[int]] = {key: [] for key in KEYS}
    running: dict[str, int] = dict.fromkeys(KEYS, 0)
    overlap: list[str] = []

    async def record(delivery: Delivery) -> None:
        key = delivery.message.key
        assert key is not None
        running[key] += 1
        if running[key] > 1:
            overlap.append(key)
        await asyncio.sleep(random.uniform(0, 0.002))
        received[key].append(int(delivery.message.body))
        running[key] -= 1

    await broker.subscribe(topic, record, max_in_flight=8)
    await _publish_interleaved(broker, topic)
    total = PER_KEY * len(KEYS)
    await wait_until(lambda: sum(map(len, received.values())) >= total, ARRIVE)
    assert not overlap, f"messages with the same key were handled concurrently: {overlap[:3]}"
    _check(received)
