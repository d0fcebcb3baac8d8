"""``mqtt://[user:password@]host[:1883]``: a brokerkit plugin for MQTT 5 brokers (Mosquitto 2).

Written the way any third-party plugin is: a Broker, a Subscription and a Delivery
subclass, and one ``brokerkit_schemes`` hook, found through the ``brokerkit`` entry point
in this package's ``pyproject.toml``. The client library (aiomqtt) is imported only on
connect.

How brokerkit maps onto MQTT:

* topics: ``a.b.c`` is the MQTT topic ``a/b/c``; the pattern ``a.*`` is ``a/+`` and
  ``a.>`` is ``a/#``. MQTT's ``#`` also matches the parent (``a``), so received topics are
  filtered with brokerkit's own :func:`~brokerkit.core.topics.matches`;
* headers, id, key and timestamp travel as MQTT 5 user properties (brokerkit's own ones
  are named with a leading ``:``, which header names cannot contain);
* ``queue=NAME`` is the MQTT 5 shared subscription ``$share/NAME/<filter>``;
* publish uses QoS 1 and returns on the broker's PUBACK; each subscription has its own
  clean, non-persistent MQTT session.

Capabilities: headers, wildcards, queue groups and ordering per key (MQTT keeps the
order of one publisher's messages on a topic; in a queue group, messages of one key may
be spread over members). Not declared: ack/redelivery (aiomqtt acknowledges QoS 1
messages on receipt, so a failed handler cannot get its message again), and therefore
durable, replay, persistent and dead letter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import TYPE_CHECKING, Any

from brokerkit import (
    AuthenticationError,
    Broker,
    BrokerConnectionError,
    BrokerURL,
    Capability,
    Delivery,
    Handler,
    Message,
    OptionSpec,
    SchemeSpec,
    SubscribeOptions,
    Subscription,
    hookimpl,
)
from brokerkit.core.options import as_int
from brokerkit.core.topics import matches

if TYPE_CHECKING:
    import aiomqtt

__all__ = ["MQTT", "MqttBroker", "brokerkit_schemes", "from_mqtt_topic", "to_mqtt_filter"]
__version__ = "0.1.0"

log = logging.getLogger("brokerkit.mqtt")

_ID, _KEY, _TIMESTAMP = ":id", ":key", ":ts"
_QOS = 1


def to_mqtt_filter(pattern: str) -> str:
    """Translate a validated brokerkit topic or pattern to an MQTT topic filter."""
    tokens = pattern.split(".")
    return "/".join({"*": "+", ">": "#"}.get(token, token) for token in tokens)


def from_mqtt_topic(topic: str) -> str:
    """Translate a concrete MQTT topic back to brokerkit's dotted form."""
    return topic.replace("/", ".")


def _is_auth_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "not authori" in text or "bad user name or password" in text


class _MqttDelivery(Delivery):
    """MQTT messages are acknowledged on receipt: settling is bookkeeping only."""

    __slots__ = ()


class _MqttSubscription(Subscription):
    def __init__(
        self,
        broker: MqttBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        client: aiomqtt.Client,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self._client = client
        self._task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        import aiomqtt

        try:
            async for received in self._client.messages:
                topic = from_mqtt_topic(received.topic.value)
                if topic != self.topic and not matches(self.topic, topic):
                    continue  # MQTT's '#' also matches the parent level
                delivery = _MqttDelivery(topic, _to_message(received), attempt=1)
                if not await self.dispatch(delivery):
                    return  # closing; at most once, so the message is dropped
        except aiomqtt.MqttError as exc:
            if self.active:
                log.warning("%r lost its MQTT connection: %s", self, exc)

    async def _close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await _close_client(self._client)


def _to_message(received: aiomqtt.Message) -> Message:
    headers: dict[str, str] = {}
    meta: dict[str, str] = {}
    properties = received.properties
    for name, value in getattr(properties, "UserProperty", None) or []:
        (meta if name.startswith(":") else headers)[name] = value
    payload = received.payload
    body = payload if isinstance(payload, bytes) else str(payload or "").encode()
    timestamp = float(meta[_TIMESTAMP]) if _TIMESTAMP in meta else None
    return Message(body, headers, id=meta.get(_ID), key=meta.get(_KEY) or None, timestamp=timestamp)


async def _close_client(client: aiomqtt.Client) -> None:
    with contextlib.suppress(Exception):
        await client.__aexit__(None, None, None)


class MqttBroker(Broker):
    """A brokerkit Broker on an MQTT 5 server (see the module docstring).

    One MQTT connection publishes; each subscription opens its own, so that its messages
    never mix with another's. Publish returns once the server acknowledged the message
    (QoS 1). Safe for any number of tasks in one event loop.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self._publisher: aiomqtt.Client | None = None

    async def _new_client(self) -> aiomqtt.Client:
        import aiomqtt

        (host, port), *_ = self.url.host_ports()
        client = aiomqtt.Client(
            host,
            port,
            username=self.url.username,
            password=self.url.password,
            identifier=f"brokerkit-{uuid.uuid4().hex[:16]}",
            protocol=aiomqtt.ProtocolVersion.V5,
            keepalive=int(self.options["keepalive"]),  # type: ignore[call-overload]
            timeout=float(self.options["connect_timeout"]),  # type: ignore[arg-type]
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            if _is_auth_failure(exc):
                raise self.error(AuthenticationError, "connect", exc) from None
            raise self.error(BrokerConnectionError, "connect", exc) from None
        return client

    async def _connect(self) -> None:
        self._publisher = await self._new_client()

    async def _disconnect(self) -> None:
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            await _close_client(publisher)

    async def _publish(self, topic: str, message: Message) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        assert self._publisher is not None, "connected brokers have a publisher"
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        user: list[tuple[str, str]] = [
            (_ID, message.id),
            (_TIMESTAMP, repr(message.timestamp)),
        ]
        if message.key is not None:
            user.append((_KEY, message.key))
        user.extend(message.headers.items())
        properties.UserProperty = user
        await self._publisher.publish(
            to_mqtt_filter(topic), message.body, qos=_QOS, properties=properties
        )

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        mqtt_filter = to_mqtt_filter(topic)
        if options.queue is not None:
            mqtt_filter = f"$share/{options.queue}/{mqtt_filter}"
        client = await self._new_client()
        try:
            result: Any = await client.subscribe(mqtt_filter, qos=_QOS)
            refused = [code for code in result if getattr(code, "is_failure", False)]
            if refused:
                raise RuntimeError(f"the server refused {mqtt_filter!r}: {refused[0]}")
        except BaseException:
            await _close_client(client)
            raise
        return _MqttSubscription(self, topic, handler, options, client)


MQTT = SchemeSpec(
    scheme="mqtt",
    factory=MqttBroker,
    capabilities=frozenset(
        {
            Capability.HEADERS,
            Capability.WILDCARDS,
            Capability.QUEUE_GROUPS,
            Capability.ORDERING_PER_KEY,
        }
    ),
    description="MQTT 5 (Mosquitto 2+) via aiomqtt; at most once, shared subscriptions",
    options=(OptionSpec("keepalive", as_int(5, 65535), 60, "MQTT keepalive in seconds"),),
    requires=("aiomqtt",),
    extra=None,  # the hint is then "pip install aiomqtt"
    default_port=1883,
)


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The ``mqtt://`` scheme."""
    return [MQTT]
