"""returnsQueue: the returns desk's work list, oldest first. Staff who may read returns
(SUPPORT, WAREHOUSE, ADMIN); listing it is audited like the fulfilment queue. It takes no
code, so it spends no lookup budget: it lists only what those roles may open anyway."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlmodel import col

from app.audit.service import AuditLog
from app.db import Database
from app.orders.models import Order
from app.pagination import CursorCodec, clamp_page_size
from app.returns.models import ReturnRequest, ReturnStatus
from app.returns.service import RETURN_READERS
from app.security.policy import Viewer, require_role

# Waiting for a decision or for the parcel.
WAITING = (ReturnStatus.REQUESTED, ReturnStatus.APPROVED)


@dataclass(frozen=True)
class ReturnsPage:
    returns: list[tuple[ReturnRequest, str]]  # the return and its order's code
    cursors: list[str]
    has_next_page: bool


class ReturnsQueue:
    def __init__(
        self, db: Database, audit: AuditLog, cursors: CursorCodec, max_page_size: int
    ) -> None:
        self._db = db
        self._audit = audit
        self._cursors = cursors
        self._max = max_page_size

    async def list(
        self,
        viewer: Viewer | None,
        statuses: list[ReturnStatus] | None,
        first: int | None,
        after: str | None,
    ) -> ReturnsPage:
        """Oldest first (keyset on requested_at, id); `statuses` default REQUESTED, APPROVED."""
        who = require_role(viewer, *RETURN_READERS)
        size = clamp_page_size(first, self._max)
        wanted = sorted({s.value for s in (statuses or WAITING)})
        query = (
            select(ReturnRequest, col(Order.code))
            .join(Order, col(Order.id) == col(ReturnRequest.order_id))
            .where(col(ReturnRequest.status).in_(wanted))
        )
        if after:
            at_iso, last_id = self._cursors.decode("returns", after)
            at = datetime.fromisoformat(str(at_iso))
            query = query.where(
                or_(
                    col(ReturnRequest.requested_at) > at,
                    and_(
                        col(ReturnRequest.requested_at) == at, col(ReturnRequest.id) > int(last_id)
                    ),
                )
            )
        query = query.order_by(col(ReturnRequest.requested_at), col(ReturnRequest.id))
        await self._audit.record(
            actor=who, action="returns_queue", outcome="listed", reason=",".join(wanted)
        )
        async with self._db.read() as session:
            rows = [(ret, code) for ret, code in (await session.execute(query.limit(size + 1)))]
        page = rows[:size]
        return ReturnsPage(
            returns=page,
            cursors=[
                self._cursors.encode("returns", [ret.requested_at.isoformat(), ret.id])
                for ret, _ in page
            ],
            has_next_page=len(rows) > size,
        )
