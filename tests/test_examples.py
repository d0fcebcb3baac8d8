"""Every program in examples/ runs (as a user would run it) against ``memory://`` and real
brokers, and reports success with exit status 0.

Each example lists the capabilities it needs; it runs on memory:// and on the real
brokers below that declare them. ``portable.py`` additionally runs on every URL in
``BROKERKIT_TEST_URLS`` (so CI covers Kafka and anything else it starts).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from brokerkit.core.capabilities import Capability
from brokerkit.core.registry import default_registry
from brokerkit.core.url import parse_url

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MEMORY = "memory://"
NATS = "nats://127.0.0.1:4222"
JETSTREAM = "nats+jetstream://127.0.0.1:4222"
REDIS = "redis://127.0.0.1:6379/0"
REDIS_PUBSUB = "redis+pubsub://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672/"
MQTT = "mqtt://127.0.0.1:1883"

C = Capability
#: example -> (capabilities it needs, the URLs it runs on)
PLAN: dict[str, tuple[set[Capability], list[str]]] = {
    "events.py": ({C.DURABLE, C.ACK}, [MEMORY, JETSTREAM, REDIS]),
    "versioning.py": (set(), [MEMORY, NATS, REDIS]),
    "event_sourcing.py": ({C.REPLAY}, [MEMORY, JETSTREAM, REDIS]),
    "idempotent_consumer.py": ({C.ACK}, [MEMORY, JETSTREAM, REDIS, AMQP]),
    "order_notifications.py": ({C.QUEUE_GROUPS}, [MEMORY, NATS, REDIS]),
    "portable.py": (set(), [MEMORY, NATS, JETSTREAM, REDIS, REDIS_PUBSUB, AMQP, MQTT]),
}


def _extra_urls() -> list[str]:
    return [u for u in re.split(r"[\s;]+", os.environ.get("BROKERKIT_TEST_URLS", "")) if u]


def _cases() -> list[object]:
    cases = []
    for example, (_, urls) in PLAN.items():
        chosen = list(urls)
        if example == "portable.py":
            chosen += [u for u in _extra_urls() if u not in chosen]
        for url in chosen:
            cases.append(pytest.param(example, url, id=f"{example[:-3]}-{parse_url(url).scheme}"))
    return cases


def test_every_example_is_in_the_plan() -> None:
    on_disk = {p.name for p in EXAMPLES.glob("*.py")}
    assert on_disk == set(PLAN), "add new examples to PLAN (and remove deleted ones)"


@pytest.mark.parametrize(("example", "url"), _cases())
def test_example_runs_and_succeeds(example: str, url: str) -> None:
    scheme = parse_url(url).scheme
    if scheme == "mqtt" and importlib.util.find_spec("brokerkit_mqtt") is None:
        pytest.skip("the MQTT plugin is not installed: pip install -e examples/brokerkit-mqtt")
    needed, _ = PLAN[example]
    missing = needed - default_registry().spec_for(scheme).capabilities
    if missing:
        pytest.skip(f"{scheme}:// lacks {', '.join(sorted(missing))}, which {example} needs")
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / example)],
        env=dict(os.environ, BROKERKIT_URL=url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert re.search(r"^OK", result.stdout, re.M), output
    password = parse_url(url).password
    if password:
        assert f":{password}@" not in output, "the example printed the URL's password"
