"""Account use cases: register, login, refresh (rotation + reuse detection), logout, auth."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from app.accounts.models import AuthSession, RefreshToken, User
from app.audit.service import AuditLog
from app.db import Database, utcnow
from app.errors import BadUserInput, Conflict, DomainError, ErrorCode, Unauthenticated
from app.events.broker import Broker, InProcessBroker, session_topic
from app.security.passwords import Passwords, password_problem
from app.security.policy import Viewer
from app.security.ratelimit import Limiter
from app.security.roles import Role
from app.security.tokens import (
    AccessTokens,
    InvalidToken,
    new_opaque_token,
    new_public_id,
    token_digest,
)
from app.tables import rows_changed, table

EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")
MAX_EMAIL = 254
MAX_NAME = 120


# Every authenticated request runs this: built once, executed with parameters.
# (Columns passed as one tuple: `Database.fetch_one` takes a Select of any width.)
_LIVE_SESSION_COLUMNS: tuple[Any, ...] = (
    col(User.id),
    col(User.public_id),
    col(User.role),
    col(User.email),
    col(AuthSession.id),
)
_LIVE_SESSION = (
    select(*_LIVE_SESSION_COLUMNS)
    .join(AuthSession, col(AuthSession.user_id) == col(User.id))
    .where(
        col(AuthSession.public_id) == bindparam("sid"),
        col(AuthSession.revoked_at).is_(None),
        col(User.public_id) == bindparam("uid"),
        col(User.active).is_(True),
    )
)


class InvalidCredentials(DomainError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "Email or password is incorrect."
    user_error = True


# One answer for every refused access token (forged, expired, wrong claims, logged out):
# a distinct "session has ended" message told a token thief the signature was good.
INVALID_ACCESS_TOKEN = "The access token is invalid or expired."


class InvalidRefreshToken(DomainError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "The refresh token is invalid or expired. Log in again."
    user_error = True


@dataclass(frozen=True)
class AuthResult:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int


def normalise_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > MAX_EMAIL or not EMAIL_RE.match(email):
        raise BadUserInput("Enter a valid email address.", field="email")
    return email


async def new_account(
    passwords: Passwords, email: str, password: str, *, name: str, role: Role
) -> User:
    """A checked, unsaved account: the email normalised, the password held to the rules
    (`password_problem`, which knows the email) and hashed on the hashing thread, never on
    the event loop. The caller checks the name by its own rules first and saves the row,
    with whatever else its transaction holds (a staff account's audit entry)."""
    email = normalise_email(email)
    problem = password_problem(password, email)
    if problem:
        raise BadUserInput(problem, field="password")
    return User(
        public_id=new_public_id(),
        email=email,
        password_hash=await passwords.hash(password),
        name=name,
        role=role.value,
    )


class AccountService:
    def __init__(
        self,
        db: Database,
        passwords: Passwords,
        tokens: AccessTokens,
        limiter: Limiter,
        refresh_ttl_seconds: int,
        events: Broker | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self._events: Broker = events or InProcessBroker()
        self._audit = audit
        self._db = db
        self._passwords = passwords
        self._tokens = tokens
        self._limiter = limiter
        self._refresh_ttl = timedelta(seconds=refresh_ttl_seconds)

    # -- accounts -----------------------------------------------------------------------
    async def create_user(
        self, email: str, password: str, *, name: str = "", role: Role = Role.CUSTOMER
    ) -> User:
        email = normalise_email(email)
        name = name.strip()
        if len(name) > MAX_NAME:
            raise BadUserInput(f"Name must have at most {MAX_NAME} characters.", field="name")
        user = await new_account(self._passwords, email, password, name=name, role=role)
        async with self._db.write() as session:
            session.add(user)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise Conflict("An account with this email already exists.", field="email") from exc
        return user

    async def register(
        self, email: str, password: str, name: str, client_ip: str | None = None
    ) -> AuthResult:
        """Self-registration always makes a CUSTOMER; staff come from the CLI. Each attempt
        spends one unit of the address's registration budget (`client_ip`; None only for
        callers that are not a client request)."""
        if client_ip is not None:
            await self._limiter.charge_registration(client_ip)
        user = await self.create_user(email, password, name=name, role=Role.CUSTOMER)
        return await self._start_session(user)

    async def login(self, email: str, password: str, client_ip: str) -> AuthResult:
        email_key = email.strip().lower()[:MAX_EMAIL]
        # Counted before the password is checked, atomically: of any number of attempts
        # arriving at once, one per back-off step gets to the hash (DESIGN §4).
        await self._limiter.admit_login(email_key, client_ip)
        async with self._db.read() as session:
            user = (
                await session.execute(select(User).where(col(User.email) == email_key))
            ).scalar_one_or_none()
        # Unknown email: verify against a dummy hash, the same argon2 work as a wrong password.
        ok = await self._passwords.verify(user.password_hash if user else None, password)
        # A deactivated account fails like a wrong password (the same hash work was done).
        if user is None or not ok or not user.active:
            await self._audit_staff_login(user, "failed", client_ip)
            raise InvalidCredentials()
        await self._audit_staff_login(user, "success", client_ip)
        await self._limiter.login_succeeded(email_key, client_ip)
        if self._passwords.needs_rehash(user.password_hash):
            rehashed = await self._passwords.hash(password)
            async with self._db.write() as session:
                await session.execute(
                    update(User).where(col(User.id) == user.id).values(password_hash=rehashed)
                )
                await session.commit()
        return await self._start_session(user)

    async def _audit_staff_login(self, user: User | None, outcome: str, client_ip: str) -> None:
        """Staff logins (and failed attempts on staff accounts) go to the audit log."""
        if self._audit is None or user is None or user.role == Role.CUSTOMER.value:
            return
        await self._audit.record(
            actor=None,
            actor_user_id=user.id,
            actor_role=user.role,
            action="login",
            outcome=outcome,
            client_ip=client_ip,
        )

    # -- sessions and tokens ------------------------------------------------------------
    async def _start_session(self, user: User) -> AuthResult:
        assert user.id is not None
        now = utcnow()
        auth_session = AuthSession(public_id=new_public_id(), user_id=user.id, created_at=now)
        refresh = new_opaque_token()
        async with self._db.write() as session:
            session.add(auth_session)
            await session.flush()
            assert auth_session.id is not None
            session.add(
                RefreshToken(
                    session_id=auth_session.id,
                    token_hash=token_digest(refresh),
                    created_at=now,
                    expires_at=now + self._refresh_ttl,
                )
            )
            await session.commit()
        return self._result(user, auth_session, refresh)

    def _result(self, user: User, auth_session: AuthSession, refresh: str) -> AuthResult:
        access = self._tokens.issue(
            user.public_id, user.role, auth_session.public_id, datetime.now(UTC)
        )
        return AuthResult(user, access, refresh, self._tokens.ttl_seconds)

    async def refresh(self, refresh_token: str) -> AuthResult:
        """Rotate: the presented token is spent and a new one issued in the same family.

        Presenting an already-rotated token means it was copied: the whole family (the
        session) is revoked, so both the thief and the victim must log in again.
        """
        now = utcnow()
        digest = token_digest(refresh_token)
        async with self._db.write() as session:
            row = (
                await session.execute(
                    select(RefreshToken, AuthSession, User)
                    .join(AuthSession, col(RefreshToken.session_id) == col(AuthSession.id))
                    .join(User, col(AuthSession.user_id) == col(User.id))
                    .where(col(RefreshToken.token_hash) == digest)
                )
            ).one_or_none()
            if row is None:
                raise InvalidRefreshToken()
            token, auth_session, user = row
            if auth_session.revoked_at is not None or not user.active:
                raise InvalidRefreshToken()
            if token.expires_at <= now and token.rotated_at is None:
                raise InvalidRefreshToken()
            # A rotated token presented again (expired or not) was copied: the conditional
            # update below finds it spent and revokes the family.
            # Spend the token with a conditional update: of two concurrent uses, one wins.
            spent = await session.execute(
                update(RefreshToken)
                .where(col(RefreshToken.id) == token.id, col(RefreshToken.rotated_at).is_(None))
                .values(rotated_at=now)
            )
            if rows_changed(spent) != 1:
                await session.execute(
                    update(AuthSession)
                    .where(col(AuthSession.id) == auth_session.id)
                    .values(revoked_at=now, revoked_reason="refresh-reuse")
                )
                await session.commit()
                assert auth_session.id is not None
                self._events.publish(session_topic(auth_session.id), {"type": "SESSION_ENDED"})
                raise InvalidRefreshToken()
            new_refresh = new_opaque_token()
            assert auth_session.id is not None  # read from the database: it has its id
            session.add(
                RefreshToken(
                    session_id=auth_session.id,
                    token_hash=token_digest(new_refresh),
                    created_at=now,
                    expires_at=now + self._refresh_ttl,
                )
            )
            await session.commit()
        return self._result(user, auth_session, new_refresh)

    async def logout(self, viewer: Viewer) -> None:
        await self._revoke(col(AuthSession.id) == viewer.session_id, "logout")

    async def logout_all(self, viewer: Viewer) -> int:
        return await self._revoke(col(AuthSession.user_id) == viewer.user_id, "logout-all")

    async def _revoke(self, condition: ColumnElement[bool], reason: str) -> int:
        async with self._db.write() as session:
            ended = list(
                (
                    await session.execute(
                        update(AuthSession)
                        .where(condition, col(AuthSession.revoked_at).is_(None))
                        .values(revoked_at=utcnow(), revoked_reason=reason)
                        .returning(table(AuthSession).c.id)
                    )
                ).scalars()
            )
            await session.commit()
        for session_id in ended:  # live streams of these sessions close now
            self._events.publish(session_topic(session_id), {"type": "SESSION_ENDED"})
        return len(ended)

    async def authenticate(self, access_token: str) -> Viewer:
        """A valid signature is not enough: the session must still be live (logout is instant)."""
        try:
            claims = self._tokens.decode(access_token)
        except InvalidToken as exc:
            raise Unauthenticated(INVALID_ACCESS_TOKEN) from exc
        row = await self._db.fetch_one(
            _LIVE_SESSION, {"sid": claims.session_id, "uid": claims.user_id}
        )
        if row is None:
            raise Unauthenticated(INVALID_ACCESS_TOKEN)
        user_id, public_id, role, email, session_id = row
        return Viewer(
            user_id=user_id,
            public_id=public_id,
            role=Role(role),
            session_id=session_id,
            email=email,
        )

    async def get_user(self, user_id: int) -> User:
        async with self._db.read() as session:
            user = await session.get(User, user_id)
        if user is None:
            raise Unauthenticated()
        return user
