"""Tables: users, login sessions (one refresh-token family each), refresh tokens."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.db import utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True, index=True)
    email: str = Field(max_length=254, unique=True, index=True)
    password_hash: str = Field(max_length=255)
    name: str = Field(default="", max_length=120)
    role: str = Field(default="CUSTOMER", max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    # False once an admin deactivates the account: no login, refresh or access token works.
    active: bool = Field(default=True)


class AuthSession(SQLModel, table=True):
    """A login. Its refresh tokens form one family; revoking it kills the access token too."""

    __tablename__ = "auth_sessions"

    id: int | None = Field(default=None, primary_key=True)
    public_id: str = Field(max_length=32, unique=True, index=True)
    user_id: int = Field(foreign_key="users.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = Field(default=None)
    revoked_reason: str | None = Field(default=None, max_length=32)


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="auth_sessions.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    rotated_at: datetime | None = Field(default=None)
