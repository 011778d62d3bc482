"""GraphQL types of the accounts domain. Fields are listed one by one: a new column stays
private until someone exposes it here."""

from __future__ import annotations

from datetime import datetime

import strawberry

from app.accounts.models import User as UserRow
from app.graphql.common import PageInfo, utc
from app.graphql.errors import UserError
from app.security.roles import Role as RoleEnum

strawberry.enum(RoleEnum, name="Role")  # registers the enum on the class


@strawberry.type(name="User")
class UserType:
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

    @strawberry.field
    def created_at(self) -> datetime:
        created = utc(self.row.created_at)
        assert created is not None
        return created


@strawberry.type
class AuthTokens:
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int = strawberry.field(description="Seconds until the access token expires.")


@strawberry.type
class AuthPayload:
    user: UserType | None = None
    tokens: AuthTokens | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LogoutPayload:
    ok: bool
    sessions_ended: int = 0
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.input
class RegisterInput:
    email: str
    password: str
    name: str = ""


@strawberry.type(description="A staff account (role other than CUSTOMER), for admins.")
class StaffUser(UserType):
    """A User's fields, and whether the account may still log in."""

    @strawberry.field(description="False once deactivated: it can no longer log in.")
    def active(self) -> bool:
        return bool(self.row.active)


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
