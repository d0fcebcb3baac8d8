"""The third-party MQTT plugin in examples/brokerkit-mqtt, installed beside brokerkit
(``pip install -e examples/brokerkit-mqtt``), against the Mosquitto on 127.0.0.1:1883."""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import importlib.util
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import brokerkit
from brokerkit.testing.helpers import Collector

ROOT = Path(__file__).resolve().parent.parent
URL = "mqtt://127.0.0.1:1883"

if importlib.util.find_spec("brokerkit_mqtt") is None:  # pragma: no cover - setup error
    pytest.fail(
        "the MQTT plugin is not installed: pip install -e examples/brokerkit-mqtt",
        pytrace=False,
    )

import aiomqtt  # noqa: E402  - after the installation check
from brokerkit_mqtt import from_mqtt_topic, to_mqtt_filter  # noqa: E402


def run(*args: str, cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def test_brokerkit_plugins_lists_mqtt_from_its_own_distribution() -> None:
    result = run("-m", "brokerkit", "plugins")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("mqtt://\n", 1)[1].split("\n\n")[0]
    assert "plugin:       mqtt 0.1.0" in block
    assert "client:       installed (aiomqtt)" in block
    assert "capabilities: queue_groups, ordering_per_key, wildcards, headers" in block


def test_brokerkit_check_passes_the_contract_suite() -> None:
    result = run("-m", "brokerkit", "check", URL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: mqtt://127.0.0.1:1883" in result.stdout
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line}
    assert rows["queue_groups"][:3] == ["yes", rows["queue_groups"][1], "0"]
    assert int(rows["queue_groups"][1]) > 0 and int(rows["wildcards"][1]) > 0


def test_the_documented_lines_run_the_contract_suite_with_plain_pytest() -> None:
    plugin = ROOT / "examples" / "brokerkit-mqtt"
    result = run(
        "-m",
        "pytest",
        "tests",
        "-q",
        "-p",
        "no:cacheprovider",
        "-k",
        "round_trip or queue",
        cwd=plugin,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 5, result.stdout[-3000:]
    assert " failed" not in result.stdout


def test_topic_mapping() -> None:
    assert to_mqtt_filter("user.created") == "user/created"
    assert to_mqtt_filter("user.*.v1") == "user/+/v1"
    assert to_mqtt_filter("user.>") == "user/#"
    assert from_mqtt_topic("user/created/v2") == "user.created.v2"


async def test_plain_mqtt_clients_interoperate() -> None:
    run_id = uuid.uuid4().hex[:8]
    collector = Collector()
    async with brokerkit.connect(URL) as broker, aiomqtt.Client("127.0.0.1", 1883) as raw:
        await broker.subscribe(f"sensors.{run_id}.>", collector)
        # A device that knows nothing of brokerkit (MQTT 3.1.1, no properties):
        await raw.publish(f"sensors/{run_id}", b"parent level", qos=1)  # '#' would match it
        await raw.publish(f"sensors/{run_id}/kitchen/temp", b"21.5", qos=1)
        (delivery,) = await collector.wait_for(1)
        await collector.assert_no_more(1, within=0.3)
        assert delivery.topic == f"sensors.{run_id}.kitchen.temp"
        assert delivery.message.body == b"21.5" and delivery.message.headers == {}

        # ... and brokerkit's messages reach plain MQTT subscribers.
        await raw.subscribe(f"alerts/{run_id}", qos=1)
        await broker.publish(f"alerts.{run_id}", b"too hot", headers={"unit": "°C"})
        received = await asyncio.wait_for(anext(aiter(raw.messages)), 10)
        assert received.payload == b"too hot"


@pytest.fixture(scope="module")
def mosquitto_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A private Mosquitto on a free port that admits only user ``bk`` with ``PASSWORD``
    (the shared one on 1883 allows anonymous clients, so it cannot refuse a password)."""
    workdir = tmp_path_factory.mktemp("mosquitto")
    passwords = workdir / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), "bk", MQTT_PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
        "persistence false\n"
        # Run as the test's own user: as root, mosquitto would otherwise switch to the
        # 'mosquitto' user, who cannot read the private temporary directory.
        f"user {getpass.getuser()}\n"
    )
    server = subprocess.Popen(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                error = server.stderr.read().decode() if server.stderr else ""
                pytest.fail(f"private mosquitto did not start: {error}", pytrace=False)
            time.sleep(0.05)
        yield port
    finally:
        server.terminate()
        server.wait(10)


MQTT_PASSWORD = "s3cret-" + uuid.uuid4().hex


async def test_right_password_round_trips(mosquitto_with_password: int) -> None:
    url = f"mqtt://bk:{MQTT_PASSWORD}@127.0.0.1:{mosquitto_with_password}"
    collector = Collector()
    async with brokerkit.connect(url) as broker:
        await broker.subscribe("auth.ok", collector)
        await broker.publish("auth.ok", b"in")
        (delivery,) = await collector.wait_for(1)
        assert delivery.message.body == b"in"


async def test_wrong_password_raises_authentication_error_without_the_password(
    mosquitto_with_password: int,
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    broker = brokerkit.connect(f"mqtt://bk:{wrong}@127.0.0.1:{mosquitto_with_password}")
    with pytest.raises(brokerkit.AuthenticationError) as raised:
        await broker.connect()
    assert not broker.connected
    error = raised.value
    shown = [str(error), repr(error), repr(broker), str(broker.url), str(error.__cause__)]
    assert not any(wrong in text for text in shown), shown
    assert "127.0.0.1" in str(error)
