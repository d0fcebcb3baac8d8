"""Contract: every plugin refuses the same bad input the same way, losing nothing."""

from __future__ import annotations

from typing import Any

import pytest

from brokerkit.contract._support import ARRIVE, QUIET, contract
from brokerkit.core.broker import Broker
from brokerkit.core.errors import (
    BrokerkitError,
    InvalidMessageError,
    InvalidOptionError,
    InvalidTopicError,
)
from brokerkit.testing.helpers import Collector

BAD_TOPICS = [
    "",
    ".",
    "a..b",
    ".a",
    "a.",
    "a b",
    "a/b",
    "ünïcode",
    "a.*",
    "a.>",
    "x" * 250,
]
BAD_PATTERNS = ["a.>.b", ">.a", "a*", "a.b*", "a..*", "*.", "#", "a.#"]
BAD_BODIES: list[Any] = ["text", 42, None, {"a": 1}, 1.5, ["x"]]
BAD_HEADERS: list[Any] = [
    {"n": 1},
    {1: "v"},
    {"": "v"},
    {"a b": "v"},
    {"a:b": "v"},
    {"a": "line\nbreak"},
    {"a": "cr\rhere"},
    ["a", "b"],
    "k=v",
]
BAD_OPTIONS: list[dict[str, Any]] = [
    {"max_in_flight": 0},
    {"max_in_flight": -1},
    {"max_in_flight": True},
    {"max_in_flight": 1.5},
    {"max_deliver": 0},
    {"ack": "sometimes"},
    {"start": "latest"},
    {"queue": "has space"},
    {"queue": ""},
    {"durable": "a.b"},
    {"max_deliver": 3, "dead_letter": "bad topic"},
    {"dead_letter": "dead.letters"},
]


@contract()
@pytest.mark.parametrize("bad", BAD_TOPICS, ids=repr)
async def test_bad_topic_refused_on_publish(broker: Broker, bad: str) -> None:
    with pytest.raises(InvalidTopicError):
        await broker.publish(bad, b"x")


@contract()
@pytest.mark.parametrize("bad", BAD_PATTERNS, ids=repr)
async def test_bad_pattern_refused_on_subscribe(broker: Broker, bad: str) -> None:
    with pytest.raises(InvalidTopicError):
        await broker.subscribe(bad, Collector())


@contract()
@pytest.mark.parametrize("bad", BAD_BODIES, ids=repr)
async def test_non_bytes_body_refused(broker: Broker, topic: str, bad: Any) -> None:
    with pytest.raises(InvalidMessageError, match="bytes"):
        await broker.publish(topic, bad)


@contract()
@pytest.mark.parametrize("bad", BAD_HEADERS, ids=repr)
async def test_bad_headers_refused(broker: Broker, topic: str, bad: Any) -> None:
    with pytest.raises(InvalidMessageError):
        await broker.publish(topic, b"x", headers=bad)


@contract()
@pytest.mark.parametrize("options", BAD_OPTIONS, ids=repr)
async def test_nonsensical_subscribe_options_refused(
    broker: Broker, topic: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidOptionError):
        await broker.subscribe(topic, Collector(), **options)


@contract()
async def test_dead_letter_to_the_subscribed_topic_refused(broker: Broker, topic: str) -> None:
    with pytest.raises(InvalidOptionError, match="dead_letter"):
        await broker.subscribe(topic, Collector(), max_deliver=2, dead_letter=topic)
    with pytest.raises(InvalidOptionError, match="dead_letter"):
        await broker.subscribe(f"{topic}.>", Collector(), max_deliver=2, dead_letter=f"{topic}.x")


@contract()
async def test_handler_must_be_callable(broker: Broker, topic: str) -> None:
    with pytest.raises(InvalidOptionError, match="handler"):
        await broker.subscribe(topic, "not a function")  # type: ignore[arg-type]


@contract()
async def test_bad_input_loses_nothing_already_accepted(broker: Broker, topic: str) -> None:
    collector = Collector()
    subscription = await broker.subscribe(topic, collector)
    await broker.publish(topic, b"first")
    for attempt in (
        broker.publish(topic, "not bytes"),  # type: ignore[arg-type]
        broker.publish(f"{topic}.*", b"x"),
        broker.publish(topic, b"x", headers={"k": 1}),  # type: ignore[dict-item]
        broker.publish_many(topic, [b"ok", "bad"]),  # type: ignore[list-item]
    ):
        with pytest.raises(BrokerkitError):
            await attempt
    await broker.publish(topic, b"second")
    await collector.wait_for(2, ARRIVE)
    await collector.assert_no_more(2, within=QUIET)
    assert sorted(collector.bodies) == [b"first", b"second"]
    assert subscription.active
    assert broker.connected
