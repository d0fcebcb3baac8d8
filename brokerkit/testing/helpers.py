"""Helpers for tests that use brokerkit: collect messages, wait for a condition.

Every wait is bounded: a broken broker makes a test fail with a clear message instead
of hanging. Timeouts are multiplied by ``BROKERKIT_TEST_TIMEOUT_SCALE`` (default 1),
for slow machines.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from brokerkit.core.message import Delivery


def scaled(seconds: float) -> float:
    """``seconds`` times ``BROKERKIT_TEST_TIMEOUT_SCALE`` (a float, default 1)."""
    try:
        scale = float(os.environ.get("BROKERKIT_TEST_TIMEOUT_SCALE", "1"))
    except ValueError:
        scale = 1.0
    return seconds * max(scale, 0.01)


#: The default bound for waiting on deliveries, in seconds (before scaling).
DEFAULT_TIMEOUT = 15.0


async def wait_until(
    condition: Callable[[], bool],
    timeout: float = DEFAULT_TIMEOUT,
    *,
    interval: float = 0.005,
    message: str | Callable[[], str] = "condition not met",
) -> None:
    """Poll ``condition`` until it is true; raise ``AssertionError`` after ``timeout`` s.

    ``message`` (or its result, computed at failure time) is the assertion text.
    """
    deadline = time.monotonic() + scaled(timeout)
    while not condition():
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {scaled(timeout):.1f}s)")
        await asyncio.sleep(interval)


class Collector:
    """A handler that records every delivery; await :meth:`wait_for` to get them.

    Use it directly as a subscription handler. ``ack="auto"`` subscriptions ack on
    return. Pass ``on_delivery`` to add behaviour (it runs first; if it raises, the
    delivery is still recorded and the error propagates, so the message is nacked).
    Safe for concurrent handler calls in one event loop.
    """

    def __init__(self, on_delivery: Callable[[Delivery], Awaitable[None]] | None = None) -> None:
        self.deliveries: list[Delivery] = []
        self._on_delivery = on_delivery
        self._changed = asyncio.Event()

    async def __call__(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)
        self._changed.set()
        if self._on_delivery is not None:
            await self._on_delivery(delivery)

    @property
    def bodies(self) -> list[bytes]:
        """The bodies received so far, in arrival order."""
        return [d.message.body for d in self.deliveries]

    def __len__(self) -> int:
        return len(self.deliveries)

    async def wait_for(self, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Delivery]:
        """Wait until at least ``count`` deliveries arrived; return the first ``count``.

        Raises ``AssertionError`` naming how many arrived if ``timeout`` passes first.
        """
        deadline = time.monotonic() + scaled(timeout)
        while len(self.deliveries) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"received {len(self.deliveries)} of {count} expected messages "
                    f"within {scaled(timeout):.1f}s"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                continue
        return self.deliveries[:count]

    async def assert_no_more(self, count: int, within: float = 0.5) -> None:
        """Wait ``within`` seconds and assert that no more than ``count`` arrived."""
        await asyncio.sleep(scaled(within))
        assert len(self.deliveries) <= count, (
            f"expected no more than {count} messages, got {len(self.deliveries)}: "
            f"{[d.message.body[:40] for d in self.deliveries[count:]]}"
        )


async def collect(
    broker: object,
    topic: str,
    count: int,
    timeout: float = DEFAULT_TIMEOUT,
    **subscribe_options: object,
) -> list[Delivery]:
    """Subscribe to ``topic``, wait for ``count`` deliveries, unsubscribe, return them.

    A convenience for one-shot checks; for publish-after-subscribe flows use a
    :class:`Collector` so the subscription exists before publishing.
    """
    from brokerkit.core.broker import Broker

    assert isinstance(broker, Broker)
    collector = Collector()
    subscription = await broker.subscribe(topic, collector, **subscribe_options)  # type: ignore[arg-type]
    try:
        return await collector.wait_for(count, timeout)
    finally:
        await subscription.unsubscribe()
