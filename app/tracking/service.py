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
from app.errors import BadUserInput, ErrorCode, OrderNotFound
from app.orders.models import Order
from app.security import codes
from app.security.doors import Doors, NoMatch, Subject, Who, declare
from app.security.lookups import CodeLookups
from app.security.policy import Viewer
from app.security.ratelimit import Limiter
from app.shipments.models import Shipment, TrackingEvent
from app.shipments.service import ShipmentService
from app.tracking.models import TrackingLink
from app.unit_of_work import UnitsOfWork

MIN_HOURS = 1
MAX_HOURS = 24 * 30


class TrackingLinkNotFound(OrderNotFound):
    code = ErrorCode.ORDER_NOT_FOUND
    default_message = "This tracking link does not exist or is no longer valid."


CREATE_TRACKING_LINK = declare("createTrackingLink", Who.OWNER, Subject.ORDER)
REVOKE_TRACKING_LINK = declare(
    "revokeTrackingLink", Who.OWNER, Subject.TOKEN, not_found=TrackingLinkNotFound
)
# Public: the token is the credential; budgets per token and per address.
TRACKING_LINK = declare("trackingLink", Who.TOKEN, Subject.TOKEN, not_found=TrackingLinkNotFound)


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
        self._doors = Doors(lookups, limiter=limiter)
        self._units = UnitsOfWork(db)  # link changes tell no live subscriber
        self._shipments = shipments

    async def create(
        self, viewer: Viewer | None, raw_code: str, client_ip: str, expires_in_hours: int
    ) -> MintedLink:
        entry = await self._doors.enter(CREATE_TRACKING_LINK, viewer, raw_code, client_ip)
        # a miss is counted by the door once the transaction has ended (the limiter may be
        # Redis)
        async with entry.misses():
            return await self._mint(entry.who, entry.code, expires_in_hours)

    async def _mint(self, who: Viewer, code: str, expires_in_hours: int) -> MintedLink:
        """A new link to `who`'s order `code`; `NoMatch` when they have no such order."""
        async with self._units.begin() as uow:
            session = uow.session
            order = (
                await session.execute(
                    select(Order).where(col(Order.code) == code, col(Order.user_id) == who.user_id)
                )
            ).scalar_one_or_none()
            if order is None or order.id is None:
                raise NoMatch()  # leaving without a commit rolls back
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
            await uow.commit()
        return MintedLink(token, expires_at)

    async def revoke(self, viewer: Viewer | None, raw_token: str, client_ip: str) -> None:
        """Owner only; someone else's token answers like an unknown one."""
        entry = await self._doors.enter(REVOKE_TRACKING_LINK, viewer, raw_token, client_ip)
        if not await self._revoke_owned(entry.who, entry.code):
            # counted once the transaction has ended: the limiter may be Redis
            await entry.miss()

    async def _revoke_owned(self, who: Viewer, token: str) -> bool:
        """Revoke `who`'s live link `token`; False when they have none."""
        owned = (
            select(col(TrackingLink.id))
            .join(Order, col(Order.id) == col(TrackingLink.order_id))
            .where(col(TrackingLink.token_digest) == digest(token))
            .where(col(Order.user_id) == who.user_id)
            .where(col(TrackingLink.revoked_at).is_(None))
        )
        async with self._units.begin() as uow:
            session = uow.session
            link_id = (await session.execute(owned)).scalar_one_or_none()
            if link_id is None:
                return False  # leaving without a commit rolls back
            await session.execute(
                update(TrackingLink)
                .where(col(TrackingLink.id) == link_id)
                .values(revoked_at=utcnow())
            )
            await uow.commit()
        return True

    async def view(self, raw_token: str, client_ip: str) -> PublicTracking:
        entry = await self._doors.enter_public(
            TRACKING_LINK, raw_token, client_ip, subject_key=lambda t: digest(t)[:32]
        )
        token = entry.code
        live = (
            select(col(TrackingLink.order_id), col(Order.estimated_delivery))
            .join(TrackingLink, col(TrackingLink.order_id) == col(Order.id))
            .where(col(TrackingLink.token_digest) == digest(token))
            .where(col(TrackingLink.revoked_at).is_(None))
            .where(col(TrackingLink.expires_at) > utcnow())
        )
        async with self._db.read() as session:
            row = (await session.execute(live)).one_or_none()
        if row is None:
            await entry.miss()
        order_id, estimated = row
        shipments = (await self._shipments.shipments_for_orders([order_id])).get(order_id, [])
        ids = [s.id for s in shipments if s.id is not None]
        events = await self._shipments.events_for_shipments(ids) if ids else {}
        return PublicTracking(estimated, shipments, events)
