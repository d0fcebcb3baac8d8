"""Event sourcing: rebuild an account from its events, then keep it current.

    BROKERKIT_URL=redis://127.0.0.1:6379/0 python examples/event_sourcing.py

The account's state is never stored, only its events (opened, deposited, withdrawn) on
the topic ``account.<id>``. A new process rebuilds the balance by replaying that topic
from the earliest event (``start="earliest"``, the ``replay`` capability), and the same
subscription then applies new events as they happen.
"""

import asyncio
import json
import os
import sys
import uuid
from typing import Any

import brokerkit

URL = os.environ.get("BROKERKIT_URL", "memory://")
ACCOUNT = f"acc-{uuid.uuid4().hex[:8]}"  # a fresh account (and topic) per run
TOPIC = f"account.{ACCOUNT}"


class Account:
    """The aggregate: its state is whatever its events say, applied in order."""

    def __init__(self) -> None:
        self.balance = 0
        self.version = 0  # number of events applied

    def apply(self, event: dict[str, Any]) -> None:
        if event["seq"] != self.version + 1:
            raise ValueError(f"event {event['seq']} out of order after {self.version}")
        if event["type"] == "deposited":
            self.balance += event["amount"]
        elif event["type"] == "withdrawn":
            self.balance -= event["amount"]
        self.version = event["seq"]


async def append(broker: brokerkit.Broker, seq: int, type: str, amount: int = 0) -> None:
    event = {"seq": seq, "type": type, "account": ACCOUNT, "amount": amount}
    await broker.publish(TOPIC, json.dumps(event).encode())


async def wait_for_version(account: Account, version: int) -> bool:
    for _ in range(500):  # at most 10 s
        if account.version >= version:
            return True
        await asyncio.sleep(0.02)
    return False


async def main() -> int:
    async with brokerkit.connect(URL) as broker:
        # Yesterday: the history, written while nobody was listening.
        await append(broker, 1, "opened")
        await append(broker, 2, "deposited", 100)
        await append(broker, 3, "withdrawn", 30)
        await append(broker, 4, "deposited", 50)

        # Today: a fresh process rebuilds the account by replay ...
        account = Account()

        async def on_event(delivery: brokerkit.Delivery) -> None:
            account.apply(json.loads(delivery.message.body))

        await broker.subscribe(TOPIC, on_event, start="earliest")
        rebuilt = await wait_for_version(account, 4)
        print(f"rebuilt {ACCOUNT} from 4 events: balance {account.balance}")

        # ... and keeps it current with the same subscription.
        await append(broker, 5, "withdrawn", 20)
        current = await wait_for_version(account, 5)
        print(f"after a new withdrawal: balance {account.balance} (version {account.version})")

    if rebuilt and current and account.balance == 100:
        print("OK")
        return 0
    print(f"FAILED: balance {account.balance} at version {account.version}, expected 100 at 5")
    return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
