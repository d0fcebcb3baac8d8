"""A pytest plugin used by ``brokerkit check``: records every test's outcome and the
capabilities it requires, as JSON lines, in the file named by ``BROKERKIT_CHECK_REPORT``.

Loaded only inside the pytest subprocess that ``brokerkit check`` starts (``-p``).
"""

from __future__ import annotations

import json
import os
from typing import IO

import pytest

REPORT_ENV = "BROKERKIT_CHECK_REPORT"

_out: IO[str] | None = None


def _write(record: dict[str, object]) -> None:
    if _out is not None:
        _out.write(json.dumps(record) + "\n")
        _out.flush()


def _short(report: pytest.CollectReport | pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    message = getattr(crash, "message", None)
    if isinstance(message, str) and message:
        text = message
    elif isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        text = str(report.longrepr[2])  # a skip: (path, line, reason)
    else:
        text = str(report.longrepr or "")
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0][:300] if lines else ""


def pytest_configure(config: pytest.Config) -> None:
    global _out
    path = os.environ.get(REPORT_ENV)
    if path and _out is None:
        _out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed at unconfigure


def pytest_unconfigure(config: pytest.Config) -> None:
    global _out
    if _out is not None:
        _out.close()
        _out = None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        capabilities = [str(c) for m in item.iter_markers("requires") for c in m.args]
        _write({"event": "item", "nodeid": item.nodeid, "requires": capabilities})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"event": "collect_error", "nodeid": report.nodeid, "message": _short(report)})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _write(
        {
            "event": "report",
            "nodeid": report.nodeid,
            "when": report.when,
            "outcome": report.outcome,
            "message": "" if report.passed else _short(report),
        }
    )
