"""Staff accounts, run by an admin through the API: list them, create one, change a role,
deactivate one. ADMIN only; every change is audited in the transaction that makes it
(actor, the account changed as the entry's subject, the role change as its reason).

Staff here means role != CUSTOMER: customers register themselves and are not managed
here. Deactivating ends every session of the account in the same transaction (refresh
tokens belong to a session, so they die with it) and the account's `active` flag is what
`AccountService.authenticate`, `login` and `refresh` check, so an access token that has
not expired yet is refused on its very next request. An admin can neither deactivate nor
demote themself (there must always be someone left to undo a mistake). The first admin
still comes from the command line (`orders-api create-user`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from app.accounts.models import AuthSession, User
from app.accounts.service import MAX_NAME, new_account, normalise_email
from app.audit.service import AuditLog
from app.db import Database, utcnow
from app.errors import BadUserInput, Conflict
from app.events.broker import Broker, session_topic
from app.pagination import CursorCodec, clamp_page_size
from app.security.passwords import Passwords
from app.security.policy import Viewer, require_role
from app.security.roles import Role
from app.tables import table

STAFF_ROLES = tuple(role for role in Role if role is not Role.CUSTOMER)
NO_STAFF_ACCOUNT = "No staff account has this email."


@dataclass(frozen=True)
class StaffPage:
    users: list[User]
    cursors: list[str]
    has_next_page: bool


def _staff_role(role: Role) -> Role:
    if role is Role.CUSTOMER:
        raise BadUserInput(
            "Staff accounts have a staff role (SUPPORT, WAREHOUSE or ADMIN); customers "
            "register themselves.",
            field="role",
        )
    return role


class StaffAdmin:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        audit: AuditLog,
        events: Broker,
        cursors: CursorCodec,
        max_page_size: int,
    ) -> None:
        self._db = db
        self._passwords = passwords
        self._audit = audit
        self._events = events
        self._cursors = cursors
        self._max = max_page_size

    async def list(self, viewer: Viewer | None, first: int | None, after: str | None) -> StaffPage:
        """`staffUsers`: active and deactivated staff accounts, by email."""
        require_role(viewer, Role.ADMIN)
        size = clamp_page_size(first, self._max)
        query = select(User).where(col(User.role) != Role.CUSTOMER.value)
        if after:
            (last_email,) = self._cursors.decode("staff", after)
            query = query.where(col(User.email) > str(last_email))
        query = query.order_by(col(User.email)).limit(size + 1)
        async with self._db.read() as session:
            rows = list((await session.execute(query)).scalars())
        page = rows[:size]
        return StaffPage(
            users=page,
            cursors=[self._cursors.encode("staff", [user.email]) for user in page],
            has_next_page=len(rows) > size,
        )

    async def create(
        self, viewer: Viewer | None, email: str, name: str, password: str, role: Role
    ) -> User:
        """`createStaffUser`: a name required, a staff role, then the account checked and
        hashed as a customer's is (`new_account`); saved with its audit entry."""
        admin = require_role(viewer, Role.ADMIN)
        email = normalise_email(email)
        name = " ".join(name.split())
        if not name or len(name) > MAX_NAME:
            raise BadUserInput(f"Give a name of 1 to {MAX_NAME} characters.", field="name")
        role = _staff_role(role)
        user = await new_account(self._passwords, email, password, name=name, role=role)
        async with self._db.write() as session:
            session.add(user)
            try:
                await session.flush()
            except IntegrityError as exc:
                raise Conflict("An account with this email already exists.", field="email") from exc
            await self._audit.record(
                actor=admin,
                action="staff_user_created",
                outcome="created",
                reason=f"role {role.value}",
                subject=email,
                session=session,
            )
            await session.commit()
        return user

    async def set_role(self, viewer: Viewer | None, email: str, role: Role) -> User:
        """`setUserRole`: from one staff role to another; takes effect on the account's next
        request (the role is read with the session, not from the token)."""
        admin = require_role(viewer, Role.ADMIN)
        email = normalise_email(email)
        role = _staff_role(role)
        async with self._db.write() as session:
            user = await self._staff_account(session, email)
            if user.id == admin.user_id and role is not Role.ADMIN:
                raise BadUserInput("You cannot take the ADMIN role from yourself.", field="email")
            before = user.role
            user.role = role.value
            await self._audit.record(
                actor=admin,
                action="staff_role_changed",
                outcome="changed" if before != role.value else "unchanged",
                reason=f"{before} -> {role.value}",
                subject=email,
                session=session,
            )
            await session.commit()
        return user

    async def deactivate(self, viewer: Viewer | None, email: str) -> User:
        """`deactivateUser`: the flag and the end of every session in one transaction."""
        admin = require_role(viewer, Role.ADMIN)
        email = normalise_email(email)
        async with self._db.write() as session:
            user = await self._staff_account(session, email)
            if user.id == admin.user_id:
                raise BadUserInput("You cannot deactivate your own account.", field="email")
            was_active = user.active
            user.active = False
            ended = list(
                (
                    await session.execute(
                        update(AuthSession)
                        .where(
                            col(AuthSession.user_id) == user.id,
                            col(AuthSession.revoked_at).is_(None),
                        )
                        .values(revoked_at=utcnow(), revoked_reason="deactivated")
                        .returning(table(AuthSession).c.id)
                    )
                ).scalars()
            )
            await self._audit.record(
                actor=admin,
                action="staff_user_deactivated",
                outcome="deactivated" if was_active else "unchanged",
                reason=f"role {user.role}, {len(ended)} sessions ended",
                subject=email,
                session=session,
            )
            await session.commit()
        for session_id in ended:  # its live streams close now too
            self._events.publish(session_topic(session_id), {"type": "SESSION_ENDED"})
        return user

    @staticmethod
    async def _staff_account(session: AsyncSession, email: str) -> User:
        """The staff account with this email, row-locked; a customer's answers as unknown."""
        user: User | None = (
            await session.execute(
                select(User)
                .where(col(User.email) == email, col(User.role) != Role.CUSTOMER.value)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if user is None:
            raise BadUserInput(NO_STAFF_ACCOUNT, field="email")
        return user
