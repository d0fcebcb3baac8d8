"""Redis plugins: ``redis://`` / ``rediss://`` (Streams) and ``redis+pubsub://`` /
``rediss+pubsub://`` (Pub/Sub), through redis-py's asyncio client.

URL: ``redis://[[user]:password@]host[:port][/db][?option=value...]``; ``rediss``
schemes use TLS (``tls_ca``, ``tls_cert``, ``tls_key``, ``tls_verify`` options). A
password alone (``redis://:secret@h``) authenticates the default user; ``user:secret``
uses an ACL user. A refused password raises :class:`brokerkit.AuthenticationError`
without the password in it.

Topic ``a.b`` maps to the stream key (Streams) or channel (Pub/Sub) ``PREFIX + "a.b"``,
with the ``prefix`` option (default ``bk:``). Streams also take ``prefetch`` (1 to
10000, default 100): one ``XREADGROUP`` reads up to ``max(prefetch, max_in_flight)``
entries ahead of the handlers. A larger value means fewer round trips; a smaller one
means one consumer holds fewer unacknowledged entries that the other members of its
group cannot take until they are handled (or handed back when it unsubscribes).
Streams acks are batched: ``ack()`` returns once the ``XACK`` is queued, and it is sent
within milliseconds, and always before ``unsubscribe()`` / ``disconnect()`` return.
Streams details are in :mod:`brokerkit.plugins.redis._streams`, Pub/Sub details in
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
    OptionSpec(
        "prefetch",
        as_int(1, 10_000),
        100,
        "entries one XREADGROUP reads ahead of the handlers (COUNT is max(prefetch, "
        "max_in_flight)); more: fewer round trips, less: more left to competing consumers",
    ),
    OptionSpec(
        "batch",
        as_int(1, 10_000),
        None,
        "deprecated: the former name of prefetch (when given, it takes prefetch's place)",
    ),
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
