"""The main-job demo (``brokerkit demo`` and ``examples/order_notifications.py``).

An order service publishes ``order.created`` events as JSON. A notification service
runs as two instances that share the events through the queue group ``notifications``,
so each order is notified by exactly one of them; each instance acks a message by hand
once the customer is notified. The demo succeeds when every order was notified exactly
once. The same code runs on any URL: ``memory://``, ``nats://…``, ``redis://…``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable

from brokerkit.core.broker import Handler
from brokerkit.core.capabilities import Capability
from brokerkit.core.message import Delivery
from brokerkit.core.registry import connect

TOPIC = "order.created"
QUEUE = "notifications"


def order_event(run: str, number: int) -> bytes:
    """The JSON body of one ``order.created`` event of the demo run ``run``."""
    event = {
        "type": TOPIC,
        "run": run,
        "order_id": f"ord-{number}",
        "customer": f"customer-{number}@example.com",
        "total": round(19.99 * number, 2),
    }
    return json.dumps(event).encode()


async def run_demo(
    url: str = "memory://",
    *,
    orders: int = 6,
    timeout: float = 20.0,
    out: Callable[[str], None] = print,
) -> bool:
    """Run the demo against ``url``; return True if every order was notified exactly once.

    Prints what happens through ``out``. Waits at most ``timeout`` seconds for the
    notifications. Raises brokerkit errors (for example :class:`CapabilityError` on a
    broker without queue groups). Uses only its own connections; safe to run repeatedly
    against a persistent broker (events of other runs are acked and ignored).
    """
    run = uuid.uuid4().hex[:8]
    notified: dict[str, list[str]] = {}
    all_notified = asyncio.Event()

    async with (
        connect(url) as orders_service,
        connect(url) as notifier_1,
        connect(url) as notifier_2,
    ):
        manual = Capability.ACK in orders_service.capabilities
        out(f"broker: {orders_service.url.redacted()}")
        if not manual:
            out("  (this broker has no 'ack' capability: messages are acked automatically)")

        def notification_service(name: str) -> Handler:
            async def handle(delivery: Delivery) -> None:
                event = json.loads(delivery.message.body)
                if event.get("run") == run:
                    await asyncio.sleep(0.05)  # sending the email takes a moment
                    notified.setdefault(event["order_id"], []).append(name)
                    out(f"  [{name}] emailed {event['customer']} about {event['order_id']}")
                    if len(notified) == orders:
                        all_notified.set()
                if manual:
                    await delivery.ack()  # only now is the notification done

            return handle

        for name, broker in (("notifier-1", notifier_1), ("notifier-2", notifier_2)):
            await broker.subscribe(
                TOPIC,
                notification_service(name),
                queue=QUEUE,
                ack="manual" if manual else "auto",
            )
        out(f"two notification service instances joined the queue group {QUEUE!r}")

        for number in range(1, orders + 1):
            await orders_service.publish(TOPIC, order_event(run, number))
            out(f"[orders] published {TOPIC} for ord-{number}")

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_notified.wait(), timeout)
        await asyncio.sleep(0.3)  # a duplicate would show up now

    expected = {f"ord-{n}" for n in range(1, orders + 1)}
    missing = sorted(expected - set(notified))
    duplicated = sorted(o for o, names in notified.items() if len(names) > 1)
    by_instance = {
        name: sum(names.count(name) for names in notified.values())
        for name in ("notifier-1", "notifier-2")
    }
    out(f"notifications per instance: {by_instance}")
    if missing or duplicated:
        out(f"FAILED: not notified: {missing or 'none'}; notified twice: {duplicated or 'none'}")
        return False
    out(f"OK: all {orders} orders were notified exactly once")
    return True
