"""An idempotent consumer: skip duplicates by event id while the broker redelivers.

    BROKERKIT_URL=nats+jetstream://127.0.0.1:4222 python examples/idempotent_consumer.py

At-least-once brokers may deliver an event twice. Here it happens both ways:
the producer retries a publish (same event id, published twice), and the consumer
"crashes" after doing its work but before acking one event, so the broker redelivers it.
The consumer remembers the ids it processed (in real life: in the same database
transaction as the work) and acks duplicates without doing the work again.
"""

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import brokerkit

URL = os.environ.get("BROKERKIT_URL", "memory://")
TOPIC = f"payment.captured.{uuid.uuid4().hex[:8]}"  # a fresh topic per run

processed: set[str] = set()  # ids of events whose work is done
revenue = 0
skipped_retries = 0  # duplicates published by the producer (attempt 1)
skipped_redeliveries = 0  # duplicates redelivered by the broker (attempt > 1)
crashed_once = False


async def on_payment(delivery: brokerkit.Delivery) -> None:
    global revenue, skipped_retries, skipped_redeliveries, crashed_once
    event = json.loads(delivery.message.body)
    if event["id"] in processed:
        if delivery.attempt > 1:
            skipped_redeliveries += 1
        else:
            skipped_retries += 1
        print(f"  skip duplicate {event['id']} (attempt {delivery.attempt})")
        await delivery.ack()
        return
    revenue += event["amount"]  # the work
    processed.add(event["id"])
    print(f"  processed {event['id']}: +{event['amount']} (attempt {delivery.attempt})")
    if event["id"] == "pay-3" and not crashed_once:
        crashed_once = True
        raise RuntimeError("crash after the work, before the ack")  # -> redelivered
    await delivery.ack()


async def main() -> int:
    payments: list[dict[str, Any]] = [{"id": f"pay-{n}", "amount": n * 10} for n in range(1, 6)]
    async with brokerkit.connect(URL) as broker:
        await broker.subscribe(TOPIC, on_payment, ack="manual")
        for payment in payments:
            message = brokerkit.Message(json.dumps(payment).encode(), id=payment["id"])
            await broker.publish(TOPIC, message)
            if payment["id"] == "pay-2":
                await broker.publish(TOPIC, message)  # a producer retry: same id again
        for _ in range(500):  # at most 10 s
            if len(processed) == len(payments) and skipped_redeliveries:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # a late duplicate would show up now

    expected = sum(p["amount"] for p in payments)
    print(
        f"revenue {revenue} (expected {expected}); skipped {skipped_retries} producer "
        f"retry and {skipped_redeliveries} redelivery"
    )
    if skipped_retries == 0:
        print("(this broker itself dropped the producer retry: it deduplicates by message id)")
    if revenue == expected and skipped_redeliveries == 1 and skipped_retries <= 1:
        print("OK: every payment counted exactly once")
        return 0
    print("FAILED")
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
