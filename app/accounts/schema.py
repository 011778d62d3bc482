"""Accounts: register, login, refreshToken, logout, logoutAll, me."""

from __future__ import annotations

import strawberry

from app.accounts.service import AuthResult
from app.accounts.types import AuthPayload, AuthTokens, LogoutPayload, RegisterInput, UserType
from app.graphql.context import Info
from app.graphql.errors import UserError, run_mutation
from app.security.policy import require_viewer


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
