"""``brokerkit check URL``: run the contract suite against a broker, summarise by capability.

The suite (the ``brokerkit.contract`` package) runs in a pytest subprocess, isolated from
any project configuration in the current directory: its own ini file, plugin
auto-loading off, and only brokerkit's pytest plugin, pytest-asyncio, pytest-timeout
and the reporter in :mod:`brokerkit.cli._report` loaded.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import BrokerkitError
from brokerkit.core.registry import connect

CORE = "core"
_NEEDED = {"pytest": "pytest", "pytest_asyncio": "pytest-asyncio"}


class CheckError(BrokerkitError):
    """``brokerkit check`` could not run the suite (missing pytest, unreachable broker)."""


@dataclass
class TestResult:
    """The outcome of one contract test: ``passed``, ``failed`` or ``skipped``."""

    nodeid: str
    requires: list[str] = field(default_factory=list)
    outcome: str = "passed"
    message: str = ""
    ran: bool = False

    def add(self, when: str, outcome: str, message: str) -> None:
        """Fold one phase report (setup, call, teardown) into the test's outcome."""
        self.ran = True
        if outcome == "failed":
            if self.outcome != "failed":
                self.message = f"{'error in ' + when + ': ' if when != 'call' else ''}{message}"
            self.outcome = "failed"
        elif outcome == "skipped" and self.outcome == "passed":
            self.outcome = "skipped"
            self.message = message


def read_report(lines: Iterable[str]) -> tuple[dict[str, TestResult], list[str]]:
    """Parse the reporter's JSON lines into results per test and collection errors."""
    results: dict[str, TestResult] = {}
    collect_errors: list[str] = []
    for line in lines:
        if not line.strip():
            continue
        record = json.loads(line)
        event = record["event"]
        if event == "collect_error":
            collect_errors.append(f"{record['nodeid']}: {record['message']}")
            continue
        result = results.setdefault(record["nodeid"], TestResult(record["nodeid"]))
        if event == "item":
            result.requires = list(record["requires"])
        elif event == "report":
            result.add(record["when"], record["outcome"], record["message"])
    return results, collect_errors


def summarise(results: Iterable[TestResult]) -> dict[str, dict[str, int]]:
    """Counts of passed / failed / skipped per capability (``core``: no requirement).

    A test that requires several capabilities counts under each of them.
    """
    order = [CORE, *(c.value for c in Capability)]
    table: dict[str, dict[str, int]] = {}
    for result in results:
        if not result.ran:
            continue
        for group in result.requires or [CORE]:
            row = table.setdefault(group, {"passed": 0, "failed": 0, "skipped": 0})
            row[result.outcome] += 1
    return {
        k: table[k]
        for k in sorted(
            table, key=lambda g: (g not in order, order.index(g) if g in order else 0, g)
        )
    }


def format_table(
    table: dict[str, dict[str, int]], results: list[TestResult], declared: frozenset[Capability]
) -> str:
    """The capability table printed by ``brokerkit check``."""
    header = f"{'capability':<18}{'declared':<10}{'passed':>7}{'failed':>8}{'skipped':>9}"
    lines = [header, "-" * len(header)]
    for group, row in table.items():
        mark = "-" if group == CORE else ("yes" if group in declared else "no")
        lines.append(
            f"{group:<18}{mark:<10}{row['passed']:>7}{row['failed']:>8}{row['skipped']:>9}"
        )
    ran = [r for r in results if r.ran]
    totals = {o: sum(r.outcome == o for r in ran) for o in ("passed", "failed", "skipped")}
    lines.append("-" * len(header))
    lines.append(
        f"{'total (tests)':<28}{totals['passed']:>7}{totals['failed']:>8}{totals['skipped']:>9}"
    )
    return "\n".join(lines)


def _pytest_command(url: str, ini: Path, timeout: float, select: str | None) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--pyargs",
        "brokerkit.contract",
        "-c",
        str(ini),
        "--rootdir",
        str(ini.parent),
        "-p",
        "brokerkit.testing.pytest_plugin",
        "-p",
        "pytest_asyncio.plugin",
        "-p",
        "brokerkit.cli._report",
        "-p",
        "no:cacheprovider",
        "--broker-url",
        url,
        "-q",
        "-rN",
    ]
    if importlib.util.find_spec("pytest_timeout") is not None:
        command += ["-p", "pytest_timeout", f"--timeout={timeout:g}"]
    if select:
        command += ["-k", select]
    return command


async def _probe(url: str) -> frozenset[Capability]:
    broker = connect(url)
    async with broker:
        return broker.capabilities


def run_check(
    url: str,
    *,
    timeout: float = 120.0,
    select: str | None = None,
    verbose: bool = False,
    out: IO[str] = sys.stdout,
) -> int:
    """Run the contract suite against ``url``, print the table; 0 only if nothing failed.

    Raises :class:`BrokerkitError` for a bad URL, an unknown scheme, a missing client
    library or an unreachable broker (checked once before the suite starts), and
    :class:`CheckError` if pytest or pytest-asyncio is not installed.
    """
    missing = [pip for module, pip in _NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise CheckError(
            f"brokerkit check needs {' and '.join(missing)}: pip install 'brokerkit[test]'"
        )
    declared = asyncio.run(_probe(url))
    redacted = connect(url).url.redacted()
    with tempfile.TemporaryDirectory(prefix="brokerkit-check-") as tmp:
        ini = Path(tmp, "pytest.ini")
        ini.write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
            "filterwarnings = ignore::DeprecationWarning\n",
            encoding="utf-8",
        )
        report = Path(tmp, "report.jsonl")
        env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
        env["BROKERKIT_CHECK_REPORT"] = str(report)
        env.pop("BROKERKIT_TEST_URLS", None)
        started = time.monotonic()
        print(f"running the contract suite against {redacted} ...", file=out, flush=True)
        completed = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            _pytest_command(url, ini, timeout, select),
            cwd=tmp,
            env=env,
            stdout=None if verbose else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []
    results, collect_errors = read_report(lines)
    ordered = list(results.values())
    print(file=out)
    print(format_table(summarise(ordered), ordered, declared), file=out)
    failed = [r for r in ordered if r.outcome == "failed" and r.ran]
    if failed:
        print(f"\nfailed ({len(failed)}):", file=out)
        for result in failed:
            print(f"  {result.nodeid}\n      {result.message}", file=out)
    if collect_errors:
        print(f"\nthe suite could not be collected ({len(collect_errors)}):", file=out)
        for error in collect_errors:
            print(f"  {error}", file=out)
    ran = sum(r.ran for r in ordered)
    ok = not failed and not collect_errors and ran > 0 and completed.returncode == 0
    if not ok and not failed and not collect_errors:
        tail = (completed.stdout or "").strip().splitlines()[-15:]
        print(f"\npytest exited with status {completed.returncode}:", file=out)
        for line in tail:
            print(f"  {line}", file=out)
    verdict = "PASSED" if ok else "FAILED"
    print(f"\n{verdict}: {redacted} — {ran} tests in {elapsed:.1f}s", file=out)
    return 0 if ok else 1
