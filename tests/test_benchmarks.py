"""The benchmark programs in benchmarks/ run and report what issue 6 asks for.

No test here asserts a speed: they check that run.py measures both sides for each URL
kind and prints a ratio per row (and writes the JSON and Markdown it promises), that
nats_envelope.py reports its three sides, and that the memory soak stays bounded in
memory (the subscriber's queue never beyond ``max_pending``, RSS flat). Small message
counts keep them short; the figures themselves are not looked at.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
REDIS = "redis://127.0.0.1:6379/0"
NATS = "nats://127.0.0.1:4222"


def run(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        cwd=BENCHMARKS.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_run_py_measures_brokerkit_and_the_raw_client_per_row(tmp_path: Path) -> None:
    results, table = tmp_path / "results.json", tmp_path / "table.md"
    done = run(
        "run.py",
        *("--urls", "memory://bench", REDIS),
        *("--reps", "2", "--messages", "300", "--latency", "20", "--timeout", "60"),
        *("--json", str(results), "--markdown", str(table)),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(results.read_text())
    metrics = {(row["kind"], row["metric"]) for row in rows}
    assert metrics == {
        *((kind, m) for kind in ("memory", "redis") for m in ("publish", "e2e", "p50", "p99")),
        ("redis", "publish batch"),  # the Streams plugin has a batch path
        ("redis", "e2e batch"),
    }
    for row in rows:
        assert len(row["raw"]) == 2 and len(row["brokerkit"]) == 2, row  # both sides, 2 reps
        assert all(value > 0 for value in row["raw"] + row["brokerkit"]), row
        ratio = statistics.median(row["brokerkit"]) / statistics.median(row["raw"])
        assert abs(row["ratio"] - ratio) < 1e-9
        if row["metric"] == "p99":
            assert row["target"] == "-"
        else:
            assert row["target"] == "met" or row["target"].startswith("MISSED"), row
    # The printed table and the Markdown one carry every row with its ratio.
    assert "bk/raw" in done.stdout
    lines = table.read_text().splitlines()
    assert lines[0].startswith("| kind | metric |") and len(lines) == 2 + len(rows)
    assert run("run.py", "--table-from", str(results)).stdout == table.read_text()


def test_nats_envelope_reports_raw_raw_with_header_and_brokerkit() -> None:
    done = run("nats_envelope.py", "--url", NATS, "--reps", "1", "--messages", "500")
    assert done.returncode == 0, done.stdout + done.stderr
    sides = re.findall(r"^(publish|e2e)\s+(raw|raw\+env|bk)\s+([\d,]+)", done.stdout, re.M)
    assert {(metric, side) for metric, side, _ in sides} == {
        (metric, side) for metric in ("publish", "e2e") for side in ("raw", "raw+env", "bk")
    }


def test_memory_soak_keeps_the_queue_at_max_pending_and_memory_flat() -> None:
    done = run(
        "memory_soak.py",
        *("--messages", "100000", "--max-pending", "2000"),
        *("--sleep-every", "200", "--sleep-ms", "0.5", "--timeout", "120"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    samples = re.findall(r"^\s*([\d,]+)\s+([\d,]+)\s+(\d+)\s+([\d.]+)", done.stdout, re.M)
    assert len(samples) == 10, done.stdout
    depths = [int(depth) for _, _, depth, _ in samples]
    assert max(depths) <= 2000  # the bounded queue: a full one makes publish wait
    growth = re.search(r"growth ([+-][\d.]+) MiB", done.stdout)
    assert growth is not None, done.stdout
    # 100,000 messages of 100 B would be ~20 MiB if retained; bounded, RSS stays flat.
    assert float(growth.group(1)) < 5.0
