"""Messages (what is published) and deliveries (what a handler receives).

A :class:`Message` is bytes in, bytes out: serialization lives above brokerkit.
A :class:`Delivery` wraps a received message with its topic, its attempt number and
the means to settle it (ack or nack).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import time
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING

from brokerkit.core.errors import (
    BrokerkitError,
    DeliveryStateError,
    InvalidMessageError,
    SettleError,
)

if TYPE_CHECKING:
    from brokerkit.core.broker import Subscription

log = logging.getLogger("brokerkit")

_HEADER_NAME = re.compile(r"[!#-9;-~]+")  # printable ASCII without space and ':'
_MAX_ERROR_HEADER = 1000

#: Headers added to a dead-lettered message.
ERROR_HEADER = "x-brokerkit-error"
ORIGINAL_TOPIC_HEADER = "x-brokerkit-original-topic"
ORIGINAL_ID_HEADER = "x-brokerkit-original-id"
ATTEMPTS_HEADER = "x-brokerkit-attempts"


def new_id() -> str:
    """A random UUID4 as 32 hex digits, like ``uuid.uuid4().hex`` at a third of the cost.

    Same randomness (``os.urandom``), same format; builds no ``uuid.UUID`` object, which
    made the default id the largest single cost of an in-memory publish. Thread-safe.
    """
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def _check_headers(headers: object) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise InvalidMessageError(
            f"headers must be a mapping of str to str, got {type(headers).__name__}"
        )
    checked: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidMessageError(
                f"header name {name!r} is invalid; a header name is a non-empty str of "
                "printable ASCII without spaces or ':'"
            )
        if not isinstance(value, str):
            raise InvalidMessageError(
                f"header {name!r} has a {type(value).__name__} value; header values must "
                "be str (encode other values yourself)"
            )
        if "\r" in value or "\n" in value or "\x00" in value:
            raise InvalidMessageError(
                f"header {name!r} contains CR, LF or NUL, which no broker carries reliably"
            )
        checked[name] = value
    return checked


class Message:
    """A message: ``body`` bytes, ``headers`` (str to str), a unique ``id``, an optional
    ordering ``key`` and a ``timestamp`` (seconds since the epoch, float).

    The constructor validates and raises :class:`InvalidMessageError` for a body that is
    not bytes-like (``bytearray`` and ``memoryview`` are copied to ``bytes``), headers
    that are not str to str, or a key or id that is not a non-empty str. ``id`` defaults
    to a random UUID (hex) and ``timestamp`` to now. Treat instances as immutable.
    """

    __slots__ = ("body", "headers", "id", "key", "timestamp")

    def __init__(
        self,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        id: str | None = None,
        key: str | None = None,
        timestamp: float | None = None,
    ) -> None:
        if type(body) is not bytes:
            if isinstance(body, (bytearray, memoryview)):
                body = bytes(body)
            else:
                hint = " (encode it first, e.g. text.encode())" if isinstance(body, str) else ""
                raise InvalidMessageError(
                    f"message body must be bytes, got {type(body).__name__}{hint}"
                )
        self.body: bytes = body
        self.headers: dict[str, str] = {} if headers is None else _check_headers(headers)
        if id is None:
            id = new_id()
        elif not isinstance(id, str) or not id or not id.isprintable():
            raise InvalidMessageError(f"message id must be a non-empty printable str, got {id!r}")
        self.id: str = id
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidMessageError(f"message key must be a non-empty str or None, got {key!r}")
        self.key: str | None = key
        if timestamp is None:
            timestamp = time.time()
        elif isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)):
            raise InvalidMessageError(f"timestamp must be a number, got {timestamp!r}")
        self.timestamp: float = float(timestamp)

    @classmethod
    def trusted(
        cls,
        body: bytes,
        headers: dict[str, str],
        id: str,
        key: str | None,
        timestamp: float,
    ) -> Message:
        """Build a message without validation, taking ``headers`` as it is (not copied).

        For plugins decoding what brokerkit itself encoded (values already validated on
        publish): it skips the per-header checks on the receive path. Use the constructor
        for anything that may come from other producers.
        """
        message = _new_message(cls)
        message.body = body
        message.headers = headers
        message.id = id
        message.key = key
        message.timestamp = timestamp
        return message

    def copy(self) -> Message:
        """An equal message with its own ``headers`` dict, without re-validating.

        What a plugin hands each delivery (a real broker gives every receiver its own
        decoded copy). Pure; the body (immutable bytes) is shared.
        """
        copy = _new_message(Message)
        copy.body = self.body
        copy.headers = dict(self.headers) if self.headers else {}
        copy.id = self.id
        copy.key = self.key
        copy.timestamp = self.timestamp
        return copy

    def __repr__(self) -> str:
        return (
            f"Message(id={self.id!r}, key={self.key!r}, {len(self.body)} bytes, "
            f"headers={sorted(self.headers)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.id, self.body, self.headers, self.key, self.timestamp) == (
            other.id,
            other.body,
            other.headers,
            other.key,
            other.timestamp,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking; compare, don't hash


_new_message = object.__new__


class DeliveryState(enum.Enum):
    """Where a delivery stands: not yet settled, acked, or nacked."""

    PENDING = "pending"
    ACKED = "acked"
    NACKED = "nacked"


class Delivery:
    """One received message, handed to a subscription's handler.

    ``topic`` is the concrete topic it was published to (useful with wildcards),
    ``message`` the message and ``attempt`` the delivery attempt, counting from 1.

    :meth:`ack` and :meth:`nack` are each idempotent and mutually exclusive: calling the
    other one after settling raises :class:`DeliveryStateError`. In ``ack="auto"`` mode
    the subscription settles for the handler. On brokers without the ``ack`` capability
    both are accepted and do nothing beyond recording the state (at most once).

    Plugins subclass it and implement :meth:`_ack` and :meth:`_nack` (the broker
    operations); the base class keeps the state and applies ``max_deliver`` and
    ``dead_letter``. Not safe to settle from another thread; safe from any task.
    """

    __slots__ = ("attempt", "message", "state", "subscription", "topic")

    def __init__(self, topic: str, message: Message, attempt: int = 1) -> None:
        self.topic = topic
        self.message = message
        self.attempt = attempt
        self.state = DeliveryState.PENDING
        self.subscription: Subscription | None = None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} topic={self.topic!r} id={self.message.id!r} "
            f"attempt={self.attempt} {self.state.value}>"
        )

    @property
    def settled(self) -> bool:
        """True once acked or nacked."""
        return self.state is not DeliveryState.PENDING

    async def ack(self) -> None:
        """Acknowledge: the broker will not deliver this message to this group again.

        Returns once the acknowledgement is handed to the broker's client. Where the
        broker does not reply to acknowledgements (AMQP, JetStream) or the plugin
        batches them (Redis Streams, Kafka offset commits), an acknowledgement lost to a
        connection failure means the message is delivered again (at least once), never
        that it is lost; plugins say so in their docstrings. Idempotent. Raises
        :class:`DeliveryStateError` after :meth:`nack`, and brokerkit errors from the
        plugin if the broker cannot be told.
        """
        if self.state is DeliveryState.ACKED:
            return
        if self.state is DeliveryState.NACKED:
            raise DeliveryStateError(f"{self!r} was nacked; it cannot be acked as well")
        self.state = DeliveryState.ACKED
        await self._settle(self._ack(), "ack")

    async def nack(self, requeue: bool = True) -> None:
        """Reject the message.

        ``requeue=True`` asks for redelivery (attempt + 1), unless ``max_deliver``
        attempts have been made: then the message goes to ``dead_letter`` (or is dropped
        if none is set). ``requeue=False`` sends it to ``dead_letter`` at once, or drops
        it. Idempotent; raises :class:`DeliveryStateError` after :meth:`ack`.
        """
        await self._reject(requeue, "nacked by the handler")

    async def _reject(self, requeue: bool, error: str) -> None:
        if self.state is DeliveryState.NACKED:
            return
        if self.state is DeliveryState.ACKED:
            raise DeliveryStateError(f"{self!r} was acked; it cannot be nacked as well")
        self.state = DeliveryState.NACKED
        options = self.subscription.options if self.subscription is not None else None
        exhausted = (
            options is not None
            and options.max_deliver is not None
            and self.attempt >= options.max_deliver
        )
        if options is None or (requeue and not exhausted):
            await self._settle(self._nack(requeue), "nack")
            return
        if options.dead_letter is not None and self.subscription is not None:
            await self.subscription.broker.publish(
                options.dead_letter, self._dead_letter_message(error)
            )
        else:
            log.warning(
                "dropping message %s from %r after %d attempt(s): %s",
                self.message.id,
                self.topic,
                self.attempt,
                error,
            )
        # The message is handled (dead-lettered or dropped): remove it from the source.
        await self._settle(self._ack(), "ack")

    async def _settle(self, operation: Awaitable[None], name: str) -> None:
        try:
            await operation
        except BrokerkitError:
            raise
        except Exception as exc:
            if self.subscription is not None:
                raise self.subscription.broker.error(
                    SettleError, f"{name} of message {self.message.id}", exc
                ) from None
            raise SettleError(f"{name} of message {self.message.id} failed: {exc}") from None

    def _dead_letter_message(self, error: str) -> Message:
        error = " ".join(error.split())[:_MAX_ERROR_HEADER] or "error"
        headers = dict(self.message.headers)
        headers[ERROR_HEADER] = error
        headers[ORIGINAL_TOPIC_HEADER] = self.topic
        headers[ORIGINAL_ID_HEADER] = self.message.id
        headers[ATTEMPTS_HEADER] = str(self.attempt)
        return Message(self.message.body, headers, key=self.message.key)

    async def _ack(self) -> None:
        """Tell the broker the message is done. Plugins override; default does nothing."""

    async def _nack(self, requeue: bool) -> None:
        """Tell the broker to redeliver (``requeue``) or drop. Plugins override."""


def describe_error(exc: BaseException) -> str:
    """The text recorded in ``x-brokerkit-error`` for a handler exception."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text
