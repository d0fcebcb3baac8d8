"""One program, every broker: only ``BROKERKIT_URL`` changes.

    BROKERKIT_URL=memory://                         python examples/portable.py
    BROKERKIT_URL=nats://127.0.0.1:4222             python examples/portable.py
    BROKERKIT_URL=nats+jetstream://127.0.0.1:4222   python examples/portable.py
    BROKERKIT_URL=redis://127.0.0.1:6379/0          python examples/portable.py
    BROKERKIT_URL=redis+pubsub://127.0.0.1:6379/0   python examples/portable.py
    BROKERKIT_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/portable.py
    BROKERKIT_URL=kafka://127.0.0.1:9092            python examples/portable.py

brokerkit.connect() with no URL reads BROKERKIT_URL. The program uses what every broker
offers (publish, subscribe, bytes in and out) and reports what this one offers beyond.
"""

import asyncio
import sys
import uuid

import brokerkit


async def main() -> int:
    topic = f"greetings.{uuid.uuid4().hex[:8]}"  # a fresh topic per run
    greetings = [b"hello", b"bonjour", b"hallo"]
    received: list[bytes] = []

    async def on_greeting(delivery: brokerkit.Delivery) -> None:
        received.append(delivery.message.body)

    async with brokerkit.connect() as broker:
        print(f"broker:       {broker.url}")  # a password would show as ***
        print(f"capabilities: {', '.join(sorted(broker.capabilities)) or 'none'}")
        await broker.subscribe(topic, on_greeting)
        for greeting in greetings:
            await broker.publish(topic, greeting)
        for _ in range(500):  # at most 10 s
            if len(received) >= len(greetings):
                break
            await asyncio.sleep(0.02)

    print(f"received:     {[g.decode() for g in received]}")
    if sorted(received) != sorted(greetings):
        print("FAILED: not every greeting arrived exactly once")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
