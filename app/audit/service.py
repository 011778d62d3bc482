"""Writing and reading the audit log: who looked at or changed which order, when and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import User
from app.audit.models import AuditEntry
from app.db import Database, utcnow
from app.orders.models import Order
from app.pagination import CursorCodec, clamp_page_size
from app.security import codes
from app.security.policy import Viewer, require_role
from app.security.roles import Role
from app.security.tokens import new_public_id


@dataclass(frozen=True)
class AuditFilter:
    actions: list[str]
    actor_email: str | None = None
    code: str | None = None  # full code, normalised by the caller
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class AuditRecord:
    entry: AuditEntry
    actor_email: str | None
    order_code: str | None


@dataclass(frozen=True)
class AuditPage:
    records: list[AuditRecord]
    cursors: list[str]
    has_next_page: bool


class AuditLog:
    def __init__(self, db: Database, cursors: CursorCodec, max_page_size: int) -> None:
        self._db = db
        self._cursors = cursors
        self._max = max_page_size

    async def record(
        self,
        *,
        actor: Viewer | None,
        action: str,
        outcome: str,
        order_id: int | None = None,
        code: str | None = None,
        reason: str | None = None,
        client_ip: str | None = None,
        session: AsyncSession | None = None,
        actor_user_id: int | None = None,
        actor_role: str | None = None,
        subject: str | None = None,
    ) -> None:
        """Append one entry. Inside `session` it commits with the change it records;
        without one it commits on its own (lookups that found nothing are audited too) —
        never call it without `session` inside a transaction: commit or leave that first."""
        entry = AuditEntry(
            public_id=new_public_id(),
            created_at=utcnow(),
            actor_user_id=actor.user_id if actor else actor_user_id,
            actor_role=(actor.role.value if actor else actor_role) or "UNKNOWN",
            action=action,
            order_id=order_id,
            masked_code=codes.mask(code) if code else None,
            outcome=outcome,
            reason=(reason or None) and reason[:500],
            client_ip=client_ip,
            subject=subject,
        )
        if session is not None:
            session.add(entry)
            return
        async with self._db.write() as own:
            own.add(entry)
            await own.commit()

    async def list(
        self, viewer: Viewer | None, filt: AuditFilter, first: int | None, after: str | None
    ) -> AuditPage:
        require_role(viewer, Role.ADMIN)
        size = clamp_page_size(first, self._max)
        query = (
            select(AuditEntry, col(User.email), col(Order.code))
            .outerjoin(User, col(AuditEntry.actor_user_id) == col(User.id))
            .outerjoin(Order, col(AuditEntry.order_id) == col(Order.id))
        )
        if filt.actions:
            query = query.where(col(AuditEntry.action).in_(filt.actions))
        if filt.actor_email:
            query = query.where(col(User.email) == filt.actor_email.strip().lower())
        if filt.code:
            query = query.where(col(Order.code) == filt.code)
        if filt.since:
            query = query.where(col(AuditEntry.created_at) >= filt.since)
        if filt.until:
            query = query.where(col(AuditEntry.created_at) < filt.until)
        if after:
            at_iso, last_public = self._cursors.decode("audit", after)
            at = datetime.fromisoformat(str(at_iso))
            query = query.where(
                or_(
                    col(AuditEntry.created_at) < at,
                    and_(
                        col(AuditEntry.created_at) == at,
                        col(AuditEntry.public_id) < str(last_public),
                    ),
                )
            )
        query = query.order_by(col(AuditEntry.created_at).desc(), col(AuditEntry.public_id).desc())
        async with self._db.read() as session:
            rows = list((await session.execute(query.limit(size + 1))).all())
        page = rows[:size]
        return AuditPage(
            records=[AuditRecord(entry, email, code) for entry, email, code in page],
            cursors=[
                self._cursors.encode("audit", [e.created_at.isoformat(), e.public_id])
                for e, _, _ in page
            ],
            has_next_page=len(rows) > size,
        )
