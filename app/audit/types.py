"""GraphQL types of the audit log."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.audit.service import AuditRecord
from app.graphql.common import PageInfo, utc


@strawberry.type(name="AuditEntry")
class AuditEntryType:
    record: strawberry.Private[AuditRecord]

    @strawberry.field
    def at(self) -> datetime:
        return utc(self.record.entry.created_at)

    @strawberry.field(description="Email of the staff member or customer who acted.")
    def actor_email(self) -> str | None:
        return self.record.actor_email

    @strawberry.field
    def actor_role(self) -> str:
        return self.record.entry.actor_role

    @strawberry.field(description="support_lookup, login, pack_order, ship_order, …")
    def action(self) -> str:
        return self.record.entry.action

    @strawberry.field(description="The order code, masked (first and last group).")
    def code(self) -> str | None:
        return self.record.entry.masked_code

    @strawberry.field(
        description=(
            "Who the entry is about when it is not an order: the staff account an admin "
            "changed, or the customer email a support agent searched for (masked)."
        )
    )
    def subject(self) -> str | None:
        return self.record.entry.subject

    @strawberry.field
    def outcome(self) -> str:
        return self.record.entry.outcome

    @strawberry.field
    def reason(self) -> str | None:
        return self.record.entry.reason

    @strawberry.field
    def client_ip(self) -> str | None:
        return self.record.entry.client_ip


@strawberry.type
class AuditEntryEdge:
    cursor: str
    node: AuditEntryType


@strawberry.type
class AuditEntryConnection:
    edges: list[AuditEntryEdge]
    page_info: PageInfo


@strawberry.input
class AuditFilterInput:
    action: list[str] | None = None
    actor_email: str | None = None
    code: str | None = strawberry.field(default=None, description="A full order code.")
    since: datetime | None = None
    until: datetime | None = None
