"""Opaque cursors (app/pagination.py): what a client holds opens only to this server's
secret, for the kind of list it came from, byte for byte as issued."""

from __future__ import annotations

import base64

import pytest

from app.errors import BadUserInput
from app.pagination import CursorCodec

SECRET = "unit-test-secret-" + "s" * 50
ORDER_KEY = ["2026-11-29T10:00:00.123456+00:00", "ABCD2345EFGH"]


def raw_of(cursor: str) -> bytes:
    return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))


def cursor_of(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("length", [0, 1, 40, 63, 64, 65, 128, 300])
def test_round_trip_on_both_sides_of_a_keystream_block(length: int) -> None:
    codec = CursorCodec(SECRET)
    values = ["x" * length, 7]
    assert codec.decode("queue", codec.encode("queue", values)) == values


def test_the_sort_key_cannot_be_read_from_the_cursor() -> None:
    raw = raw_of(CursorCodec(SECRET).encode("order", ORDER_KEY))
    assert b"ABCD2345EFGH" not in raw
    assert b"2026" not in raw
    assert b"order" not in raw


def test_every_flipped_bit_is_refused() -> None:
    codec = CursorCodec(SECRET)
    raw = raw_of(codec.encode("order", ORDER_KEY))
    for index in range(len(raw)):
        for bit in (0x01, 0x80):
            forged = bytearray(raw)
            forged[index] ^= bit
            with pytest.raises(BadUserInput):
                codec.decode("order", cursor_of(bytes(forged)))


def test_truncated_extended_and_foreign_cursors_are_refused() -> None:
    codec = CursorCodec(SECRET)
    cursor = codec.encode("order", ORDER_KEY)
    raw = raw_of(cursor)
    for bad in (
        cursor_of(raw[:-1]),
        cursor_of(raw + b"\0"),
        cursor_of(raw[:16]),  # the seal alone
        "",
        "not base64 !",
        "A" * 600,
        CursorCodec(SECRET + "-other").encode("order", ORDER_KEY),  # another secret
    ):
        with pytest.raises(BadUserInput):
            codec.decode("order", bad)


def test_a_cursor_opens_only_for_its_own_kind_of_list() -> None:
    codec = CursorCodec(SECRET)
    with pytest.raises(BadUserInput):
        codec.decode("queue", codec.encode("order", ORDER_KEY))


def test_equal_keys_seal_alike_and_different_keys_differently() -> None:
    codec = CursorCodec(SECRET)
    first = codec.encode("order", ORDER_KEY)
    assert codec.encode("order", ORDER_KEY) == first
    other = codec.encode("order", [ORDER_KEY[0], "ABCD2345EFGJ"])
    assert other != first
    # one character of the key changes the whole cursor, not one position of it
    assert sum(a != b for a, b in zip(raw_of(first), raw_of(other), strict=True)) > 16
