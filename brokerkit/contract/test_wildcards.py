"""Contract: the portable wildcards ``*`` (one token) and ``>`` (the rest)."""

from __future__ import annotations

from brokerkit.contract._support import ARRIVE, QUIET, contract
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.testing.helpers import Collector


@contract(Capability.WILDCARDS)
async def test_star_matches_exactly_one_token(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(f"{topic}.*", collector)
    await broker.publish(topic, b"too short")
    await broker.publish(f"{topic}.a.b", b"too long")
    await broker.publish(f"{topic}.created", b"match")
    (delivery,) = await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET)
    assert delivery.message.body == b"match"
    assert delivery.topic == f"{topic}.created"


@contract(Capability.WILDCARDS)
async def test_star_in_the_middle(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(f"{topic}.*.done", collector)
    await broker.publish(f"{topic}.a.b.done", b"no")
    await broker.publish(f"{topic}.a.other", b"no")
    await broker.publish(f"{topic}.a.done", b"yes")
    (delivery,) = await collector.wait_for(1, ARRIVE)
    await collector.assert_no_more(1, within=QUIET)
    assert delivery.topic == f"{topic}.a.done"


@contract(Capability.WILDCARDS)
async def test_greater_than_matches_one_or_more_tokens(broker: Broker, topic: str) -> None:
    collector = Collector()
    await broker.subscribe(f"{topic}.>", collector)
    await broker.publish(topic, b"parent: no")
    await broker.publish(f"{topic}.a", b"one")
    await broker.publish(f"{topic}.a.b.c", b"three")
    await collector.wait_for(2, ARRIVE)
    await collector.assert_no_more(2, within=QUIET)
    assert sorted(d.topic for d in collector.deliveries) == [f"{topic}.a", f"{topic}.a.b.c"]
