"""brokerkit: one small Broker interface (connect, publish, subscribe, disconnect) in
front of NATS, Kafka, RabbitMQ, Redis and an in-memory broker, chosen by URL.

    async with brokerkit.connect("memory://") as broker:
        await broker.subscribe("user.created", handle, queue="mailer")
        await broker.publish("user.created", b"...", headers={"k": "v"}, key="u-1")

Importing brokerkit imports no broker client library; plugins import theirs on connect.
"""

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.capabilities import ALL_CAPABILITIES, Capability
from brokerkit.core.errors import (
    AuthenticationError,
    BackpressureError,
    BrokerConnectionError,
    BrokerkitError,
    CapabilityError,
    DeliveryStateError,
    InvalidMessageError,
    InvalidOptionError,
    InvalidTopicError,
    InvalidURLError,
    NotConnectedError,
    PluginNotInstalledError,
    PublishError,
    SettleError,
    SubscribeError,
    UnknownSchemeError,
)
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.message import Delivery, DeliveryState, Message
from brokerkit.core.options import OptionSpec, SubscribeOptions
from brokerkit.core.registry import PluginRegistry, SchemeSpec, connect, default_registry
from brokerkit.core.url import BrokerURL, parse_url

__version__ = "0.1.0"

__all__ = [
    "ALL_CAPABILITIES",
    "AuthenticationError",
    "BackpressureError",
    "Broker",
    "BrokerConnectionError",
    "BrokerURL",
    "BrokerkitError",
    "Capability",
    "CapabilityError",
    "Delivery",
    "DeliveryState",
    "DeliveryStateError",
    "Handler",
    "InvalidMessageError",
    "InvalidOptionError",
    "InvalidTopicError",
    "InvalidURLError",
    "Message",
    "NotConnectedError",
    "OptionSpec",
    "PluginNotInstalledError",
    "PluginRegistry",
    "PublishError",
    "SchemeSpec",
    "SettleError",
    "SubscribeError",
    "SubscribeOptions",
    "Subscription",
    "UnknownSchemeError",
    "__version__",
    "connect",
    "default_registry",
    "hookimpl",
    "parse_url",
]
