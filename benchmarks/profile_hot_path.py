"""Profile brokerkit's hot path (publish -> plugin -> dispatch -> handler -> ack).

    .venv/bin/python benchmarks/profile_hot_path.py [--url memory://prof] [--messages 50000]
        [--top 25] [--side bk|raw] [--publish-only] [--batch]

Runs the end-to-end measurement of ``run.py`` once under cProfile and prints the
functions with the largest own time (tottime), then the per-message cost in
microseconds. Use it on ``memory://`` to see brokerkit's own overhead, and on a real
broker URL to compare with the raw client (``--side raw``).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import time

from raw import BrokerkitSide, Side, raw_side
from run import m_e2e, m_publish


async def profiled(
    side: Side, n: int, publish_only: bool, batch: bool, profile: cProfile.Profile
) -> float:
    await side.open()
    try:
        await m_publish(side, 500, False)  # warm-up
        profile.enable()
        start = time.perf_counter()
        if publish_only:
            await m_publish(side, n, batch)
        else:
            await m_e2e(side, n, batch)
        elapsed = time.perf_counter() - start
        profile.disable()
        return elapsed
    finally:
        await side.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="memory://prof")
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--side", choices=("bk", "raw"), default="bk")
    parser.add_argument("--publish-only", action="store_true")
    parser.add_argument("--batch", action="store_true", help="publish through the batch path")
    args = parser.parse_args(argv)
    side = BrokerkitSide(args.url) if args.side == "bk" else raw_side(args.url)
    profile = cProfile.Profile()
    elapsed = asyncio.run(profiled(side, args.messages, args.publish_only, args.batch, profile))
    stats = pstats.Stats(profile)
    stats.sort_stats("tottime").print_stats(args.top)
    what = "publish" if args.publish_only else "end-to-end"
    print(
        f"{args.side} {what} {args.url}: {args.messages} messages in {elapsed:.2f}s under the "
        f"profiler = {elapsed / args.messages * 1e6:.1f} us/message"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
