"""brokerkit's pytest plugin (registered through the ``pytest11`` entry point).

It chooses the brokers a test runs against and hands tests connected brokers:

* ``--broker-url URL`` (repeatable) or ``BROKERKIT_TEST_URLS`` (URLs separated by
  whitespace or ``;``) choose the URLs; the default is ``memory://``;
* every test that uses the ``broker_url`` fixture (directly or through ``broker`` or
  ``make_broker``) is parametrized over those URLs;
* ``broker``: a connected broker, disconnected after the test;
* ``make_broker``: an async factory for more connected brokers on the same URL;
* ``topic``: a topic name unique to this test run, so stale messages on a real broker
  never reach the test;
* ``@pytest.mark.requires(Capability.ACK, ...)``: skip, with the reason shown, where the
  broker does not declare a capability.

Nothing here affects tests that use none of these fixtures.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

import pytest

from brokerkit.core.broker import Broker
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import BrokerkitError
from brokerkit.core.registry import default_registry
from brokerkit.core.url import parse_url

URLS_ENV = "BROKERKIT_TEST_URLS"
DEFAULT_TEST_URL = "memory://"

MakeBroker = Callable[..., Awaitable[Broker]]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("brokerkit")
    group.addoption(
        "--broker-url",
        action="append",
        default=[],
        metavar="URL",
        help=f"broker URL to run broker tests against (repeatable; else ${URLS_ENV}, "
        f"else {DEFAULT_TEST_URL})",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "requires(*capabilities): skip where the broker does not declare these capabilities",
    )


def broker_urls(config: pytest.Config) -> list[str]:
    """The URLs chosen by ``--broker-url``, else ``BROKERKIT_TEST_URLS``, else memory."""
    urls: list[str] = list(config.getoption("broker_url") or [])
    if not urls:
        urls = [u for u in re.split(r"[\s;]+", os.environ.get(URLS_ENV, "")) if u]
    return urls or [DEFAULT_TEST_URL]


def _url_id(url: str, seen: dict[str, int]) -> str:
    try:
        name = parse_url(url).scheme
    except BrokerkitError:
        name = "invalid-url"
    seen[name] = seen.get(name, 0) + 1
    return name if seen[name] == 1 else f"{name}-{seen[name]}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_url" in metafunc.fixturenames:
        urls = broker_urls(metafunc.config)
        seen: dict[str, int] = {}
        ids = [_url_id(url, seen) for url in urls]
        metafunc.parametrize("broker_url", urls, ids=ids, scope="function")


def capabilities_of(url: str) -> frozenset[Capability]:
    """The capabilities the plugin for ``url`` declares (no connection is made)."""
    return default_registry().spec_for(parse_url(url).scheme).capabilities


def missing_capabilities(url: str, needed: Iterable[Capability]) -> list[Capability]:
    """Which of ``needed`` the plugin for ``url`` does not declare."""
    declared = capabilities_of(url)
    return [c for c in needed if c not in declared]


@pytest.fixture
def broker_capabilities(broker_url: str, request: pytest.FixtureRequest) -> frozenset[Capability]:
    """The capabilities of ``broker_url``; applies ``@pytest.mark.requires`` skips."""
    needed: list[Capability] = []
    for marker in request.node.iter_markers("requires"):
        needed.extend(Capability(c) for c in marker.args)
    missing = missing_capabilities(broker_url, needed)
    if missing:
        scheme = parse_url(broker_url).scheme
        pytest.skip(f"{scheme}:// does not declare {', '.join(c.value for c in missing)}")
    return capabilities_of(broker_url)


@pytest.fixture
def topic(request: pytest.FixtureRequest) -> str:
    """A topic unique to this test and run: ``bk.<test name>.<random>``."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", request.node.name)[:60].strip("_") or "t"
    return f"bk.{name}.{uuid.uuid4().hex[:12]}"


try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the connected fixtures need pytest-asyncio
    pytest_asyncio = None  # type: ignore[assignment]

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def make_broker(
        broker_url: str, broker_capabilities: frozenset[Capability]
    ) -> AsyncIterator[MakeBroker]:
        """An async factory: ``await make_broker(**options)`` returns a connected broker
        for ``broker_url``; every broker it made is disconnected after the test."""
        made: list[Broker] = []

        async def factory(**options: object) -> Broker:
            new = default_registry().create(broker_url, **options)
            made.append(new)
            await new.connect()
            return new

        yield factory
        for each in reversed(made):
            await each.disconnect()

    @pytest_asyncio.fixture
    async def broker(make_broker: MakeBroker) -> Broker:
        """A connected broker for ``broker_url``, disconnected after the test."""
        return await make_broker()
