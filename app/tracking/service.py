"""Shareable tracking links (DESIGN §1.10): the owner mints a revocable, expiring token;
whoever holds it sees shipment status and estimated delivery only.

Tokens are made like order codes (75 random bits + check symbol) and stored as SHA-256
digests. Viewing is public, so it has its own budget per token and per client IP, and
failed views count toward the IP's failed-lookup lockout. Unknown, expired and revoked
tokens are one query and one answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import col

from app.db import Database, utcnow
from app.errors import BadUserInput, ErrorCode, InvalidOrderCode, OrderNotFound
from app.orders.models import Order
from app.security import codes
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.security.ratelimit import Limiter
from app.shipments.models import Shipment, TrackingEvent
from app.shipments.service import ShipmentService
from app.tracking.models import TrackingLink

MIN_HOURS = 1
MAX_HOURS = 24 * 30


class TrackingLinkNotFound(OrderNotFound):
    code = ErrorCode.ORDER_NOT_FOUND
    default_message = "This tracking link does not exist or is no longer valid."


@dataclass(frozen=True)
class MintedLink:
    token: str  # shown once, never stored
    expires_at: datetime


@dataclass(frozen=True)
class PublicTracking:
    estimated_delivery: date | None
    shipments: list[Shipment]
    events: dict[int, list[TrackingEvent]]


def digest(token: str) -> str:
    return hashlib.sha256(("tracking-link:" + token).encode()).hexdigest()


class TrackingLinkService:
    def __init__(
        self, db: Database, lookups: CodeLookups, limiter: Limiter, shipments: ShipmentService
    ) -> None:
        self._db = db
        self._lookups = lookups
        self._limiter = limiter
        self._shipments = shipments

    async def create(
        self, viewer: Viewer | None, raw_code: str, client_ip: str, expires_in_hours: int
    ) -> MintedLink:
        who, code = await self._lookups.begin(viewer, raw_code, client_ip)
        minted = await self._mint(who, code, expires_in_hours)
        if minted is None:
            # counted once the transaction has ended: the limiter may be Redis
            await self._lookups.failed(who, client_ip)
            raise OrderNotFound()
        return minted

    async def _mint(self, who: Viewer, code: str, expires_in_hours: int) -> MintedLink | None:
        """A new link to `who`'s order `code`, or None when they have no such order."""
        async with self._db.write() as session:
            order = (
                await session.execute(
                    select(Order).where(col(Order.code) == code, col(Order.user_id) == who.user_id)
                )
            ).scalar_one_or_none()
            if order is None or order.id is None:
                return None  # leaving without a commit rolls back
            if not MIN_HOURS <= expires_in_hours <= MAX_HOURS:
                raise BadUserInput(
                    f"expiresInHours must be between {MIN_HOURS} and {MAX_HOURS}.",
                    field="expiresInHours",
                )
            token = codes.generate()
            expires_at = utcnow() + timedelta(hours=expires_in_hours)
            session.add(
                TrackingLink(
                    token_digest=digest(token),
                    order_id=order.id,
                    created_by=who.user_id,
                    expires_at=expires_at,
                )
            )
            await session.commit()
        return MintedLink(token, expires_at)

    async def revoke(self, viewer: Viewer | None, raw_token: str, client_ip: str) -> None:
        """Owner only; someone else's token answers like an unknown one."""
        who, token = await self._lookups.begin(viewer, raw_token, client_ip)
        if not await self._revoke_owned(who, token):
            # counted once the transaction has ended: the limiter may be Redis
            await self._lookups.failed(who, client_ip)
            raise TrackingLinkNotFound()

    async def _revoke_owned(self, who: Viewer, token: str) -> bool:
        """Revoke `who`'s live link `token`; False when they have none."""
        owned = (
            select(TrackingLink.id)
            .join(Order, col(Order.id) == col(TrackingLink.order_id))
            .where(col(TrackingLink.token_digest) == digest(token))
            .where(col(Order.user_id) == who.user_id)
            .where(col(TrackingLink.revoked_at).is_(None))
        )
        async with self._db.write() as session:
            link_id = (await session.execute(owned)).scalar_one_or_none()
            if link_id is None:
                return False  # leaving without a commit rolls back
            await session.execute(
                update(TrackingLink)
                .where(col(TrackingLink.id) == link_id)
                .values(revoked_at=utcnow())
            )
            await session.commit()
        return True

    async def view(self, raw_token: str, client_ip: str) -> PublicTracking:
        limiter = self._limiter
        await limiter.ensure_not_exhausted(limiter.failures_per_ip, client_ip)
        await limiter.hit(limiter.tracking_views, f"ip:{client_ip}")
        try:
            token = codes.normalise(raw_token)
        except InvalidOrderCode:
            await limiter.record(limiter.failures_per_ip, client_ip)
            raise
        await limiter.hit(limiter.tracking_views, f"token:{digest(token)[:32]}")
        live = (
            select(Order.id, Order.estimated_delivery)
            .join(TrackingLink, col(TrackingLink.order_id) == col(Order.id))
            .where(col(TrackingLink.token_digest) == digest(token))
            .where(col(TrackingLink.revoked_at).is_(None))
            .where(col(TrackingLink.expires_at) > utcnow())
        )
        async with self._db.read() as session:
            row = (await session.execute(live)).one_or_none()
        if row is None:
            await limiter.record(limiter.failures_per_ip, client_ip)
            raise TrackingLinkNotFound()
        order_id, estimated = row
        shipments = (await self._shipments.shipments_for_orders([order_id])).get(order_id, [])
        ids = [s.id for s in shipments if s.id is not None]
        events = await self._shipments.events_for_shipments(ids) if ids else {}
        return PublicTracking(estimated, shipments, events)
