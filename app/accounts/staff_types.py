"""GraphQL types of staff account administration (ADMIN only)."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.accounts.models import User as UserRow
from app.graphql.common import PageInfo, utc
from app.graphql.errors import UserError
from app.security.roles import Role as RoleEnum


@strawberry.type(description="A staff account (role other than CUSTOMER), for admins.")
class StaffUser:
    row: strawberry.Private[UserRow]

    @strawberry.field
    def email(self) -> str:
        return self.row.email

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def role(self) -> RoleEnum:
        return RoleEnum(self.row.role)

    @strawberry.field(description="False once deactivated: it can no longer log in.")
    def active(self) -> bool:
        return bool(self.row.active)

    @strawberry.field
    def created_at(self) -> datetime:
        created = utc(self.row.created_at)
        assert created is not None
        return created


@strawberry.type
class StaffUserEdge:
    cursor: str
    node: StaffUser


@strawberry.type
class StaffUserConnection:
    edges: list[StaffUserEdge]
    page_info: PageInfo


@strawberry.type
class StaffUserPayload:
    user: StaffUser | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)
