"""The Broker interface and the Subscription that runs handlers.

A plugin subclasses :class:`Broker` and implements four methods — ``_connect``,
``_disconnect``, ``_publish`` and ``_subscribe`` — and subclasses :class:`Subscription`
(implementing ``_close``) and :class:`~brokerkit.core.message.Delivery` (implementing
``_ack`` and ``_nack``). The public methods here do everything that must be the same on
every broker: state checks, input validation, capability checks, error translation,
handler concurrency, auto-ack, dead-lettering and draining.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Generator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from brokerkit.core.capabilities import Capability, require
from brokerkit.core.errors import (
    BrokerConnectionError,
    BrokerkitError,
    InvalidOptionError,
    NotConnectedError,
    PublishError,
    SubscribeError,
)
from brokerkit.core.message import Delivery, Message, describe_error
from brokerkit.core.options import SubscribeOptions, subscribe_options
from brokerkit.core.topics import is_pattern, validate_pattern, validate_topic
from brokerkit.core.url import BrokerURL, scrub

if TYPE_CHECKING:
    from brokerkit.core.registry import SchemeSpec

log = logging.getLogger("brokerkit")

#: A message handler: an async function that receives one delivery.
Handler = Callable[[Delivery], Awaitable[None]]

_E = TypeVar("_E", bound=BrokerkitError)


@functools.lru_cache(maxsize=4096)
def _cached_topic(topic: str) -> str:
    return validate_topic(topic)


class Subscription(ABC):
    """A live subscription: receives messages for ``topic`` and runs the handler.

    ``topic`` is the subscribed topic or pattern and ``options`` the validated
    :class:`SubscribeOptions`. Plugins call :meth:`dispatch` for every message they
    receive and implement :meth:`_close`.

    Handler concurrency is bounded by ``options.max_in_flight``; messages with the same
    key are always handled one after the other. A handler that raises is logged and its
    message nacked (redelivered where the broker can); the subscription keeps running.
    """

    def __init__(
        self, broker: Broker, topic: str, handler: Handler, options: SubscribeOptions
    ) -> None:
        self.broker = broker
        self.topic = topic
        self.options = options
        self._handler = handler
        self._closing = False
        self._closed: asyncio.Event | None = None
        self._running: set[asyncio.Task[object]] = set()
        self._lock = asyncio.Lock()
        self._queues: list[asyncio.Queue[Delivery | None]] = []
        self._workers: list[asyncio.Task[None]] = []
        self._next_worker = 0
        if options.max_in_flight > 1:
            for _ in range(options.max_in_flight):
                queue: asyncio.Queue[Delivery | None] = asyncio.Queue(maxsize=1)
                self._queues.append(queue)
                self._workers.append(asyncio.create_task(self._work(queue)))

    def __repr__(self) -> str:
        state = "closed" if self._closing else "active"
        return f"<{type(self).__name__} {self.topic!r} {state}>"

    @property
    def active(self) -> bool:
        """True until :meth:`unsubscribe` (or the broker's disconnect) begins."""
        return not self._closing

    async def dispatch(self, delivery: Delivery) -> bool:
        """Hand one received delivery to the handler; called by plugins.

        Returns ``True`` once the handler has taken the delivery (with
        ``max_in_flight=1`` after the handler finished; otherwise once a worker has it
        queued), which is the plugin's backpressure. Returns ``False`` at once, leaving
        the delivery unsettled, if the subscription is closing: the plugin must leave the
        message to the broker for redelivery (or drop it on an at-most-once broker).
        Safe to call from several tasks at once.
        """
        if self._closing:
            return False
        delivery.subscription = self
        if not self._queues:
            # acquire/release, not ``async with``: two coroutines fewer per message.
            await self._lock.acquire()
            try:
                if self._closing:
                    delivery.subscription = None
                    return False
                await self._run(delivery)
            finally:
                self._lock.release()
            return True
        key = delivery.message.key
        if key is None:
            index = self._next_worker = (self._next_worker + 1) % len(self._queues)
        else:
            index = hash(key) % len(self._queues)
        await self._queues[index].put(delivery)
        return True

    async def _work(self, queue: asyncio.Queue[Delivery | None]) -> None:
        while True:
            delivery = await queue.get()
            if delivery is None:
                return
            await self._run(delivery)

    async def _run(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await self._handler(delivery)
        except Exception as exc:  # the handler's failure is the message's, not ours
            log.warning(
                "handler for %r failed on message %s (attempt %d): %s",
                self.topic,
                delivery.message.id,
                delivery.attempt,
                describe_error(exc),
            )
            if not delivery.settled:
                try:
                    await delivery._reject(True, describe_error(exc))
                except Exception:
                    log.exception("could not nack message %s", delivery.message.id)
            return
        finally:
            if task is not None:
                self._running.discard(task)
        if self.options.ack == "auto" and not delivery.settled:
            try:
                await delivery.ack()
            except Exception:
                log.exception("could not ack message %s", delivery.message.id)

    async def unsubscribe(self) -> None:
        """Stop receiving, wait for running handlers, then release the subscription.

        Idempotent and safe to call concurrently (later callers wait for the first).
        Handlers still running after the broker's ``drain_timeout`` are cancelled; their
        unsettled messages are redelivered by brokers that can. A ``durable``
        subscription's position is kept for a later subscription with the same name.
        Raises brokerkit errors from the plugin if the broker cannot be told.
        """
        if self._closed is not None:
            await self._closed.wait()
            return
        self._closed = asyncio.Event()
        self._closing = True
        try:
            await self._drain(float(self.broker.options.get("drain_timeout", 10.0)))  # type: ignore[arg-type]
            try:
                await self._close()
            except BrokerkitError:
                raise
            except Exception as exc:
                raise self.broker.error(
                    SubscribeError, f"unsubscribe from {self.topic!r}", exc
                ) from None
        finally:
            self.broker._subscriptions.discard(self)
            self._closed.set()

    async def _drain(self, timeout: float) -> None:
        pending: list[asyncio.Task[None]] = list(self._workers)
        for queue in self._queues:
            # A full queue takes the sentinel after its worker catches up.
            pending.append(asyncio.create_task(queue.put(None)))
        if not self._queues:
            pending.append(asyncio.create_task(self._lock.acquire()))  # type: ignore[arg-type]
        _done, not_done = await asyncio.wait(pending, timeout=timeout) if pending else ((), ())
        if not_done:
            log.warning(
                "%r: %d handler(s) still running after drain_timeout=%ss; cancelling",
                self,
                len(self._running),
                timeout,
            )
            for task in [*self._running, *not_done]:
                task.cancel()
            await asyncio.gather(*not_done, return_exceptions=True)
        # The lock stays taken: a closed subscription dispatches nothing more.

    @abstractmethod
    async def _close(self) -> None:
        """Plugin: stop receiving and release broker resources of this subscription.

        Called once, after running handlers finished. Unsettled messages must be left
        to the broker for redelivery (at-least-once brokers); durable state is kept.
        """


class _State(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTED = "connected"
    DISCONNECTING = "disconnecting"


class Broker(ABC):
    """A connection to one message broker: connect, publish, subscribe, disconnect.

    Get one from :func:`brokerkit.connect`. Use it as ``async with connect(url) as b``
    (connects, and disconnects on exit) or ``b = await connect(url)`` (connects).

    * :meth:`connect` and :meth:`disconnect` are idempotent and safe to call
      concurrently. A disconnected broker may be connected again; it starts afresh.
    * :meth:`publish` and :meth:`subscribe` raise :class:`NotConnectedError` unless
      connected, validate their input (nothing is sent when it is bad) and raise
      :class:`CapabilityError` for what the plugin does not declare.
    * :meth:`disconnect` unsubscribes everything, waiting for running handlers up to
      the ``drain_timeout`` option.
    * Every error raised is a :class:`BrokerkitError`; none shows a password.

    Plugins implement ``_connect``, ``_disconnect``, ``_publish`` and ``_subscribe``,
    and may override ``_publish_many`` for a batched path.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        self.url = url
        self.options = options
        self.spec = spec
        self._state = _State.DISCONNECTED
        self._lifecycle = asyncio.Lock()
        self._subscriptions: set[Subscription] = set()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url.redacted()} {self._state.value}>"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """The capabilities this broker's plugin declares."""
        return self.spec.capabilities

    @property
    def connected(self) -> bool:
        """True between a successful :meth:`connect` and :meth:`disconnect`."""
        return self._state is _State.CONNECTED

    def error(self, cls: type[_E], doing: str, exc: BaseException) -> _E:
        """Build a ``cls`` error for a client-library exception, password removed.

        ``doing`` names the operation, e.g. ``"publish to 'a.b'"``. Raise the result
        ``from None`` so the client's own exception (which may show credentials) is not
        chained.
        """
        detail = scrub(f"{type(exc).__name__}: {exc}", self.url)
        return cls(f"{doing} on {self.url.redacted()} failed: {detail}")

    # --- lifecycle ---------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect to the broker. Idempotent; concurrent calls connect once.

        Raises :class:`BrokerConnectionError` (or :class:`AuthenticationError`) if the
        broker cannot be reached within the ``connect_timeout`` option; a failed connect
        leaves the broker disconnected and releases what was opened.
        """
        async with self._lifecycle:
            if self._state is _State.CONNECTED:
                return
            timeout = float(self.options.get("connect_timeout", 10.0))  # type: ignore[arg-type]
            try:
                await asyncio.wait_for(self._connect(), timeout)
            except BaseException as exc:
                await self._release_after_failed_connect()
                if isinstance(exc, BrokerkitError):
                    raise
                if isinstance(exc, TimeoutError):
                    raise BrokerConnectionError(
                        f"connecting to {self.url.redacted()} timed out after {timeout}s"
                    ) from None
                if isinstance(exc, Exception):
                    raise self.error(BrokerConnectionError, "connect", exc) from None
                raise
            self._state = _State.CONNECTED

    async def _release_after_failed_connect(self) -> None:
        try:
            await self._disconnect()
        except Exception:
            log.debug("cleanup after a failed connect raised", exc_info=True)

    async def disconnect(self) -> None:
        """Unsubscribe all subscriptions (draining handlers), then close the connection.

        Idempotent; concurrent calls disconnect once. During the drain, handlers may
        still publish (for example to a dead-letter topic); new subscriptions are
        refused. Errors while closing are logged, and the broker ends disconnected.
        """
        async with self._lifecycle:
            if self._state is not _State.CONNECTED:
                return
            self._state = _State.DISCONNECTING
            try:
                results = await asyncio.gather(
                    *(sub.unsubscribe() for sub in list(self._subscriptions)),
                    return_exceptions=True,
                )
                for result in results:
                    if isinstance(result, BaseException):
                        log.warning("unsubscribe during disconnect failed: %s", result)
                try:
                    await self._disconnect()
                except Exception as exc:
                    log.warning("%s", self.error(BrokerConnectionError, "disconnect", exc))
            finally:
                self._subscriptions.clear()
                self._state = _State.DISCONNECTED

    async def __aenter__(self) -> Broker:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.disconnect()

    def __await__(self) -> Generator[object, None, Broker]:
        return self.__aenter__().__await__()

    # --- publish -------------------------------------------------------------------------

    def _check_can_publish(self) -> None:
        if self._state is _State.DISCONNECTED:
            raise NotConnectedError(
                f"{self!r} is not connected: call 'await broker.connect()' or use "
                "'async with brokerkit.connect(url) as broker'"
            )

    def _message(
        self, body: bytes | Message, headers: dict[str, str] | None, key: str | None
    ) -> Message:
        if isinstance(body, Message):
            if headers is not None or key is not None:
                raise InvalidOptionError(
                    "give headers and key either on the Message or as arguments, not both"
                )
            message = body
        else:
            message = Message(body, headers, key=key)
        caps = self.spec.capabilities
        if message.headers and Capability.HEADERS not in caps:
            require(caps, Capability.HEADERS, scheme=self.url.scheme, needed_for="headers")
        if message.key is not None and Capability.ORDERING_PER_KEY not in caps:
            require(
                caps,
                Capability.ORDERING_PER_KEY,
                scheme=self.url.scheme,
                needed_for="publishing with a key",
            )
        return message

    async def publish(
        self,
        topic: str,
        body: bytes | Message,
        *,
        headers: dict[str, str] | None = None,
        key: str | None = None,
    ) -> None:
        """Publish one message to ``topic``.

        ``body`` is bytes (with optional ``headers`` and ordering ``key``) or a ready
        :class:`Message`. Returns once the broker has accepted the message to the extent
        the plugin promises (stored and acknowledged on persistent brokers; written to the
        connection on at-most-once ones). Safe to call concurrently.

        Raises :class:`NotConnectedError`, :class:`InvalidTopicError` (including for
        wildcards), :class:`InvalidMessageError`, :class:`CapabilityError` (headers or a
        key on a broker without them) before sending anything, and
        :class:`PublishError` or :class:`BrokerConnectionError` if the broker fails.
        """
        self._check_can_publish()
        if type(topic) is not str:
            validate_topic(topic)
        _cached_topic(topic)
        message = self._message(body, headers, key)
        try:
            await self._publish(topic, message)
        except BrokerkitError:
            raise
        except Exception as exc:
            raise self.error(PublishError, f"publish to {topic!r}", exc) from None

    async def publish_many(self, topic: str, bodies: Iterable[bytes | Message]) -> None:
        """Publish several messages to ``topic``, in order, using the plugin's batch path.

        Every message is validated before any is sent, so bad input sends nothing.
        Returns when all are accepted. Raises as :meth:`publish`; if the broker fails
        part-way, an unknown prefix of the messages may have been accepted.
        """
        self._check_can_publish()
        validate_topic(topic)
        messages = [self._message(body, None, None) for body in bodies]
        try:
            await self._publish_many(topic, messages)
        except BrokerkitError:
            raise
        except Exception as exc:
            raise self.error(PublishError, f"publish to {topic!r}", exc) from None

    # --- subscribe -----------------------------------------------------------------------

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        queue: str | None = None,
        durable: str | None = None,
        ack: str = "auto",
        max_in_flight: int = 1,
        max_deliver: int | None = None,
        dead_letter: str | None = None,
        start: str = "new",
    ) -> Subscription:
        """Subscribe ``handler`` to ``topic`` (a topic, or a pattern with ``*`` / ``>``).

        The options are described on :class:`SubscribeOptions`. Returns once the
        subscription is established on the broker: a message published after this
        returns is delivered to it. Safe to call concurrently.

        Raises :class:`NotConnectedError`, :class:`InvalidTopicError`,
        :class:`InvalidOptionError`, :class:`CapabilityError` (naming the missing
        capability) before anything is sent, and :class:`SubscribeError` or
        :class:`BrokerConnectionError` if the broker refuses.
        """
        if self._state is not _State.CONNECTED:
            raise NotConnectedError(
                f"{self!r} is not connected: call 'await broker.connect()' or use "
                "'async with brokerkit.connect(url) as broker'"
            )
        pattern = validate_pattern(topic)
        if not callable(handler):
            raise InvalidOptionError(
                f"handler must be an async function taking a Delivery, got {handler!r}"
            )
        options = subscribe_options(
            pattern,
            queue=queue,
            durable=durable,
            ack=ack,
            max_in_flight=max_in_flight,
            max_deliver=max_deliver,
            dead_letter=dead_letter,
            start=start,
        )
        self.check_capabilities(pattern, options)
        try:
            subscription = await self._subscribe(pattern, handler, options)
        except BrokerkitError:
            raise
        except Exception as exc:
            raise self.error(SubscribeError, f"subscribe to {pattern!r}", exc) from None
        self._subscriptions.add(subscription)
        return subscription

    def check_capabilities(self, pattern: str, options: SubscribeOptions) -> None:
        """Raise :class:`CapabilityError` if the subscription needs an undeclared capability."""
        caps = self.spec.capabilities
        scheme = self.url.scheme
        wanted: list[tuple[Capability, str]] = []
        if is_pattern(pattern):
            wanted.append((Capability.WILDCARDS, f"the wildcard pattern {pattern!r}"))
        if options.queue is not None:
            wanted.append((Capability.QUEUE_GROUPS, f"queue={options.queue!r}"))
        if options.durable is not None:
            wanted.append((Capability.DURABLE, f"durable={options.durable!r}"))
        if options.ack == "manual":
            wanted.append((Capability.ACK, "ack='manual'"))
        if options.max_deliver is not None:
            wanted.append((Capability.ACK, f"max_deliver={options.max_deliver}"))
            wanted.append((Capability.DEAD_LETTER, f"max_deliver={options.max_deliver}"))
        if options.dead_letter is not None:
            wanted.append((Capability.DEAD_LETTER, f"dead_letter={options.dead_letter!r}"))
        if options.start == "earliest":
            wanted.append((Capability.REPLAY, "start='earliest'"))
        for capability, needed_for in wanted:
            require(caps, capability, scheme=scheme, needed_for=needed_for)

    # --- what plugins implement ----------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None:
        """Plugin: open the connection. May be called again after ``_disconnect``."""

    @abstractmethod
    async def _disconnect(self) -> None:
        """Plugin: close the connection. Called after every subscription is closed, and
        after a failed ``_connect`` (so it must cope with a half-open state)."""

    @abstractmethod
    async def _publish(self, topic: str, message: Message) -> None:
        """Plugin: send one validated message; return when the broker accepted it."""

    async def _publish_many(self, topic: str, messages: list[Message]) -> None:
        """Plugin: send validated messages in order. Default: one ``_publish`` each."""
        for message in messages:
            await self._publish(topic, message)

    @abstractmethod
    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        """Plugin: establish a subscription to a validated topic or pattern.

        Capabilities were checked already. Return when a message published from now on
        will be delivered.
        """
