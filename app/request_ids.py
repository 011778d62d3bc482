"""Request ids: the 12 hex digits that tie a request's log lines to its X-Request-Id.

12 hex digits are never the shape of an order code, so log scrubbing leaves them be. They
are correlation labels, not secrets (a client reads its own in X-Request-Id and learns
nothing from it), so they come from a PRNG seeded from the OS once per process rather than
from `secrets`: `secrets.token_hex` is a getrandom system call per request, which releases
the GIL to aiosqlite's threads and then waits to get it back — the small `order(code)`
lookup on SQLite was 12 % faster without it (docs/architecture.md §2, "The loop thread
keeps the GIL"). A forked worker reseeds, so two processes never share a sequence."""

from __future__ import annotations

import os
import random

_ids = random.Random()  # seeded from os.urandom  # noqa: S311 (not a secret, see above)
os.register_at_fork(after_in_child=_ids.seed)


def new_request_id() -> str:
    return f"{_ids.getrandbits(48):012x}"
