"""Redis plugins: ``redis://`` / ``rediss://`` (Streams) and ``redis+pubsub://`` /
``rediss+pubsub://`` (Pub/Sub), through redis-py's asyncio client.

URL: ``redis://[[user]:password@]host[:port][/db][?option=value...]``; ``rediss``
schemes use TLS (``tls_ca``, ``tls_cert``, ``tls_key``, ``tls_verify`` options). A
password alone (``redis://:secret@h``) authenticates the default user; ``user:secret``
uses an ACL user. A refused password raises :class:`brokerkit.AuthenticationError`
without the password in it.

Topic ``a.b`` maps to the stream key (Streams) or channel (Pub/Sub) ``PREFIX + "a.b"``,
with the ``prefix`` option (default ``bk:``). Streams details are in
:mod:`brokerkit.plugins.redis._streams`, Pub/Sub details in
:mod:`brokerkit.plugins.redis._pubsub`.

redis-py is imported only when a broker is created or connects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from brokerkit.core.capabilities import Capability
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.options import OptionSpec, as_choice, as_float, as_int
from brokerkit.core.registry import SchemeSpec
from brokerkit.plugins.redis._common import COMMON_REDIS_OPTIONS, DEFAULT_PORT

if TYPE_CHECKING:
    from brokerkit.core.broker import Broker
    from brokerkit.core.url import BrokerURL

STREAMS_CAPABILITIES = frozenset(
    {
        Capability.PERSISTENT,
        Capability.QUEUE_GROUPS,
        Capability.ACK,
        Capability.DURABLE,
        Capability.REPLAY,
        Capability.DEAD_LETTER,
        Capability.ORDERING_PER_KEY,
        Capability.HEADERS,
    }
)
PUBSUB_CAPABILITIES = frozenset(
    {Capability.HEADERS, Capability.WILDCARDS, Capability.ORDERING_PER_KEY}
)

STREAMS_OPTIONS: tuple[OptionSpec, ...] = (
    *COMMON_REDIS_OPTIONS,
    OptionSpec("maxlen", as_int(0), 100_000, "entries kept per stream (XADD MAXLEN); 0: unbounded"),
    OptionSpec(
        "trim",
        as_choice("approximate", "exact"),
        "approximate",
        "MAXLEN trimming: 'approximate' (~, cheap, may keep a few more) or 'exact'",
    ),
    OptionSpec(
        "block_ms",
        as_int(1, 60_000),
        200,
        "milliseconds one XREADGROUP waits for new entries (bounds unsubscribe latency)",
    ),
    OptionSpec(
        "claim_idle",
        as_float(0.01),
        5.0,
        "seconds an entry of a vanished consumer stays pending before another claims it",
    ),
    OptionSpec("batch", as_int(1, 10_000), 10, "entries read per XREADGROUP"),
)


def _new_streams_broker(url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> Broker:
    from brokerkit.plugins.redis._streams import RedisStreamsBroker

    return RedisStreamsBroker(url, options, spec)


def _new_pubsub_broker(url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> Broker:
    from brokerkit.plugins.redis._pubsub import RedisPubSubBroker

    return RedisPubSubBroker(url, options, spec)


def _streams_spec(scheme: str, description: str) -> SchemeSpec:
    return SchemeSpec(
        scheme=scheme,
        factory=_new_streams_broker,
        capabilities=STREAMS_CAPABILITIES,
        description=description,
        options=STREAMS_OPTIONS,
        requires=("redis",),
        extra="redis",
        default_port=DEFAULT_PORT,
    )


def _pubsub_spec(scheme: str, description: str) -> SchemeSpec:
    return SchemeSpec(
        scheme=scheme,
        factory=_new_pubsub_broker,
        capabilities=PUBSUB_CAPABILITIES,
        description=description,
        options=COMMON_REDIS_OPTIONS,
        requires=("redis",),
        extra="redis",
        default_port=DEFAULT_PORT,
    )


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The Redis schemes: Streams and Pub/Sub, each plain and over TLS."""
    return [
        _streams_spec("redis", "Redis Streams: at least once, consumer groups, durable"),
        _streams_spec("rediss", "Redis Streams over TLS"),
        _pubsub_spec("redis+pubsub", "Redis Pub/Sub: at most once, wildcards"),
        _pubsub_spec("rediss+pubsub", "Redis Pub/Sub over TLS"),
    ]
