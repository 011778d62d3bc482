"""staffUsers, createStaffUser, setUserRole, deactivateUser (ADMIN only, audited)."""

from __future__ import annotations

import strawberry

from app.accounts.models import User
from app.accounts.staff_types import (
    StaffUser,
    StaffUserConnection,
    StaffUserEdge,
    StaffUserPayload,
)
from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.graphql.errors import UserError, run_mutation
from app.security.roles import Role as RoleEnum


def _payload(user: User) -> StaffUserPayload:
    return StaffUserPayload(user=StaffUser(row=user))


def _failed(errors: list[UserError]) -> StaffUserPayload:
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
            return _payload(
                await ctx.services.staff_admin.create(viewer, email, name, password, role)
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(
        description="Give a staff account another staff role; effective on its next request. "
        "ADMIN only, audited. An admin cannot demote themself."
    )
    async def set_user_role(self, info: Info, email: str, role: RoleEnum) -> StaffUserPayload:
        ctx = info.context

        async def work() -> StaffUserPayload:
            return _payload(
                await ctx.services.staff_admin.set_role(await ctx.viewer(), email, role)
            )

        return await run_mutation(work, _failed)

    @strawberry.mutation(
        description="Deactivate a staff account: every session ends at once and it can no "
        "longer log in. ADMIN only, audited. An admin cannot deactivate themself."
    )
    async def deactivate_user(self, info: Info, email: str) -> StaffUserPayload:
        ctx = info.context

        async def work() -> StaffUserPayload:
            return _payload(await ctx.services.staff_admin.deactivate(await ctx.viewer(), email))

        return await run_mutation(work, _failed)
