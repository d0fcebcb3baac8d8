"""``kafka://host:9092[,host2:9092][?option=value&...]``: Apache Kafka through aiokafka.

Delivery is at least once, ordered per key. How brokerkit maps onto Kafka:

Publishing
    ``publish`` returns once the broker acknowledged the record (``acks=all`` by default;
    ``acks=1`` or ``acks=0`` trade safety for speed). The message ``key`` is the record key,
    so the default (murmur2) partitioner puts one key on one partition and its messages
    stay in order. ``publish_many`` hands every record to the producer before awaiting
    any acknowledgement, so records are batched like the raw client's; its keyless
    messages all go to one partition chosen at random per call (sticky partitioning, as
    the Java client's default partitioner does since KIP-480), so the producer fills one
    batch instead of one small batch per partition, while keyed messages still go to
    their key's partition. Keyless messages of one call therefore stay in order; over
    many calls they spread across the partitions. A single ``publish`` of a keyless
    message lets the producer pick a random partition. ``batch_bytes`` (default 64 KiB,
    four times the Java client's ``batch.size``) bounds one partition's batch: aiokafka
    has one request per partition in flight and collects the next batch meanwhile, so
    the batch size bounds ``publish_many`` throughput per round trip (brokerkit's two
    envelope headers make each record about 80 bytes larger than a bare one). A larger
    batch costs memory only while records wait; it adds no latency (``linger_ms``
    decides that). User headers travel
    as record headers (values UTF-8); the message id and the exact timestamp travel in
    the reserved headers ``brokerkit:id`` and ``brokerkit:ts`` (a ``:`` cannot occur in a
    brokerkit header name, so they never clash) and are removed on receipt; the record
    timestamp is the message timestamp in milliseconds.

Topics
    With ``create_topics=true`` (default) a topic is created on first use (publish or
    subscribe) with ``partitions`` partitions and ``replication_factor`` replicas through
    the admin client; an existing topic is used as it is. With ``create_topics=false`` a
    missing topic is an error (:class:`PublishError` / :class:`SubscribeError`) naming it.

Subscriptions
    * no ``queue``/``durable``: every message, *without* a consumer group. The plugin
      assigns itself every partition of the topic and starts at the end (``start="new"``)
      or the beginning (``start="earliest"``); the start offsets are resolved before
      ``subscribe`` returns. Nothing is committed; a nacked message is redelivered to the
      same subscription.
    * ``queue=NAME``: the consumer group ``NAME`` (each message to one member).
    * ``durable=NAME``: the consumer group ``NAME``, whose committed offsets survive
      unsubscribe, disconnect and crashes. With both ``queue`` and ``durable``, the group
      is the durable name (members sharing it compete); the queue name is then a label.
    * Group subscriptions return from ``subscribe`` once the group assigned this member
      its partitions and their positions are fixed. A partition that has no committed
      offset starts at the end as of the ``subscribe`` call (``start="new"``) or at the
      beginning (``start="earliest"``), and that position is committed at once, so a
      later member or a restart continues from it (``start`` counts only the first time
      a group sees a partition).
    * ``group_prefix`` is prepended to every group name (namespacing on shared clusters).
    * Wildcards: patterns become an anchored regular expression. A plain subscription
      looks for new matching topics every ``pattern_refresh_ms`` and reads new ones from
      their beginning; a group subscription uses Kafka's pattern subscription with the
      same metadata refresh period (a new topic then costs a rebalance).

Acknowledgements (at least once)
    Offsets are committed only up to the first message not yet acked in each partition,
    never past it, every ``commit_interval_ms`` and when partitions are revoked or the
    subscription closes. A nack (or a failing handler) redelivers that message to the
    same subscription, before later messages, without pausing other partitions; the
    ``attempt`` number is counted in this process per partition and offset, so a message
    redelivered after a restart or to another member starts again at attempt 1. The
    core applies ``max_deliver`` and ``dead_letter``. Unacked messages of a subscription
    that closes or crashes are redelivered to the group's next member.

Missing offsets
    A fetch that returns records after an offset it skipped is not trusted at once: the
    plugin re-reads from the missing offset for up to ``gap_wait_ms`` (default 1 s)
    before it moves past it. Tansu 0.6 assigns an offset before it stores the record,
    so with concurrent producers a fetch can briefly see offset n+1 without n; taking
    it would lose n. On a real Kafka cluster offsets only go missing through compaction
    or transaction markers, where the wait only delays the next record; set
    ``gap_wait_ms=0`` for compacted or transactional topics there.

Group timing
    ``session_timeout_ms``, ``heartbeat_interval_ms`` and ``rebalance_timeout_ms`` tune
    how fast members join and leave. The defaults suit a real Kafka cluster (whose
    minimum session timeout is usually 6 s). Tansu 0.6 (the Kafka-compatible broker the
    tests use) completes a join after about half the session timeout, and when several
    members leave a group at once it can keep a departed leader that it evicts only with
    short sessions; use ``session_timeout_ms=1000&heartbeat_interval_ms=100&
    rebalance_timeout_ms=1000`` there, and ``fetch_max_wait_ms=10`` (a fetch on an idle
    Tansu topic otherwise waits about half of ``fetch_max_wait_ms``).

Security
    ``kafka://user:password@host:9093?sasl_mechanism=SCRAM-SHA-256`` authenticates with
    SASL (``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; ``PLAIN`` if a user name is
    given without a mechanism). ``security_protocol`` is ``PLAINTEXT``, ``SSL``,
    ``SASL_PLAINTEXT`` or ``SASL_SSL``; left out, it follows from what the URL gives
    (credentials → SASL, ``ssl_*`` options → SSL). TLS takes ``ssl_ca`` (CA bundle file;
    else the system CAs), ``ssl_cert`` and ``ssl_key`` (client certificate), ``ssl_key_password``
    and ``ssl_check_hostname`` (default true). Inconsistent combinations are refused when
    the broker is created. The password never appears in errors or reprs; a rejected
    login raises :class:`AuthenticationError`.

The client library is imported only when a broker connects.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
import ssl
from collections import deque
from typing import TYPE_CHECKING, Any

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.capabilities import Capability
from brokerkit.core.errors import (
    AuthenticationError,
    BrokerConnectionError,
    BrokerkitError,
    InvalidOptionError,
    PublishError,
    SubscribeError,
)
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import (
    OptionSpec,
    SubscribeOptions,
    as_bool,
    as_choice,
    as_float,
    as_int,
    as_str,
)
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.topics import is_pattern, pattern_to_regex
from brokerkit.core.url import REDACTED, BrokerURL, scrub

if TYPE_CHECKING:
    from collections.abc import Iterable

log = logging.getLogger("brokerkit.kafka")

#: Reserved record headers carrying brokerkit's message id and exact timestamp.
ID_HEADER = "brokerkit:id"
TIMESTAMP_HEADER = "brokerkit:ts"
_RESERVED = frozenset({ID_HEADER, TIMESTAMP_HEADER})
_HEADER_NAME = re.compile(r"[!#-9;-~]+")  # brokerkit's header-name grammar
_INTERNAL_TOPICS = frozenset({"__consumer_offsets", "__transaction_state"})
_TOPIC_EXISTS = 36  # Kafka error code TOPIC_ALREADY_EXISTS
_MAX_TIMESTAMP_MS = 2**63 - 1

_TP = Any  # aiokafka.TopicPartition (aiokafka ships no type information)


def _as_optional_str(value: object) -> object:
    return None if value is None else as_str(value)


def _as_acks(value: object) -> object:
    text = str(value).strip().lower()
    if text in ("all", "-1"):
        return "all"
    if text in ("0", "1"):
        return int(text)
    raise ValueError("expected 'all', '1' or '0'")


KAFKA_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("client_id", as_str, "brokerkit", "client id shown in the broker's logs"),
    OptionSpec("acks", _as_acks, "all", "producer acks: all (default), 1 or 0"),
    OptionSpec("linger_ms", as_int(0), 0, "producer linger before sending a batch"),
    OptionSpec(
        "batch_bytes",
        as_int(1024, 64 * 1024 * 1024),
        64 * 1024,
        "largest producer batch per partition (records collected while one is in flight)",
    ),
    OptionSpec(
        "max_message_bytes",
        as_int(1024),
        4 * 1024 * 1024,
        "largest record the producer sends (and created topics accept)",
    ),
    OptionSpec("create_topics", as_bool, True, "create missing topics on first use"),
    OptionSpec("partitions", as_int(1), 3, "partition count of topics the plugin creates"),
    OptionSpec("replication_factor", as_int(1), 1, "replicas of topics the plugin creates"),
    OptionSpec("group_prefix", as_str, "", "prefix of every consumer group name"),
    OptionSpec("fetch_max_wait_ms", as_int(0), 500, "longest a fetch waits on the broker"),
    OptionSpec("max_poll_records", as_int(1), 500, "records taken from one fetch at most"),
    OptionSpec("session_timeout_ms", as_int(1), 10_000, "consumer group session timeout"),
    OptionSpec("heartbeat_interval_ms", as_int(1), 1_000, "consumer group heartbeat interval"),
    OptionSpec("rebalance_timeout_ms", as_int(1), 5_000, "time members get to rejoin"),
    OptionSpec("commit_interval_ms", as_int(0), 100, "how often acked offsets are committed"),
    OptionSpec(
        "pattern_refresh_ms", as_int(10), 1_000, "how often wildcard subscriptions look for topics"
    ),
    OptionSpec(
        "gap_wait_ms",
        as_int(0),
        1_000,
        "how long a missing offset is re-read before it is skipped (0: skip at once)",
    ),
    OptionSpec(
        "subscribe_timeout", as_float(0.001), 60.0, "seconds subscribe waits for a group join"
    ),
    OptionSpec("request_timeout_ms", as_int(1), 30_000, "timeout of one broker request"),
    OptionSpec(
        "security_protocol",
        lambda v: (
            None
            if v is None
            else as_choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")(str(v).upper())
        ),
        None,
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (default: from the URL)",
    ),
    OptionSpec(
        "sasl_mechanism",
        lambda v: (
            None
            if v is None
            else as_choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")(str(v).upper())
        ),
        None,
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (user and password from the URL)",
    ),
    OptionSpec("ssl_ca", _as_optional_str, None, "CA bundle file for TLS (default: system CAs)"),
    OptionSpec("ssl_cert", _as_optional_str, None, "client certificate file for TLS"),
    OptionSpec("ssl_key", _as_optional_str, None, "client private key file for TLS"),
    OptionSpec("ssl_key_password", _as_optional_str, None, "password of ssl_key", secret=True),
    OptionSpec("ssl_check_hostname", as_bool, True, "verify the broker's TLS host name"),
)


def _security(url: BrokerURL, options: dict[str, object]) -> tuple[str, str | None]:
    """Check the security options; return (security_protocol, sasl_mechanism)."""
    protocol = options["security_protocol"]
    mechanism = options["sasl_mechanism"]
    has_user = url.username is not None or url.password is not None
    tls_files = [n for n in ("ssl_ca", "ssl_cert", "ssl_key") if options[n] is not None]
    if protocol is None:
        sasl = has_user or mechanism is not None
        tls = bool(tls_files)
        protocol = (
            ("SASL_SSL" if tls else "SASL_PLAINTEXT") if sasl else ("SSL" if tls else "PLAINTEXT")
        )
    assert isinstance(protocol, str)
    if protocol.startswith("SASL"):
        if not url.username or url.password is None:
            raise InvalidOptionError(
                f"security_protocol={protocol} needs a user name and password in the URL: "
                "kafka://user:password@host:9092"
            )
        mechanism = mechanism or "PLAIN"
    elif has_user or mechanism is not None:
        raise InvalidOptionError(
            f"the URL gives credentials or sasl_mechanism, but security_protocol={protocol} "
            "does not authenticate; use SASL_PLAINTEXT or SASL_SSL"
        )
    if not protocol.endswith("SSL") and (tls_files or options["ssl_key_password"] is not None):
        raise InvalidOptionError(
            f"{', '.join(tls_files) or 'ssl_key_password'} need(s) security_protocol SSL or "
            f"SASL_SSL, not {protocol}"
        )
    if options["ssl_key"] is not None and options["ssl_cert"] is None:
        raise InvalidOptionError("ssl_key needs ssl_cert (the client certificate)")
    if options["ssl_key_password"] is not None and options["ssl_key"] is None:
        raise InvalidOptionError("ssl_key_password needs ssl_key")
    if url.path:
        raise InvalidOptionError(
            f"{url.redacted()}: kafka:// URLs take no path; give options as ?name=value"
        )
    return protocol, mechanism if isinstance(mechanism, str) else None


def _record_headers(message: Message) -> list[tuple[str, bytes]]:
    """The record headers of ``message``: its user headers (values UTF-8), then
    ``brokerkit:id`` and ``brokerkit:ts`` (always last: the receive path finds them there)."""
    own = [
        (ID_HEADER, message.id.encode()),
        (TIMESTAMP_HEADER, repr(message.timestamp).encode()),
    ]
    if not message.headers:
        return own
    headers = [(name, value.encode()) for name, value in message.headers.items()]
    headers += own
    return headers


def _timestamp_ms(timestamp: float) -> int | None:
    if not math.isfinite(timestamp):
        return None
    ms = int(timestamp * 1000)
    return ms if 0 <= ms <= _MAX_TIMESTAMP_MS else None


def message_from_record(record: Any) -> Message:
    """Rebuild a brokerkit :class:`Message` from an aiokafka ``ConsumerRecord``.

    A record brokerkit published (its last two headers are ``brokerkit:id`` and
    ``brokerkit:ts``, as the plugin writes them) is decoded without re-validation
    (:meth:`Message.trusted`: its headers were validated when it was published).
    Records from other producers work too: without ``brokerkit:id`` the id is
    ``topic:partition:offset``, without ``brokerkit:ts`` the record timestamp is used,
    and headers brokerkit cannot represent (invalid names, non-UTF-8 or multi-line
    values) are dropped. Pure.
    """
    raw_headers = record.headers
    if (
        raw_headers
        and len(raw_headers) >= 2
        and raw_headers[-1][0] == TIMESTAMP_HEADER
        and raw_headers[-2][0] == ID_HEADER
    ):
        trusted = _trusted_from_record(record, raw_headers)
        if trusted is not None:
            return trusted
    return _foreign_message(record)


def _trusted_from_record(record: Any, raw_headers: Any) -> Message | None:
    """The message of a record carrying brokerkit's envelope, or None if the envelope
    is damaged (then the record is decoded as a foreign one)."""
    raw_id = raw_headers[-2][1]
    raw_ts = raw_headers[-1][1]
    if not raw_id or raw_ts is None:
        return None
    try:
        timestamp = float(raw_ts)
        message_id = raw_id.decode()
    except ValueError:  # also UnicodeDecodeError
        return None
    headers: dict[str, str] = {}
    if len(raw_headers) > 2:
        for name, value in raw_headers[:-2]:
            headers[name] = value.decode("utf-8", "replace") if value else ""
    key = record.key
    value = record.value
    return Message.trusted(
        value if value is not None else b"",
        headers,
        message_id,
        key.decode("utf-8", "replace") if key else None,
        timestamp,
    )


def _foreign_message(record: Any) -> Message:
    headers: dict[str, str] = {}
    message_id: str | None = None
    timestamp: float | None = None
    for name, raw in record.headers or ():
        value = bytes(raw or b"").decode("utf-8", "replace")
        if name == ID_HEADER:
            message_id = value if value and value.isprintable() else None
        elif name == TIMESTAMP_HEADER:
            try:
                timestamp = float(value)
            except ValueError:
                timestamp = None
        elif (
            isinstance(name, str)
            and _HEADER_NAME.fullmatch(name)
            and "\r" not in value
            and "\n" not in value
            and "\x00" not in value
        ):
            headers[name] = value
    if message_id is None:
        message_id = f"{record.topic}:{record.partition}:{record.offset}"
    if timestamp is None:
        timestamp = record.timestamp / 1000 if record.timestamp is not None else None
    key = bytes(record.key).decode("utf-8", "replace") if record.key else None
    return Message(
        record.value if record.value is not None else b"",
        headers,
        id=message_id,
        key=key,
        timestamp=timestamp,
    )


def _is_auth_error(exc: BaseException) -> bool:
    from aiokafka import errors

    auth_types: tuple[type[BaseException], ...] = (
        errors.SaslAuthenticationFailed,
        errors.AuthenticationFailedError,
        errors.AuthenticationMethodNotSupported,
        errors.UnsupportedSaslMechanismError,
        errors.IllegalSaslStateError,
    )
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, auth_types):
            return True
        current = current.__cause__ or current.__context__
    return False


class _PartitionState:
    """What one subscription knows about one assigned partition.

    ``pending`` maps offsets handed out but not yet acked to their current delivery;
    ``next_offset`` is the offset after the last record handed out. The commit point is
    the lowest pending offset, else ``next_offset``: never past an unacked message.
    ``live`` is true while the subscription owns the partition through this state (a
    revoked partition's state is dead for good; a reassignment gets a new one), so the
    hot path checks ownership without a dictionary lookup.
    """

    __slots__ = ("committed", "gap_since", "live", "next_offset", "pending")

    def __init__(self, position: int, committed: int) -> None:
        self.next_offset = position
        self.committed = committed
        self.live = True
        self.pending: dict[int, KafkaDelivery] = {}
        #: When records after a missing ``next_offset`` were first seen (loop time).
        self.gap_since: float | None = None

    def commit_point(self) -> int:
        return min(self.pending) if self.pending else self.next_offset


class KafkaDelivery(Delivery):
    """A delivery of one Kafka record; ack and nack are local bookkeeping.

    Acking lets the subscription commit past the record (asynchronously, in order);
    nacking with ``requeue`` queues the record for redelivery to the same subscription
    with ``attempt`` + 1. Settling a delivery of a partition this subscription no longer
    owns does nothing (the partition's new owner redelivers it).
    """

    __slots__ = ("_offset", "_owner", "_partition", "_record", "_state")

    def __init__(
        self,
        owner: KafkaSubscription,
        partition: _TP,
        state: _PartitionState,
        record: Any,
        attempt: int,
    ) -> None:
        super().__init__(record.topic, message_from_record(record), attempt)
        self._owner = owner
        self._partition = partition
        self._state = state
        self._record = record
        self._offset: int = record.offset

    @property
    def partition(self) -> int:
        """The Kafka partition the record was read from."""
        return int(self._record.partition)

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self._offset

    async def _ack(self) -> None:
        self._owner._settle(self, redeliver=False)

    async def _nack(self, requeue: bool) -> None:
        self._owner._settle(self, redeliver=requeue)


class KafkaSubscription(Subscription):
    """A subscription read by its own aiokafka consumer; see the module docstring.

    ``group`` is the consumer group name, or ``None`` for a plain subscription that
    reads by manual assignment. Everything runs in the broker's event loop.
    """

    def __init__(
        self,
        broker: KafkaBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self.kafka = broker
        name = options.durable or options.queue
        self.group: str | None = None if name is None else broker.group_prefix + name
        self.pattern = is_pattern(topic)
        self._regex = re.compile(pattern_to_regex(topic)) if self.pattern else None
        self._consumer: Any = None
        self._partitions: dict[_TP, _PartitionState] = {}
        self._retry: deque[KafkaDelivery] = deque()
        self._attempts: dict[tuple[_TP, int], int] = {}
        self._start_offsets: dict[_TP, int] = {}
        self._assigned = asyncio.Event()
        self._commit_wanted = asyncio.Event()
        self._settled = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self._commit_task: asyncio.Task[None] | None = None
        self._next_refresh = 0.0
        self._stopped = False

    # --- starting --------------------------------------------------------------------

    async def _start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        broker = self.kafka
        opts = broker.options
        if not self.pattern:
            await broker.ensure_topic(self.topic, SubscribeError)
        refresh = int(opts["pattern_refresh_ms"])  # type: ignore[call-overload]
        self._consumer = AIOKafkaConsumer(
            **broker.client_kwargs(),
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=opts["fetch_max_wait_ms"],
            max_partition_fetch_bytes=max(
                int(opts["max_message_bytes"]) + 65536,  # type: ignore[call-overload]
                1024 * 1024,
            ),
            session_timeout_ms=opts["session_timeout_ms"],
            heartbeat_interval_ms=opts["heartbeat_interval_ms"],
            rebalance_timeout_ms=opts["rebalance_timeout_ms"],
            max_poll_interval_ms=max(300_000, int(opts["session_timeout_ms"])),  # type: ignore[call-overload]
            metadata_max_age_ms=refresh if self.pattern else 300_000,
        )
        await self._consumer.start()
        if self.group is None:
            await self._assign_plain(initial=True)
        else:
            await self._join_group()
            self._commit_task = asyncio.create_task(self._committer())
        self._loop_task = asyncio.create_task(self._consume())

    def _matching_topics(self, topics: Iterable[str]) -> list[str]:
        assert self._regex is not None
        return sorted(t for t in topics if t not in _INTERNAL_TOPICS and self._regex.match(t))

    async def _topic_partitions(self) -> list[_TP]:
        """The partitions of the subscribed topic, or of every topic the pattern matches
        (from fresh cluster metadata)."""
        from aiokafka import TopicPartition

        # aiokafka's public topics() returns names only; its cluster snapshot also holds
        # the partitions of topics created since the consumer started.
        cluster = await self._consumer._client.fetch_all_metadata()
        topics = self._matching_topics(cluster.topics()) if self.pattern else [self.topic]
        result: list[_TP] = []
        for name in topics:
            numbers = cluster.partitions_for_topic(name)
            if numbers:
                result.extend(TopicPartition(name, n) for n in sorted(numbers))
        return result

    async def _assign_plain(self, *, initial: bool) -> None:
        """Assign every partition of the topic(s); new ones start as ``start`` says
        (initially) or at their beginning (topics that appeared later)."""
        consumer = self._consumer
        loop = asyncio.get_running_loop()
        refresh = int(self.kafka.options["pattern_refresh_ms"]) / 1000  # type: ignore[call-overload]
        self._next_refresh = loop.time() + refresh
        tps = await self._topic_partitions()
        new = [tp for tp in tps if tp not in self._partitions]
        if not new:
            if initial and not self.pattern:
                raise SubscribeError(
                    f"subscribe to {self.topic!r} on {self.kafka.url.redacted()}: the topic "
                    "has no partitions in the cluster metadata"
                )
            return
        if initial and self.options.start == "new":
            offsets = await consumer.end_offsets(new)
        else:
            offsets = await consumer.beginning_offsets(new)
        # assign() replaces the assignment and forgets positions: restore ours.
        consumer.assign([*self._partitions, *new])
        for tp, state in self._partitions.items():
            consumer.seek(tp, state.next_offset)
        for tp in new:
            offset = int(offsets[tp])
            consumer.seek(tp, offset)
            self._partitions[tp] = _PartitionState(offset, offset)

    async def _join_group(self) -> None:
        from aiokafka import ConsumerRebalanceListener

        subscription = self

        class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
            async def on_partitions_revoked(self, revoked: Any) -> None:
                await subscription._on_revoked(set(revoked))

            async def on_partitions_assigned(self, assigned: Any) -> None:
                await subscription._on_assigned(set(assigned))

        consumer = self._consumer
        tps = await self._topic_partitions()
        if self.options.start == "new" and tps:
            self._start_offsets = {
                tp: int(o) for tp, o in (await consumer.end_offsets(tps)).items()
            }
        if self._regex is not None:
            consumer.subscribe(pattern=self._regex.pattern, listener=Listener())
        else:
            consumer.subscribe([self.topic], listener=Listener())
        if not tps:
            return  # nothing matches yet: there is nothing to be assigned to wait for
        timeout = float(self.kafka.options["subscribe_timeout"])  # type: ignore[arg-type]
        try:
            await asyncio.wait_for(self._assigned.wait(), timeout)
        except TimeoutError:
            raise SubscribeError(
                f"subscribe to {self.topic!r} on {self.kafka.url.redacted()}: consumer group "
                f"{self.group!r} assigned no partitions within subscribe_timeout={timeout}s"
            ) from None

    async def _on_assigned(self, assigned: set[_TP]) -> None:
        consumer = self._consumer
        if self._stopped:
            return
        # Nothing of these partitions may be handed out before their positions are set.
        consumer.pause(*assigned)
        try:
            fresh: list[_TP] = []
            committed: dict[_TP, int] = {}
            for tp in assigned:
                offset = await consumer.committed(tp)
                if offset is None or offset < 0:
                    fresh.append(tp)
                else:
                    committed[tp] = int(offset)
            starts: dict[_TP, int] = {}
            if fresh:
                beginnings = await consumer.beginning_offsets(fresh)
                for tp in fresh:
                    start = int(beginnings[tp])
                    if self.options.start == "new" and tp in self._start_offsets:
                        start = max(start, self._start_offsets[tp])
                    starts[tp] = start
            for tp, offset in committed.items():
                consumer.seek(tp, offset)
                self._replace_state(tp, _PartitionState(offset, offset))
            for tp, offset in starts.items():
                consumer.seek(tp, offset)
                self._replace_state(tp, _PartitionState(offset, -1))
            if starts:
                # Fix the group's position now, for later members and restarts.
                await self._commit(starts.keys(), force=True)
        finally:
            consumer.resume(*assigned)
            self._assigned.set()

    async def _on_revoked(self, revoked: set[_TP]) -> None:
        if not revoked:
            return
        # Let running handlers of these partitions finish (bounded), so their acks are
        # committed before another member takes over.
        bound = min(
            float(self.kafka.options["rebalance_timeout_ms"]) / 2000,  # type: ignore[arg-type]
            float(self.kafka.options.get("drain_timeout", 10.0)),  # type: ignore[arg-type]
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + bound
        while self._handling(revoked) and loop.time() < deadline:
            self._settled.clear()
            try:
                await asyncio.wait_for(self._settled.wait(), deadline - loop.time())
            except TimeoutError:
                break
        await self._commit(revoked)
        self._forget(revoked)

    def _replace_state(self, tp: _TP, state: _PartitionState) -> None:
        old = self._partitions.get(tp)
        if old is not None:
            old.live = False
        self._partitions[tp] = state

    def _handling(self, partitions: set[_TP]) -> bool:
        queued = {id(d) for d in self._retry}
        return any(
            id(d) not in queued
            for tp in partitions
            if (state := self._partitions.get(tp)) is not None
            for d in state.pending.values()
        )

    def _forget(self, partitions: set[_TP]) -> None:
        for tp in partitions:
            state = self._partitions.pop(tp, None)
            if state is None:
                continue
            state.live = False
            for offset, delivery in state.pending.items():
                self._attempts[(tp, offset)] = delivery.attempt
        if self._retry:
            self._retry = deque(d for d in self._retry if d._partition not in partitions)

    # --- consuming -------------------------------------------------------------------

    async def _hand_out(self, delivery: KafkaDelivery) -> bool:
        """Dispatch a queued redelivery (unless its partition was revoked meanwhile)."""
        state = delivery._state
        if not state.live:
            return True  # revoked meanwhile: the partition's next owner delivers it
        state.pending[delivery._offset] = delivery
        return await self.dispatch(delivery)

    async def _consume(self) -> None:
        consumer = self._consumer
        opts = self.kafka.options
        max_records = int(opts["max_poll_records"])  # type: ignore[call-overload]
        idle_ms = max(int(opts["fetch_max_wait_ms"]), 100)  # type: ignore[call-overload]
        gap_wait = int(opts["gap_wait_ms"]) / 1000  # type: ignore[call-overload]
        loop = asyncio.get_running_loop()
        dispatch = self.dispatch
        retry = self._retry
        failures = 0
        while True:
            if retry:
                if not await self._hand_out(retry.popleft()):
                    return
                continue
            try:
                if self.pattern and self.group is None:
                    if loop.time() >= self._next_refresh:
                        await self._assign_plain(initial=False)
                    if not self._partitions:  # nothing matches yet
                        await asyncio.sleep(max(self._next_refresh - loop.time(), 0.01))
                        continue
                # Poll briefly while deliveries are unsettled: a nack may queue a retry.
                busy = any(state.pending for state in self._partitions.values())
                batch = await consumer.getmany(
                    timeout_ms=20 if busy else idle_ms, max_records=max_records
                )
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "%r: reading from Kafka failed (%s); retrying",
                    self,
                    scrub(f"{type(exc).__name__}: {exc}", self.kafka.url),
                )
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                continue
            rereading = False
            for tp, records in batch.items():
                state = self._partitions.get(tp)
                if state is None:
                    continue  # revoked
                pending = state.pending
                for record in records:
                    offset = record.offset
                    if offset != state.next_offset:
                        if offset < state.next_offset:
                            continue  # already handed out before a re-seek
                        if self._wait_for_gap(state, loop.time(), gap_wait):
                            consumer.seek(tp, state.next_offset)
                            rereading = True
                            break
                    state.gap_since = None
                    if retry:
                        while retry:  # redeliveries go before newer records
                            if not await self._hand_out(retry.popleft()):
                                return
                        if not state.live:
                            break  # revoked meanwhile: its next owner reads the rest
                    state.next_offset = offset + 1
                    attempt = self._attempts.pop((tp, offset), 0) + 1 if self._attempts else 1
                    delivery = KafkaDelivery(self, tp, state, record, attempt)
                    pending[offset] = delivery
                    if not await dispatch(delivery):
                        return
                    if not state.live:
                        break  # revoked while the handler ran
            if rereading:
                await asyncio.sleep(0.005)  # let the missing record land before re-reading

    def _wait_for_gap(self, state: _PartitionState, now: float, gap_wait: float) -> bool:
        """True while records after a missing offset must be held back and re-read.

        Kafka offsets are contiguous unless compaction or transaction markers removed
        some, but a broker may answer a fetch with records *after* one it assigned an
        offset to and has not stored yet: Tansu 0.6 raises a partition's high watermark
        before it writes the batch, so with concurrent producers a fetch can return
        offset n+1 while n is still being written, and taking it would skip n for good.
        A gap is therefore re-read for up to ``gap_wait_ms`` before it is skipped.
        """
        if gap_wait <= 0:
            return False
        if state.gap_since is None:
            state.gap_since = now
            return True
        if now - state.gap_since < gap_wait:
            return True
        log.debug("%r: offsets from %d are missing; skipping them", self, state.next_offset)
        return False

    def _settle(self, delivery: KafkaDelivery, *, redeliver: bool) -> None:
        state = delivery._state
        self._settled.set()
        if not state.live:
            return  # the partition was revoked: its new owner redelivers
        pending = state.pending
        offset = delivery._offset
        current = pending.pop(offset, None)
        if current is not delivery:
            if current is not None:
                pending[offset] = current  # a newer delivery of it is under way
            return
        if redeliver:
            if self._stopped:
                pending[offset] = delivery  # closing: uncommitted, the group redelivers it
                return
            again = KafkaDelivery(
                self, delivery._partition, state, delivery._record, delivery.attempt + 1
            )
            pending[offset] = again
            self._retry.append(again)
            return
        if self.group is not None:
            self._commit_wanted.set()

    # --- committing ------------------------------------------------------------------

    async def _committer(self) -> None:
        interval = int(self.kafka.options["commit_interval_ms"]) / 1000  # type: ignore[call-overload]
        while True:
            await self._commit_wanted.wait()
            self._commit_wanted.clear()
            if interval:
                await asyncio.sleep(interval)
            await self._commit(list(self._partitions))

    async def _commit(self, partitions: Iterable[_TP], *, force: bool = False) -> None:
        """Commit the acked prefix of ``partitions``; failures are logged, not raised
        (the offsets stay uncommitted, so messages are redelivered, never lost)."""
        if self.group is None:
            return
        from aiokafka.structs import OffsetAndMetadata

        async with self._commit_lock:
            offsets: dict[_TP, Any] = {}
            points: dict[_TP, int] = {}
            for tp in partitions:
                state = self._partitions.get(tp)
                if state is None:
                    continue
                point = state.commit_point()
                if point > state.committed or (force and point >= 0):
                    offsets[tp] = OffsetAndMetadata(point, "")
                    points[tp] = point
            if not offsets:
                return
            timeout = int(self.kafka.options["request_timeout_ms"]) / 1000  # type: ignore[call-overload]
            try:
                await asyncio.wait_for(self._consumer.commit(offsets), timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info(
                    "%r: committing offsets failed (%s); they will be redelivered",
                    self,
                    scrub(f"{type(exc).__name__}: {exc}", self.kafka.url),
                )
                return
            for tp, point in points.items():
                state = self._partitions.get(tp)
                if state is not None and point > state.committed:
                    state.committed = point

    # --- closing ---------------------------------------------------------------------

    async def _close(self) -> None:
        self._stopped = True
        for task in (self._loop_task, self._commit_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._loop_task, self._commit_task) if t is not None),
            return_exceptions=True,
        )
        consumer = self._consumer
        if consumer is None:
            return
        if self.group is not None:
            await self._commit(list(self._partitions))
        self._forget(set(self._partitions))
        await self.kafka.stop_consumer(consumer, self.group)
        self._consumer = None


class KafkaBroker(Broker):
    """A connection to a Kafka cluster: one producer, one admin client, and one consumer
    per subscription. See the module docstring for the mapping.

    Construction validates the security options (raising :class:`InvalidOptionError`).
    Publish and subscribe are safe to call concurrently from tasks of one event loop.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self.security_protocol, self.sasl_mechanism = _security(url, options)
        self.group_prefix = str(options["group_prefix"])
        self._producer: Any = None
        self._admin: Any = None
        self._ssl: ssl.SSLContext | None = None
        self._topics: set[str] = set()
        self._topic_locks: dict[str, asyncio.Lock] = {}

    @property
    def bootstrap_servers(self) -> str:
        """The ``host:port`` list the clients bootstrap from."""
        return ",".join(f"{host}:{port}" for host, port in self.url.host_ports())

    def error(self, cls: type[Any], doing: str, exc: BaseException) -> Any:
        """As :meth:`Broker.error`, also removing ``ssl_key_password``; a rejected login
        becomes :class:`AuthenticationError`."""
        if issubclass(cls, BrokerConnectionError) and _safe_is_auth_error(exc):
            cls = AuthenticationError
        built = super().error(cls, doing, exc)
        secret = self.options.get("ssl_key_password")
        if isinstance(secret, str) and secret and secret in str(built):
            built = cls(str(built).replace(secret, REDACTED))
        return built

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments shared by aiokafka's producer, consumer and admin client."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.options["client_id"],
            "request_timeout_ms": self.options["request_timeout_ms"],
            "security_protocol": self.security_protocol,
        }
        if self._ssl is not None:
            kwargs["ssl_context"] = self._ssl
        if self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.url.username
            kwargs["sasl_plain_password"] = self.url.password
        return kwargs

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.security_protocol.endswith("SSL"):
            return None
        try:
            context = ssl.create_default_context(cafile=self.options["ssl_ca"])  # type: ignore[arg-type]
            if self.options["ssl_cert"] is not None:
                context.load_cert_chain(
                    self.options["ssl_cert"],  # type: ignore[arg-type]
                    self.options["ssl_key"],  # type: ignore[arg-type]
                    self.options["ssl_key_password"],  # type: ignore[arg-type]
                )
        except (OSError, ssl.SSLError) as exc:
            raise self.error(InvalidOptionError, "load the TLS files", exc) from None
        context.check_hostname = bool(self.options["ssl_check_hostname"])
        return context

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaProducer
        from aiokafka.admin import AIOKafkaAdminClient

        self._topics.clear()
        self._topic_locks.clear()
        self._ssl = self._ssl_context()
        max_bytes = int(self.options["max_message_bytes"])  # type: ignore[call-overload]
        try:
            self._producer = AIOKafkaProducer(
                **self.client_kwargs(),
                acks=self.options["acks"],
                linger_ms=self.options["linger_ms"],
                # A batch larger than a request could never be sent.
                max_batch_size=min(int(self.options["batch_bytes"]), max_bytes),  # type: ignore[call-overload]
                max_request_size=max_bytes,
                enable_idempotence=False,
            )
            await self._producer.start()
            self._admin = AIOKafkaAdminClient(**self.client_kwargs())
            await self._admin.start()
        except BrokerkitError:
            raise
        except Exception as exc:
            raise self.error(BrokerConnectionError, "connect", exc) from None

    async def _disconnect(self) -> None:
        producer, admin = self._producer, self._admin
        self._producer = self._admin = None
        if producer is not None:
            try:
                await producer.stop()
            except Exception as exc:
                log.warning("%s", self.error(BrokerConnectionError, "stop the producer", exc))
        if admin is not None:
            try:
                await admin.close()
            except Exception as exc:
                log.debug("closing the admin client failed: %s", type(exc).__name__)

    # --- topics ----------------------------------------------------------------------

    async def ensure_topic(self, topic: str, error: type[BrokerkitError]) -> None:
        """Make sure ``topic`` exists: create it (``create_topics``) or check it.

        Cached per connection; concurrent callers for one topic wait for one check.
        Raises ``error`` (PublishError or SubscribeError) if the topic is missing and may
        not be created, or if the broker refuses to create it.
        """
        if topic in self._topics:
            return
        lock = self._topic_locks.setdefault(topic, asyncio.Lock())
        async with lock:
            if topic in self._topics:
                return
            try:
                await self._create_or_check(topic, error)
            except BrokerkitError:
                raise
            except Exception as exc:
                raise self.error(error, f"create the topic {topic!r}", exc) from None
            self._topics.add(topic)

    async def _create_or_check(self, topic: str, error: type[BrokerkitError]) -> None:
        admin = self._admin
        if admin is None:
            raise BrokerConnectionError(f"{self!r} is not connected")
        if not self.options["create_topics"]:
            # Listing all topics never auto-creates one (a metadata request naming it may).
            if topic not in await admin.list_topics():
                raise error(
                    f"topic {topic!r} does not exist on {self.url.redacted()} and "
                    "create_topics=false: create it first, or allow create_topics=true"
                )
            return
        from aiokafka.admin import NewTopic
        from aiokafka.errors import for_code

        new = NewTopic(
            topic,
            int(self.options["partitions"]),  # type: ignore[call-overload]
            int(self.options["replication_factor"]),  # type: ignore[call-overload]
            topic_configs={"max.message.bytes": str(self.options["max_message_bytes"])},
        )
        response = await admin.create_topics([new])
        for entry in response.topic_errors:
            code = entry[1]
            if code not in (0, _TOPIC_EXISTS):
                detail = entry[2] if len(entry) > 2 and entry[2] else for_code(code).__name__
                raise error(
                    f"creating the topic {topic!r} on {self.url.redacted()} failed: {detail}"
                )

    # --- publishing ------------------------------------------------------------------

    def _live_producer(self) -> Any:
        if self._producer is None:
            raise BrokerConnectionError(f"{self!r} has no producer (disconnected)")
        return self._producer

    async def _publish(self, topic: str, message: Message) -> None:
        if topic not in self._topics:
            await self.ensure_topic(topic, PublishError)
        producer = self._live_producer()
        key = message.key
        future = await producer.send(
            topic,
            value=message.body,
            key=None if key is None else key.encode(),
            headers=_record_headers(message),
            timestamp_ms=_timestamp_ms(message.timestamp),
        )
        await future

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        """Hand every record to the producer, then await every acknowledgement.

        Keyed records go to their key's partition (murmur2, as :meth:`_publish`); all
        keyless records of one call go to *one* partition, chosen at random per call
        (sticky partitioning, like the Java client's default partitioner since KIP-480),
        so the producer fills full batches instead of one small batch per partition.
        """
        if topic not in self._topics:
            await self.ensure_topic(topic, PublishError)
        producer = self._live_producer()
        send = producer.send
        sticky: int | None = None
        if any(message.key is None for message in messages):
            sticky = await self._sticky_partition(producer, topic)
        futures = []
        for message in messages:
            key = message.key
            future = await send(
                topic,
                value=message.body,
                key=None if key is None else key.encode(),
                partition=sticky if key is None else None,
                headers=_record_headers(message),
                timestamp_ms=_timestamp_ms(message.timestamp),
            )
            futures.append(future)
        # Await in order instead of gather(): a done future costs no callback, and the
        # records of one batch are all done when its first is.
        error: BaseException | None = None
        for future in futures:
            try:
                await future
            except Exception as exc:
                if error is None:
                    error = exc
        if error is not None:
            raise error

    @staticmethod
    async def _sticky_partition(producer: Any, topic: str) -> int | None:
        """A random partition of ``topic`` for the keyless records of one publish_many
        call (None: let the producer's partitioner choose, if none is known)."""
        partitions = await producer.partitions_for(topic)
        if not partitions:
            return None
        return int(random.choice(sorted(partitions)))  # spreading load, not security

    # --- subscribing -----------------------------------------------------------------

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        subscription = KafkaSubscription(self, topic, handler, options)
        try:
            await subscription._start()
        except BaseException:
            try:
                await subscription.unsubscribe()
            except Exception:
                log.debug("cleanup after a failed subscribe raised", exc_info=True)
            raise
        return subscription

    async def stop_consumer(self, consumer: Any, group: str | None) -> None:
        """Stop a subscription's consumer, leaving its group at once. Never raises."""
        coordinator = getattr(consumer, "_coordinator", None)
        leave: tuple[Any, str] | None = None
        # aiokafka only sends LeaveGroup for generations > 0, but Tansu numbers a new
        # group's first generation 0: without this the next member waits for the
        # session timeout of this one.
        if group is not None and coordinator is not None:
            member = getattr(coordinator, "member_id", "")
            if getattr(coordinator, "generation", -1) == 0 and member:
                leave = (getattr(coordinator, "coordinator_id", None), member)
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka re-raises the cancellation of its own not-yet-started helper task
            # when a consumer stops right after starting; only ours may propagate.
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception as exc:
            log.debug("stopping a consumer failed: %s", type(exc).__name__)
        if leave is not None and leave[0] is not None and self._producer is not None:
            from aiokafka.protocol.group import LeaveGroupRequest

            try:
                await asyncio.wait_for(
                    self._producer.client.send(leave[0], LeaveGroupRequest(group, leave[1])),
                    5.0,
                )
            except Exception as exc:
                log.debug("LeaveGroup for %r failed: %s", group, type(exc).__name__)


def _safe_is_auth_error(exc: BaseException) -> bool:
    try:
        return _is_auth_error(exc)
    except ImportError:
        return False


KAFKA = SchemeSpec(
    scheme="kafka",
    factory=KafkaBroker,
    capabilities=frozenset(
        {
            Capability.PERSISTENT,
            Capability.QUEUE_GROUPS,
            Capability.ACK,
            Capability.DURABLE,
            Capability.REPLAY,
            Capability.DEAD_LETTER,
            Capability.ORDERING_PER_KEY,
            Capability.HEADERS,
            Capability.WILDCARDS,
        }
    ),
    description="Apache Kafka (aiokafka): at least once, consumer groups, ordered per key",
    options=KAFKA_OPTIONS,
    requires=("aiokafka",),
    extra="kafka",
    default_port=9092,
)


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The ``kafka://`` scheme."""
    return [KAFKA]
