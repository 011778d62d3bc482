"""Customer support: an agent looks an order up by the code a customer reads out.

Every call is audited, found or not. Agents have their own budget (DESIGN §4) and their
failed lookups count toward the same lockout as a customer's. A caller without a support
role is refused before the code is even looked at, so the answer cannot depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlmodel import col

from app.accounts.models import User
from app.audit.service import AuditLog
from app.db import Database
from app.errors import BadUserInput, DomainError, InvalidOrderCode
from app.orders.models import Order
from app.security import codes
from app.security.doors import Doors, StaffBudget, Subject, Who, declare
from app.security.lookups import CodeLookups
from app.security.policy import SUPPORT_ROLES, Viewer, require_role
from app.security.ratelimit import Limiter

# DESIGN §3 "support": SUPPORT and ADMIN, with a reason; audited found or not (below).
SUPPORT_ORDER = declare(
    "supportOrder", Who.STAFF, Subject.ORDER, *SUPPORT_ROLES, staff_budget=StaffBudget.SUPPORT
)
MIN_REASON = 3
MAX_REASON = 500


@dataclass(frozen=True)
class SupportView:
    order: Order
    customer_email: str
    customer_name: str


class SupportService:
    def __init__(
        self, db: Database, limiter: Limiter, lookups: CodeLookups, audit: AuditLog
    ) -> None:
        self._db = db
        self._doors = Doors(lookups, audit, limiter)
        self._audit = audit

    async def lookup(
        self, viewer: Viewer | None, raw_code: str, reason: str, client_ip: str
    ) -> SupportView:
        agent = require_role(viewer, *SUPPORT_ROLES)
        reason = " ".join(reason.split())
        outcome = "error"
        order_id: int | None = None
        code: str | None = None
        try:
            if not MIN_REASON <= len(reason) <= MAX_REASON:
                outcome = "no_reason"
                raise BadUserInput(
                    "Give the reason for this lookup (a ticket reference, "
                    f"{MIN_REASON} to {MAX_REASON} characters).",
                    field="reason",
                )
            try:
                entry = await self._doors.enter_support(SUPPORT_ORDER, agent, raw_code, client_ip)
            except InvalidOrderCode:
                outcome = "invalid_code"
                raise
            code = entry.code
            async with self._db.read() as session:
                row = (
                    await session.execute(
                        select(Order, col(User.email), col(User.name))
                        .join(User, col(Order.user_id) == col(User.id))
                        .where(col(Order.code) == code)
                    )
                ).one_or_none()
            if row is None:
                outcome = "not_found"
                await entry.miss()  # audited below, with the reason
            order, email, name = row
            order_id = order.id
            outcome = "found"
            return SupportView(order, email, name)
        except DomainError as error:
            if outcome == "error":
                outcome = error.code.value.lower()
            raise
        finally:
            # found or not, in a transaction of its own (only a read ran above)
            await self._audit.record(
                actor=agent,
                action="support_lookup",
                outcome=outcome,
                order_id=order_id,
                code=code or _maybe_code(raw_code),
                reason=reason or None,
                client_ip=client_ip,
            )


def _maybe_code(raw: str) -> str | None:
    """A mistyped code is audited masked too (first and last group at most)."""
    cleaned = raw.strip()[:19]
    return cleaned if len(cleaned.replace("-", "")) == codes.CODE_LENGTH else None
