"""``memory://[name]``: an in-process broker that keeps the whole contract.

Brokers opened on the same name (default ``default``) share one bus, so two services
in one process (or one test) talk to each other. The bus models what real brokers do:

* every topic keeps its last ``retention`` messages, for ``start="earliest"``;
* each subscription reads through a *group*: a private group for a plain subscription,
  a shared group for ``queue`` (each message to exactly one member), a named group for
  ``durable`` that outlives its members, keeps their position and collects what is
  published while none is connected;
* unacked messages of a member that leaves, and nacked messages, go back to the front
  of the group's queue and are redelivered with ``attempt`` + 1;
* each group holds at most ``max_pending`` undelivered messages. A publish that finds
  a group full **waits** for room up to ``publish_timeout`` seconds, then raises
  :class:`BackpressureError` having delivered to no group (``publish_timeout=0`` raises
  at once). Memory is therefore bounded under a slow consumer.

The bus lives as long as the process; :func:`drop_bus` forgets one (tests).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Sequence

from brokerkit.core.broker import Broker, Handler, Subscription
from brokerkit.core.capabilities import ALL_CAPABILITIES
from brokerkit.core.errors import BackpressureError
from brokerkit.core.hookspecs import hookimpl
from brokerkit.core.message import Delivery, Message
from brokerkit.core.options import OptionSpec, SubscribeOptions, as_float, as_int
from brokerkit.core.registry import SchemeSpec
from brokerkit.core.topics import is_pattern, matches
from brokerkit.core.url import BrokerURL

_GroupKey = tuple[str, str | None, str | None]  # (pattern, queue, durable)


class _Entry:
    """One message waiting in (or in flight from) one group."""

    __slots__ = ("deliveries", "message", "seq", "topic")

    def __init__(self, seq: int, topic: str, message: Message) -> None:
        self.seq = seq
        self.topic = topic
        self.message = message
        self.deliveries = 0


class _Group:
    """A consumer group: a queue of entries shared by its members."""

    def __init__(self, bus: _Bus, key: _GroupKey | None, pattern: str, max_pending: int) -> None:
        self.bus = bus
        self.key = key  # None for a private group
        self.pattern = pattern
        self.max_pending = max_pending
        self.queue: deque[_Entry] = deque()
        self.members: set[_MemorySubscription] = set()
        self.not_empty = asyncio.Event()
        self.not_full = asyncio.Event()
        self.not_full.set()

    @property
    def durable(self) -> bool:
        return self.key is not None and self.key[2] is not None

    def push(self, entry: _Entry) -> None:
        self.queue.append(entry)
        self.not_empty.set()
        if len(self.queue) >= self.max_pending:
            self.not_full.clear()

    def push_front(self, entries: Sequence[_Entry]) -> None:
        for entry in sorted(entries, key=lambda e: e.seq, reverse=True):
            self.queue.appendleft(entry)
        if self.queue:
            self.not_empty.set()

    def take_nowait(self) -> _Entry | None:
        if not self.queue:
            return None
        entry = self.queue.popleft()
        if len(self.queue) < self.max_pending:
            self.not_full.set()
        return entry

    async def take(self) -> _Entry:
        while not self.queue:
            self.not_empty.clear()
            await self.not_empty.wait()
        entry = self.queue.popleft()
        if len(self.queue) < self.max_pending:
            self.not_full.set()
        return entry


class _Bus:
    """Everything shared by the brokers of one ``memory://name``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq = itertools.count(1)
        self.logs: dict[str, deque[_Entry]] = {}
        self.groups: dict[_GroupKey, _Group] = {}
        self.by_topic: dict[str, set[_Group]] = {}
        self.wildcard_groups: set[_Group] = set()

    def matching_groups(self, topic: str) -> list[_Group]:
        exact = self.by_topic.get(topic)
        groups = list(exact) if exact else []
        if self.wildcard_groups:
            groups.extend(g for g in self.wildcard_groups if matches(g.pattern, topic))
        return groups

    def add_group(self, group: _Group, start: str) -> None:
        if start == "earliest":
            retained = [
                entry
                for topic, log in self.logs.items()
                if topic == group.pattern or matches(group.pattern, topic)
                for entry in log
            ]
            for entry in sorted(retained, key=lambda e: e.seq):
                group.push(_Entry(entry.seq, entry.topic, entry.message))
        if group.key is not None:
            self.groups[group.key] = group
        if is_pattern(group.pattern):
            self.wildcard_groups.add(group)
        else:
            self.by_topic.setdefault(group.pattern, set()).add(group)

    def remove_group(self, group: _Group) -> None:
        if group.key is not None:
            self.groups.pop(group.key, None)
        self.wildcard_groups.discard(group)
        members = self.by_topic.get(group.pattern)
        if members is not None:
            members.discard(group)
            if not members:
                del self.by_topic[group.pattern]


_buses: dict[str, _Bus] = {}


def _bus(name: str) -> _Bus:
    bus = _buses.get(name)
    if bus is None:
        bus = _buses[name] = _Bus(name)
    return bus


def drop_bus(name: str = "default") -> None:
    """Forget the bus ``name``: its retained messages and durable groups are lost.

    Brokers still connected to it keep their old bus. Meant for tests; idempotent.
    """
    _buses.pop(name, None)


class _MemoryDelivery(Delivery):
    __slots__ = ("_entry", "_member")

    def __init__(self, member: _MemorySubscription, entry: _Entry) -> None:
        # Each delivery gets its own copy, as it would from a real broker.
        super().__init__(entry.topic, entry.message.copy(), entry.deliveries)
        self._member = member
        self._entry = entry

    async def _ack(self) -> None:
        self._member.unacked.pop(self._entry, None)

    async def _nack(self, requeue: bool) -> None:
        if self._member.unacked.pop(self._entry, None) is not None and requeue:
            self._member.group.push_front([self._entry])


class _MemorySubscription(Subscription):
    def __init__(
        self,
        broker: MemoryBroker,
        topic: str,
        handler: Handler,
        options: SubscribeOptions,
        group: _Group,
    ) -> None:
        super().__init__(broker, topic, handler, options)
        self.group = group
        self.unacked: dict[_Entry, _MemoryDelivery] = {}
        self._loop_task = asyncio.create_task(self._consume())

    async def _consume(self) -> None:
        group = self.group
        while True:
            # The await only when the queue is empty: no coroutine per queued message.
            entry = group.take_nowait() or await group.take()
            entry.deliveries += 1
            delivery = _MemoryDelivery(self, entry)
            self.unacked[entry] = delivery
            if not await self.dispatch(delivery):
                del self.unacked[entry]
                entry.deliveries -= 1
                group.push_front([entry])
                return

    async def _close(self) -> None:
        self._loop_task.cancel()
        await asyncio.gather(self._loop_task, return_exceptions=True)
        group = self.group
        group.members.discard(self)
        # Whatever this member had not settled goes back for another member (or later).
        group.push_front(list(self.unacked))
        self.unacked.clear()
        if not group.members and not group.durable:
            group.bus.remove_group(group)


class MemoryBroker(Broker):
    """An in-process broker declaring every capability; see the module docstring.

    Publish returns once the message is queued for every matching group (or raises
    :class:`BackpressureError` as described above). Safe for any number of tasks in one
    event loop; not thread-safe.
    """

    def __init__(self, url: BrokerURL, options: dict[str, object], spec: SchemeSpec) -> None:
        super().__init__(url, options, spec)
        self.bus_name = self.url.hosts[0][0] if self.url.hosts else (self.url.path or "default")
        self._bus: _Bus | None = None
        self._retention = 1

    async def _connect(self) -> None:
        self._retention = int(self.options["retention"])  # type: ignore[call-overload]
        self._bus = _bus(self.bus_name)

    async def _disconnect(self) -> None:
        self._bus = None

    def _live_bus(self) -> _Bus:
        assert self._bus is not None, "connected brokers have a bus"
        return self._bus

    async def _publish(self, topic: str, message: Message) -> None:
        bus = self._live_bus()
        groups = bus.matching_groups(topic)
        for group in groups:
            if len(group.queue) >= group.max_pending:
                await self._wait_for_room(topic, groups)
                break
        entry_seq = next(bus.seq)
        log = bus.logs.get(topic)
        if log is None:
            log = bus.logs[topic] = deque(maxlen=self._retention)
        log.append(_Entry(entry_seq, topic, message))
        for group in groups:
            group.push(_Entry(entry_seq, topic, message))

    async def _wait_for_room(self, topic: str, groups: list[_Group]) -> None:
        timeout = float(self.options["publish_timeout"])  # type: ignore[arg-type]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            full = [g for g in groups if len(g.queue) >= g.max_pending]
            if not full:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise BackpressureError(
                    f"publish to {topic!r} on memory://{self.bus_name}: a subscriber of "
                    f"{full[0].pattern!r} has {full[0].max_pending} undelivered messages "
                    f"(max_pending) and no room came within publish_timeout={timeout}s; "
                    "nothing was published"
                )
            try:
                async with asyncio.timeout(remaining):  # unlike wait_for, no task per wait
                    await full[0].not_full.wait()
            except TimeoutError:
                continue

    async def _subscribe(
        self, topic: str, handler: Handler, options: SubscribeOptions
    ) -> Subscription:
        bus = self._live_bus()
        max_pending = int(self.options["max_pending"])  # type: ignore[call-overload]
        group: _Group | None = None
        key: _GroupKey | None = None
        if options.queue is not None or options.durable is not None:
            key = (topic, options.queue, options.durable)
            group = bus.groups.get(key)
        if group is None:
            group = _Group(bus, key, topic, max_pending)
            bus.add_group(group, options.start)
        subscription = _MemorySubscription(self, topic, handler, options, group)
        group.members.add(subscription)
        return subscription


MEMORY = SchemeSpec(
    scheme="memory",
    factory=MemoryBroker,
    capabilities=ALL_CAPABILITIES,
    description="in-process broker; brokers with the same name share one bus",
    options=(
        OptionSpec("retention", as_int(1), 10_000, "messages kept per topic for replay"),
        OptionSpec("max_pending", as_int(1), 10_000, "undelivered messages a subscriber may queue"),
        OptionSpec(
            "publish_timeout",
            as_float(0.0),
            10.0,
            "seconds a publish waits for a full subscriber queue before BackpressureError",
        ),
    ),
    needs_host=False,
)


@hookimpl
def brokerkit_schemes() -> list[SchemeSpec]:
    """The ``memory://`` scheme."""
    return [MEMORY]
