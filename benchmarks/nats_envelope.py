"""What brokerkit's envelope costs on NATS core, measured against nats-py in one run.

Run from the repository root::

    .venv/bin/python benchmarks/nats_envelope.py [--url nats://127.0.0.1:4222] [--reps 3]

brokerkit sends each message's id and timestamp (and key) in one NATS header, because the
contract promises them and core NATS has no other place for them. ``run.py``'s raw NATS
side sends the body alone. This program adds a third side, nats-py sending one header
with the same information (a new id and the timestamp per message), so the table shows
how much of brokerkit's gap is the header itself (nats-py's header handling) and how much
is brokerkit's own code. Publish and end-to-end throughput as in ``run.py``; best of
``--reps`` runs per side.
"""

from __future__ import annotations

import argparse
import asyncio

from raw import BrokerkitSide, RawNats, RawNatsWithEnvelope, Side
from run import bounded, m_e2e, m_publish


async def measure(url: str, reps: int, n: int, timeout: float) -> None:
    sides: dict[str, Side] = {
        "raw": RawNats(url),
        "raw+env": RawNatsWithEnvelope(url),
        "bk": BrokerkitSide(url),
    }
    for side in sides.values():
        await side.open()
    best: dict[tuple[str, str], float] = {}
    try:
        for rep in range(reps):
            order = list(sides.items())[:: -1 if rep % 2 else 1]
            for metric, job in (("publish", m_publish), ("e2e", m_e2e)):
                for name, side in order:
                    outcome = await bounded(lambda j=job, s=side: j(s, n, False), timeout)  # type: ignore[misc]
                    if isinstance(outcome, float):
                        key = (metric, name)
                        best[key] = max(best.get(key, 0.0), outcome)
    finally:
        for side in sides.values():
            await side.close()
    print(f"{'metric':<8} {'side':<8} {'msg/s':>10} {'x raw':>7} {'x raw+env':>10}")
    for metric in ("publish", "e2e"):
        raw, env = best.get((metric, "raw")), best.get((metric, "raw+env"))
        for name in sides:
            value = best.get((metric, name))
            if value is None or raw is None or env is None:
                print(f"{metric:<8} {name:<8} {'timeout':>10}")
                continue
            print(f"{metric:<8} {name:<8} {value:>10,.0f} {value / raw:>7.2f} {value / env:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(measure(args.url, args.reps, args.messages, args.timeout))


if __name__ == "__main__":
    main()
