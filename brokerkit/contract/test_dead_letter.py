"""Contract: after max_deliver failed attempts a message goes to the dead-letter topic."""

from __future__ import annotations

from brokerkit.contract._support import ARRIVE, QUIET, contract
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.message import (
    ATTEMPTS_HEADER,
    ERROR_HEADER,
    ORIGINAL_ID_HEADER,
    ORIGINAL_TOPIC_HEADER,
    Delivery,
    Message,
)
from brokerkit.testing.helpers import Collector


@contract(Capability.DEAD_LETTER, Capability.HEADERS)
async def test_max_deliver_then_dead_letter_with_error_recorded(broker: Broker, topic: str) -> None:
    dead_topic = f"{topic}.dead"
    dead = Collector()
    await broker.subscribe(dead_topic, dead)

    async def always_fail(delivery: Delivery) -> None:
        raise ValueError("cannot parse order 42")

    attempts = Collector(always_fail)
    await broker.subscribe(topic, attempts, max_deliver=3, dead_letter=dead_topic)
    sent = Message(b"poison", {"trace": "t-1", "note": "süß"})
    await broker.publish(topic, sent)

    (dead_delivery,) = await dead.wait_for(1, ARRIVE)
    await attempts.assert_no_more(3, within=QUIET)
    assert [d.attempt for d in attempts.deliveries] == [1, 2, 3]
    message = dead_delivery.message
    assert message.body == b"poison"
    assert message.headers["trace"] == "t-1"
    assert message.headers["note"] == "süß"
    assert "cannot parse order 42" in message.headers[ERROR_HEADER]
    assert "ValueError" in message.headers[ERROR_HEADER]
    assert message.headers[ATTEMPTS_HEADER] == "3"
    assert message.headers[ORIGINAL_TOPIC_HEADER] == topic
    assert message.headers[ORIGINAL_ID_HEADER] == sent.id
    await dead.assert_no_more(1, within=QUIET)


@contract(Capability.DEAD_LETTER, Capability.HEADERS)
async def test_nack_without_requeue_goes_to_dead_letter_at_once(broker: Broker, topic: str) -> None:
    dead_topic = f"{topic}.dlq"
    dead = Collector()
    await broker.subscribe(dead_topic, dead)

    async def reject(delivery: Delivery) -> None:
        await delivery.nack(requeue=False)

    attempts = Collector(reject)
    await broker.subscribe(topic, attempts, ack="manual", max_deliver=5, dead_letter=dead_topic)
    await broker.publish(topic, b"rejected")
    (dead_delivery,) = await dead.wait_for(1, ARRIVE)
    assert dead_delivery.message.body == b"rejected"
    assert dead_delivery.message.headers[ATTEMPTS_HEADER] == "1"
    assert dead_delivery.message.headers[ERROR_HEADER]
    await attempts.assert_no_more(1, within=QUIET)


@contract(Capability.DEAD_LETTER)
async def test_max_deliver_without_dead_letter_drops_after_the_last_attempt(
    broker: Broker, topic: str
) -> None:
    async def always_fail(delivery: Delivery) -> None:
        raise RuntimeError("still broken")

    attempts = Collector(always_fail)
    await broker.subscribe(topic, attempts, max_deliver=2)
    await broker.publish(topic, b"doomed")
    await attempts.wait_for(2, ARRIVE)
    await attempts.assert_no_more(2, within=QUIET * 2)
    assert [d.attempt for d in attempts.deliveries] == [1, 2]
