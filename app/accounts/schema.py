"""Accounts: register, login, refreshToken, logout, logoutAll, me; and staff accounts for
admins: staffUsers, createStaffUser, setUserRole, deactivateUser (app/accounts/staff_admin.py)."""

from __future__ import annotations

import strawberry

from app.accounts.models import User
from app.accounts.service import AuthResult
from app.accounts.types import (
    AuthPayload,
    AuthTokens,
    LogoutPayload,
    RegisterInput,
    StaffUser,
    StaffUserConnection,
    StaffUserEdge,
    StaffUserPayload,
    UserType,
)
from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.graphql.errors import UserError, run_mutation
from app.security.policy import require_viewer
from app.security.roles import Role as RoleEnum


def _auth_payload(result: AuthResult) -> AuthPayload:
    return AuthPayload(
        user=UserType(row=result.user),
        tokens=AuthTokens(
            access_token=result.access_token,
            refresh_token=result.refresh_token,
            expires_in=result.expires_in,
        ),
    )


def _auth_errors(errors: list[UserError]) -> AuthPayload:
    return AuthPayload(user_errors=errors)


@strawberry.type
class AccountsQuery:
    @strawberry.field(description="The logged-in user, or null for an anonymous caller.")
    async def me(self, info: Info) -> UserType | None:
        viewer = await info.context.viewer()
        if viewer is None:
            return None
        return UserType(row=await info.context.services.accounts.get_user(viewer.user_id))


@strawberry.type
class AccountsMutation:
    # register and login hash a password (argon2id, ~0.1 s of CPU): Passwords does it in a
    # worker thread, so the event loop keeps serving everyone else meanwhile.
    @strawberry.mutation(description="Create a customer account and log in.")
    async def register(self, info: Info, input: RegisterInput) -> AuthPayload:
        accounts = info.context.services.accounts
        ip = info.context.client_ip

        async def work() -> AuthPayload:
            return _auth_payload(
                await accounts.register(input.email, input.password, input.name, ip)
            )

        return await run_mutation(work, _auth_errors)

    @strawberry.mutation(description="Exchange email and password for tokens.")
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        accounts = info.context.services.accounts
        ip = info.context.client_ip

        async def work() -> AuthPayload:
            return _auth_payload(await accounts.login(email, password, ip))

        return await run_mutation(work, _auth_errors)

    @strawberry.mutation(
        description="Spend a refresh token for a new pair. Reusing a spent one ends the session."
    )
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        accounts = info.context.services.accounts

        async def work() -> AuthPayload:
            return _auth_payload(await accounts.refresh(refresh_token))

        return await run_mutation(work, _auth_errors)

    @strawberry.mutation(description="End this session: its tokens stop working at once.")
    async def logout(self, info: Info) -> LogoutPayload:
        viewer = require_viewer(await info.context.viewer())
        await info.context.services.accounts.logout(viewer)
        return LogoutPayload(ok=True, sessions_ended=1)

    @strawberry.mutation(description="End every session of this account, on every device.")
    async def logout_all(self, info: Info) -> LogoutPayload:
        viewer = require_viewer(await info.context.viewer())
        ended = await info.context.services.accounts.logout_all(viewer)
        return LogoutPayload(ok=True, sessions_ended=ended)


def _staff_payload(user: User) -> StaffUserPayload:
    return StaffUserPayload(user=StaffUser(row=user))


def _staff_failed(errors: list[UserError]) -> StaffUserPayload:
    return StaffUserPayload(user_errors=errors)


@strawberry.type
class StaffAdminQuery:
    @strawberry.field(
        description="Staff accounts (role other than CUSTOMER), active and deactivated, by "
        "email. ADMIN only."
    )
    async def staff_users(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> StaffUserConnection:
        ctx = info.context
        page = await ctx.services.staff_admin.list(await ctx.viewer(), first, after)
        return StaffUserConnection(
            edges=[
                StaffUserEdge(cursor=cursor, node=StaffUser(row=user))
                for user, cursor in zip(page.users, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )


@strawberry.type
class StaffAdminMutation:
    @strawberry.mutation(
        description="Create a staff account (SUPPORT, WAREHOUSE or ADMIN). ADMIN only, audited."
    )
    async def create_staff_user(
        self, info: Info, email: str, name: str, password: str, role: RoleEnum
    ) -> StaffUserPayload:
        ctx = info.context

        async def work() -> StaffUserPayload:
            viewer = await ctx.viewer()
            return _staff_payload(
                await ctx.services.staff_admin.create(viewer, email, name, password, role)
            )

        return await run_mutation(work, _staff_failed)

    @strawberry.mutation(
        description="Give a staff account another staff role; effective on its next request. "
        "ADMIN only, audited. An admin cannot demote themself."
    )
    async def set_user_role(self, info: Info, email: str, role: RoleEnum) -> StaffUserPayload:
        ctx = info.context

        async def work() -> StaffUserPayload:
            return _staff_payload(
                await ctx.services.staff_admin.set_role(await ctx.viewer(), email, role)
            )

        return await run_mutation(work, _staff_failed)

    @strawberry.mutation(
        description="Deactivate a staff account: every session ends at once and it can no "
        "longer log in. ADMIN only, audited. An admin cannot deactivate themself."
    )
    async def deactivate_user(self, info: Info, email: str) -> StaffUserPayload:
        ctx = info.context

        async def work() -> StaffUserPayload:
            return _staff_payload(
                await ctx.services.staff_admin.deactivate(await ctx.viewer(), email)
            )

        return await run_mutation(work, _staff_failed)
