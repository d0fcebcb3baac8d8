"""Capabilities: what a plugin promises, and the checks that refuse what it does not.

Each plugin declares a frozenset of :class:`Capability`. A publish or subscribe that
needs a capability the plugin does not declare raises :class:`CapabilityError` before
anything is sent: nothing is silently ignored or degraded.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable


class Capability(enum.StrEnum):
    """One promise a broker plugin can make. The value is the name shown to users."""

    #: Messages published with no subscriber are kept (needed for ``start="earliest"``
    #: and for durable resume).
    PERSISTENT = "persistent"
    #: ``queue=NAME``: subscribers sharing a queue name compete; each message goes to
    #: exactly one of them.
    QUEUE_GROUPS = "queue_groups"
    #: ``ack="manual"``, ``nack()`` and redelivery with an ``attempt`` count.
    ACK = "ack"
    #: ``durable=NAME``: a subscription that resumes where it left off after
    #: unsubscribe, disconnect or a crash.
    DURABLE = "durable"
    #: ``start="earliest"``: replay every retained message of the topic.
    REPLAY = "replay"
    #: ``max_deliver`` and ``dead_letter``.
    DEAD_LETTER = "dead_letter"
    #: Messages published with the same ``key`` are delivered in publish order.
    ORDERING_PER_KEY = "ordering_per_key"
    #: ``*`` and ``>`` in subscribe patterns.
    WILDCARDS = "wildcards"
    #: Message headers travel with the message.
    HEADERS = "headers"

    def __str__(self) -> str:
        return self.value


ALL_CAPABILITIES: frozenset[Capability] = frozenset(Capability)


def require(
    capabilities: Iterable[Capability],
    needed: Capability,
    *,
    scheme: str,
    needed_for: str,
) -> None:
    """Raise :class:`CapabilityError` unless ``needed`` is in ``capabilities``.

    ``needed_for`` is a short phrase naming the request, e.g. ``"ack='manual'"``.
    Pure and cheap; safe to call from anywhere.
    """
    from brokerkit.core.errors import CapabilityError

    if needed not in capabilities:
        raise CapabilityError(needed.value, scheme, needed_for)
