"""The one gate every code-taking door goes through: authenticate, charge the limiter once,
normalise the code (no database for a typo), and count failures toward the lockout."""

from __future__ import annotations

import logging

from app import metrics
from app.errors import InvalidOrderCode, RateLimited
from app.security import codes
from app.security.policy import Viewer, require_viewer
from app.security.ratelimit import Limiter

log = logging.getLogger("app.lookups")


class CodeLookups:
    def __init__(self, limiter: Limiter) -> None:
        self._limiter = limiter

    async def begin(
        self, viewer: Viewer | None, raw_code: str, client_ip: str
    ) -> tuple[Viewer, str]:
        """Return (viewer, canonical code) or raise UNAUTHENTICATED / RATE_LIMITED /
        INVALID_ORDER_CODE. Charged once per call, i.e. once per resolution."""
        who = require_viewer(viewer)
        try:
            await self._limiter.charge_lookup(self.user_key(who), client_ip)
        except RateLimited:
            metrics.lookup_rate_limited()
            raise
        try:
            code = codes.normalise(raw_code)
        except InvalidOrderCode:
            await self.failed(who, client_ip, outcome="invalid")
            raise
        metrics.lookup_begun()
        return who, code

    async def failed(self, viewer: Viewer, client_ip: str, *, outcome: str = "not_found") -> None:
        metrics.lookup_failed(outcome)
        await self._limiter.record_failed_lookup(self.user_key(viewer), client_ip)
        log.info("code lookup failed", extra={"outcome": outcome, "user": viewer.public_id})

    @staticmethod
    def user_key(viewer: Viewer) -> str:
        return f"user:{viewer.public_id}"
