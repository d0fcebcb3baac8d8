"""Subscribe options (uniform across plugins) and plugin option specifications.

:class:`SubscribeOptions` holds what a subscriber may ask for; :func:`subscribe_options`
validates it. :class:`OptionSpec` declares one plugin option that can be given as a URL
query parameter (a string) or as a keyword to :func:`brokerkit.connect` (typed).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from brokerkit.core.errors import InvalidOptionError
from brokerkit.core.topics import is_pattern, matches, validate_topic

AckMode = Literal["auto", "manual"]
StartPosition = Literal["new", "earliest"]

_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


@dataclass(frozen=True, slots=True)
class SubscribeOptions:
    """What one subscription asks for. Immutable.

    queue
        Competing consumers: subscriptions with the same queue name on the same topic
        share the messages, each message going to exactly one of them.
    durable
        A name under which the broker remembers the subscription's position, so that a
        subscription with the same name (and topic) resumes where it left off after an
        unsubscribe, a disconnect or a crash.
    ack
        ``"auto"``: a handler that returns acks the message, one that raises nacks it
        (redelivery). ``"manual"``: the handler calls ``delivery.ack()`` /
        ``delivery.nack()``; a handler that raises before settling still nacks.
    max_in_flight
        At most this many handlers of the subscription run at once. Messages with the
        same key are never handled concurrently, so order per key holds for any value.
        It does not bound what the client fetches ahead: plugins whose broker pushes or
        pulls in batches (JetStream, Redis Streams, RabbitMQ) fetch up to
        ``max(prefetch, max_in_flight)`` unacknowledged messages, ``prefetch`` being
        the plugin's URL option (default 100). Prefetched messages not yet handled at
        unsubscribe are left to the broker for redelivery.
    max_deliver
        After this many failed attempts the message is not redelivered: it goes to
        ``dead_letter`` if given, else it is dropped (and logged).
    dead_letter
        A topic that receives messages that failed ``max_deliver`` times or were
        nacked with ``requeue=False``, with the original headers kept and the error in
        ``x-brokerkit-error``.
    start
        ``"new"``: only messages published after subscribing. ``"earliest"``: every
        message the broker still retains for the topic, then new ones. For a durable
        subscription it applies only the first time the name is used.
    """

    queue: str | None = None
    durable: str | None = None
    ack: AckMode = "auto"
    max_in_flight: int = 1
    max_deliver: int | None = None
    dead_letter: str | None = None
    start: StartPosition = "new"


def _check_name(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidOptionError(
            f"{what}={value!r} is invalid; a {what} name is 1 to 100 ASCII letters, "
            "digits, '_' or '-'"
        )
    return value


def _check_int(value: object, what: str, *, optional: bool) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidOptionError(f"{what}={value!r} is invalid; it must be an int >= 1")
    return value


def subscribe_options(
    topic: str,
    *,
    queue: object = None,
    durable: object = None,
    ack: object = "auto",
    max_in_flight: object = 1,
    max_deliver: object = None,
    dead_letter: object = None,
    start: object = "new",
) -> SubscribeOptions:
    """Validate subscribe options for the (already validated) ``topic`` pattern.

    Raises :class:`InvalidOptionError` naming the option, the bad value and what is
    accepted. Pure.
    """
    if ack not in ("auto", "manual"):
        raise InvalidOptionError(f"ack={ack!r} is invalid; use 'auto' or 'manual'")
    if start not in ("new", "earliest"):
        raise InvalidOptionError(f"start={start!r} is invalid; use 'new' or 'earliest'")
    in_flight = _check_int(max_in_flight, "max_in_flight", optional=False)
    assert in_flight is not None
    deliver = _check_int(max_deliver, "max_deliver", optional=True)
    dead: str | None = None
    if dead_letter is not None:
        try:
            dead = validate_topic(dead_letter)
        except Exception as exc:
            raise InvalidOptionError(f"dead_letter is not a valid topic: {exc}") from None
        if dead == topic or (is_pattern(topic) and matches(topic, dead)):
            raise InvalidOptionError(
                f"dead_letter={dead!r} would receive its own dead letters: it must not be "
                f"the subscribed topic {topic!r} nor match it"
            )
        if deliver is None:
            raise InvalidOptionError(
                "dead_letter needs max_deliver: say after how many attempts a message "
                "goes to the dead-letter topic"
            )
    return SubscribeOptions(
        queue=_check_name(queue, "queue"),
        durable=_check_name(durable, "durable"),
        ack=ack,  # checked above
        max_in_flight=in_flight,
        max_deliver=deliver,
        dead_letter=dead,
        start=start,  # checked above
    )


# --- plugin options ------------------------------------------------------------------------


Converter = Callable[[object], object]


@dataclass(frozen=True)
class OptionSpec:
    """One plugin option: its name, a converter, its default and a one-line help.

    ``convert`` receives either the URL query string or the keyword's value and returns
    the typed value, raising ``ValueError`` or ``TypeError`` with a short reason when the
    value is not acceptable. ``secret`` options (passwords, tokens) are never echoed.
    """

    name: str
    convert: Converter
    default: object
    help: str
    secret: bool = False


def as_float(minimum: float = 0.0) -> Converter:
    """Converter to a float >= ``minimum``."""

    def convert(value: object) -> object:
        if isinstance(value, bool):
            raise TypeError("expected a number")
        number = float(value)  # type: ignore[arg-type]
        if not number >= minimum or number == float("inf"):
            raise ValueError(f"expected a finite number >= {minimum}")
        return number

    return convert


def as_int(minimum: int = 0, maximum: int | None = None) -> Converter:
    """Converter to an int in ``[minimum, maximum]``."""

    def convert(value: object) -> object:
        if isinstance(value, (bool, float)):
            raise TypeError("expected a whole number")
        number = int(value)  # type: ignore[call-overload]
        if number < minimum or (maximum is not None and number > maximum):
            upper = "" if maximum is None else f" and <= {maximum}"
            raise ValueError(f"expected a whole number >= {minimum}{upper}")
        return number

    return convert


def as_bool(value: object) -> object:
    """Converter to a bool from a bool or one of true/false/1/0/yes/no/on/off."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def as_str(value: object) -> object:
    """Converter to a non-empty str."""
    if not isinstance(value, str) or not value:
        raise TypeError("expected a non-empty string")
    return value


def as_choice(*choices: str) -> Converter:
    """Converter to one of ``choices``."""

    def convert(value: object) -> object:
        if value not in choices:
            raise ValueError("expected one of " + ", ".join(repr(c) for c in choices))
        return value

    return convert


#: Options every broker accepts.
COMMON_OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec(
        "drain_timeout",
        as_float(0.0),
        10.0,
        "seconds disconnect/unsubscribe wait for running handlers before cancelling them",
    ),
    OptionSpec("connect_timeout", as_float(0.001), 10.0, "seconds to wait for a connection"),
)


def resolve_options(
    specs: Iterable[OptionSpec],
    query: Mapping[str, str],
    keywords: Mapping[str, object],
    scheme: str,
) -> dict[str, object]:
    """Merge URL query options and keyword options into typed values with defaults.

    A keyword overrides the query option of the same name. Raises
    :class:`InvalidOptionError` for an unknown name (listing the known ones) or a value
    the converter refuses (never echoing a secret option's value).
    """
    by_name = {spec.name: spec for spec in specs}
    given: dict[str, object] = {**query, **keywords}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        raise InvalidOptionError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for {scheme}://; known options: {', '.join(sorted(by_name))}"
        )
    result: dict[str, object] = {}
    for name, spec in by_name.items():
        if name not in given:
            result[name] = spec.default
            continue
        raw = given[name]
        try:
            result[name] = spec.convert(raw)
        except (TypeError, ValueError) as exc:
            shown = "***" if spec.secret else repr(raw)
            raise InvalidOptionError(
                f"option {name}={shown} for {scheme}:// is invalid: {exc}"
            ) from None
    return result
