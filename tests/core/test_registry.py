"""The plugin registry and connect(): schemes, options, missing clients, no eager imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import brokerkit
from brokerkit import (
    ALL_CAPABILITIES,
    InvalidOptionError,
    InvalidURLError,
    PluginNotInstalledError,
    PluginRegistry,
    SchemeSpec,
    UnknownSchemeError,
    connect,
    hookimpl,
)
from brokerkit.plugins.memory import MemoryBroker

CLIENT_MODULES = ("nats", "aiokafka", "aio_pika", "aiormq", "redis", "aiomqtt")


def test_import_brokerkit_and_load_plugins_imports_no_client_library() -> None:
    code = textwrap.dedent(
        f"""
        import sys, brokerkit
        schemes = brokerkit.default_registry().schemes()
        brokerkit.connect("memory://")
        for scheme in ("nats", "kafka", "amqp", "redis"):
            if scheme in schemes:
                brokerkit.connect(scheme + "://127.0.0.1")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in {CLIENT_MODULES!r})
        print(",".join(loaded))
        print(len(schemes))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "", f"client libraries imported eagerly: {out[0]}"
    assert int(out[1]) >= 1


def test_builtin_plugins_come_from_entry_points() -> None:
    schemes = brokerkit.default_registry().schemes()
    assert schemes["memory"].plugin == "memory"
    assert schemes["memory"].capabilities == ALL_CAPABILITIES


def test_default_url_is_env_then_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BROKERKIT_URL", raising=False)
    assert isinstance(connect(), MemoryBroker)
    monkeypatch.setenv("BROKERKIT_URL", "memory://from-env")
    broker = connect()
    assert isinstance(broker, MemoryBroker)
    assert broker.bus_name == "from-env"


def test_unknown_scheme_lists_installed_schemes() -> None:
    with pytest.raises(UnknownSchemeError) as info:
        connect("carrier-pigeon://loft")
    assert "carrier-pigeon://" in str(info.value)
    assert "memory://" in str(info.value)


def test_unknown_option_lists_known_options() -> None:
    with pytest.raises(InvalidOptionError) as info:
        connect("memory://?retenshun=5")
    text = str(info.value)
    assert "retenshun" in text
    for known in ("retention", "max_pending", "drain_timeout"):
        assert known in text


def test_bad_option_value_is_refused_and_keywords_override_query() -> None:
    with pytest.raises(InvalidOptionError, match="retention"):
        connect("memory://?retention=zero")
    with pytest.raises(InvalidOptionError, match="drain_timeout"):
        connect("memory://", drain_timeout=-1)
    broker = connect("memory://?retention=5", retention=7)
    assert broker.options["retention"] == 7


class _FakeClientPlugin:
    """A plugin whose client library is not installed."""

    @hookimpl
    def brokerkit_schemes(self) -> list[SchemeSpec]:
        return [
            SchemeSpec(
                scheme="pigeon",
                factory=MemoryBroker,
                capabilities=frozenset(),
                requires=("brokerkit_no_such_client_lib",),
                extra="pigeon",
            ),
            SchemeSpec(
                scheme="needs-host",
                factory=MemoryBroker,
                capabilities=frozenset(),
                default_port=1234,
            ),
        ]


def test_missing_client_library_names_the_pip_extra() -> None:
    registry = PluginRegistry()
    registry.register(_FakeClientPlugin(), name="pigeon-plugin")
    with pytest.raises(PluginNotInstalledError) as info:
        registry.create("pigeon://loft")
    assert "brokerkit_no_such_client_lib" in str(info.value)
    assert "pip install 'brokerkit[pigeon]'" in str(info.value)


def test_missing_host_and_default_port() -> None:
    registry = PluginRegistry()
    registry.register(_FakeClientPlugin(), name="pigeon-plugin")
    with pytest.raises(InvalidURLError, match="no host"):
        registry.create("needs-host://")
    broker = registry.create("needs-host://h")
    assert broker.url.hosts == (("h", 1234),)


def test_two_plugins_declaring_one_scheme_is_an_error() -> None:
    registry = PluginRegistry()
    registry.register(_FakeClientPlugin(), name="one")
    with pytest.raises(brokerkit.BrokerkitError, match="two plugins"):
        registry.register(_FakeClientPlugin(), name="two")


def test_repr_of_broker_hides_password() -> None:
    broker = connect("memory://user:hunter2@bus")
    assert "hunter2" not in repr(broker)
    assert "***" in repr(broker)
