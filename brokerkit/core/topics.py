"""The one topic grammar shared by every plugin.

A topic is one or more dot-separated tokens; a token is one or more ASCII letters,
digits, ``_`` or ``-``. A topic is at most 249 characters (Kafka's limit), so every
topic is a valid name on every broker.

A subscribe *pattern* may also use the portable wildcards ``*`` (exactly one token)
and ``>`` (one or more tokens; only as the last token). Publishing to a pattern is
refused. Plugins translate patterns to their broker's syntax with the helpers below.
"""

from __future__ import annotations

import re

from brokerkit.core.errors import InvalidTopicError

MAX_TOPIC_LENGTH = 249
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
_GRAMMAR = (
    "dot-separated tokens of ASCII letters, digits, '_' or '-', "
    f"at most {MAX_TOPIC_LENGTH} characters"
)


def _check_common(topic: object, what: str) -> str:
    if not isinstance(topic, str):
        raise InvalidTopicError(f"{what} must be a str, got {type(topic).__name__}")
    if not topic:
        raise InvalidTopicError(f"{what} must not be empty; expected {_GRAMMAR}")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"{what} is {len(topic)} characters long; at most {MAX_TOPIC_LENGTH} are allowed"
        )
    return topic


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a concrete topic (no wildcards), else raise.

    Raises :class:`InvalidTopicError` naming the problem and the accepted grammar.
    Pure; safe to call concurrently.
    """
    text = _check_common(topic, "topic")
    for token in text.split("."):
        if token in ("*", ">"):
            raise InvalidTopicError(
                f"topic {text!r} contains the wildcard {token!r}; wildcards are only "
                "allowed when subscribing, not when publishing"
            )
        if not _TOKEN.fullmatch(token):
            raise InvalidTopicError(f"topic {text!r} is invalid; expected {_GRAMMAR}")
    return text


def validate_pattern(pattern: object) -> str:
    """Return ``pattern`` if it is a valid subscribe pattern, else raise.

    A pattern is a topic in which a whole token may be ``*``, and the last token may be
    ``>``. Raises :class:`InvalidTopicError`. Pure.
    """
    text = _check_common(pattern, "topic pattern")
    tokens = text.split(".")
    for index, token in enumerate(tokens):
        if token == "*":
            continue
        if token == ">":
            if index != len(tokens) - 1:
                raise InvalidTopicError(
                    f"topic pattern {text!r} is invalid: '>' may only be the last token"
                )
            continue
        if not _TOKEN.fullmatch(token):
            raise InvalidTopicError(
                f"topic pattern {text!r} is invalid; expected {_GRAMMAR}, where a whole "
                "token may be '*' (one token) and the last token may be '>' (the rest)"
            )
    return text


def is_pattern(topic: str) -> bool:
    """True if the (already validated) topic contains a wildcard token."""
    return any(token in ("*", ">") for token in topic.split("."))


def matches(pattern: str, topic: str) -> bool:
    """True if the concrete ``topic`` matches the validated ``pattern``.

    ``a.*`` matches ``a.b`` but not ``a.b.c`` nor ``a``; ``a.>`` matches ``a.b`` and
    ``a.b.c`` but not ``a``.
    """
    p_tokens = pattern.split(".")
    t_tokens = topic.split(".")
    for index, p in enumerate(p_tokens):
        if p == ">":
            return len(t_tokens) > index
        if index >= len(t_tokens):
            return False
        if p != "*" and p != t_tokens[index]:
            return False
    return len(t_tokens) == len(p_tokens)


def pattern_to_regex(pattern: str) -> str:
    """Translate a validated pattern to an anchored regular expression (Kafka, Redis)."""
    parts: list[str] = []
    for token in pattern.split("."):
        if token == "*":
            parts.append(r"[A-Za-z0-9_-]+")
        elif token == ">":
            parts.append(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*")
        else:
            parts.append(re.escape(token))
    return "^" + r"\.".join(parts) + "$"


def pattern_to_amqp(pattern: str) -> str:
    """Translate a validated pattern to an AMQP topic-exchange binding key.

    ``*`` stays ``*``; ``>`` becomes ``#`` — but AMQP's ``#`` also matches zero tokens,
    so ``a.>`` is bound as ``a.*.#`` to keep "one or more".
    """
    tokens = pattern.split(".")
    if tokens[-1] == ">":
        tokens = [*tokens[:-1], "*", "#"]
    return ".".join(tokens)
