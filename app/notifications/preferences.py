"""Which optional emails a customer wants, and the one-click unsubscribe link (RFC 8058).

Milestone emails (out for delivery, delayed, delivery attempted, delivery exception,
delivered) are optional: a customer may switch them off in their account
(`updateNotificationPreferences`) or with the link every one of them carries. Order
confirmation, cancellation, shipping, refunds and return steps are always sent.

The unsubscribe token is opaque and single-purpose: `base64url(payload).base64url(mac)`,
the payload `v1|<user public id>|<purpose>|<expiry, unix seconds>`, the MAC an HMAC-SHA256
under a key derived from JWT_SECRET for this purpose only. It names the customer (their
public id, never their email address) and nothing about any order. It expires
(`TOKEN_TTL`, counted from when the email was queued, so a resend carries the same
token), and works once: the SHA-256 of a used token is kept.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from app.accounts.models import User
from app.db import Database, utcnow
from app.notifications.models import NotificationPreference, UsedUnsubscribeToken
from app.security.policy import Viewer, require_viewer

PURPOSE = "milestone-emails"
TOKEN_TTL = timedelta(days=60)
# The kinds of email a customer may switch off; everything else is always sent.
MILESTONE_KINDS = frozenset(
    {
        "shipment_out_for_delivery",
        "shipment_delayed",
        "shipment_attempted",
        "shipment_exception",
        "shipment_delivered",
    }
)


class TokenRefused(Exception):
    """Why an unsubscribe token is not accepted: `reason` is forged, expired or used."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Makes and checks unsubscribe tokens; `url` is where the link points (this API)."""

    key: bytes
    api_url: str

    @classmethod
    def from_secret(cls, secret: str, api_url: str) -> UnsubscribeLinks:
        # A key of its own: a token made here is never valid anywhere else, nor the reverse.
        key = hmac.new(secret.encode(), b"orders-api/unsubscribe/v1", hashlib.sha256).digest()
        return cls(key, api_url.rstrip("/"))

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self.key, payload, hashlib.sha256).digest()

    def token(self, user_public_id: str, issued_at: datetime) -> str:
        expires = int((issued_at.astimezone(UTC) + TOKEN_TTL).timestamp())
        payload = f"v1|{user_public_id}|{PURPOSE}|{expires}".encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def url(self, user_public_id: str, issued_at: datetime) -> str:
        return f"{self.api_url}/unsubscribe?token={quote(self.token(user_public_id, issued_at))}"

    def verify(self, token: str, now: datetime) -> str:
        """The user public id a token was made for, or TokenRefused("forged"/"expired")."""
        try:
            payload_b64, mac_b64 = token.split(".")
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except ValueError:
            raise TokenRefused("forged") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise TokenRefused("forged")
        try:
            version, public_id, purpose, expires = payload.decode().split("|")
            expiry = int(expires)
        except ValueError:
            raise TokenRefused("forged") from None
        if version != "v1" or purpose != PURPOSE:
            raise TokenRefused("forged")
        if now.timestamp() >= expiry:
            raise TokenRefused("expired")
        return public_id


async def milestone_emails_wanted(session: AsyncSession, user_id: int) -> bool:
    wanted = (
        await session.execute(
            select(NotificationPreference.milestone_emails).where(
                col(NotificationPreference.user_id) == user_id
            )
        )
    ).scalar_one_or_none()
    return True if wanted is None else bool(wanted)


async def _set(session: AsyncSession, user_id: int, milestone_emails: bool) -> None:
    row = await session.get(NotificationPreference, user_id)
    if row is None:
        row = NotificationPreference(user_id=user_id)
    row.milestone_emails = milestone_emails
    row.updated_at = utcnow()
    session.add(row)


class PreferenceService:
    def __init__(self, db: Database, links: UnsubscribeLinks) -> None:
        self._db = db
        self.links = links

    async def get(self, viewer: Viewer | None) -> bool:
        """Whether the signed-in customer gets milestone emails (their own setting only)."""
        who = require_viewer(viewer)
        async with self._db.read() as session:
            return await milestone_emails_wanted(session, who.user_id)

    async def update(self, viewer: Viewer | None, *, milestone_emails: bool) -> bool:
        who = require_viewer(viewer)
        async with self._db.write() as session:
            await _set(session, who.user_id, milestone_emails)
            await session.commit()
        return milestone_emails

    async def unsubscribe(self, token: str) -> None:
        """Switch milestone emails off for the token's customer; TokenRefused if the token
        is forged, expired or already used (nothing changes then)."""
        public_id = self.links.verify(token, utcnow())
        digest = hashlib.sha256(token.encode()).hexdigest()
        try:
            async with self._db.write() as session:
                if await session.get(UsedUnsubscribeToken, digest) is not None:
                    raise TokenRefused("used")
                user_id = (
                    await session.execute(select(User.id).where(col(User.public_id) == public_id))
                ).scalar_one_or_none()
                if user_id is None:  # a deleted account: a valid token with nothing to do
                    raise TokenRefused("forged")
                session.add(UsedUnsubscribeToken(token_hash=digest))
                await _set(session, user_id, False)
                await session.commit()
        except IntegrityError:  # the same token used twice at once: the other one won
            raise TokenRefused("used") from None
