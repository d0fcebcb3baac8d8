"""The topic grammar and wildcard matching."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit import InvalidTopicError
from brokerkit.core.topics import (
    matches,
    pattern_to_amqp,
    pattern_to_regex,
    validate_pattern,
    validate_topic,
)

token = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=6)
topics = st.lists(token, min_size=1, max_size=5).map(".".join)
pattern_tokens = st.one_of(token, st.just("*"))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    tokens = draw(st.lists(pattern_tokens, min_size=1, max_size=4))
    if draw(st.booleans()):
        tokens.append(">")
    return ".".join(tokens)


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.>", "a.b", True),
        ("a.>", "a.b.c", True),
        ("a.>", "a", False),
        ("*.b", "a.b", True),
        (">", "a", True),
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
    ],
)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


@given(st.text(max_size=300))
def test_topic_validation_only_raises_invalid_topic(text: str) -> None:
    for check in (validate_topic, validate_pattern):
        with contextlib.suppress(InvalidTopicError):
            check(text)


@given(st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text())))
def test_non_string_topics_refused(value: object) -> None:
    with pytest.raises(InvalidTopicError, match="str"):
        validate_topic(value)


@given(patterns(), topics)
def test_translations_agree_with_matches(pattern: str, topic: str) -> None:
    validate_pattern(pattern)
    expected = matches(pattern, topic)
    assert bool(re.match(pattern_to_regex(pattern), topic)) is expected
    assert _amqp_matches(pattern_to_amqp(pattern), topic) is expected


def _amqp_matches(binding: str, topic: str) -> bool:
    """RabbitMQ topic-exchange semantics: * one word, # zero or more words."""

    def walk(b: list[str], t: list[str]) -> bool:
        if not b:
            return not t
        if b[0] == "#":
            return any(walk(b[1:], t[i:]) for i in range(len(t) + 1))
        if not t:
            return False
        return (b[0] == "*" or b[0] == t[0]) and walk(b[1:], t[1:])

    return walk(binding.split("."), topic.split("."))


def test_length_limit() -> None:
    validate_topic("a" * 249)
    with pytest.raises(InvalidTopicError, match="249"):
        validate_topic("a" * 250)
