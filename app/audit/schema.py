"""auditLog: ADMIN only, read-only (there is no mutation that edits or deletes entries)."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from app.audit.service import AuditFilter
from app.audit.types import AuditEntryConnection, AuditEntryEdge, AuditEntryType, AuditFilterInput
from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.security import codes
from app.security.policy import require_role
from app.security.roles import Role


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


@strawberry.type
class AuditQuery:
    @strawberry.field(description="Who looked at or changed which order, when and why. ADMIN.")
    async def audit_log(
        self,
        info: Info,
        filter: AuditFilterInput | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> AuditEntryConnection:
        ctx = info.context
        viewer = await ctx.viewer()
        require_role(viewer, Role.ADMIN)  # before the filter's code is even parsed
        f = filter or AuditFilterInput()
        page = await ctx.services.audit.list(
            viewer,
            AuditFilter(
                actions=list(f.action or []),
                actor_email=f.actor_email,
                code=codes.normalise(f.code) if f.code else None,
                since=_utc(f.since),
                until=_utc(f.until),
            ),
            first,
            after,
        )
        return AuditEntryConnection(
            edges=[
                AuditEntryEdge(cursor=cursor, node=AuditEntryType(record=record))
                for record, cursor in zip(page.records, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
