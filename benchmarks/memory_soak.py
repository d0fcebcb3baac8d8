"""Soak the memory broker: 1,000,000 messages through a deliberately slow consumer.

    .venv/bin/python benchmarks/memory_soak.py [--messages 1000000] [--max-pending 10000]
        [--sleep-every 100] [--sleep-ms 1] [--timeout 300] [--tracemalloc]

One publisher publishes ``--messages`` messages of 100 bytes as fast as it can to
``memory://soak``; one subscriber handles them, sleeping ``--sleep-ms`` every
``--sleep-every`` messages, so it is slower than the publisher. The subscriber's queue
is bounded by the broker's ``max_pending`` option and a publish that finds it full waits
(``publish_timeout``), so memory must stay flat however many messages pass. Every 10% of
the run it prints the resident set size (current, from /proc, and the peak from
``getrusage``), the subscriber's queue depth and the rates; at the end the end-to-end
throughput and the RSS growth after the first sample. The whole run is bounded by
``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import tracemalloc

import brokerkit

BODY = bytes(range(100))
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc), or the peak where /proc is absent."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * PAGE / 2**20
    except OSError:
        return peak_rss_mib()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def queue_depth(broker: brokerkit.Broker) -> int:
    """Undelivered messages waiting in the memory bus's groups (the bound under test)."""
    bus = getattr(broker, "_bus", None)
    if bus is None:
        return -1
    return max((len(g.queue) for groups in bus.by_topic.values() for g in groups), default=0)


async def soak(args: argparse.Namespace) -> int:
    n = args.messages
    url = f"memory://soak?max_pending={args.max_pending}&publish_timeout=60"
    received = 0
    done = asyncio.Event()

    async def slow_handler(delivery: brokerkit.Delivery) -> None:
        nonlocal received
        received += 1
        if received % args.sleep_every == 0:
            await asyncio.sleep(args.sleep_ms / 1000)
        if received == n:
            done.set()

    samples: list[tuple[int, float]] = []
    async with brokerkit.connect(url) as broker:
        await broker.subscribe("soak.events", slow_handler)
        print(f"RSS before the first message: {rss_mib():.1f} MiB")
        step = max(n // 10, 1)
        print(
            f"{'published':>10} {'received':>10} {'depth':>6} {'rss MiB':>8} "
            f"{'peak MiB':>8} {'traced MiB':>10} {'msg/s':>8}"
        )
        start = last = time.perf_counter()
        last_received = 0
        publish = broker.publish
        for i in range(1, n + 1):
            await publish("soak.events", BODY)
            if i % step == 0:
                now = time.perf_counter()
                rate = (received - last_received) / (now - last) if now > last else 0.0
                last, last_received = now, received
                rss = rss_mib()
                samples.append((i, rss))
                traced = (
                    f"{tracemalloc.get_traced_memory()[0] / 2**20:10.1f}"
                    if tracemalloc.is_tracing()
                    else f"{'-':>10}"
                )
                print(
                    f"{i:>10,} {received:>10,} {queue_depth(broker):>6} {rss:>8.1f} "
                    f"{peak_rss_mib():>8.1f} {traced} {rate:>8,.0f}",
                    flush=True,
                )
        await done.wait()
        elapsed = time.perf_counter() - start
    first = samples[0][1] if samples else rss_mib()
    growth = (samples[-1][1] - first) if samples else 0.0
    print(
        f"\n{n:,} messages end to end in {elapsed:.1f}s = {n / elapsed:,.0f} msg/s "
        f"(slow consumer: {args.sleep_ms} ms sleep every {args.sleep_every} messages; "
        f"max_pending={args.max_pending})"
    )
    print(
        f"RSS after the first 10%: {first:.1f} MiB; at the end: {samples[-1][1]:.1f} MiB "
        f"(growth {growth:+.1f} MiB); peak RSS {peak_rss_mib():.1f} MiB"
    )
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        print(f"tracemalloc: current {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--max-pending", type=int, default=10_000)
    parser.add_argument("--sleep-every", type=int, default=100)
    parser.add_argument("--sleep-ms", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (slower)"
    )
    args = parser.parse_args(argv)
    if args.tracemalloc:
        tracemalloc.start()

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(soak(args), args.timeout)
        except TimeoutError:
            print(f"timeout: the soak did not finish within {args.timeout:.0f}s")
            return 1

    return asyncio.run(bounded())


if __name__ == "__main__":
    sys.exit(main())
