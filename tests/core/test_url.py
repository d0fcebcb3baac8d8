"""URL parsing: accepted forms, clear errors, strict decoding, password redaction."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit import InvalidURLError, parse_url
from brokerkit.core.url import scrub


def test_several_hosts_with_and_without_ports() -> None:
    url = parse_url("kafka://k1:9092,k2,[::1]:9093")
    assert url.scheme == "kafka"
    assert url.hosts == (("k1", 9092), ("k2", None), ("[::1]", 9093))
    assert url.with_default_port(9092).hosts[1] == ("k2", 9092)


def test_credentials_path_and_query_are_percent_decoded() -> None:
    url = parse_url("AMQP://us%40er:p%3Ass%2Fw%25rd@h:5672/my%2Fvhost?client_id=a%20b&x=1")
    assert url.scheme == "amqp"
    assert url.username == "us@er"
    assert url.password == "p:ss/w%rd"
    assert url.path == "my/vhost"
    assert dict(url.query) == {"client_id": "a b", "x": "1"}


def test_password_never_in_str_or_repr() -> None:
    url = parse_url("redis://user:s3cr%21t@h:6379/0")
    assert url.password == "s3cr!t"
    for text in (str(url), repr(url), url.redacted()):
        assert "s3cr" not in text
        assert "***" in text
    assert scrub("failed for redis://user:s3cr!t@h and s3cr%21t", url).count("s3cr") == 0


def test_memory_url_without_host() -> None:
    url = parse_url("memory://")
    assert url.hosts == ()
    assert parse_url("memory://orders").hosts == (("orders", None),)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("nats", "://"),
        ("9nats://h", "scheme"),
        ("nats://h:0", "port"),
        ("nats://h:65536", "port"),
        ("nats://h:abc", "port"),
        ("nats://h:-1", "port"),
        ("nats://a,,b", "empty host"),
        ("nats://ünï.example", "IDNA"),
        ("nats://h/ä", "non-ASCII"),
        ("nats://us:p%zz@h", "'%'"),
        ("nats://h?x=%e2%28", "UTF-8"),
        ("nats://h?x=1&x=2", "twice"),
        ("nats://h?=1", "no name"),
        ("nats://h#frag", "fragment"),
        ("nats://h o", "non-ASCII, space"),
        ("nats://[::1", "IPv6"),
        ("nats://-bad-", "invalid host"),
    ],
)
def test_malformed_urls_are_refused_clearly(text: str, needle: str) -> None:
    with pytest.raises(InvalidURLError, match=__import__("re").escape(needle)):
        parse_url(text)


def test_non_string_url_refused() -> None:
    with pytest.raises(InvalidURLError, match="str"):
        parse_url(b"nats://h")


def test_bad_password_escape_error_does_not_echo_the_password() -> None:
    with pytest.raises(InvalidURLError) as info:
        parse_url("nats://user:topsecret%zz@h")
    assert "topsecret" not in str(info.value)
    with pytest.raises(InvalidURLError) as info2:
        parse_url("nats://user:tøpsecret@h")
    assert "psecret" not in str(info2.value)


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_invalid_url(text: str) -> None:
    with contextlib.suppress(InvalidURLError):
        parse_url(text)


url_alphabet = st.sampled_from(list("abz09:/@%?&=,.[]-_+#~ Aé\x00"))


@given(st.text(alphabet=url_alphabet, max_size=60))
def test_url_shaped_text_parses_or_raises_invalid_url(rest: str) -> None:
    for text in (f"nats://{rest}", f"kafka://u:p@{rest}"):
        try:
            url = parse_url(text)
        except InvalidURLError:
            continue
        if url.password is not None:
            assert ":***@" in url.redacted()
