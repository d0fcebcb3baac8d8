"""Shared pieces of the contract suite: the ``contract`` marker decorator, payloads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from brokerkit.core.capabilities import Capability

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds to wait for messages that must arrive (scaled by the test timeout scale).
ARRIVE = 20.0
#: Seconds to watch for messages that must NOT arrive.
QUIET = 0.6


def contract(*capabilities: Capability) -> Callable[[F], F]:
    """Mark a coroutine test as part of the contract, needing ``capabilities``.

    The test is run by pytest-asyncio (in strict and auto mode alike) and skipped, with
    the reason shown, on brokers that do not declare every capability.
    """

    def decorate(function: F) -> F:
        marked = pytest.mark.asyncio(function)
        if capabilities:
            marked = pytest.mark.requires(*capabilities)(marked)
        return marked  # type: ignore[no-any-return]

    return decorate


def numbered(count: int, prefix: str = "m") -> list[bytes]:
    """``count`` distinct bodies: ``b"m-0"``, ``b"m-1"``, ..."""
    return [f"{prefix}-{i}".encode() for i in range(count)]


def group_name(topic: str, base: str) -> str:
    """A queue or durable name unique to the test that owns ``topic``.

    Real brokers keep groups and durable consumers across tests (and runs), so a name
    shared between tests could carry one test's state into another.
    """
    return f"{base}-{topic.rsplit('.', 1)[-1]}"
