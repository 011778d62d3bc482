"""Passwords: argon2id with RFC 9106 parameters, equal work for unknown emails, rehash
detection, and the password policy (password_problem)."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from argon2.profiles import RFC_9106_LOW_MEMORY

from app.security.passwords import (
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    Passwords,
    password_problem,
)

GOOD = "correct-horse-battery-9"


def _fast_hasher(time_cost: int = 1, memory_cost: int = 1024) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)


class CountingHasher(PasswordHasher):
    """A real hasher that counts how often verify() runs (work done, not timing)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.verify_calls: list[str] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verify_calls.append(hash if isinstance(hash, str) else hash.decode())
        return super().verify(hash, password)


# -- hashing -------------------------------------------------------------------------------


async def test_default_hasher_is_argon2id_with_rfc9106_low_memory_parameters() -> None:
    # given the production Passwords (no hasher passed in)
    passwords = Passwords()
    # when a password is hashed
    hashed = await passwords.hash(GOOD)
    # then it is argon2id with m=64 MiB, t=3, p=4 (RFC 9106 low-memory profile)
    p = RFC_9106_LOW_MEMORY
    assert hashed.startswith(f"$argon2id$v=19$m={p.memory_cost},t={p.time_cost},p={p.parallelism}$")
    assert (p.memory_cost, p.time_cost, p.parallelism) == (65536, 3, 4)
    assert await passwords.verify(hashed, GOOD) is True


async def test_hash_is_salted_and_verifies_only_the_right_password() -> None:
    # given a password hashed twice
    passwords = Passwords(_fast_hasher())
    first, second = await passwords.hash(GOOD), await passwords.hash(GOOD)
    # then the hashes differ (random salt) and never contain the password
    assert first != second
    assert GOOD not in first
    # and only the right password verifies
    assert await passwords.verify(first, GOOD) is True
    assert await passwords.verify(first, GOOD + "x") is False


async def test_verify_of_a_malformed_hash_is_false_not_an_error() -> None:
    # given a stored value that is not an argon2 hash
    passwords = Passwords(_fast_hasher())
    # when it is verified, then the answer is a plain False
    assert await passwords.verify("not-a-hash", GOOD) is False


async def test_unknown_email_costs_one_real_argon2_verification_and_fails() -> None:
    # given a Passwords whose hasher counts verify() calls
    hasher = CountingHasher(time_cost=1, memory_cost=1024, parallelism=1)
    passwords = Passwords(hasher)
    # when a password is checked against no stored hash (unknown email)
    result = await passwords.verify(None, GOOD)
    # then argon2 ran once, against a real argon2id hash, and the answer is False
    assert result is False
    assert len(hasher.verify_calls) == 1
    assert hasher.verify_calls[0].startswith("$argon2id$")


async def test_unknown_email_with_the_dummy_hashs_own_password_still_fails() -> None:
    # given the secret used for the dummy hash of unknown emails
    passwords = Passwords(_fast_hasher())
    # when someone presents exactly that password for an unknown email
    # then verification still fails: no stored hash never means success
    assert await passwords.verify(None, "not-a-real-password-just-equal-work") is False


async def test_hash_with_weaker_parameters_needs_rehash() -> None:
    # given a hash made with weaker parameters than the current hasher's
    current = Passwords(_fast_hasher(memory_cost=2048))
    old_hash = await Passwords(_fast_hasher(memory_cost=1024)).hash(GOOD)
    # then it still verifies but is flagged for rehashing; a current hash is not
    assert await current.verify(old_hash, GOOD) is True
    assert current.needs_rehash(old_hash) is True
    assert current.needs_rehash(await current.hash(GOOD)) is False


# -- password policy -------------------------------------------------------------------------


def test_good_password_has_no_problem() -> None:
    assert password_problem(GOOD, "alice@example.com") is None


@pytest.mark.parametrize(
    ("length", "ok"),
    [
        (MIN_PASSWORD_LENGTH - 1, False),
        (MIN_PASSWORD_LENGTH, True),
        (MAX_PASSWORD_LENGTH, True),
        (MAX_PASSWORD_LENGTH + 1, False),
    ],
)
def test_length_limits_are_inclusive(length: int, ok: bool) -> None:
    # given a varied password of exactly `length` characters
    password = ("Xq7-mZ2!pL" * 30)[:length]
    # when checked, then only lengths inside [MIN, MAX] pass, with a message naming the limit
    problem = password_problem(password, "alice@example.com")
    if ok:
        assert problem is None
    else:
        assert problem is not None
        assert "characters" in problem


@pytest.mark.parametrize("password", ["password123", "PASSWORD123", "1234567890", "qwertyuiop"])
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    assert password_problem(password, "alice@example.com") == "Password is too easy to guess."


def test_password_with_fewer_than_four_distinct_characters_is_refused() -> None:
    assert password_problem("abcabcabcabc", "alice@example.com") == (
        "Password is too easy to guess."
    )


def test_password_containing_the_email_local_part_is_refused_in_any_case() -> None:
    assert password_problem("my-ALICEWONDER-pw9", "alicewonder@example.com") == (
        "Password must not contain your email address."
    )


def test_very_short_email_local_part_does_not_forbid_ordinary_passwords() -> None:
    # given an address whose local part is a single letter that occurs in the password
    # when checked, then the password is accepted: "contains your email" needs a real match
    assert password_problem(GOOD, "a@example.com") is None
