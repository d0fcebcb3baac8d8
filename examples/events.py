"""An event as JSON on ``user.created``, consumed with a durable name and manual ack.

    BROKERKIT_URL=nats+jetstream://127.0.0.1:4222 python examples/events.py

The event carries id, type, data, timestamp and version. The welcome mailer subscribes
with a durable name, acks each event only after its work is done, goes away for a while
and, back under the same name, gets the event published while it was down.
"""

import asyncio
import json
import os
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field

import brokerkit

URL = os.environ.get("BROKERKIT_URL", "memory://")
RUN = uuid.uuid4().hex[:8]  # a fresh topic per run: a real broker keeps old events
TOPIC = f"user.created.{RUN}"
MAILER = f"welcome-mailer-{RUN}"


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, str]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)
    version: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Event":
        return cls(**json.loads(raw))


welcomed: list[str] = []


async def send_welcome_email(delivery: brokerkit.Delivery) -> None:
    event = Event.from_json(delivery.message.body)
    print(f"  mailer: welcome {event.data['email']} (event {event.id[:8]} v{event.version})")
    welcomed.append(event.data["email"])
    await delivery.ack()  # manual ack: only now may the broker forget the event


async def publish_user(broker: brokerkit.Broker, email: str) -> None:
    event = Event(type="user.created", data={"email": email})
    await broker.publish(TOPIC, brokerkit.Message(event.to_json(), id=event.id))
    print(f"published {event.type} for {email}")


async def wait_for(count: int) -> None:
    for _ in range(500):  # at most 10 s
        if len(welcomed) >= count:
            return
        await asyncio.sleep(0.02)


async def main() -> int:
    async with brokerkit.connect(URL) as broker:
        mailer = await broker.subscribe(TOPIC, send_welcome_email, durable=MAILER, ack="manual")
        await publish_user(broker, "ada@example.com")
        await publish_user(broker, "alan@example.com")
        await wait_for(2)
        await mailer.unsubscribe()
        print("mailer is down")
        await publish_user(broker, "grace@example.com")  # kept for the durable mailer
        await broker.subscribe(TOPIC, send_welcome_email, durable=MAILER, ack="manual")
        print("mailer is back under the same durable name")
        await wait_for(3)
        await asyncio.sleep(0.2)  # a duplicate would show up now
    expected = ["ada@example.com", "alan@example.com", "grace@example.com"]
    if welcomed != expected:
        print(f"FAILED: welcomed {welcomed}, expected {expected}")
        return 1
    print("OK: every user was welcomed exactly once, including the one created while away")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
