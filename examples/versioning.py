"""Event versioning, two ways.

    BROKERKIT_URL=nats://127.0.0.1:4222 python examples/versioning.py

1. A ``version`` field in the event: one topic, and the consumer branches on the version
   (v1 had ``name``; v2 splits it into ``first_name`` and ``last_name``).
2. Versioned topics ``user.created.v1`` / ``user.created.v2``: each consumer subscribes to
   the version it understands; old consumers keep running while new ones move on.
"""

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import brokerkit

URL = os.environ.get("BROKERKIT_URL", "memory://")
RUN = uuid.uuid4().hex[:8]  # a fresh topic per run: a real broker may keep old events


def topic(name: str) -> str:
    return f"{name}.{RUN}"


def display_name(event: dict[str, Any]) -> str:
    """The consumer of way 1: branch on the event's version."""
    if event["version"] == 1:
        return str(event["data"]["name"])
    if event["version"] == 2:
        return f"{event['data']['first_name']} {event['data']['last_name']}"
    raise ValueError(f"unknown version {event['version']}")  # -> nack, never guess


def encode(version: int, data: dict[str, str]) -> bytes:
    return json.dumps({"type": "user.created", "version": version, "data": data}).encode()


V1 = encode(1, {"name": "Ada Lovelace"})
V2 = encode(2, {"first_name": "Alan", "last_name": "Turing"})


async def main() -> int:
    names: list[str] = []
    v1_consumer: list[dict[str, Any]] = []
    v2_consumer: list[dict[str, Any]] = []

    async def on_user_created(delivery: brokerkit.Delivery) -> None:
        names.append(display_name(json.loads(delivery.message.body)))

    def collect_into(into: list[dict[str, Any]]) -> brokerkit.Handler:
        async def handle(delivery: brokerkit.Delivery) -> None:
            into.append(json.loads(delivery.message.body))

        return handle

    async with brokerkit.connect(URL) as broker:
        # 1. one topic, a version field
        await broker.subscribe(topic("user.created"), on_user_created)
        await broker.publish(topic("user.created"), V1)
        await broker.publish(topic("user.created"), V2)
        # 2. one topic per version
        await broker.subscribe(topic("user.created.v1"), collect_into(v1_consumer))
        await broker.subscribe(topic("user.created.v2"), collect_into(v2_consumer))
        await broker.publish(topic("user.created.v1"), V1)
        await broker.publish(topic("user.created.v2"), V2)

        for _ in range(500):  # at most 10 s
            if len(names) >= 2 and v1_consumer and v2_consumer:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a stray message would show up now

    print(f"way 1, version field: the consumer read the names {names}")
    print(
        f"way 2, versioned topics: v1 consumer got versions {[e['version'] for e in v1_consumer]}"
    )
    print(
        f"                         v2 consumer got versions {[e['version'] for e in v2_consumer]}"
    )
    ok = (
        names == ["Ada Lovelace", "Alan Turing"]
        and [e["version"] for e in v1_consumer] == [1]
        and [e["version"] for e in v2_consumer] == [2]
    )
    print("OK" if ok else "FAILED: unexpected events (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
