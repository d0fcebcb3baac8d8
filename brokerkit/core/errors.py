"""The one error tree of brokerkit.

Every error brokerkit raises derives from :class:`BrokerkitError`; plugins translate
their client library's exceptions into these classes, so user code never has to catch
``nats``, ``aiokafka``, ``aio_pika`` or ``redis`` errors.

Errors about bad input also derive from the matching built-in (``ValueError`` or
``TypeError``) so that generic handlers keep working. No message here ever contains a
password: errors are built from redacted URLs (see :mod:`brokerkit.core.url`).
"""

from __future__ import annotations


class BrokerkitError(Exception):
    """Root of every error raised by brokerkit and its plugins."""


# --- bad input -------------------------------------------------------------------------


class InvalidURLError(BrokerkitError, ValueError):
    """A broker URL could not be parsed or names something invalid (bad port, no host...)."""


class UnknownSchemeError(InvalidURLError):
    """No installed plugin provides the URL's scheme; the message lists those installed."""


class PluginNotInstalledError(BrokerkitError, ImportError):
    """The scheme is known but its client library is missing; the message names the extra."""


class InvalidOptionError(BrokerkitError, ValueError):
    """An option (URL query parameter or keyword) is unknown or has a value out of range."""


class InvalidTopicError(BrokerkitError, ValueError):
    """A topic or topic pattern does not follow brokerkit's topic grammar."""


class InvalidMessageError(BrokerkitError, TypeError):
    """A message body, header, key or id has the wrong type or a forbidden value."""


class CapabilityError(BrokerkitError):
    """The request needs a capability the broker does not declare.

    Raised before anything is sent. ``capability`` names what is missing and
    ``scheme`` the plugin that lacks it.
    """

    def __init__(self, capability: str, scheme: str, needed_for: str) -> None:
        self.capability = capability
        self.scheme = scheme
        self.needed_for = needed_for
        super().__init__(
            f"{needed_for} needs the capability {capability!r}, "
            f"which the {scheme}:// plugin does not provide"
        )


# --- state -----------------------------------------------------------------------------


class NotConnectedError(BrokerkitError):
    """publish or subscribe was called on a broker that is not connected."""


class DeliveryStateError(BrokerkitError):
    """A delivery was acked after a nack, or nacked after an ack."""


# --- talking to the broker ---------------------------------------------------------------


class BrokerConnectionError(BrokerkitError, ConnectionError):
    """The broker could not be reached, or the connection was lost."""


class AuthenticationError(BrokerConnectionError):
    """The broker refused the credentials. The message never contains the password."""


class PublishError(BrokerkitError):
    """The broker did not accept a message; it may or may not have been stored."""


class SubscribeError(BrokerkitError):
    """The broker refused a subscription (for example a queue or stream declaration)."""


class SettleError(BrokerkitError):
    """The broker could not be told about an ack or nack (e.g. the connection is gone).

    The message may be delivered again: at-least-once brokers redeliver what was not
    acknowledged.
    """


class BackpressureError(PublishError):
    """A bounded buffer is full and the publisher chose not to wait (memory broker)."""
