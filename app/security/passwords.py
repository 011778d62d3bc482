"""Password hashing with argon2id (RFC 9106 low-memory profile) and rehash-on-login.

A hash is ~0.1 s of CPU on several cores (4 lanes): it runs in a worker thread of this
module's own (argon2 releases the GIL), never on the event loop. Those threads run at a
lower CPU priority (Linux nice 10, inherited by argon2's lane threads), so a login takes
the CPU the instance leaves idle rather than the core its event loop needs: without it,
every hash held the order page's p99 at the other requests' expense (scripts/loadtest).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

from app import metrics

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
_COMMON = frozenset(
    {
        "password12",
        "1234567890",
        "qwertyuiop",
        "password123",
        "iloveyou12",
        "letmein123",
        "welcome123",
        "0987654321",
        "abcdefghij",
        "passw0rd12",
    }
)


HASHING_NICENESS = 10


def _lower_priority() -> None:
    """Run this worker (and the threads argon2 starts from it) after the event loop."""
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


_HASHING = ThreadPoolExecutor(
    max_workers=2, thread_name_prefix="argon2", initializer=_lower_priority
)


class Passwords:
    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)
        # A real hash to verify against when the email is unknown, so that an unknown
        # account costs the same argon2 work as a wrong password (no timing oracle).
        self._dummy_hash = self._hasher.hash("not-a-real-password-just-equal-work")

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_HASHING, self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        metrics.password_checked()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_HASHING, self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, password) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)


def password_problem(password: str, email: str) -> str | None:
    """Why a password is too weak, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must have at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Password must have at most {MAX_PASSWORD_LENGTH} characters."
    if password.lower() in _COMMON or len(set(password)) < 4:
        return "Password is too easy to guess."
    # The length test is on the local part: it used to be on the whole address (always
    # > 3), so "a@example.com" refused every password containing the letter "a".
    local = email.split("@")[0].lower()
    if len(local) >= 3 and local in password.lower():
        return "Password must not contain your email address."
    return None
