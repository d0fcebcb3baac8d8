"""Benchmark brokerkit against the raw client libraries, for every reachable URL kind.

Run from the repository root::

    .venv/bin/python benchmarks/run.py [--urls URL ...] [--reps 3] [--quick]

For each URL kind (memory, NATS core, JetStream, Redis Streams, Redis Pub/Sub, RabbitMQ,
Kafka on Tansu) that is reachable, it measures in one run, through brokerkit *and* through
the raw client library doing the same work with the same delivery guarantee (see
``raw.py``):

* ``publish``: throughput of N (20,000) messages of 100 bytes, one publish at a time;
* ``publish batch``: the same through the batched path (brokerkit ``publish_many``; raw:
  pipeline / concurrent futures), where the brokerkit plugin has one;
* ``e2e`` / ``e2e batch``: one publisher and one subscriber in one process, from the first
  publish to the last message received and acknowledged;
* ``p50`` / ``p99``: round-trip latency over 1,000 single messages, each published and
  awaited by the subscriber before the next.

Every measurement runs ``--reps`` times (raw and brokerkit alternating which goes first),
the table shows the median and the min-max spread and the ratio brokerkit/raw, and each
measurement is bounded by ``--timeout`` seconds (a hang prints ``timeout`` and the run
moves on). Kafka runs on a Tansu started with ``scripts/kafka-server start --port
KAFKA_PORT`` (stopped at the end if this run started it); without that script Kafka is
skipped with the reason printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from raw import BrokerkitSide, Side, raw_side

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SCRIPT = ROOT / "scripts" / "kafka-server"

DEFAULT_URLS = [
    "memory://bench",
    "nats://127.0.0.1:4222",
    "nats+jetstream://127.0.0.1:4222",
    "redis://127.0.0.1:6379/0",
    "redis+pubsub://127.0.0.1:6379/0",
    "amqp://guest:guest@127.0.0.1:5672/",
    # Short group timings: Tansu completes a join after about half the session timeout.
    "kafka://127.0.0.1:{kafka_port}?fetch_max_wait_ms=10&session_timeout_ms=1000"
    "&heartbeat_interval_ms=100&rebalance_timeout_ms=1000",
]

BODY = bytes(range(100))  # 100 bytes
LATENCY_WARMUP = 50

THROUGHPUT = "msg/s"
MICROS = "us"


# --- measurements ----------------------------------------------------------------------


async def m_publish(side: Side, n: int, batch: bool) -> float:
    """Messages per second publishing ``n`` messages to a fresh topic (no subscriber)."""
    topic = side.topic("pub")
    bodies = [BODY] * n
    publish = side.publish_batch if batch else side.publish
    start = time.perf_counter()
    await publish(topic, bodies)
    return n / (time.perf_counter() - start)


async def m_e2e(side: Side, n: int, batch: bool) -> float:
    """Messages per second from the first publish to the n-th message received and acked."""
    loop = asyncio.get_running_loop()
    topic = side.topic("e2e")
    bodies = [BODY] * n
    done: asyncio.Future[float] = loop.create_future()
    count = 0

    def on_message(_body: bytes) -> None:
        nonlocal count
        count += 1
        if count == n and not done.done():
            done.set_result(time.perf_counter())

    unsubscribe = await side.subscribe(topic, on_message)
    try:
        publish = side.publish_batch if batch else side.publish
        start = time.perf_counter()
        await publish(topic, bodies)
        end = await done
        return n / (end - start)
    finally:
        await _quietly(unsubscribe(), 15)


async def m_latency(side: Side, n: int) -> tuple[float, float]:
    """(p50, p99) in microseconds: publish one message, wait until the subscriber has it."""
    loop = asyncio.get_running_loop()
    topic = side.topic("lat")
    waiting: list[asyncio.Future[float]] = []

    def on_message(_body: bytes) -> None:
        if waiting and not waiting[0].done():
            waiting[0].set_result(time.perf_counter())

    unsubscribe = await side.subscribe(topic, on_message)
    samples: list[float] = []
    try:
        for i in range(n + LATENCY_WARMUP):
            future: asyncio.Future[float] = loop.create_future()
            waiting[:] = [future]
            start = time.perf_counter()
            await side.publish_one(topic, BODY)
            end = await future
            if i >= LATENCY_WARMUP:
                samples.append((end - start) * 1e6)
    finally:
        await _quietly(unsubscribe(), 15)
    samples.sort()
    return samples[len(samples) // 2], samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def _quietly(awaitable: Awaitable[Any], timeout: float) -> None:
    """Await cleanup, bounded; a failure here must not hide the measurement's result."""
    try:
        await asyncio.wait_for(awaitable, timeout)
    except Exception as exc:
        print(f"    (cleanup failed: {type(exc).__name__}: {exc})", file=sys.stderr)


Outcome = float | tuple[float, float] | str  # a figure, or "timeout" / "error: ..."


async def bounded(make: Callable[[], Awaitable[Any]], timeout: float) -> Outcome:
    try:
        result: Outcome = await asyncio.wait_for(make(), timeout)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"[:120]
    return result


# --- results -----------------------------------------------------------------------------


@dataclass
class Row:
    kind: str
    metric: str
    unit: str
    raw: list[float] = field(default_factory=list)
    bk: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, side: str, outcome: float | str) -> None:
        if isinstance(outcome, str):
            self.notes.append(f"{side}: {outcome}")
        else:
            (self.raw if side == "raw" else self.bk).append(outcome)

    @property
    def ratio(self) -> float | None:
        if not self.raw or not self.bk:
            return None
        return statistics.median(self.bk) / statistics.median(self.raw)

    def target(self) -> str:
        if not self.raw or not self.bk:
            return "not measured"
        raw, bk = statistics.median(self.raw), statistics.median(self.bk)
        if self.unit == THROUGHPUT:
            if bk >= 0.9 * raw:
                return "met"
            return f"MISSED: {bk / raw:.3f}x (needs 0.9x)"
        if self.metric == "p50":
            limit = 1.1 * raw + 50
            if bk <= limit:
                return "met"
            return f"MISSED by {bk - limit:,.0f} us"
        return "-"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "metric": self.metric,
            "unit": self.unit,
            "raw": self.raw,
            "brokerkit": self.bk,
            "ratio": self.ratio,
            "target": self.target(),
            "notes": self.notes,
        }


def _figure(value: float, unit: str) -> str:
    if unit == THROUGHPUT:
        return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"
    return f"{value:,.0f}"


def fmt(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    med = _figure(statistics.median(values), unit)
    if len(values) == 1:
        return f"{med} {unit}"
    return f"{med} {unit} [{_figure(min(values), unit)}-{_figure(max(values), unit)}]"


HEADER = f"{'kind':<16} {'metric':<14} {'raw':<30} {'brokerkit':<30} {'bk/raw':>6}  target"


def format_row(row: Row) -> str:
    ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
    line = (
        f"{row.kind:<16} {row.metric:<14} {fmt(row.raw, row.unit):<30} "
        f"{fmt(row.bk, row.unit):<30} {ratio:>6}  {row.target()}"
    )
    for note in dict.fromkeys(row.notes):
        line += f"\n{'':<31} ! {note}"
    return line


def _fmt_md(values: list[float], unit: str) -> str:
    if not values:
        return "-"
    med = _figure(statistics.median(values), unit)
    if len(values) == 1:
        return med
    return f"{med} ({_figure(min(values), unit)}-{_figure(max(values), unit)})"


def markdown_table(rows: list[Row]) -> str:
    """The rows as a Markdown table: median (min-max) per side, the ratio, the target."""
    lines = [
        "| kind | metric | unit | raw | brokerkit | bk/raw | target |",
        "| --- | --- | --- | --- | --- | ---: | --- |",
    ]
    for row in rows:
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        target = row.target()
        if not row.raw and row.notes:
            target = f"not measured ({'; '.join(dict.fromkeys(row.notes))})"
        elif target.startswith("MISSED"):
            target = "**missed**" + target[len("MISSED") :]
        unit = "µs" if row.unit == MICROS else row.unit
        lines.append(
            f"| {row.kind} | {row.metric} | {unit} | {_fmt_md(row.raw, row.unit)} | "
            f"{_fmt_md(row.bk, row.unit)} | {ratio} | {target} |"
        )
    return "\n".join(lines) + "\n"


def rows_from_json(path: Path) -> list[Row]:
    """Rows saved by ``--json``."""
    return [
        Row(d["kind"], d["metric"], d["unit"], d["raw"], d["brokerkit"], d["notes"])
        for d in json.loads(path.read_text())
    ]


# --- one URL kind ------------------------------------------------------------------------


def kind_of(url: str) -> str:
    return url.split("://", 1)[0]


def reachable(url: str, timeout: float = 2.0) -> str | None:
    """None if the URL's first host accepts TCP connections, else the reason."""
    if kind_of(url) == "memory":
        return None
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port
    except ValueError:
        return f"bad port in {url!r}"
    if port is None:
        return f"no port in {url!r}"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} not reachable ({exc.strerror or exc})"


async def bench_kind(url: str, args: argparse.Namespace) -> list[Row]:
    kind = kind_of(url)
    n, lat_n = args.messages, args.latency
    raw = raw_side(url)
    try:
        bk: Side | None = BrokerkitSide(url, args.max_in_flight)
    except Exception as exc:
        bk = None
        print(f"  brokerkit: not measured ({type(exc).__name__}: {exc})")
    sides: dict[str, Side] = {"raw": raw}
    if bk is not None:
        sides["bk"] = bk
    for name, side in list(sides.items()):
        outcome = await bounded(side.open, args.timeout)
        if isinstance(outcome, str):
            print(f"  {name}: could not open: {outcome}")
            del sides[name]
    if not sides:
        return []
    try:
        # Warm up code paths and connections (and JIT-free CPU caches) once, untimed.
        for side in sides.values():
            await bounded(lambda s=side: m_publish(s, 200, False), args.timeout)  # type: ignore[misc]
        with_batch = bk is not None and bk.has_batch and raw.has_batch
        rows = {
            "publish": Row(kind, "publish", THROUGHPUT),
            "e2e": Row(kind, "e2e", THROUGHPUT),
            "p50": Row(kind, "p50", MICROS),
            "p99": Row(kind, "p99", MICROS),
        }
        if with_batch:
            rows["publish batch"] = Row(kind, "publish batch", THROUGHPUT)
            rows["e2e batch"] = Row(kind, "e2e batch", THROUGHPUT)
        elif bk is not None and bk.has_batch != raw.has_batch:
            print("  (batch path: only one side has one; not compared)")
        jobs: list[tuple[str, Callable[[Side], Awaitable[Any]]]] = [
            ("publish", lambda s: m_publish(s, n, False)),
            ("e2e", lambda s: m_e2e(s, n, False)),
        ]
        if with_batch:
            jobs += [
                ("publish batch", lambda s: m_publish(s, n, True)),
                ("e2e batch", lambda s: m_e2e(s, n, True)),
            ]
        jobs.append(("latency", lambda s: m_latency(s, lat_n)))
        for rep in range(args.reps):
            order = list(sides.items())
            if rep % 2:
                order.reverse()
            for metric, job in jobs:
                for name, side in order:
                    started = time.perf_counter()
                    outcome = await bounded(lambda j=job, s=side: j(s), args.timeout)  # type: ignore[misc]
                    took = time.perf_counter() - started
                    if metric == "latency":
                        if isinstance(outcome, tuple):
                            rows["p50"].add(name, outcome[0])
                            rows["p99"].add(name, outcome[1])
                        else:
                            rows["p50"].add(name, outcome)
                            rows["p99"].add(name, outcome)
                    elif not isinstance(outcome, tuple):
                        rows[metric].add(name, outcome)
                    if args.verbose:
                        print(f"    rep {rep + 1} {metric:<13} {name:<3} {outcome} ({took:.1f}s)")
        shown = ("publish", "publish batch", "e2e", "e2e batch", "p50", "p99")
        return [rows[k] for k in shown if k in rows]
    finally:
        for side in sides.values():
            await _quietly(side.close(), 15)


# --- Kafka (Tansu) -----------------------------------------------------------------------


def kafka_start(port: int) -> tuple[bool, str | None]:
    """Start Tansu via scripts/kafka-server. Returns (started_by_us, reason_if_unusable)."""
    if not KAFKA_SCRIPT.exists():
        return False, f"{KAFKA_SCRIPT.relative_to(ROOT)} does not exist"
    cmd = [sys.executable, str(KAFKA_SCRIPT)]
    try:
        running = subprocess.run(
            [*cmd, "status", "--port", str(port)], capture_output=True, timeout=30
        )
        if running.returncode == 0:
            return False, None
        started = subprocess.run(
            [*cmd, "start", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return False, "scripts/kafka-server timed out"
    if started.returncode != 0:
        return False, f"scripts/kafka-server start failed: {started.stderr.strip()[-200:]}"
    return True, None


def kafka_stop(port: int) -> None:
    with contextlib.suppress(Exception):
        subprocess.run(
            [sys.executable, str(KAFKA_SCRIPT), "stop", "--port", str(port)],
            capture_output=True,
            timeout=30,
        )


# --- main ----------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> list[Row]:
    all_rows: list[Row] = []
    for url in args.urls:
        kind = kind_of(url)
        shown = urlsplit(url)._replace(netloc=urlsplit(url).netloc.split("@")[-1]).geturl()
        print(f"\n== {kind}  ({shown})", flush=True)
        reason = reachable(url)
        if reason is not None:
            print(f"  skipped: {reason}")
            continue
        started = time.perf_counter()
        rows = await bench_kind(url, args)
        print(HEADER)
        for row in rows:
            print(format_row(row))
        print(f"  ({time.perf_counter() - started:.0f}s)", flush=True)
        all_rows.extend(rows)
    return all_rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", nargs="+", help="URLs to measure (default: all kinds)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (3)")
    parser.add_argument(
        "--quick", action="store_true", help="2,000 messages, 200 latency samples, 1 rep"
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages per run")
    parser.add_argument("--latency", type=int, default=1000, help="latency samples")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per measurement")
    parser.add_argument("--kafka-port", type=int, default=19092, help="Tansu port (19092)")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=1,
        help="brokerkit subscriptions' max_in_flight (1, the default of subscribe())",
    )
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--markdown", type=Path, help="also write the results as a Markdown table to this file"
    )
    parser.add_argument(
        "--table-from",
        type=Path,
        metavar="JSON",
        help="measure nothing: print the Markdown table of results saved with --json",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every outcome")
    args = parser.parse_args(argv)
    if args.quick:
        args.messages, args.latency = 2000, 200
        if "--reps" not in (argv if argv is not None else sys.argv):
            args.reps = 1
    if not args.urls:
        args.urls = [u.format(kafka_port=args.kafka_port) for u in DEFAULT_URLS]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.table_from:
        print(markdown_table(rows_from_json(args.table_from)), end="")
        return 0
    # Logging on the hot path would be a cost of its own: keep brokerkit's default
    # (WARNING), and silence the clients' noise about benign reconnects.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    load = os.getloadavg()
    print(
        f"brokerkit benchmark {datetime.date.today()} | {platform.python_implementation()} "
        f"{platform.python_version()} | {os.cpu_count()} cores | load {load[0]:.2f} | "
        f"{args.messages} msgs x 100 B, {args.latency} latency samples, {args.reps} rep(s), "
        f"timeout {args.timeout:.0f}s each"
    )
    started_ports: list[int] = []  # the Tansu ports this run started (and must stop)
    urls = []
    for url in args.urls:
        if kind_of(url) == "kafka" and reachable(url) is not None:
            port = urlsplit(url).port or args.kafka_port
            started, reason = kafka_start(port)
            if started:
                started_ports.append(port)
            if reason is not None:
                print(f"\n== kafka  skipped: {reason}")
                continue
        urls.append(url)
    args.urls = urls
    try:
        rows = asyncio.run(main_async(args))
    finally:
        for port in started_ports:
            kafka_stop(port)
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} (2-core machine shared)")
    if args.json:
        args.json.write_text(json.dumps([row.as_dict() for row in rows], indent=1))
    if args.markdown:
        args.markdown.write_text(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
