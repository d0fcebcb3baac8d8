"""Contract: declared capabilities work; undeclared ones are refused loudly, up front."""

from __future__ import annotations

from typing import Any

import pytest

from brokerkit.contract._support import ARRIVE, QUIET, contract, group_name
from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import CapabilityError
from brokerkit.testing.helpers import Collector


def _subscribe_request(capability: Capability, topic: str) -> tuple[str, dict[str, Any]]:
    requests: dict[Capability, tuple[str, dict[str, Any]]] = {
        Capability.WILDCARDS: (f"{topic}.*", {}),
        Capability.QUEUE_GROUPS: (topic, {"queue": group_name(topic, "capability-check")}),
        Capability.ACK: (topic, {"ack": "manual"}),
        Capability.DURABLE: (topic, {"durable": group_name(topic, "capability-check")}),
        Capability.REPLAY: (topic, {"start": "earliest"}),
        Capability.DEAD_LETTER: (topic, {"max_deliver": 2, "dead_letter": f"{topic}.dead"}),
    }
    return requests[capability]


@contract()
@pytest.mark.parametrize("capability", list(Capability), ids=lambda c: c.value)
async def test_capability_is_honoured_or_refused(
    broker: Broker, topic: str, capability: Capability
) -> None:
    declared = capability in broker.capabilities
    scheme = broker.url.scheme

    if capability is Capability.PERSISTENT:
        # No option asks for persistence alone; it is what replay and durable rest on.
        needs_it = {Capability.REPLAY, Capability.DURABLE} & broker.capabilities
        assert declared or not needs_it, f"{scheme}:// declares {needs_it} but not persistent"
        return

    if capability in (Capability.HEADERS, Capability.ORDERING_PER_KEY):
        collector = Collector()
        await broker.subscribe(topic, collector)
        extra: dict[str, Any] = (
            {"headers": {"h": "v"}} if capability is Capability.HEADERS else {"key": "k"}
        )
        if declared:
            await broker.publish(topic, b"x", **extra)
            (delivery,) = await collector.wait_for(1, ARRIVE)
            if capability is Capability.HEADERS:
                assert delivery.message.headers == {"h": "v"}
            else:
                assert delivery.message.key == "k"
        else:
            with pytest.raises(CapabilityError) as info:
                await broker.publish(topic, b"x", **extra)
            assert info.value.capability == capability.value
            assert info.value.scheme == scheme
            assert capability.value in str(info.value) and scheme in str(info.value)
            await collector.assert_no_more(0, within=QUIET)
        return

    pattern, options = _subscribe_request(capability, topic)
    if declared:
        subscription = await broker.subscribe(pattern, Collector(), **options)
        await subscription.unsubscribe()
    else:
        with pytest.raises(CapabilityError) as info:
            await broker.subscribe(pattern, Collector(), **options)
        assert info.value.capability in {capability.value, Capability.ACK.value}
        assert info.value.scheme == scheme
