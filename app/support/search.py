"""supportSearch(customerEmail, reason): a support agent finds a customer's recent orders
when the customer has lost the code. SUPPORT and ADMIN; audited; the agent's budgets.

An unknown email and a customer without orders are one answer (an empty list), one path
(the same single query, by email *and* orders together), one audit entry (outcome `none`)
and one budget spend: a unit of the agent's support budget, plus one staff failure — so
an agent cannot test which emails have accounts any faster than codes (DESIGN §4: 60
failures per 15 minutes, then locked; 120 support lookups per hour). The audit entry keeps
the ticket reference as its reason and the email masked as its subject (`j***@example.com`,
as codes are kept as `ABCD-****-****-WXYZ`): the log says which customer's orders were
listed, for whom to ask, without becoming a second copy of the customers' addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlmodel import col

from app.accounts.models import User
from app.accounts.service import normalise_email
from app.audit.service import AuditLog
from app.db import Database
from app.errors import BadUserInput, DomainError
from app.orders.models import Order, OrderLine
from app.security.lookups import CodeLookups
from app.security.policy import SUPPORT_ROLES, Viewer, require_role
from app.security.ratelimit import Limiter
from app.support.service import MAX_REASON, MIN_REASON

DEFAULT_RESULTS = 20
MAX_RESULTS = 50


@dataclass(frozen=True)
class OrderSummary:
    code: str
    status: str
    placed_at: datetime
    total_minor: int
    currency: str
    item_count: int


def mask_email(email: str) -> str:
    """`jane.doe@example.com` → `j***@example.com`: enough to match a ticket, not a copy."""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"[:254]


def clean_reason(reason: str) -> str:
    reason = " ".join(reason.split())
    if not MIN_REASON <= len(reason) <= MAX_REASON:
        raise BadUserInput(
            "Give the reason for this search (a ticket reference, "
            f"{MIN_REASON} to {MAX_REASON} characters).",
            field="reason",
        )
    return reason


class SupportSearch:
    def __init__(
        self, db: Database, limiter: Limiter, lookups: CodeLookups, audit: AuditLog
    ) -> None:
        self._db = db
        self._limiter = limiter
        self._lookups = lookups
        self._audit = audit

    async def by_email(
        self,
        viewer: Viewer | None,
        raw_email: str,
        reason: str,
        client_ip: str,
        first: int | None = None,
    ) -> list[OrderSummary]:
        """The customer's orders, newest first, at most `first` (default 20, at most 50)."""
        agent = require_role(viewer, *SUPPORT_ROLES)  # before anything about the email
        outcome = "error"
        subject: str | None = None
        cleaned = " ".join(reason.split())
        try:
            cleaned = clean_reason(reason)
            if first is not None and not 1 <= first <= MAX_RESULTS:
                raise BadUserInput(f"`first` must be between 1 and {MAX_RESULTS}.", field="first")
            key = CodeLookups.user_key(agent)
            await self._limiter.charge_support_lookup(key)  # lockout, then one unit
            try:
                email = normalise_email(raw_email)
            except BadUserInput:
                raise BadUserInput("Enter a valid email address.", field="customerEmail") from None
            subject = mask_email(email)
            found = await self._orders_of(email, first or DEFAULT_RESULTS)
            if not found:
                # unknown email or no orders: one failure of the agent, the same for both
                outcome = "none"
                await self._lookups.failed(agent, client_ip, staff=True)
                return []
            outcome = "found"
            return found
        except DomainError as error:
            if outcome in ("error", "none"):
                outcome = error.code.value.lower()
            raise
        finally:
            await self._audit.record(
                actor=agent,
                action="support_search",
                outcome=outcome,
                reason=cleaned or None,
                subject=subject,
                client_ip=client_ip,
            )

    async def _orders_of(self, email: str, limit: int) -> list[OrderSummary]:
        items = (
            select(func.coalesce(func.sum(col(OrderLine.quantity)), 0))
            .where(col(OrderLine.order_id) == col(Order.id))
            .correlate(Order)
            .scalar_subquery()
        )
        query = (
            select(
                col(Order.code),
                col(Order.status),
                col(Order.placed_at),
                col(Order.total_minor),
                col(Order.currency),
                items,
            )
            .join(User, col(User.id) == col(Order.user_id))
            .where(col(User.email) == email)
            .order_by(col(Order.placed_at).desc(), col(Order.id).desc())
            .limit(limit)
        )
        async with self._db.read() as session:
            rows = (await session.execute(query)).all()
        return [
            OrderSummary(code, status, placed_at, total, currency, int(count))
            for code, status, placed_at, total, currency, count in rows
        ]
