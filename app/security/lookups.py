"""The one gate every code-taking door goes through: authenticate, charge the limiter once,
normalise the code (no database for a typo), and settle failures with the budgets.

The budgets' rule (docs/security.md §3): the caller's own budgets are settled before the
code is read; the budgets of the address (many people share one) only ever refuse a lookup
that did not find the caller's own order, and they refuse it the same way whether the code
is someone else's or nobody's. A code refused by its check symbol is a lookup, never a
failed guess. Staff at a staff door, with the role, spend staff budgets of their own.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from app import metrics
from app.errors import InvalidOrderCode, RateLimited
from app.security import codes
from app.security.policy import Viewer, require_viewer
from app.security.ratelimit import Limiter
from app.security.roles import Role

log = logging.getLogger("app.lookups")


class CodeLookups:
    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def begin(
        self,
        viewer: Viewer | None,
        raw_code: str,
        client_ip: str,
        *,
        staff_roles: tuple[Role, ...] = (),
    ) -> tuple[Viewer, str]:
        """Return (viewer, canonical code) or raise UNAUTHENTICATED / RATE_LIMITED /
        INVALID_ORDER_CODE. Charged once per call, i.e. once per resolution. At a staff
        door (`staff_roles`), a caller with one of the roles spends the staff budgets; the
        door's `failed` must then be called with `staff=True`."""
        who = require_viewer(viewer)
        staff = who.role in staff_roles
        try:
            if staff:
                await self._limiter.charge_staff_lookup(self.user_key(who))
            else:
                await self._limiter.charge_lookup(self.user_key(who), client_ip)
        except RateLimited:
            metrics.lookup_rate_limited()
            raise
        try:
            code = codes.normalise(raw_code)
        except InvalidOrderCode:
            await self.typo(who, client_ip, staff=staff)
            raise
        metrics.lookup_begun()
        return who, code

    async def typo(self, viewer: Viewer, client_ip: str, *, staff: bool = False) -> None:
        """A code refused by its check symbol: counted as such, never as a failed guess (the
        check symbol is public). Not the caller's order, so the address's lookup budget
        may still refuse it."""
        if not staff:
            await self._settled(self._limiter.settle_typo(client_ip))
        metrics.lookup_failed("invalid")  # counted once: as this, or as rate_limited

    async def failed(
        self, viewer: Viewer, client_ip: str, *, outcome: str = "not_found", staff: bool = False
    ) -> None:
        """A well-formed code that is unknown or not the caller's: one failed lookup. Raises
        RATE_LIMITED instead of returning when it is one more than the budgets allow (the
        user's, or, for a customer, the address's); the door answers ORDER_NOT_FOUND when
        this returns. The same for a real code and an unknown one."""
        log.info("code lookup failed", extra={"outcome": outcome, "user": viewer.public_id})
        key = self.user_key(viewer)
        settle = (
            self._limiter.settle_failed_staff_lookup(key)
            if staff
            else self._limiter.settle_failed_lookup(key, client_ip)
        )
        await self._settled(settle, after_read=True)
        metrics.lookup_failed(outcome)  # counted once: as this, or as rate_limited

    @staticmethod
    async def _settled(settle: Awaitable[None], *, after_read: bool = False) -> None:
        try:
            await settle
        except RateLimited:
            metrics.lookup_rate_limited(after_read=after_read)
            raise

    @staticmethod
    def user_key(viewer: Viewer) -> str:
        return f"user:{viewer.public_id}"
