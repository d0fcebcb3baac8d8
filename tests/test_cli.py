"""The ``brokerkit`` command, run as a subprocess (``python -m brokerkit``) against
``memory://`` and the real brokers on this machine."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from brokerkit.core.registry import scheme_table

ROOT = Path(__file__).resolve().parent.parent
NATS = "nats://127.0.0.1:4222"
JETSTREAM = "nats+jetstream://127.0.0.1:4222"
REDIS = "redis://127.0.0.1:6379/0"
#: Brokers that carry messages between processes; durable ones also keep them.
REAL = [NATS, REDIS, JETSTREAM]
DURABLE = [REDIS, JETSTREAM]


def brokerkit(
    *args: str,
    input: bytes | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [sys.executable, "-m", "brokerkit", *args],
        input=input,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return subprocess.CompletedProcess(
        completed.args,
        completed.returncode,
        completed.stdout.decode("utf-8", "replace"),
        completed.stderr.decode("utf-8", "replace"),
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit status 1 and exactly one error line, the last one; any other stderr line is
    one of brokerkit's own notices (no traceback, no client-library noise)."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("brokerkit: error: "), result.stderr
    assert all(line.startswith("brokerkit: ") for line in lines), result.stderr
    assert sum(line.startswith("brokerkit: error:") for line in lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


class Subscriber:
    """``brokerkit subscribe`` in the background, started once it is subscribed."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "brokerkit", "subscribe", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.process.stderr is not None
        line = self.process.stderr.readline().decode()  # bounded by the test timeout
        assert "subscribed to" in line, line + self.process.stderr.read().decode()

    def finish(self, timeout: float = 30) -> tuple[int, bytes, str]:
        try:
            out, err = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        return self.process.returncode, out, err.decode()


def unique_topic(name: str) -> str:
    return f"cli.{name}.{uuid.uuid4().hex[:10]}"


# --- help and usage --------------------------------------------------------------------


@pytest.mark.parametrize("command", ["", "plugins", "publish", "subscribe", "check", "demo"])
def test_every_command_has_help(command: str) -> None:
    result = brokerkit(*([command] if command else []), "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: brokerkit"), result.stdout
    if not command:
        for name in ("plugins", "publish", "subscribe", "check", "demo"):
            assert name in result.stdout


def test_usage_mistakes_exit_2_without_traceback() -> None:
    for args in (
        [],
        ["nonsense"],
        ["publish", "memory://"],
        ["subscribe", "memory://", "t", "--count", "x"],
    ):
        result = brokerkit(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "usage:" in result.stderr and "Traceback" not in result.stderr


# --- plugins ---------------------------------------------------------------------------


def test_plugins_lists_every_installed_scheme_with_version_and_capabilities() -> None:
    result = brokerkit("plugins")
    assert result.returncode == 0, result.stderr
    for scheme, spec in scheme_table().items():
        block = result.stdout.split(f"{scheme}://\n", 1)[1].split("\n\n")[0]
        assert f"plugin:       {spec.plugin} " in block
        caps = re.search(r"capabilities: (.*)", block)
        assert caps is not None
        listed = set(caps.group(1).split(", ")) - {"none"}
        assert listed == {c.value for c in spec.capabilities}, scheme
    assert "plugin:       memory 0.1.0" in result.stdout
    assert "client:       installed (nats)" in result.stdout


@pytest.fixture(scope="module")
def fake_plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment with two extra plugins installed the way pip installs them:
    ``needsclient://`` whose client library is missing, and ``broken://``, an in-memory
    broker that loses headers while declaring them."""
    path = tmp_path_factory.mktemp("plugins")
    (path / "brokerkit_fake_plugins.py").write_text(
        textwrap.dedent(
            """
            from brokerkit import Capability, Message, SchemeSpec, hookimpl
            from brokerkit.core.capabilities import ALL_CAPABILITIES
            from brokerkit.plugins.memory import MEMORY, MemoryBroker

            class BrokenBroker(MemoryBroker):
                async def _publish(self, topic, message):
                    stripped = Message(message.body, id=message.id, key=message.key,
                                       timestamp=message.timestamp)
                    await super()._publish(topic, stripped)

            @hookimpl
            def brokerkit_schemes():
                return [
                    SchemeSpec("needsclient", MemoryBroker, frozenset({Capability.ACK}),
                               requires=("no_such_client_lib_xyz",), extra="needsclient"),
                    SchemeSpec("broken", BrokenBroker, ALL_CAPABILITIES,
                               options=MEMORY.options, needs_host=False),
                ]
            """
        )
    )
    info = path / "brokerkit_fake_plugins-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: brokerkit-fake-plugins\nVersion: 0.3\n"
    )
    (info / "entry_points.txt").write_text("[brokerkit]\nfakes = brokerkit_fake_plugins\n")
    return dict(os.environ, PYTHONPATH=str(path))


def test_plugins_shows_a_missing_client_library_and_its_install_hint(
    fake_plugins: dict[str, str],
) -> None:
    result = brokerkit("plugins", env=fake_plugins)
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("needsclient://\n", 1)[1].split("\n\n")[0]
    assert "plugin:       fakes 0.3" in block
    assert "MISSING (no_such_client_lib_xyz): pip install 'brokerkit[needsclient]'" in block
    failed = brokerkit("publish", "needsclient://h", "t", "x", env=fake_plugins)
    assert_one_line_error(failed, "no_such_client_lib_xyz", "brokerkit[needsclient]")


def test_plugins_markdown_is_a_capability_table() -> None:
    result = brokerkit("plugins", "--markdown")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("| scheme | persistent | queue_groups | ack |")
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    assert set(rows) == {f"`{s}://`" for s in scheme_table()}
    assert rows["`memory://`"].count("✓") == 9
    nats_row = rows["`nats://`"].split("|")[2:-1]
    assert [cell.strip() for cell in nats_row][2] == "\u2013"  # a dash: no ack on NATS core


def test_readme_embeds_the_current_capability_table() -> None:
    table = brokerkit("plugins", "--markdown", "--builtin").stdout.strip()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(
        r"<!-- capabilities:start -->\n(.*?)\n?<!-- capabilities:end -->", readme, re.S
    )
    assert found, "README.md lacks the <!-- capabilities:start/end --> markers"
    assert found.group(1).strip() == table, (
        "README.md's capability table is stale; paste the output of "
        "'brokerkit plugins --markdown --builtin' between the markers"
    )


# --- publish and subscribe: errors -----------------------------------------------------


def test_user_mistakes_are_one_line_errors() -> None:
    assert_one_line_error(brokerkit("publish", "nosuch://h", "t", "x"), "nosuch://", "memory://")
    assert_one_line_error(brokerkit("publish", "memory", "t", "x"), "://")
    assert_one_line_error(brokerkit("publish", "memory://", "a..b", "x"), "a..b")
    assert_one_line_error(brokerkit("publish", "memory://", "a.*", "x"), "wildcard")
    assert_one_line_error(brokerkit("publish", "memory://", "t", "x", "-H", "novalue"), "key=value")
    assert_one_line_error(brokerkit("publish", "memory://?bogus=1", "t", "x"), "bogus")
    assert_one_line_error(brokerkit("subscribe", NATS, "t", "--durable", "d"), "durable", "nats://")
    assert_one_line_error(brokerkit("subscribe", "memory://", "t", "--count", "-1"), "--count")


def test_passwords_are_never_printed() -> None:
    secret = "pw-" + uuid.uuid4().hex
    nats = f"nats://user:{secret}@127.0.0.1:1?connect_timeout=1"
    redis = f"redis://user:{secret}@127.0.0.1:1/0?connect_timeout=1"
    unknown = f"nosuch://user:{secret}@h"
    commands = [
        ["publish", nats, "t", "x"],
        ["check", nats],
        ["subscribe", redis, "t"],
        ["publish", unknown, "t", "x"],
        ["subscribe", unknown, "t"],
        ["check", unknown],
        ["demo", unknown],
    ]
    for command in commands:
        result = brokerkit(*command)
        assert_one_line_error(result)
        assert secret not in result.stdout + result.stderr


# --- publish and subscribe on memory:// (one process) ----------------------------------


def test_memory_publish_and_subscribe_in_one_process_succeed() -> None:
    published = brokerkit("publish", "memory://", "a.b", "hello", "-H", "k=v", "--key", "x")
    assert published.returncode == 0, published.stderr
    assert "published 1 message(s) to 'a.b'" in published.stderr
    lines = brokerkit("publish", "memory://", "a.b", "--lines", input=b"1\n2\n3\n")
    assert lines.returncode == 0 and "published 3 message(s)" in lines.stderr
    nothing = brokerkit("subscribe", "memory://", "a.b", "--count", "0")
    assert nothing.returncode == 0, nothing.stderr


def test_subscribe_fails_when_too_few_messages_arrive_in_time() -> None:
    result = brokerkit("subscribe", "memory://", "a.b", "--count", "1", "--timeout", "0.3")
    assert_one_line_error(result, "received 0 of 1 message(s) within 0.3s")


# --- publish and subscribe across processes on real brokers ----------------------------


@pytest.mark.parametrize("url", REAL)
def test_publish_then_subscribe_json_across_processes(url: str) -> None:
    topic = unique_topic("json")
    sub = Subscriber(url, topic, "--json", "--count", "4", "--timeout", "20")
    one = brokerkit(
        "publish", url, topic, "héllo", "-H", "trace=abc", "-H", "lang=fr", "--key", "k1"
    )
    assert one.returncode == 0, one.stderr
    lines = brokerkit("publish", url, topic, "--lines", "-q", input=b"line 1\nline 2\r\n")
    assert lines.returncode == 0 and lines.stderr == "", lines.stderr
    binary = brokerkit("publish", url, topic, "-", input=b"\xff\x00\x80")
    assert binary.returncode == 0, binary.stderr
    status, out, err = sub.finish()
    assert status == 0, err
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["body"] for r in records[:3]] == ["héllo", "line 1", "line 2"]
    first = records[0]
    assert first["headers"] == {"trace": "abc", "lang": "fr"}
    assert first["key"] == "k1" and first["attempt"] == 1 and first["topic"] == topic
    assert first["body_base64"] is False and len(first["id"]) > 0
    assert records[3]["body_base64"] is True
    assert base64.b64decode(records[3]["body"]) == b"\xff\x00\x80"


@pytest.mark.parametrize("url", [NATS, REDIS])
def test_subscribe_prints_bodies_and_stops_after_count(url: str) -> None:
    topic = unique_topic("plain")
    sub = Subscriber(url, topic, "--count", "2", "--timeout", "20")
    assert brokerkit("publish", url, topic, "--lines", input=b"a\nb\nc\n").returncode == 0
    status, out, err = sub.finish()
    assert status == 0, err
    assert out == b"a\nb\n"


def test_queue_members_share_the_messages() -> None:
    topic = unique_topic("queue")
    members = [Subscriber(NATS, topic, "--queue", "workers", "--timeout", "3") for _ in range(2)]
    bodies = [str(n).encode() for n in range(20)]
    assert (
        brokerkit("publish", NATS, topic, "--lines", input=b"\n".join(bodies) + b"\n").returncode
        == 0
    )
    received: list[bytes] = []
    for member in members:
        status, out, err = member.finish()
        assert status == 0, err
        received.extend(out.splitlines())
    assert sorted(received) == sorted(bodies)  # each message to exactly one member


@pytest.mark.parametrize("url", DURABLE)
def test_durable_subscriber_gets_what_was_published_while_away(url: str) -> None:
    topic = unique_topic("durable")
    durable = f"cli-{uuid.uuid4().hex[:8]}"
    first = brokerkit("subscribe", url, topic, "--durable", durable, "--count", "0")
    assert first.returncode == 0, first.stderr
    assert brokerkit("publish", url, topic, "--lines", input=b"while\naway\n").returncode == 0
    again = brokerkit(
        "subscribe", url, topic, "--durable", durable, "--count", "2", "--timeout", "20"
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout == "while\naway\n"


@pytest.mark.parametrize("url", DURABLE)
def test_from_earliest_replays_retained_messages(url: str) -> None:
    topic = unique_topic("earliest")
    assert brokerkit("publish", url, topic, "--lines", input=b"old 1\nold 2\n").returncode == 0
    result = brokerkit(
        "subscribe", url, topic, "--from-earliest", "--count", "2", "--timeout", "20"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "old 1\nold 2\n"


# --- demo ------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", NATS, REDIS])
def test_demo_notifies_every_order_exactly_once(url: str) -> None:
    result = brokerkit("demo", *([url] if url else []))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK: all 6 orders were notified exactly once" in result.stdout
    assert len(re.findall(r"\[notifier-\d\] emailed", result.stdout)) == 6


def test_demo_on_a_broker_without_queue_groups_is_a_clear_error() -> None:
    result = brokerkit("demo", "redis+pubsub://127.0.0.1:6379/0")
    assert_one_line_error(result, "queue_groups", "redis+pubsub://")


# --- check -----------------------------------------------------------------------------


def _table(stdout: str) -> dict[str, tuple[str, int, int, int]]:
    rows = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"(\w+)\s+(-|yes|no)\s+(\d+)\s+(\d+)\s+(\d+)", line.strip())
        if match:
            name, declared, *counts = match.groups()
            rows[name] = (declared, *map(int, counts))
    return rows  # type: ignore[return-value]


def test_check_passes_a_subset_of_the_contract_on_memory() -> None:
    result = brokerkit("check", "memory://", "-k", "round_trip or queue")
    assert result.returncode == 0, result.stdout + result.stderr
    table = _table(result.stdout)
    assert table["core"][1] > 0 and table["core"][2] == 0
    assert table["queue_groups"][0] == "yes" and table["queue_groups"][1] > 0
    assert "PASSED: memory://" in result.stdout


def test_check_on_a_real_broker_reports_skipped_capabilities() -> None:
    result = brokerkit("check", REDIS, "-k", "round_trip or wildcard", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    table = _table(result.stdout)
    assert table["core"][1] > 0 and table["core"][2] == 0
    declared, passed, failed, skipped = table["wildcards"]
    assert (declared, passed, failed) == ("no", 0, 0)
    assert skipped > 0, "tests needing wildcards must be skipped on redis://"


def test_check_fails_for_a_plugin_that_breaks_its_promises(fake_plugins: dict[str, str]) -> None:
    result = brokerkit("check", "broken://", "-k", "headers", env=fake_plugins)
    assert result.returncode == 1, result.stdout + result.stderr
    table = _table(result.stdout)
    assert table["headers"][2] > 0, result.stdout
    assert "FAILED: broken://" in result.stdout
    assert "test_headers_round_trip" in result.stdout  # the failing test is named


def test_check_refuses_unknown_or_unreachable_brokers_in_one_line() -> None:
    assert_one_line_error(brokerkit("check", "nosuch://h"), "nosuch://")
    assert_one_line_error(brokerkit("check", "nats://127.0.0.1:1?connect_timeout=1"), "127.0.0.1:1")
