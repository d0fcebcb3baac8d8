"""brokerkit's pytest plugin, exercised in a separate pytest run (pytester)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _quiet_loop_scope(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")


TEST_FILE = """
import pytest
from brokerkit import Capability
from brokerkit.testing.helpers import Collector

@pytest.mark.asyncio
async def test_round_trip(broker, topic, broker_url):
    assert broker.connected and broker.url.scheme == "memory"
    collector = Collector()
    await broker.subscribe(topic, collector)
    await broker.publish(topic, broker_url.encode())
    (delivery,) = await collector.wait_for(1, timeout=5)
    assert delivery.message.body == broker_url.encode()

@pytest.mark.asyncio
@pytest.mark.requires(Capability.ACK)
async def test_needs_ack(broker):
    assert "ack" in {c.value for c in broker.capabilities}

def test_unrelated():
    pass
"""


def test_tests_are_parametrized_over_each_broker_url(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest("--broker-url", "memory://one", "--broker-url", "memory://two")
    result.assert_outcomes(passed=5)
    result.stdout.no_fnmatch_line("*error*")


def test_urls_from_the_environment(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKERKIT_TEST_URLS", "memory://a; memory://b memory://c")
    pytester.makepyfile(TEST_FILE)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["*test_round_trip?memory-3?*PASSED*"])


def test_requires_marker_skips_with_the_reason(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from brokerkit import Capability, SchemeSpec, hookimpl
        import brokerkit
        from brokerkit.plugins.memory import MemoryBroker

        class Plain:
            @hookimpl
            def brokerkit_schemes(self):
                return [SchemeSpec(scheme="plain", factory=MemoryBroker,
                                   capabilities=frozenset(), needs_host=False)]

        brokerkit.default_registry().register(Plain(), name="plain")

        @pytest.mark.asyncio
        @pytest.mark.requires(Capability.DURABLE)
        async def test_durable(broker):
            pass
        """
    )
    result = pytester.runpytest("-rs", "--broker-url", "plain://")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*plain:// does not declare durable*"])


def test_third_party_runs_the_contract_suite_with_one_import(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BROKERKIT_TEST_URLS", raising=False)
    pytester.makepyfile(test_my_plugin_contract="from brokerkit.contract import *  # noqa: F403\n")
    result = pytester.runpytest("-q", "-k", "round_trip or lifecycle or idempotent")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 5
    assert "failed" not in outcomes
