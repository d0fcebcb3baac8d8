"""Message validation and delivery settlement outside any broker."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brokerkit import Delivery, DeliveryState, DeliveryStateError, InvalidMessageError, Message


def test_defaults_and_copies() -> None:
    headers = {"a": "b"}
    message = Message(bytearray(b"xy"), headers, key="k")
    headers["a"] = "changed"
    assert message.body == b"xy" and type(message.body) is bytes
    assert message.headers == {"a": "b"}
    assert len(message.id) == 32
    assert message.timestamp > 1_600_000_000
    assert Message(b"").id != Message(b"").id


@pytest.mark.parametrize("body", ["text", 1, None, 2.5, [1], object()])
def test_non_bytes_bodies_are_refused(body: object) -> None:
    with pytest.raises(InvalidMessageError, match="bytes"):
        Message(body)  # type: ignore[arg-type]


def test_str_body_error_suggests_encoding() -> None:
    with pytest.raises(InvalidMessageError, match="encode"):
        Message("text")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key": ""},
        {"key": 5},
        {"id": ""},
        {"id": "a\nb"},
        {"timestamp": "now"},
        {"timestamp": True},
    ],
)
def test_bad_key_id_timestamp_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidMessageError):
        Message(b"x", **kwargs)  # type: ignore[arg-type]


@given(st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3))
def test_header_validation_raises_only_invalid_message(headers: dict[str, str]) -> None:
    try:
        message = Message(b"x", headers)
    except InvalidMessageError:
        return
    assert message.headers == headers


async def test_settlement_is_idempotent_and_exclusive() -> None:
    acked = Delivery("t", Message(b"x"))
    await acked.ack()
    await acked.ack()
    assert acked.state is DeliveryState.ACKED
    with pytest.raises(DeliveryStateError, match="acked"):
        await acked.nack()
    nacked = Delivery("t", Message(b"x"))
    await nacked.nack()
    await nacked.nack(requeue=False)
    with pytest.raises(DeliveryStateError, match="nacked"):
        await nacked.ack()


class _BrokenDelivery(Delivery):
    async def _ack(self) -> None:
        raise RuntimeError("driver exploded")


async def test_driver_errors_while_settling_become_settle_error() -> None:
    from brokerkit import SettleError

    with pytest.raises(SettleError, match="driver exploded") as info:
        await _BrokenDelivery("t", Message(b"x")).ack()
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_trusted_and_copy_build_equal_messages_without_revalidating() -> None:
    original = Message(b"body", {"a": "b"}, id="i-1", key="k", timestamp=12.5)
    headers = {"a": "b"}
    trusted = Message.trusted(b"body", headers, "i-1", "k", 12.5)
    assert trusted == original
    assert trusted.headers is headers  # taken as it is: the decoder's own dict
    copy = original.copy()
    assert copy == original and copy.headers is not original.headers
